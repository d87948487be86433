//! Building operators written in C, Python, JavaScript and Go: each
//! language's compiler makes a core module or a component from the
//! project's sources and its SDK, and `sluice` finishes the component.
//!
//! Everything is written under the project's `build/`; the component is
//! `build/NAME.wasm`.

use super::component::{self, Wrap};
use super::project::{Language, Manifest, ProjectError, World, find_tool, run, toolchains_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The contract's WIT, as the language tools that read WIT need it.
const WIT: &str = include_str!("../../../../wit/operator.wit");

/// Why a build in another language failed.
#[derive(Debug, thiserror::Error)]
pub enum LanguageError {
    /// A tool is missing, or the project is malformed.
    #[error(transparent)]
    Project(#[from] ProjectError),
    /// The SDK directory the manifest names is not there.
    #[error(
        "the {language} SDK is not at {0} (`sdk` in operator.toml): point it at the SDK's directory",
        language = .1
    )]
    NoSdk(PathBuf, Language),
    /// The compiler failed, or writing failed.
    #[error("{0}")]
    Failed(String),
}

impl From<std::io::Error> for LanguageError {
    fn from(e: std::io::Error) -> Self {
        LanguageError::Failed(e.to_string())
    }
}

impl From<anyhow::Error> for LanguageError {
    fn from(e: anyhow::Error) -> Self {
        LanguageError::Failed(format!("{e:#}"))
    }
}

/// Builds the project in `dir` and returns the component's path.
pub fn build(dir: &Path, manifest: &Manifest) -> Result<PathBuf, LanguageError> {
    // The compilers run in the project: every path they get is absolute.
    let dir = &dir.canonicalize()?;
    let sdk = manifest.sdk_dir(dir);
    if !sdk.is_dir() {
        return Err(LanguageError::NoSdk(sdk, manifest.language));
    }
    let sdk = sdk.canonicalize()?;
    let out = dir.join("build");
    std::fs::create_dir_all(&out)?;
    let component = out.join(format!("{}.wasm", manifest.name));
    match manifest.language {
        Language::C => c(dir, manifest, &sdk, &out, &component)?,
        Language::Python => python(dir, manifest, &sdk, &out, &component)?,
        Language::Js => js(dir, manifest, &sdk, &out, &component)?,
        Language::Go => go(dir, manifest, &sdk, &out, &component)?,
        Language::Rust => unreachable!("Rust crates are built with cargo"),
    }
    Ok(component)
}

/// Writes the contract's WIT into `out/wit` for the tools that read it.
fn write_wit(out: &Path) -> Result<PathBuf, LanguageError> {
    let dir = out.join("wit");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("operator.wit"), WIT)?;
    Ok(dir)
}

/// The `.c` files of `dir`, sorted, leaving out the native test programs
/// (`test.c`, `test_*.c`).
fn c_sources(dir: &Path) -> Result<Vec<PathBuf>, LanguageError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".c") && name != "test.c" && !name.starts_with("test_") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The wasi-libc sysroot: `$WASI_SYSROOT`, else Debian's.
fn wasi_sysroot() -> Result<PathBuf, ProjectError> {
    let root = std::env::var_os("WASI_SYSROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr"));
    let has_libc = root.join("include/wasm32-wasi/stdio.h").exists()
        || root.join("include/stdio.h").exists() && root.join("lib/wasm32-wasi").exists();
    if has_libc {
        Ok(root)
    } else {
        Err(ProjectError::MissingTool {
            language: Language::C,
            tool: "wasi-libc".into(),
            hint: " (or set WASI_SYSROOT to a wasi-sdk sysroot)".into(),
        })
    }
}

fn c(
    dir: &Path,
    manifest: &Manifest,
    sdk: &Path,
    out: &Path,
    component: &Path,
) -> Result<(), LanguageError> {
    supports(manifest, &[World::Transform, World::Reduce])?;
    let clang = find_tool(
        Language::C,
        "clang",
        None,
        " (or install clang, lld and wasi-libc)",
    )?;
    find_tool(Language::C, "wasm-ld", None, " (lld provides it)")?;
    let sysroot = wasi_sysroot()?;
    let bindings = out.join("bindings");
    let generated = component::c_bindings(manifest.world, &bindings)?;
    let core = out.join(format!("{}.core.wasm", manifest.name));
    let mut cmd = Command::new(clang);
    cmd.current_dir(dir)
        .arg("--target=wasm32-wasi")
        .arg(format!("--sysroot={}", sysroot.display()))
        .args(["-mexec-model=reactor", "-O2", "-msimd128"])
        .args(["-Wall", "-Wextra", "-Wno-unused-parameter"])
        .arg(format!("-DSLUICE_WORLD_{}", c_world(manifest.world)))
        .arg("-I")
        .arg(sdk)
        .arg("-I")
        .arg(&bindings)
        .arg("-o")
        .arg(&core)
        .args(c_sources(dir)?)
        .args(c_sources(sdk)?)
        .args(
            generated
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "c")),
        )
        // wasi-libc's default printf core reaches for stderr; this one does
        // not, so a module that formats text still imports no WASI function.
        .args(["-lc-printscan-long-double", "-Wl,--strip-all"]);
    run(&mut cmd, "clang").map_err(LanguageError::Failed)?;
    let module = std::fs::read(&core)?;
    if component::imports_wasi(&module)? {
        return Err(LanguageError::Failed(format!(
            "{} imports WASI functions (stdio, files, the environment): an operator logs with `sluice_log` and reads its settings from its config",
            core.display()
        )));
    }
    std::fs::write(
        component,
        component::componentize(module, manifest.world, Wrap::default())?,
    )?;
    Ok(())
}

/// `stateful-transform` → `STATEFUL_TRANSFORM`.
fn c_world(world: World) -> String {
    world.name().replace('-', "_").to_ascii_uppercase()
}

