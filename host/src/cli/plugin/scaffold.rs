//! `sluice plugin new <name>`: a new operator crate.

use std::path::{Path, PathBuf};

/// Why a crate could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a crate name.
    #[error(
        "{name:?} is not a valid operator name: {why} (use letters, digits, `-` and `_`, starting with a letter, e.g. `word-filter`)"
    )]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// The target directory exists.
    #[error("{0} already exists; choose another name or remove it")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
}

/// Where the new crate gets the SDK from.
#[derive(Debug, Clone)]
pub enum SdkSource {
    /// A local checkout of `plugin-sdk/`.
    Path(PathBuf),
    /// The published crate, by version requirement.
    Registry(String),
}

impl SdkSource {
    /// The SDK next to the sources this binary was built from when it is
    /// still there (a development checkout), otherwise the published crate.
    pub fn detect() -> Self {
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
        match local.canonicalize() {
            Ok(p) if p.join("Cargo.toml").exists() => SdkSource::Path(p),
            _ => SdkSource::Registry(env!("CARGO_PKG_VERSION").to_string()),
        }
    }

    fn dependency(&self) -> String {
        match self {
            SdkSource::Path(p) => {
                format!("sluice-sdk = {{ path = {:?} }}", p.display().to_string())
            }
            SdkSource::Registry(v) => format!("sluice-sdk = {v:?}"),
        }
    }
}

const RESERVED: &[&str] = &[
    "test",
    "self",
    "super",
    "crate",
    "core",
    "std",
    "alloc",
    "proc_macro",
    "proc-macro",
    "build",
    "deps",
    "examples",
    "incremental",
];
const TAKEN_TYPES: &[&str] = &[
    "Config", "Error", "Level", "Operator", "Output", "Record", "Batch", "Harness", "String",
    "Result", "Vec", "Option", "Box", "Some", "None", "Ok", "Err", "Self",
];
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
    "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where", "while",
    "abstract", "become", "box", "do", "final", "gen", "macro", "override", "priv", "try",
    "typeof", "unsized", "virtual", "yield",
];

/// Checks that `name` can be a crate name.
pub fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let bad = |why: &str| {
        Err(ScaffoldError::BadName {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    let Some(first) = name.chars().next() else {
        return bad("it is empty");
    };
    if !first.is_ascii_alphabetic() {
        return bad("it must start with an ASCII letter");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return bad(&format!("it contains {c:?}"));
    }
    if name.len() > 64 {
        return bad("it is longer than 64 characters");
    }
    let snake = name.replace('-', "_");
    if KEYWORDS.contains(&snake.as_str()) || RESERVED.contains(&name) {
        return bad("it is a reserved word in Rust or Cargo");
    }
    // The operator type is named after the crate; it must not shadow a name
    // the generated code uses.
    let ty = type_name(name);
    if TAKEN_TYPES.contains(&ty.as_str()) {
        return bad(&format!(
            "the operator type `{ty}` would clash with a name the generated code uses"
        ));
    }
    Ok(())
}

/// `word-filter` → `WordFilter`.
pub(super) fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Creates the crate `name` in `parent/name` and returns its directory.
pub fn create(parent: &Path, name: &str, sdk: &SdkSource) -> Result<PathBuf, ScaffoldError> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let ty = type_name(name);
    let files = [
        ("Cargo.toml", cargo_toml(name, sdk)),
        (".cargo/config.toml", CARGO_CONFIG.to_string()),
        (".gitignore", "/target\n".to_string()),
        (
            "src/lib.rs",
            LIB_RS.replace("{{TYPE}}", &ty).replace("{{NAME}}", name),
        ),
        ("sample.txt", SAMPLE.to_string()),
        (
            "README.md",
            README
                .replace("{{NAME}}", name)
                .replace("{{FILE}}", &name.replace('-', "_")),
        ),
    ];
    for (rel, text) in files {
        let path = dir.join(rel);
        let write = || -> std::io::Result<()> {
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)?;
            }
            std::fs::write(&path, text)
        };
        write().map_err(|error| ScaffoldError::Io {
            path: path.clone(),
            error,
        })?;
    }
    Ok(dir)
}

fn cargo_toml(name: &str, sdk: &SdkSource) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the Wasm component; rlib: native unit tests and benchmarks.
crate-type = ["cdylib", "rlib"]

[dependencies]
{dep}

