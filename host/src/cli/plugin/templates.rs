//! `sluice plugin new NAME --lang LANG` for the languages other than Rust:
//! the template of `plugin-sdk/LANG/template/`, with a copy of the SDK in
//! the project's `sdk/`, both embedded in `sluice` when it was built.

use super::project::Language;
use super::scaffold::{ScaffoldError, check_name, type_name};
use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
}

/// Where a new project keeps its copy of the SDK (`sdk` in operator.toml):
/// a Python project holds the `sluice_sdk` package itself, so that its
/// tests import it as they run.
pub fn sdk_dir(language: Language) -> &'static str {
    match language {
        Language::Python => ".",
        _ => "sdk",
    }
}

/// The embedded files of `language` of `kind` (`template` or `sdk`).
pub fn files(
    language: Language,
    kind: &str,
) -> impl Iterator<Item = (&'static str, &'static [u8])> {
    embedded::FILES
        .iter()
        .filter(move |(l, k, _, _)| *l == language.name() && *k == kind)
        .map(|(_, _, path, bytes)| (*path, *bytes))
}

/// Fills the placeholders of a template file or of its name: `{{NAME}}` (`word-filter`),
/// `{{IDENT}}` (`word_filter`) and `{{TYPE}}` (`WordFilter`).
fn fill(text: &[u8], name: &str) -> Vec<u8> {
    match std::str::from_utf8(text) {
        Ok(t) => t
            .replace("{{NAME}}", name)
            .replace("{{IDENT}}", &name.replace('-', "_"))
            .replace("{{TYPE}}", &type_name(name))
            .into_bytes(),
        Err(_) => text.to_vec(),
    }
}

/// Creates the project `name` in `language` in `parent/name` and returns
/// its directory.
pub fn create(parent: &Path, name: &str, language: Language) -> Result<PathBuf, ScaffoldError> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let template = files(language, "template").map(|(p, t)| {
        let path = String::from_utf8(fill(p.as_bytes(), name)).expect("a UTF-8 path");
        (PathBuf::from(path), fill(t, name))
    });
    let sdk =
        files(language, "sdk").map(|(p, t)| (Path::new(sdk_dir(language)).join(p), t.to_vec()));
    for (rel, bytes) in template.chain(sdk) {
        let path = dir.join(rel);
        let write = || -> std::io::Result<()> {
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)?;
            }
            std::fs::write(&path, &bytes)
        };
        write().map_err(|error| ScaffoldError::Io {
            path: path.clone(),
            error,
        })?;
    }
    Ok(dir)
}

/// What to run next in a new project of `language`.
pub fn next_steps(language: Language) -> &'static str {
    match language {
        Language::Rust => "cargo test && sluice plugin build",
        Language::C => "make test && sluice plugin build",
        Language::Python => "python3 -m unittest && sluice plugin build",
        Language::Js => "node --test && sluice plugin build",
        Language::Go => "go test ./... && sluice plugin build",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_a_template_and_an_sdk() {
        for language in [Language::C, Language::Python, Language::Js, Language::Go] {
            let template: Vec<_> = files(language, "template").map(|(p, _)| p).collect();
            assert!(
                template.contains(&"operator.toml"),
                "{language}: {template:?}"
            );
            assert!(files(language, "sdk").count() > 0, "{language} has an SDK");
        }
    }

    #[test]
    fn fills_the_names() {
        assert_eq!(
            fill(b"{{NAME}} {{IDENT}} {{TYPE}}", "word-filter"),
            b"word-filter word_filter WordFilter"
        );
    }
}
