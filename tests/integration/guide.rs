//! Follows docs/first-operator.md, and each language's section of
//! docs/languages.md, literally: runs the `sh` blocks in order in an empty
//! directory, with `sluice` on the PATH, and checks that every output the
//! guide shows in `text` blocks appears.

use std::path::Path;
use std::process::Command;

const GUIDE: &str = include_str!("../../docs/first-operator.md");
const LANGUAGES: &str = include_str!("../../docs/languages.md");

/// The contents of the fenced blocks of `doc` whose info string is exactly
/// `lang`.
fn blocks(doc: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match &mut current {
            None if line.trim_end() == format!("```{lang}") => current = Some(String::new()),
            Some(text) if line.trim_end() == "```" => {
                out.push(std::mem::take(text));
                current = None;
            }
            Some(text) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    out
}

/// Whether some line of `output` contains the parts of `expected` (split at
/// `...`) in order.
fn shows(output: &str, expected: &str) -> bool {
    let parts: Vec<&str> = expected
        .split("...")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    output.lines().any(|line| {
        let mut rest = line;
        parts.iter().all(|p| match rest.find(p) {
            Some(i) => {
                rest = &rest[i + p.len()..];
                true
            }
            None => false,
        })
    })
}

/// Runs the `sh` blocks of `doc` in order in `dir/work`, an empty
/// directory, with this `sluice` first on the PATH; returns the work
/// directory and the output.
fn follow(doc: &str, dir: &Path) -> (std::path::PathBuf, std::process::Output) {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_sluice-under-test"), bin.join("sluice"))
        .unwrap();
    let work = dir.join("work");
    std::fs::create_dir(&work).unwrap();
    let script = format!("set -euo pipefail\n{}", blocks(doc, "sh").join("\n"));
    assert!(
        script.contains("sluice plugin new") && script.contains("sluice plugin build"),
        "the guide has runnable steps"
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env("PATH", path)
        .env("SLUICE_CACHE_DIR", dir.join("cache"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    (work, out)
}

#[test]
fn first_operator_guide_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (work, out) = follow(GUIDE, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the guide's commands failed:\n{stdout}\n{stderr}"
    );

    let expected = blocks(GUIDE, "text");
    assert!(expected.len() >= 4, "the guide shows outputs");
    for block in &expected {
        for line in block.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                shows(&stdout, line),
                "the guide shows {line:?}, but the output was:\n{stdout}\n{stderr}"
            );
        }
    }
    let rejected = std::fs::read_to_string(work.join("shout/rejected.jsonl")).unwrap();
    assert!(
        rejected.contains("\"reason\":\"empty value\""),
        "{rejected}"
    );
    assert!(Path::new(&work.join("shout/target/wasm32-wasip2/release/shout.wasm")).exists());
}

/// The section of `doc` under the heading `## title`, up to the next one.
fn section<'a>(doc: &'a str, title: &str) -> &'a str {
    let heading = format!("\n## {title}\n");
    let start = doc
        .find(&heading)
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let rest = &doc[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// Runs the `sh` blocks of a language's section of docs/languages.md in an
/// empty directory and checks that its `text` blocks appear in the output.
fn follow_language(title: &str) {
    let doc = section(LANGUAGES, title);
    let dir = tempfile::tempdir().unwrap();
    let (_, out) = follow(doc, dir.path());
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the {title} section's commands failed:\n{output}"
    );
    let expected = blocks(doc, "text");
    assert!(expected.len() >= 3, "the {title} section shows outputs");
    for line in expected.iter().flat_map(|b| b.lines()) {
        if !line.trim().is_empty() {
            assert!(
                shows(&output, line),
                "the {title} section shows {line:?}, but the output was:\n{output}"
            );
        }
    }
}

#[test]
fn the_c_section_of_the_languages_guide_works_as_written() {
    follow_language("C");
}

#[test]
fn the_python_section_of_the_languages_guide_works_as_written() {
    follow_language("Python");
}

#[test]
fn the_javascript_section_of_the_languages_guide_works_as_written() {
    follow_language("JavaScript");
}

#[test]
fn the_go_section_of_the_languages_guide_works_as_written() {
    follow_language("Go");
}

#[test]
fn matching_treats_dots_as_wildcards() {
    assert!(shows(
        "built /tmp/x/shout.wasm (80.2 KB): ok\n",
        "built .../shout.wasm (... KB): ok"
    ));
    assert!(!shows(
        "built /tmp/x/other.wasm (80.2 KB): ok\n",
        "built .../shout.wasm (... KB): ok"
    ));
}
