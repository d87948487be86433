//! Bad input gets a clear error and nothing is lost.

use crate::{lit, read_jsonl, run_job};
use sluice::exec::{Job, JobError};
use sluice::operators::OperatorError;
use sluice_tests::guests;

fn file_job(input: &str, ops: &str, out: &str, extra: &str) -> String {
    format!(
        "{extra}\n[[sources]]\nkind = \"file\"\npath = {}\n{ops}\n[[sinks]]\nkind = \"jsonl\"\npath = {}\n",
        lit(input),
        lit(out)
    )
}

#[tokio::test]
async fn malformed_job_file_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_job(
        dir.path(),
        "[[sources]]\nkind = \"file\"\npath = \"x\"\n\n[[sinks]]\nkind = \"stdout\"\nlimitt = 3\n",
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("job.toml")
            && msg.contains("line 5")
            && msg.contains("unknown field `limitt`")
            && msg.contains("`limit`"),
        "{msg}"
    );

    let err = run_job(
        dir.path(),
        "workers = \"two\"\n[[sources]]\nkind = \"stdin\"\n[[sinks]]\nkind = \"stdout\"\n",
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("line 1")
            && msg.contains("workers")
            && msg.contains("invalid type: string \"two\""),
        "{msg}"
    );

    let err = run_job(dir.path(), "[batch]\ninterval = \"10 minutes\"\n[[sources]]\nkind = \"stdin\"\n[[sinks]]\nkind = \"stdout\"\n").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: field `batch.interval`: \"10 minutes\" has unknown unit \"minutes\" (accepted: ms, s, m, h)",
            dir.path().join("job.toml").display()
        )
    );
}

#[tokio::test]
async fn missing_input_and_missing_plugin_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let err = run_job(
        dir.path(),
        &file_job("nope.txt", "", out.to_str().unwrap(), ""),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("nope.txt") && msg.contains("cannot open"),
        "{msg}"
    );

    std::fs::write(dir.path().join("in.txt"), "a\n").unwrap();
    let err = run_job(
        dir.path(),
        &file_job(
            "in.txt",
            "[[operators]]\nplugin = \"missing.wasm\"",
            out.to_str().unwrap(),
            "",
        ),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("operator `missing`")
            && msg.contains("cannot read plugin")
            && msg.contains("missing.wasm"),
        "{msg}"
    );
}

#[test]
fn files_that_are_not_components_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "just some text").unwrap();
    let msg = runtime.load(&text).err().unwrap().to_string();
    assert!(msg.contains("not a WebAssembly file"), "{msg}");

    // The smallest valid core module: magic and version 1.
    let module = dir.path().join("module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let msg = runtime.load(&module).err().unwrap().to_string();
    assert!(
        msg.contains("core WebAssembly module, not a component") && msg.contains("wasm32-wasip2"),
        "{msg}"
    );

    // A component header followed by garbage.
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let msg = runtime.load(&broken).err().unwrap().to_string();
    assert!(msg.contains("not a valid component"), "{msg}");
}

#[test]
fn wrong_world_or_version_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let msg = runtime
        .load(guests::WRONG_VERSION.as_ref())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("built against sluice:operator@0.9.0")
            && msg.contains("implements sluice:operator@0.2.0"),
        "{msg}"
    );
    let msg = runtime
        .load(guests::OTHER_WORLD.as_ref())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("does not implement the `transform` or the `reduce` world")
            && msg.contains("`next`")
            && msg.contains("sluice:operator/transformer@0.2.0")
            && msg.contains("sluice:operator/reducer@0.2.0"),
        "{msg}"
    );
}

