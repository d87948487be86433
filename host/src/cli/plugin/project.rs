//! An operator project on disk: which language it is written in, which
//! world it implements, where its SDK is, and the tools that build it.
//!
//! A Rust operator is a Cargo crate. An operator in any other language has
//! an `operator.toml` beside its sources:
//!
//! ```toml
//! name = "word-filter"
//! language = "python"        # c | python | js | go
//! world = "transform"        # transform | stateful-transform | reduce
//! sdk = "sdk"                # the SDK's directory, relative to the project
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The manifest of a non-Rust operator project.
pub const MANIFEST: &str = "operator.toml";

/// A language operators can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Rust, with the `sluice-sdk` crate.
    Rust,
    /// C, with clang, lld and wasi-libc.
    C,
    /// Python, with componentize-py.
    Python,
    /// JavaScript, with componentize-js.
    Js,
    /// Go 1.24 or newer (`GOOS=wasip1`).
    Go,
}

impl Language {
    /// Every language, in the order the documentation lists them.
    pub const ALL: [Language; 5] = [
        Language::Rust,
        Language::C,
        Language::Python,
        Language::Js,
        Language::Go,
    ];

    /// The name used on the command line and in `operator.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::C => "c",
            Language::Python => "python",
            Language::Js => "js",
            Language::Go => "go",
        }
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Language::Rust => "Rust",
            Language::C => "C",
            Language::Python => "Python",
            Language::Js => "JavaScript",
            Language::Go => "Go",
        })
    }
}

/// A world of the contract an operator implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// A stateless transformer.
    Transform,
    /// A transformer whose state moves to its next version.
    StatefulTransform,
    /// A keyed reducer.
    Reduce,
}

impl World {
    /// The world's name in `wit/operator.wit`.
    pub fn name(self) -> &'static str {
        match self {
            World::Transform => "transform",
            World::StatefulTransform => "stateful-transform",
            World::Reduce => "reduce",
        }
    }
}

/// What `operator.toml` says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The operator's name; the component is `build/NAME.wasm`.
    pub name: String,
    /// The language of its sources.
    pub language: Language,
    /// The world it implements.
    pub world: World,
    /// The SDK's directory, relative to the project (default `sdk`).
    #[serde(default)]
    pub sdk: Option<PathBuf>,
}

/// An operator project: a Cargo crate, or a directory with `operator.toml`.
#[derive(Debug, Clone)]
pub enum Project {
    /// A Rust crate.
    Rust(PathBuf),
    /// An operator in another language.
    Other {
        /// The project's directory.
        dir: PathBuf,
        /// Its manifest.
        manifest: Manifest,
    },
}

/// Why a project cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// Neither manifest is there.
    #[error(
        "{0} is not an operator project: it has neither Cargo.toml (Rust) nor {MANIFEST} (C, Python, JavaScript, Go); run `sluice plugin build` in one, or pass its directory"
    )]
    NotAProject(PathBuf),
    /// `operator.toml` does not parse.
    #[error("{path}: {error}")]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong with it.
        error: String,
    },
    /// A tool the language needs is not installed.
    #[error(
        "{tool} is not installed, and {language} operators are built with it: run `bash scripts/toolchains.sh {}` from a Sluice checkout{hint}",
        language.name()
    )]
    MissingTool {
        /// The language.
        language: Language,
        /// What is missing.
        tool: String,
        /// Another way to install it.
        hint: String,
    },
}

impl Project {
    /// Reads the project in `dir`.
    pub fn open(dir: &Path) -> Result<Project, ProjectError> {
        let path = dir.join(MANIFEST);
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| ProjectError::BadManifest {
                path: path.clone(),
                error: e.to_string(),
            })?;
            let manifest: Manifest =
                toml::from_str(&text).map_err(|e| ProjectError::BadManifest {
                    path: path.clone(),
                    error: e.message().to_string(),
                })?;
            if manifest.language == Language::Rust {
                return Err(ProjectError::BadManifest {
                    path,
                    error: "a Rust operator is a Cargo crate and needs no operator.toml".into(),
                });
            }
            if let Err(e) = super::scaffold::check_name(&manifest.name) {
                return Err(ProjectError::BadManifest {
                    path,
                    error: e.to_string(),
                });
            }
            return Ok(Project::Other {
                dir: dir.to_owned(),
                manifest,
            });
        }
        if dir.join("Cargo.toml").exists() {
            return Ok(Project::Rust(dir.to_owned()));
        }
        Err(ProjectError::NotAProject(dir.to_owned()))
    }
}

impl Manifest {
    /// The SDK's directory for a project in `dir`.
    pub fn sdk_dir(&self, dir: &Path) -> PathBuf {
        dir.join(self.sdk.as_deref().unwrap_or(Path::new("sdk")))
    }
}

/// Where `scripts/toolchains.sh` installs the Python and JavaScript tools.
pub fn toolchains_dir() -> PathBuf {
    match std::env::var_os("SLUICE_TOOLCHAINS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/sluice/toolchains"),
    }
}

/// The program `name`: on `PATH`, else in `extra` (a directory of the
/// toolchains installed by `scripts/toolchains.sh`).
pub fn find_tool(
    language: Language,
    name: &str,
    extra: Option<&Path>,
    hint: &str,
) -> Result<PathBuf, ProjectError> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = on_path
        .iter()
        .map(PathBuf::as_path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.ok_or_else(|| ProjectError::MissingTool {
        language,
        tool: format!("`{name}`"),
        hint: hint.to_string(),
    })
}

/// Runs `command` with its output shown to the user; a failure names what
/// failed.
pub fn run(command: &mut Command, what: &str) -> Result<(), String> {
    // Its output goes to stderr, beside the compiler's messages: stdout is
    // for what `sluice plugin build` itself reports.
    let status = command
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed (see its messages above)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) {
        std::fs::write(dir.join(MANIFEST), text).unwrap();
    }

    #[test]
    fn reads_a_manifest_and_refuses_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let err = Project::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("neither Cargo.toml"), "{err}");

        write(
            dir.path(),
            "name = \"up\"\nlanguage = \"go\"\nworld = \"stateful-transform\"\n",
        );
        let Project::Other { manifest, .. } = Project::open(dir.path()).unwrap() else {
            panic!("an operator.toml project")
        };
        assert_eq!(
            (manifest.language, manifest.world),
            (Language::Go, World::StatefulTransform)
        );
        assert_eq!(manifest.sdk_dir(dir.path()), dir.path().join("sdk"));

        write(
            dir.path(),
            "name = \"up\"\nlanguage = \"cobol\"\nworld = \"transform\"\n",
        );
        let err = Project::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("operator.toml") && err.contains("cobol"),
            "{err}"
        );

        write(
            dir.path(),
            "name = \"2up\"\nlanguage = \"c\"\nworld = \"transform\"\n",
        );
        let err = Project::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a valid operator name"), "{err}");
    }

    #[test]
    fn a_missing_tool_names_the_installer() {
        let err = find_tool(Language::Python, "no-such-tool-here", None, "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`no-such-tool-here` is not installed, and Python operators are built with it: run `bash scripts/toolchains.sh python` from a Sluice checkout"
        );
    }
}
