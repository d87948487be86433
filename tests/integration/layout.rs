//! The shape of `host/src`: its top-level modules depend on each other in
//! one direction only, along the data path, and no source file outgrows a
//! reader. Read from the source text itself, so a `use crate::…` that points
//! the wrong way fails here before anyone has to untangle it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules from the bottom up. A module may use the modules
/// of lower layers only; the modules of one layer do not know each other.
const LAYERS: &[&[&str]] = &[
    &["signal", "model", "metrics"],
    &["spec"],
    &["operators"],
    &["wasm"],
    &["source", "sink"],
    &["state"],
    &["exec"],
    &["serve"],
    &["cli"],
];

/// Lines a source file may have before its tests.
const MAX_LINES: usize = 600;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("host/src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for the crate root).
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).expect("under host/src");
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// The code of a file without its comments (doc links are not dependencies).
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| match l.find(" // ") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named by `crate::name` paths and by the first
/// level of `use crate::{a, b::c}` groups.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // The names at depth 0 of the group.
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        names.insert(ident(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident(after));
        }
        rest = after;
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Which top-level module uses which, from every file under `host/src`.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(top) = top_module(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable source");
        let used = deps.entry(top.clone()).or_default();
        for name in crate_paths(&code(&text)) {
            if name != top {
                used.insert(name);
            }
        }
    }
    deps
}

/// A cycle through `start`, if there is one, as the modules along it.
fn cycle_from(start: &str, deps: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn walk(
        at: &str,
        start: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in deps.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(next, start, deps, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(start, start, deps, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_checker_reads_paths_and_groups() {
    let text = "use crate::model::batch::Batch;\nuse crate::{spec::{A, B}, exec};\n\
                // crate::cli in a comment\nlet x = crate::wasm::f(); // crate::serve\n";
    let found: Vec<String> = crate_paths(&code(text)).into_iter().collect();
    assert_eq!(found, ["exec", "model", "spec", "wasm"]);
    let mut deps = BTreeMap::new();
    deps.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    deps.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    assert_eq!(cycle_from("a", &deps), None);
    deps.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        cycle_from("a", &deps),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn top_level_modules_have_no_cycle() {
    let deps = dependencies();
    for module in deps.keys() {
        if let Some(cycle) = cycle_from(module, &deps) {
            panic!("module cycle in host/src: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn dependencies_point_down_the_layers() {
    let layer_of = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let mut wrong = Vec::new();
    for (module, used) in dependencies() {
        let Some(own) = layer_of(&module) else {
            wrong.push(format!(
                "`{module}` is in no layer of tests/integration/layout.rs"
            ));
            continue;
        };
        for u in used {
            match layer_of(&u) {
                Some(l) if l < own => {}
                Some(_) => wrong.push(format!("`{module}` uses `{u}`, which is not below it")),
                None => wrong.push(format!("`{module}` uses `{u}`, which is in no layer")),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_source_file_is_too_long_to_read() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut long = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let lines: Vec<&str> = text.lines().collect();
        // The lines before the unit tests.
        let code = lines
            .windows(2)
            .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].starts_with("mod tests"))
            .unwrap_or(lines.len());
        if code > MAX_LINES {
            let name = file
                .strip_prefix(src())
                .unwrap_or(&file)
                .display()
                .to_string();
            long.push(format!("host/src/{name} has {code} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by concern):\n{}",
        long.join("\n")
    );
}
