//! `sluice plugin new NAME --lang LANG` for C, Python, JavaScript and Go: the
//! project passes its own tests as generated, builds, does what the Rust
//! template does (a prefix before each value, empty values rejected), and a
//! failure in its code is a trap, isolated to its record as a Rust panic is.

use crate::languages::{build, sluice};
use std::process::Command;

/// Runs `command`, failing the test with its output when it fails.
fn ok(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// The language's own test runner, as the new project's README says.
fn native_tests(lang: &str) -> Command {
    let (program, args): (&str, &[&str]) = match lang {
        "c" => ("make", &["test"]),
        "python" => ("python3", &["-m", "unittest"]),
        "js" => ("node", &["--test"]),
        "go" => ("go", &["test", "./..."]),
        other => panic!("no language {other}"),
    };
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// The template's check for an empty value, and the same check preceded by
/// a failure the SDK does not expect on the value `BOOM`.
fn boom(lang: &str) -> (&'static str, &'static str, &'static str) {
    match lang {
        "c" => (
            "word_filter.c",
            "        if (r.value_len == 0) {",
            "        if (r.value_len == 4 && !memcmp(r.value, \"BOOM\", 4)) __builtin_trap();\n        if (r.value_len == 0) {",
        ),
        "python" => (
            "app.py",
            "        if not record.value:",
            "        if record.value == b\"BOOM\":\n            raise RuntimeError(\"boom\")\n        if not record.value:",
        ),
        "js" => (
            "src/operator.js",
            "    if (record.value.length === 0) {",
            "    if (String.fromCharCode(...record.value) === \"BOOM\") throw new Error(\"boom\");\n    if (record.value.length === 0) {",
        ),
        "go" => (
            "main.go",
            "\tif len(r.Value) == 0 {",
            "\tif string(r.Value) == \"BOOM\" {\n\t\tpanic(\"boom\")\n\t}\n\tif len(r.Value) == 0 {",
        ),
        other => panic!("no language {other}"),
    }
}

fn new_project_works(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(
        sluice()
            .args(["plugin", "new", "word-filter", "--lang", lang, "--dir"])
            .arg(dir.path()),
        "sluice plugin new",
    );
    assert!(out.contains("created"), "{out}");
    let project = dir.path().join("word-filter");
    ok(native_tests(lang).current_dir(&project), "the native tests");

    // What the template does, against its own sample.
    let component = build(&project);
    assert!(
        component.ends_with("build/word-filter.wasm"),
        "{}",
        component.display()
    );
    let report = ok(
        sluice()
            .args(["plugin", "test"])
            .arg(&component)
            .arg("--input")
            .arg(project.join("sample.txt")),
        "sluice plugin test",
    );
    let sample = std::fs::read_to_string(project.join("sample.txt")).unwrap();
    assert!(
        sample.lines().any(str::is_empty),
        "the sample has an empty line"
    );
    for (i, line) in sample.lines().enumerate() {
        let shown = if line.is_empty() {
            format!("record {i} (value \"\"): empty value")
        } else {
            format!("value={:?}", format!("> {line}"))
        };
        assert!(
            report.contains(&shown),
            "{lang}: {shown:?} not in\n{report}"
        );
    }

    // A failure the operator does not expect traps: the job dead-letters
    // that record and goes on, as it does for a Rust panic.
    let (file, check, with_boom) = boom(lang);
    let source = std::fs::read_to_string(project.join(file)).unwrap();
    assert_eq!(
        source.matches(check).count(),
        1,
        "{lang}: {file} has the check"
    );
    std::fs::write(project.join(file), source.replace(check, with_boom)).unwrap();
    std::fs::remove_file(&component).unwrap();
    ok(
        sluice().args(["plugin", "build"]).arg(&project),
        "sluice plugin build",
    );
    let job = dir.path().join("job.toml");
    std::fs::write(dir.path().join("in.txt"), "a\nBOOM\n\nb\n").unwrap();
    std::fs::write(
        &job,
        format!(
            "name = \"boom\"\nworkers = 1\n[dead_letter]\npath = \"dead.jsonl\"\n\
             [[sources]]\nkind = \"file\"\npath = \"in.txt\"\n\
             [[operators]]\nplugin = {:?}\n\
             [[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
            component.display().to_string()
        ),
    )
    .unwrap();
    ok(sluice().arg("run").arg(&job), "sluice run");
    let rows = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let values: Vec<_> = rows("out.jsonl")
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(values, ["> a", "> b"], "{lang}");
    let dead = rows("dead.jsonl");
    let reason = |value: &str| {
        dead.iter()
            .find(|r| r["value"] == value)
            .and_then(|r| r["reason"].as_str())
            .unwrap_or_else(|| panic!("{lang}: {value:?} not dead-lettered: {dead:?}"))
            .to_string()
    };
    assert_eq!(reason(""), "empty value");
    let trapped = reason("BOOM");
    assert!(
        trapped.starts_with("operator trapped on this record"),
        "{lang}: {trapped}"
    );
    // The SDKs of languages that have exceptions or panics say which one.
    if lang != "c" {
        assert!(
            trapped.contains("uncaught") && trapped.contains("boom"),
            "{lang}: {trapped}"
        );
    }
    assert_eq!(dead.len(), 2, "{lang}: {dead:?}");
}

#[test]
fn a_new_c_project_passes_its_tests_builds_and_traps_like_rust() {
    new_project_works("c");
}

#[test]
fn a_new_python_project_passes_its_tests_builds_and_traps_like_rust() {
    new_project_works("python");
}

#[test]
fn a_new_js_project_passes_its_tests_builds_and_traps_like_rust() {
    new_project_works("js");
}

#[test]
fn a_new_go_project_passes_its_tests_builds_and_traps_like_rust() {
    new_project_works("go");
}

#[test]
fn a_missing_toolchain_is_named_with_the_command_that_installs_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (lang, tool) in [
        ("c", "clang"),
        ("python", "componentize-py"),
        ("js", "componentize-js"),
        ("go", "go"),
    ] {
        let name = format!("no-{lang}");
        ok(
            sluice()
                .args(["plugin", "new", &name, "--lang", lang, "--dir"])
                .arg(dir.path()),
            "sluice plugin new",
        );
        // Nothing on the PATH, no toolchains directory: the build must say
        // what is missing and how to install it, not fail in a compiler.
        let out = sluice()
            .args(["plugin", "build"])
            .arg(dir.path().join(&name))
            .env("PATH", &empty)
            .env("SLUICE_TOOLCHAINS", &empty)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{lang}: {stderr}");
        let want = format!(
            "`{tool}` is not installed, and {} operators are built with it: run `bash scripts/toolchains.sh {lang}` from a Sluice checkout",
            match lang {
                "c" => "C",
                "python" => "Python",
                "js" => "JavaScript",
                _ => "Go",
            }
        );
        assert!(stderr.contains(&want), "{lang}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{lang}: one line, no compiler output: {stderr}"
        );
    }
}
