//! Builds every guest (example plugins and test fixtures) as a Wasm component
//! and generates path constants for them, so a guest without a constant, or a
//! test naming a guest that does not build, is a compile error.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant name, package, artifact stem)
const GUESTS: &[(&str, &str, &str)] = &[
    (
        "UPPERCASE",
        "sluice-plugin-uppercase",
        "sluice_plugin_uppercase",
    ),
    (
        "SPLIT_WORDS",
        "sluice-plugin-split-words",
        "sluice_plugin_split_words",
    ),
    ("GREP", "sluice-plugin-grep", "sluice_plugin_grep"),
    (
        "JSON_FIELD",
        "sluice-plugin-json-field",
        "sluice_plugin_json_field",
    ),
    ("SUM", "sluice-plugin-sum", "sluice_plugin_sum"),
    ("TRAP", "sluice-fixture-trap", "sluice_fixture_trap"),
    (
        "HOSTILE",
        "sluice-fixture-hostile",
        "sluice_fixture_hostile",
    ),
    (
        "REDUCE_TRAP",
        "sluice-fixture-reduce-trap",
        "sluice_fixture_reduce_trap",
    ),
    (
        "WRONG_VERSION",
        "sluice-fixture-wrong-version",
        "sluice_fixture_wrong_version",
    ),
    (
        "COUNTER_A",
        "sluice-fixture-counter-a",
        "sluice_fixture_counter_a",
    ),
    (
        "COUNTER_B",
        "sluice-fixture-counter-b",
        "sluice_fixture_counter_b",
    ),
    (
        "COUNTER_BROKEN",
        "sluice-fixture-counter-broken",
        "sluice_fixture_counter_broken",
    ),
    (
        "COUNTER_LATE",
        "sluice-fixture-counter-late",
        "sluice_fixture_counter_late",
    ),
    (
        "BALLAST",
        "sluice-fixture-ballast",
        "sluice_fixture_ballast",
    ),
    (
        "OTHER_WORLD",
        "sluice-fixture-other-world",
        "sluice_fixture_other_world",
    ),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    for dir in ["plugins", "plugin-sdk", "wit", "tests/fixtures", ".cargo"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    ensure_target();
    // A separate target directory under the workspace's: the outer build holds
    // the lock on its own, and guests have their own target triple anyway.
    // A relative CARGO_TARGET_DIR is relative to where cargo was started:
    // the workspace root, where the guests are built too.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"))
        .join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    for (_, package, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    // The outer build's flags are for the host target; guests take theirs
    // from .cargo/config.toml.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the Wasm guests");
    assert!(
        status.success(),
        "building the Wasm guests failed (see the cargo output above)"
    );

    let out_dir = target_dir.join(TARGET).join("release");
    let mut code = String::new();
    for (constant, _, stem) in GUESTS {
        let path = out_dir.join(format!("{stem}.wasm"));
        assert!(path.exists(), "guest {} was not built", path.display());
        code.push_str(&format!(
            "/// Path of the `{stem}` component.\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("guests.rs");
    std::fs::write(dest, code).unwrap();
}

/// Installs the Wasm target with rustup when it is missing (idempotent).
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("cannot run rustc");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).exists() {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it and rebuild"
        ),
    }
}
