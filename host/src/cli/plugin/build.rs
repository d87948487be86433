//! `sluice plugin build [path]`: compile an operator project into a
//! component and check it against the contract. A Rust crate is built with
//! cargo; a project in another language (an `operator.toml`) by
//! [`languages`](super::languages).

use super::languages::{self, LanguageError};
use super::project::{Project, ProjectError};
use crate::wasm::{LoadError, PluginInfo, Runtime};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Wasm target operators are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The directory is not an operator project, or its manifest is bad.
    #[error(transparent)]
    Project(#[from] ProjectError),
    /// A build in another language failed.
    #[error(transparent)]
    Language(#[from] LanguageError),
    /// The Wasm target could not be installed.
    #[error("the {TARGET} target is missing and `rustup target add {TARGET}` failed: {0}")]
    Target(String),
    /// Cargo could not be run, or the build failed.
    #[error("{0}")]
    Cargo(String),
    /// The crate built, but produced no component.
    #[error(
        "the build produced no .wasm file: is the crate a `cdylib` (`[lib] crate-type = [\"cdylib\"]`)?"
    )]
    NoArtifact,
    /// The component does not satisfy the contract.
    #[error(transparent)]
    Check(#[from] LoadError),
}

/// A built and checked component.
#[derive(Debug)]
pub struct Built {
    /// The component file.
    pub path: PathBuf,
    /// What it implements.
    pub info: PluginInfo,
}

/// Installs the Wasm target when missing (idempotent), for the toolchain
/// that builds in `dir` (which a `rust-toolchain.toml` there may choose).
pub fn ensure_target(dir: &Path) -> Result<(), BuildError> {
    let sysroot = Command::new("rustc")
        .current_dir(dir)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| BuildError::Target(format!("cannot run rustc: {e}")))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).exists() {
        return Ok(());
    }
    let out = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "add", TARGET])
        .output()
        .map_err(|e| BuildError::Target(format!("cannot run rustup: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BuildError::Target(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Builds the project in `dir` (the compilers' progress and diagnostics go
/// to stderr) and checks the component.
pub fn build(dir: &Path, runtime: &Runtime) -> Result<Built, BuildError> {
    let path = match Project::open(dir)? {
        Project::Rust(dir) => build_crate(&dir)?,
        Project::Other { dir, manifest } => languages::build(&dir, &manifest)?,
    };
    let plugin = runtime.load(&path)?;
    Ok(Built {
        path,
        info: plugin.info().clone(),
    })
}

/// Builds the crate in `dir` in release mode for the Wasm target and
/// returns the component's path.
fn build_crate(dir: &Path) -> Result<PathBuf, BuildError> {
    ensure_target(dir)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| BuildError::Cargo(format!("cannot run cargo: {e}")))?;
    if !out.status.success() {
        return Err(BuildError::Cargo(
            "cargo build failed (see its messages above)".into(),
        ));
    }
    wasm_artifact(&String::from_utf8_lossy(&out.stdout)).ok_or(BuildError::NoArtifact)
}

/// The last `.wasm` file among cargo's `compiler-artifact` messages.
fn wasm_artifact(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_component_among_cargo_messages() {
        let msgs = r#"{"reason":"compiler-artifact","filenames":["/t/libdep.rlib"]}
{"reason":"build-finished","success":true}
{"reason":"compiler-artifact","filenames":["/t/wasm32-wasip2/release/my_op.wasm","/t/wasm32-wasip2/release/libmy_op.rlib"]}
not json"#;
        assert_eq!(
            wasm_artifact(msgs),
            Some(PathBuf::from("/t/wasm32-wasip2/release/my_op.wasm"))
        );
        assert_eq!(wasm_artifact("{}"), None);
    }

    #[test]
    fn refuses_a_directory_without_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::with_cache_dir(None).unwrap();
        let err = build(dir.path(), &runtime).unwrap_err();
        assert!(err.to_string().contains("neither Cargo.toml"), "{err}");
    }
}