#[tokio::test]
async fn bad_config_stops_the_job_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "a\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let ops = format!(
        "[[operators]]\nname = \"filter\"\nplugin = {}\nconfig = {{ pattern = \"(\" }}",
        lit(guests::GREP)
    );
    let err = run_job(
        dir.path(),
        &file_job("in.txt", &ops, out.to_str().unwrap(), ""),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            JobError::Init {
                error: OperatorError::BadConfig(_),
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("operator `filter` failed to start") && msg.contains("pattern"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_records_go_to_dead_letter_file_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        "{\"id\":\"a\"}",
        "not json",
        "{\"id\":\"b\"}",
        "{\"other\":1}",
        "{\"id\":\"c\"}",
    ];
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let out = dir.path().join("out.jsonl");
    let dlq = dir.path().join("dead.jsonl");
    let ops = format!(
        "[[operators]]\nname = \"by-id\"\nplugin = {}\nconfig = {{ field = \"id\" }}",
        lit(guests::JSON_FIELD)
    );
    let extra = format!(
        "workers = 2\n[dead_letter]\npath = {}",
        lit(dlq.to_str().unwrap())
    );
    let summary = run_job(
        dir.path(),
        &file_job("in.jsonl", &ops, out.to_str().unwrap(), &extra),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            summary.records_in,
            summary.records_out,
            summary.dead_lettered
        ),
        (5, 3, 2)
    );
    let mut keys: Vec<String> = read_jsonl(&out)
        .iter()
        .map(|v| v["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"]);
    let mut dead = read_jsonl(&dlq);
    dead.sort_by_key(|v| v["value"].as_str().unwrap().to_string());
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["value"], "not json");
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("invalid JSON"),
        "{}",
        dead[0]
    );
    assert_eq!(dead[0]["operator"], "by-id");
    assert_eq!(dead[1]["value"], "{\"other\":1}");
    assert!(
        dead[1]["reason"]
            .as_str()
            .unwrap()
            .contains("field `id` is missing"),
        "{}",
        dead[1]
    );
}

#[tokio::test]
async fn rejected_record_without_dead_letter_stops_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"id\":1}\n{\"id\":2}\nbroken{\n",
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let ops = format!(
        "[[operators]]\nname = \"by-id\"\nplugin = {}\nconfig = {{ field = \"id\" }}",
        lit(guests::JSON_FIELD)
    );
    let err = run_job(
        dir.path(),
        &file_job("in.jsonl", &ops, out.to_str().unwrap(), "workers = 1"),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, JobError::Rejected { index: 2, .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("operator `by-id` rejected record 2")
            && msg.contains("\"broken{\"")
            && msg.contains("invalid JSON")
            && msg.contains("[dead_letter]"),
        "{msg}"
    );
}

#[tokio::test]
async fn trap_stops_the_job_naming_operator_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "fine\nBOOM here\nfine again\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let ops = format!(
        "[[operators]]\nname = \"fragile\"\nplugin = {}",
        lit(guests::TRAP)
    );
    let err = run_job(
        dir.path(),
        &file_job("in.txt", &ops, out.to_str().unwrap(), "workers = 1"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            JobError::Operator {
                error: OperatorError::Trap(_),
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("operator `fragile` trapped"), "{msg}");
    assert!(msg.contains("unreachable"), "{msg}");
    assert!(
        msg.contains("found the marker in record 1"),
        "the guest's panic message explains the trap: {msg}"
    );
}

/// With a dead-letter file, the batch that trapped is diverted, the instance
/// is re-created, and every other record is processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_recreates_instance_and_processing_continues() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..50)
        .map(|i| {
            if i % 10 == 5 {
                format!("BOOM {i}")
            } else {
                format!("ok {i}")
            }
        })
        .collect();
    std::fs::write(dir.path().join("in.txt"), lines.join("\n")).unwrap();
    let out = dir.path().join("out.jsonl");
    let dlq = dir.path().join("dead.jsonl");
    let ops = format!(
        "[[operators]]\nname = \"fragile\"\nplugin = {}",
        lit(guests::TRAP)
    );
    let extra = format!(
        "workers = 2\n[batch]\nmax_records = 1\n[dead_letter]\npath = {}",
        lit(dlq.to_str().unwrap())
    );
    let summary = run_job(
        dir.path(),
        &file_job("in.txt", &ops, out.to_str().unwrap(), &extra),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            summary.records_in,
            summary.records_out,
            summary.dead_lettered
        ),
        (50, 45, 5)
    );
    let dead = read_jsonl(&dlq);
    let mut poisoned: Vec<&str> = dead.iter().map(|v| v["value"].as_str().unwrap()).collect();
    poisoned.sort();
    assert_eq!(
        poisoned,
        ["BOOM 15", "BOOM 25", "BOOM 35", "BOOM 45", "BOOM 5"]
    );
    assert!(
        dead.iter()
            .all(|v| v["reason"].as_str().unwrap().contains("trapped"))
    );
    let kept = read_jsonl(&out);
    assert!(
        kept.iter()
            .all(|v| v["value"].as_str().unwrap().starts_with("ok "))
    );
}

#[tokio::test]
async fn builder_rejects_jobs_without_sinks() {
    let err = Job::builder("x")
        .source(sluice::spec::SourceConfig::Stdin {})
        .build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("at least one sink"), "{err}");
}
