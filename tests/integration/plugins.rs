//! Each example plugin, run inside the host as a Wasm component.

use sluice::model::batch::Batch;
use sluice::operators::{Operator, OperatorError};
use sluice::wasm::{LogTags, WasmOperator};
use sluice_tests::guests;

fn instance(path: &str, config: &[(&str, &str)]) -> Result<WasmOperator, OperatorError> {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let plugin = runtime.load(path.as_ref()).unwrap();
    let tags = LogTags {
        job: "test".into(),
        operator: "op".into(),
        worker: 0,
    };
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    plugin.instantiate(tags, &config)
}

fn values(b: &Batch) -> Vec<String> {
    b.iter()
        .map(|r| String::from_utf8_lossy(r.value).into_owned())
        .collect()
}

#[test]
fn uppercase_in_host() {
    let mut op = instance(guests::UPPERCASE, &[]).unwrap();
    let mut input = Batch::new();
    input.push(Some(b"k1"), b"hello", 10);
    input.push(None, b"World", 11);
    let before = input.clone();
    let out = op.process(&mut input).unwrap();
    assert_eq!(input, before, "the input batch is left as it was");
    assert_eq!(values(&out), ["HELLO", "WORLD"]);
    assert_eq!(out.get(0).unwrap().key, Some(&b"k1"[..]));
    assert_eq!(out.get(1).unwrap().key, None);
    assert_eq!(out.timestamps, [10, 11]);
}

#[test]
fn split_words_in_host() {
    let mut op = instance(guests::SPLIT_WORDS, &[("lowercase", "true")]).unwrap();
    let out = op
        .process(&mut Batch::from_values(["The cat", "", "sat  ON"], 3))
        .unwrap();
    assert_eq!(values(&out), ["the", "cat", "sat", "on"]);
    assert!(
        out.iter()
            .all(|r| r.key == Some(r.value) && r.timestamp == 3)
    );
}

#[test]
fn grep_in_host() {
    let mut op = instance(guests::GREP, &[("pattern", "^ERR")]).unwrap();
    let out = op
        .process(&mut Batch::from_values(["ERR disk", "ok", "ERR net"], 0))
        .unwrap();
    assert_eq!(values(&out), ["ERR disk", "ERR net"]);
    let mut inv = instance(guests::GREP, &[("pattern", "^ERR"), ("invert", "true")]).unwrap();
    assert_eq!(
        values(
            &inv.process(&mut Batch::from_values(["ERR disk", "ok"], 0))
                .unwrap()
        ),
        ["ok"]
    );
    let err = instance(guests::GREP, &[("patern", "x")]).err().unwrap();
    assert!(
        matches!(&err, OperatorError::BadConfig(m) if m.contains("unknown setting `patern`") && m.contains("pattern, invert")),
        "{err:?}"
    );
}

#[test]
fn json_field_in_host() {
    let mut op = instance(guests::JSON_FIELD, &[("field", "user.name")]).unwrap();
    let out = op
        .process(&mut Batch::from_values(
            [r#"{"user":{"name":"ada"},"n":1}"#],
            0,
        ))
        .unwrap();
    assert_eq!(out.get(0).unwrap().key, Some(&b"ada"[..]));
    let err = op
        .process(&mut Batch::from_values(["{}", "[1]"], 0))
        .unwrap_err();
    let OperatorError::BadRecords(rs) = err else {
        panic!("{err:?}")
    };
    assert_eq!(rs.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn large_batch_round_trips() {
    let mut op = instance(guests::UPPERCASE, &[]).unwrap();
    let mut input = Batch::from_values((0..100_000).map(|i| format!("record number {i}")), 0);
    let out = op.process(&mut input).unwrap();
    assert_eq!(out.len(), 100_000);
    assert_eq!(out.get(99_999).unwrap().value, b"RECORD NUMBER 99999");
}

#[test]
fn trap_discards_and_recreates_instance() {
    let mut op = instance(guests::TRAP, &[]).unwrap();
    let err = op
        .process(&mut Batch::from_values(["a", "BOOM"], 0))
        .unwrap_err();
    let OperatorError::Trap(reason) = err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("found the marker in record 1"), "{reason}");
    // The same operator keeps working: a fresh instance replaced the trapped one.
    assert_eq!(
        values(&op.process(&mut Batch::from_values(["b"], 0)).unwrap()),
        ["b"]
    );
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    runtime.load(guests::UPPERCASE.as_ref()).unwrap();
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].extension().is_some_and(|e| e == "cwasm"));
    // A second runtime loads the cached artifact, and it works.
    let again = sluice_tests::runtime_in(dir.path())
        .load(guests::UPPERCASE.as_ref())
        .unwrap();
    let tags = LogTags {
        job: "t".into(),
        operator: "u".into(),
        worker: 0,
    };
    let mut op = again.instantiate(tags, &[]).unwrap();
    assert_eq!(
        values(&op.process(&mut Batch::from_values(["x"], 0)).unwrap()),
        ["X"]
    );
}