fn python(
    dir: &Path,
    manifest: &Manifest,
    sdk: &Path,
    out: &Path,
    component: &Path,
) -> Result<(), LanguageError> {
    let tools = toolchains_dir().join("python/bin");
    let tool = find_tool(
        Language::Python,
        "componentize-py",
        Some(&tools),
        " (or `pip install componentize-py==0.25.1`)",
    )?;
    let wit = write_wit(out)?;
    let mut cmd = Command::new(tool);
    // Its errors are Python's; a Rust backtrace of the tool itself, or
    // another virtual environment's packages, would only get in the way.
    cmd.current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .env_remove("VIRTUAL_ENV")
        .arg("-d")
        .arg(&wit)
        .args(["-w", manifest.world.name(), "componentize", "app"])
        .arg("-p")
        .arg(dir)
        .arg("-p")
        .arg(sdk)
        .arg("-o")
        .arg(component);
    run(&mut cmd, "componentize-py").map_err(LanguageError::Failed)
}

fn js(
    dir: &Path,
    manifest: &Manifest,
    sdk: &Path,
    out: &Path,
    component: &Path,
) -> Result<(), LanguageError> {
    supports(manifest, &[World::Transform, World::Reduce])?;
    let tools = toolchains_dir().join("js/node_modules/.bin");
    let tool = find_tool(
        Language::Js,
        "componentize-js",
        Some(&tools),
        " (or `npm install --prefix ~/.cache/sluice/toolchains/js @bytecodealliance/componentize-js@0.23.0`)",
    )?;
    let wit = write_wit(out)?;
    // The one module that imports the host: it wires the operator class to
    // the export the world names.
    let (wire, export) = match manifest.world {
        World::Reduce => ("exportReducer", "reducer"),
        _ => ("exportTransformer", "transformer"),
    };
    let sdk_from_out = relative(out, sdk);
    let entry = out.join("entry.js");
    std::fs::write(
        &entry,
        format!(
            "import {{ log }} from \"sluice:operator/host@0.2.0\";\n\
             import {{ {wire} }} from \"{sdk_from_out}/sluice.js\";\n\
             import Operator from \"../src/operator.js\";\n\
             export const {export} = {wire}(Operator, log);\n"
        ),
    )?;
    // componentize-js sees only the files below its working directory, so
    // it runs where both the project and its SDK are.
    let mut root = dir.to_owned();
    while !sdk.starts_with(&root) {
        root.pop();
    }
    if root.parent().is_none() {
        // componentize-js cannot run in `/` (it misreads the entry's path).
        return Err(LanguageError::Failed(format!(
            "the JavaScript SDK at {} and the project share no directory but /: put the SDK inside the project (`sdk = \"sdk\"` in operator.toml, as `sluice plugin new` does) or next to it",
            sdk.display()
        )));
    }
    let mut cmd = Command::new(tool);
    cmd.current_dir(&root)
        .arg(&entry)
        .arg("--wit")
        .arg(&wit)
        .args(["-n", manifest.world.name()])
        .args(["-d", "http", "-d", "fetch-event"])
        .arg("-o")
        .arg(component);
    run(&mut cmd, "componentize-js").map_err(LanguageError::Failed)
}

/// The path of `to` from the directory `from`, both absolute, with `/`.
fn relative(from: &Path, to: &Path) -> String {
    let common = from
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let up = from.components().count() - common;
    let parts: Vec<String> = std::iter::repeat_n("..".to_string(), up)
        .chain(
            to.components()
                .skip(common)
                .map(|c| c.as_os_str().to_string_lossy().to_string()),
        )
        .collect();
    parts.join("/")
}

fn go(
    dir: &Path,
    manifest: &Manifest,
    sdk: &Path,
    out: &Path,
    component: &Path,
) -> Result<(), LanguageError> {
    supports(manifest, &[World::Transform, World::StatefulTransform])?;
    let go = find_tool(Language::Go, "go", None, " (Go 1.24 or newer)")?;
    // The SDK's own adapters, each named after its file: its WASI adapter
    // (the stock one takes memory pages that Go's allocator also hands out,
    // see plugin-sdk/go/adapter/) and any helper module it links in.
    let adapters = adapters(&sdk.join("adapter"))?;
    let core = out.join(format!("{}.core.wasm", manifest.name));
    let mut cmd = Command::new(go);
    cmd.current_dir(dir)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .args([
            "build",
            "-buildmode=c-shared",
            "-trimpath",
            "-ldflags=-s",
            "-o",
        ])
        .arg(&core)
        .arg(".");
    run(&mut cmd, "go build").map_err(LanguageError::Failed)?;
    let module = std::fs::read(&core)?;
    let wrap = Wrap {
        adapters: &adapters,
    };
    std::fs::write(
        component,
        component::componentize(module, manifest.world, wrap)?,
    )?;
    Ok(())
}

/// The `.wasm` files of `dir`, by name without the extension.
fn adapters(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, LanguageError> {
    let read = |e: std::io::Error| LanguageError::Failed(format!("{}: {e}", dir.display()));
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            found.push((name, std::fs::read(&path).map_err(read)?));
        }
    }
    found.sort();
    Ok(found)
}

/// Refuses a world the language's SDK does not offer.
fn supports(manifest: &Manifest, worlds: &[World]) -> Result<(), LanguageError> {
    if worlds.contains(&manifest.world) {
        return Ok(());
    }
    let names: Vec<_> = worlds.iter().map(|w| w.name()).collect();
    Err(LanguageError::Failed(format!(
        "operator.toml: the {} SDK does not offer world `{}` (it offers: {})",
        manifest.language,
        manifest.world.name(),
        names.join(", ")
    )))
}