[profile.release]
codegen-units = 1
lto = true

# A crate of its own, even when created inside another Cargo workspace.
[workspace]
"#,
        dep = sdk.dependency()
    )
}

const CARGO_CONFIG: &str = r#"# Build for the Wasm component target with 128-bit SIMD, which makes byte
# loops several times faster; every current Wasm engine supports it.
[target.wasm32-wasip2]
rustflags = ["-C", "target-feature=+simd128"]
"#;

const LIB_RS: &str = r#"//! `{{NAME}}`: a Sluice operator.
//!
//! Prefixes every value with a configurable text and rejects empty values.
//! Settings (the `config` table of the operator in a job file):
//!
//! - `prefix` (default `"> "`): text put in front of each value.
//!
//! Build it with `sluice plugin build` (or `cargo build --release --target
//! wasm32-wasip2`), try it with `sluice plugin test`.

use sluice_sdk::{export_operator, log, Config, Error, Level, Operator, Output, Record};

/// The operator. One value lives in each Wasm instance; the host keeps one
/// instance per partition, so `&mut self` may hold state between batches.
pub struct {{TYPE}} {
    prefix: Vec<u8>,
}

impl Operator for {{TYPE}} {
    /// Reads the settings; refusing them stops the job before it starts.
    fn init(config: &Config) -> Result<Self, Error> {
        config.allow_only(&["prefix"])?;
        let prefix = config.get("prefix").unwrap_or("> ");
        log(Level::Info, &format!("prefixing values with {prefix:?}"));
        Ok({{TYPE}} {
            prefix: prefix.as_bytes().to_vec(),
        })
    }

    /// Called for each record of a batch. Emit any number of records to
    /// `out`; return `Err(reason)` to reject the record (it goes to the
    /// job's dead-letter file with the reason).
    fn process_record(&mut self, record: Record<'_>, out: &mut Output) -> Result<(), String> {
        if record.value.is_empty() {
            return Err("empty value".to_string());
        }
        out.emit_with(record.key, record.timestamp, |value| {
            value.extend_from_slice(&self.prefix);
            value.extend_from_slice(record.value);
        });
        Ok(())
    }
}

export_operator!({{TYPE}});

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn prefixes_values() {
        let mut op = Harness::<{{TYPE}}>::new(&[("prefix", "* ")]).unwrap();
        assert_eq!(op.run_lines(&["hello", "world"]).unwrap(), ["* hello", "* world"]);
    }

    #[test]
    fn rejects_empty_values_by_index() {
        let mut op = Harness::<{{TYPE}}>::new(&[]).unwrap();
        let Err(Error::BadRecords(rejected)) = op.run_lines(&["ok", ""]) else {
            panic!("the empty value must be rejected");
        };
        assert_eq!(rejected[0].index, 1);
    }

    #[test]
    fn unknown_setting_is_refused() {
        assert!(matches!(Harness::<{{TYPE}}>::new(&[("prefx", "x")]), Err(Error::BadConfig(_))));
    }
}
"#;

const SAMPLE: &str = "the quick brown fox\njumps over\n\nthe lazy dog\n";

const README: &str = r#"# {{NAME}}

A Sluice operator.

```sh
cargo test                                   # native unit tests
sluice plugin build                          # the Wasm component, checked
sluice plugin test target/wasm32-wasip2/release/{{FILE}}.wasm --input sample.txt
```
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("word-filter").is_ok());
        assert!(check_name("op_2").is_ok());
        for bad in [
            "", "2fast", "my op", "café", "fn", "test", "a/b", "config", "string", "harness",
        ] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains("not a valid operator name"), "{bad}: {err}");
        }
        assert_eq!(type_name("word-filter"), "WordFilter");
        assert_eq!(type_name("op_2"), "Op2");
    }

    #[test]
    fn refuses_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        let err = create(dir.path(), "taken", &SdkSource::Registry("0.1.0".into())).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[test]
    fn writes_a_crate() {
        let dir = tempfile::tempdir().unwrap();
        let root = create(dir.path(), "my-op", &SdkSource::Registry("0.1.0".into())).unwrap();
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct MyOp") && lib.contains("export_operator!(MyOp);"));
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("name = \"my-op\"") && manifest.contains("sluice-sdk = \"0.1.0\"")
        );
        assert!(root.join(".cargo/config.toml").exists() && root.join("sample.txt").exists());
    }
}
