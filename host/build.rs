//! Embeds the SDKs and project templates of the languages other than Rust
//! (`plugin-sdk/LANG/`), so that `sluice plugin new --lang LANG` can write a
//! project that builds wherever `sluice` is installed.
//!
//! Writes `$OUT_DIR/sdk_files.rs`: a list of `(language, kind, path, bytes)`
//! where `kind` is `"template"` (a file of `template/`) or `"sdk"` (a file
//! of the SDK itself, which a new project gets a copy of).

use std::path::{Path, PathBuf};

const LANGUAGES: [&str; 4] = ["c", "python", "js", "go"];

/// Directories and files of `plugin-sdk/LANG/` that are not part of the SDK.
const NOT_SDK: [&str; 7] = [
    "examples",
    "template",
    "BUILD.md",
    "README.md",
    "dev",
    "tests",
    "sdk_test.go",
];

/// The files under `dir`, sorted. For an SDK (`sdk`), leaves out hidden
/// files and, at the top, what [`NOT_SDK`] names.
fn walk(dir: &Path, sdk: bool, top: bool, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let skipped = (sdk && name.starts_with('.'))
            || (sdk && top && NOT_SDK.contains(&name.as_str()))
            || ["build", "node_modules", "__pycache__"].contains(&name.as_str());
        if skipped {
            continue;
        }
        if path.is_dir() {
            walk(&path, sdk, false, found);
        } else {
            found.push(path);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    let mut code = String::from(
        "/// Embedded SDK and template files.\npub const FILES: &[(&str, &str, &str, &[u8])] = &[\n",
    );
    for lang in LANGUAGES {
        let base = root.join(lang);
        println!("cargo:rerun-if-changed={}", base.display());
        // The SDK is `plugin-sdk/LANG/sdk/` when there is one, else
        // `plugin-sdk/LANG/` itself.
        let sdk = match base.join("sdk") {
            d if d.is_dir() => d,
            _ => base.clone(),
        };
        for (kind, dir) in [("template", base.join("template")), ("sdk", sdk)] {
            let mut files = Vec::new();
            walk(&dir, kind == "sdk", true, &mut files);
            for file in files {
                println!("cargo:rerun-if-changed={}", file.display());
                let rel = file
                    .strip_prefix(&dir)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                code.push_str(&format!(
                    "    ({lang:?}, {kind:?}, {rel:?}, include_bytes!({:?})),\n",
                    file.canonicalize().unwrap().display().to_string()
                ));
            }
        }
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("sdk_files.rs");
    std::fs::write(out, code).unwrap();
}
