//! `sluice serve` restarted on its data directory: tenants added through
//! the API, uploaded plugins and submitted jobs come back, running jobs
//! resume from their checkpoints (also after the server was killed), a
//! removed tenant stays removed, and a stop keeps or drains a job's open
//! windows as asked.

use crate::server::{Server, poll};
use serde_json::Value;
use sluice::serve::tenant::{hash_token, to_hex};
use sluice_tests::guests;
use std::collections::BTreeMap;
use std::time::Duration;

const ADMIN: &str = "admin-token";
const ALPHA: &str = "alpha-token";
const GAMMA: &str = "gamma-token";

/// A tenants file with the admin and tenant `alpha`, and `top` on top.
fn tenants(top: &str) -> String {
    format!(
        "admin_token_sha256 = \"{}\"\n{top}\n\
         [breaker]\nfailures = 3\nwindow = \"60s\"\nbackoff = \"100ms\"\n\
         [[tenants]]\nname = \"alpha\"\ntoken_sha256 = \"{}\"\n",
        to_hex(&hash_token(ADMIN)),
        to_hex(&hash_token(ALPHA)),
    )
}

/// Adds tenant `gamma` through the API.
fn add_gamma(server: &Server, limits: Value) {
    let body = serde_json::json!({
        "name": "gamma",
        "token_sha256": to_hex(&hash_token(GAMMA)),
        "max_jobs": 4,
        "limits": limits,
    });
    let r = server.post("/v1/admin/tenants", ADMIN, body.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text);
}

/// An endless job of generator records through `uppercase`.
const ENDLESS: &str = "name = \"steady\"\nworkers = 1\n[batch]\ninterval = \"100ms\"\n\
     [[sources]]\nkind = \"generator\"\nrate = 500\nvalue_size = 20\n\
     [[operators]]\nplugin = \"uppercase\"\n[[sinks]]\nkind = \"discard\"\n";

fn job_ids(server: &Server, token: &str) -> BTreeMap<String, String> {
    let r = server.get("/v1/jobs", token);
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["id"].as_str().unwrap().to_string(),
                j["status"]["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}: {text}"))
}

/// The lines of a file of the tenant's area that parse as JSON (none if
/// the file is not there).
fn output(server: &Server, token: &str, path: &str) -> Vec<Value> {
    let r = server.get(&format!("/v1/files/{path}"), token);
    if r.status == 404 {
        return Vec::new();
    }
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Per key, the value of its last record in `lines`.
fn last_per_key(lines: &[Value]) -> BTreeMap<String, String> {
    lines
        .iter()
        .map(|v| {
            (
                v["key"].as_str().unwrap_or_default().to_string(),
                v["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn put_file(server: &Server, token: &str, path: &str, body: &str) {
    let r = server.put(&format!("/v1/files/{path}"), token, body.as_bytes());
    assert_eq!(r.status, 201, "{path}: {}", r.text);
}

fn has_files(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

#[test]
fn tenants_plugins_and_jobs_outlive_a_restart() {
    let mut server = Server::start(&tenants(""));
    add_gamma(&server, serde_json::json!({ "memory": "64MiB" }));
    server.upload(GAMMA, "uppercase", guests::UPPERCASE);
    put_file(&server, GAMMA, "in.txt", "a\nb\nc\n");
    let steady = server.submit(GAMMA, ENDLESS);
    server.wait_for_metric_above(GAMMA, &steady, "records_out", 0);
    let stopped = server.submit(GAMMA, ENDLESS);
    server.wait_for_state(GAMMA, &stopped, "running");
    let r = server.post(&format!("/v1/jobs/{stopped}/stop"), GAMMA, b"");
    assert_eq!(r.status, 202, "{}", r.text);
    server.wait_for_state(GAMMA, &stopped, "stopped");
    let finished = server.submit(
        GAMMA,
        "[[sources]]\nkind = \"file\"\npath = \"in.txt\"\n\
         [[operators]]\nplugin = \"uppercase\"\n\
         [[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
    );
    server.wait_for_state(GAMMA, &finished, "finished");

    // What is kept: the tenant as it came, its token only as the hash.
    let data = server.dir.path().join("data/tenants/gamma");
    let record = std::fs::read_to_string(data.join("tenant.json")).unwrap();
    assert!(record.contains(&to_hex(&hash_token(GAMMA))), "{record}");
    assert!(
        !record.contains(GAMMA),
        "the token itself is kept: {record}"
    );
    let seq = |id: &str| read_json(&data.join("jobs").join(id).join("job.json"))["seq"].clone();
    for (id, state) in [
        (&steady, "running"),
        (&stopped, "stopped"),
        (&finished, "finished"),
    ] {
        let rec = read_json(&data.join("jobs").join(id).join("job.json"));
        assert_eq!(rec["state"], state, "{rec}");
        assert_eq!(rec["tenant"], "gamma", "{rec}");
        assert!(data.join("jobs").join(id).join("job.toml").is_file());
    }
    let before = job_ids(&server, GAMMA);

    server.restart(libc::SIGTERM);

    // The tenant is back, and its token works; so are its plugin, its
    // files and its jobs, each as it was.
    let listed = server.get("/v1/admin/tenants", ADMIN);
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert!(listed.text.contains("\"gamma\""), "{}", listed.text);
    assert_eq!(listed.body["tenants"][1]["max_jobs"], 4, "{}", listed.text);
    assert_eq!(listed.body["tenants"][1]["limits"]["memory"], "64 MiB");
    assert_eq!(
        server.get("/v1/plugins", GAMMA).body["plugins"][0]["name"],
        "uppercase"
    );
    assert_eq!(output(&server, GAMMA, "out.jsonl").len(), 3);
    assert_eq!(
        job_ids(&server, GAMMA).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let view = server.get(&format!("/v1/jobs/{steady}"), GAMMA);
    assert_eq!(view.body["name"], "steady", "{}", view.text);
    server.wait_for_state(GAMMA, &steady, "running");
    server.wait_for_metric_above(GAMMA, &steady, "records_out", 0);
    assert_eq!(server.status(GAMMA, &stopped)["state"], "stopped");
    assert_eq!(server.status(GAMMA, &finished)["state"], "finished");
    // It was checkpointed where the server keeps its checkpoints.
    let steady_dir = data.join("jobs").join(&steady);
    assert!(steady_dir.join("job.json").is_file());

    // Numbering goes on: a new job is the fourth, with an id of its own.
    let next = server.submit(GAMMA, ENDLESS);
    assert!(!before.contains_key(&next), "{next} was taken");
    assert_eq!(seq(&next), 3);
    assert_eq!(seq(&steady), 0);

    // An ended job can be deleted, record and all; a running one cannot.
    let r = server.request("DELETE", &format!("/v1/jobs/{steady}"), Some(GAMMA), None);
    assert_eq!(r.status, 409, "{}", r.text);
    let r = server.request("DELETE", &format!("/v1/jobs/{finished}"), Some(GAMMA), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!data.join("jobs").join(&finished).exists());
    assert_eq!(
        server.get(&format!("/v1/jobs/{finished}"), GAMMA).status,
        404
    );

    // Killed this time: the running jobs come back all the same.
    server.restart(libc::SIGKILL);
    let after = job_ids(&server, GAMMA);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        {
            let mut ids = vec![&steady, &stopped, &next];
            ids.sort();
            ids
        },
        "{after:?}"
    );
    server.wait_for_metric_above(GAMMA, &next, "records_out", 0);
    server.wait_for_metric_above(GAMMA, &steady, "records_out", 0);
    assert_eq!(server.status(GAMMA, &stopped)["state"], "stopped");
}

/// A tenant removed while its job would not stop, then the server killed
/// before the data was deleted: it stays removed, and its data goes when
/// the server starts again.
#[test]
fn a_removed_tenant_stays_removed_after_a_restart() {
    let mut server = Server::start(&tenants("removal_grace = \"60s\""));
    // Calls may run two minutes: the stop waits that long.
    add_gamma(&server, serde_json::json!({ "cpu_per_batch": "120s" }));
    server.upload(GAMMA, "hostile", guests::HOSTILE);
    put_file(&server, GAMMA, "in.txt", "LOOP\n");
    let id = server.submit(
        GAMMA,
        "workers = 1\n[[sources]]\nkind = \"file\"\npath = \"in.txt\"\n\
         [[operators]]\nplugin = \"hostile\"\n\
         [[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
    );
    server.wait_for_metric_above(GAMMA, &id, "records_in", 0);
    let r = server.request("DELETE", "/v1/admin/tenants/gamma", Some(ADMIN), None);
    assert_eq!(r.status, 200, "{}", r.text);
    let data = server.dir.path().join("data/tenants/gamma");
    assert!(data.join("removing").is_file());
    assert!(!data.join("tenant.json").exists());
    assert!(data.join("jobs").join(&id).join("job.json").is_file());

    server.restart(libc::SIGKILL);

    assert!(!data.exists(), "gamma's data is still there");
    assert_eq!(server.get("/v1/jobs", GAMMA).status, 401);
    let listed = server.get("/v1/admin/tenants", ADMIN);
    assert!(!listed.text.contains("gamma"), "{}", listed.text);
    assert_eq!(server.threads("sluice-worker"), 0, "{}", server.log());
    // The name is free, and a new gamma starts empty.
    add_gamma(&server, serde_json::json!({}));
    assert_eq!(
        server.get("/v1/jobs", GAMMA).body["jobs"],
        serde_json::json!([])
    );
    assert_eq!(
        server.get("/v1/plugins", GAMMA).body["plugins"],
        serde_json::json!([])
    );
}

#[test]
fn a_checkpoint_path_must_stay_in_the_file_area() {
    let server = Server::start(&tenants(""));
    let job = |table: &str| {
        format!(
            "[[sources]]\nkind = \"generator\"\nrecords = 10\n\
             [[sinks]]\nkind = \"discard\"\n[checkpoint]\n{table}"
        )
    };
    for (path, words) in [("../../../etc", "`..`"), ("/tmp/ckpt", "absolute")] {
        let r = server.post(
            "/v1/jobs",
            ALPHA,
            job(&format!("path = {path:?}\n")).as_bytes(),
        );
        assert_eq!(r.status, 400, "{}", r.text);
        let error = r.body["error"].as_str().unwrap();
        assert!(
            error.contains("field `checkpoint.path`") && error.contains(words),
            "{error}"
        );
    }
    let id = server.submit(ALPHA, &job("path = \"state/counts\"\nevery_batches = 1\n"));
    server.wait_for_state(ALPHA, &id, "finished");
}

/// A running count (no window, update mode) over a directory of JSON
/// lines, the server killed in the middle: after the restart the job
/// resumes from its checkpoint, and once all the input is read each key's
/// last count is its count in the input.
#[test]
fn a_killed_servers_running_count_resumes_from_its_checkpoint() {
    let mut server = Server::start(&tenants(""));
    server.upload(ALPHA, "by-key", guests::JSON_FIELD);
    // The directory must be there at the start; hidden files are not read.
    put_file(&server, ALPHA, "in/.keep", "");
    let id = server.submit(
        ALPHA,
        "name = \"tally\"\nworkers = 1\n[batch]\ninterval = \"100ms\"\n\
         [checkpoint]\nevery_batches = 1\n\
         [[sources]]\nkind = \"directory\"\npath = \"in\"\npoll = \"100ms\"\n\
         [[operators]]\nplugin = \"by-key\"\nconfig = { field = \"k\" }\n\
         [[operators]]\nbuiltin = \"aggregate\"\nconfig = { function = \"count\", mode = \"update\" }\n\
         [[sinks]]\nkind = \"jsonl\"\npath = \"out/tally.jsonl\"\n",
    );
    server.wait_for_state(ALPHA, &id, "running");
    // The source's first look at the directory (files there then are old).
    std::thread::sleep(Duration::from_secs(1));
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut part = 0;
    let mut round = |server: &Server, expected: &mut BTreeMap<String, u64>, files: usize| {
        for _ in 0..files {
            let lines: String = (0..40)
                .map(|i| {
                    let key = format!("k{}", (i * 7 + part) % 5);
                    *expected.entry(key.clone()).or_default() += 1;
                    format!("{{\"k\":\"{key}\",\"n\":{i}}}\n")
                })
                .collect();
            put_file(server, ALPHA, &format!("in/part-{part:03}.jsonl"), &lines);
            part += 1;
        }
    };
    let counts = |expected: &BTreeMap<String, u64>| -> BTreeMap<String, String> {
        expected
            .iter()
            .map(|(k, n)| (k.clone(), n.to_string()))
            .collect()
    };
    round(&server, &mut expected, 4);
    let first = counts(&expected);
    assert!(
        poll(|| last_per_key(&output(&server, ALPHA, "out/tally.jsonl")) == first),
        "the first files were not counted: {:?}; {}",
        last_per_key(&output(&server, ALPHA, "out/tally.jsonl")),
        server.log()
    );
    // A checkpoint after them (every batch takes one).
    let checkpoints = server
        .dir
        .path()
        .join("data/tenants/alpha/jobs")
        .join(&id)
        .join("checkpoints");
    let started = std::time::Instant::now();
    while !has_files(&checkpoints) && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let checkpointed = has_files(&checkpoints);
    std::thread::sleep(Duration::from_millis(500));

    server.restart(libc::SIGKILL);

    server.wait_for_state(ALPHA, &id, "running");
    std::thread::sleep(Duration::from_secs(1));
    round(&server, &mut expected, 4);
    let all = counts(&expected);
    let mut last = BTreeMap::new();
    poll(|| {
        last = last_per_key(&output(&server, ALPHA, "out/tally.jsonl"));
        last == all
    });
    assert_eq!(
        last,
        all,
        "after the restart the counts are not those of the input (a checkpoint was {}taken \
         before the kill; a job that does not resume starts its counts again and skips the \
         files it had read); {}",
        if checkpointed { "" } else { "not " },
        server.log()
    );
}

/// A windowed count over a directory; returns the job's id.
fn windowed(server: &Server, name: &str, existing: bool) -> String {
    server.submit(
        ALPHA,
        &format!(
            "workers = 1\n[batch]\ninterval = \"100ms\"\n\
             [[sources]]\nkind = \"directory\"\npath = \"{name}\"\npoll = \"100ms\"\n\
             existing = {existing}\n\
             [[operators]]\nplugin = \"by-key\"\nconfig = {{ field = \"k\", timestamp = \"ts\" }}\n\
             [[operators]]\nbuiltin = \"aggregate\"\n\
             config = {{ function = \"count\", window = \"tumbling\", length = \"10s\" }}\n\
             [[sinks]]\nkind = \"jsonl\"\npath = \"out/{name}.jsonl\"\n"
        ),
    )
}

/// Events of keys `a` (two) and `b` (one) in the window [0, 10 s); the
/// watermark stays at 3 s, so the window stays open.
const EVENTS: &str =
    "{\"k\":\"a\",\"ts\":1000}\n{\"k\":\"a\",\"ts\":2000}\n{\"k\":\"b\",\"ts\":3000}\n";

/// The window [0, 10 s) of each key, as emitted.
fn first_window(lines: &[Value]) -> BTreeMap<String, String> {
    last_per_key(
        &lines
            .iter()
            .filter(|v| {
                v["value"]
                    .as_str()
                    .is_some_and(|s| s.contains("\"window_start\":0,"))
            })
            .cloned()
            .collect::<Vec<_>>(),
    )
}

fn window_counts(a: u64, b: u64) -> BTreeMap<String, String> {
    [("a", a), ("b", b)]
        .into_iter()
        .map(|(k, n)| {
            (
                k.to_string(),
                format!("{{\"window_start\":0,\"window_end\":10000,\"count\":{n}}}"),
            )
        })
        .collect()
}

#[test]
fn a_stop_with_drain_emits_the_open_windows() {
    let server = Server::start(&tenants(""));
    server.upload(ALPHA, "by-key", guests::JSON_FIELD);
    put_file(&server, ALPHA, "drained/events.jsonl", EVENTS);
    let id = windowed(&server, "drained", true);
    server.wait_for_metric_above(ALPHA, &id, "records_in", 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        output(&server, ALPHA, "out/drained.jsonl"),
        Vec::<Value>::new()
    );
    let r = server.post(&format!("/v1/jobs/{id}/stop?drain=true"), ALPHA, b"");
    assert_eq!(r.status, 202, "{}", r.text);
    server.wait_for_state(ALPHA, &id, "stopped");
    let lines = output(&server, ALPHA, "out/drained.jsonl");
    assert_eq!(first_window(&lines), window_counts(2, 1), "{lines:?}");
    let r = server.post(&format!("/v1/jobs/{id}/stop?drain=maybe"), ALPHA, b"");
    assert_eq!(r.status, 400, "{}", r.text);
}

/// A plain stop (the tenant's, or the server's on its way down) emits no
/// open window: the job's last checkpoint keeps them, and a job resumed
/// from it emits them once the watermark passes their end.
#[test]
fn a_plain_stop_keeps_the_open_windows_for_after_a_resume() {
    let mut server = Server::start(&tenants(""));
    server.upload(ALPHA, "by-key", guests::JSON_FIELD);
    put_file(&server, ALPHA, "kept/events.jsonl", EVENTS);
    let id = windowed(&server, "kept", true);
    server.wait_for_metric_above(ALPHA, &id, "records_in", 2);
    let r = server.post(&format!("/v1/jobs/{id}/stop"), ALPHA, b"");
    assert_eq!(r.status, 202, "{}", r.text);
    server.wait_for_state(ALPHA, &id, "stopped");
    let lines = output(&server, ALPHA, "out/kept.jsonl");
    assert_eq!(
        lines,
        Vec::<Value>::new(),
        "a stop without drain emitted the open windows"
    );

    // Stopped with the server: resumed after its restart, with the window.
    put_file(&server, ALPHA, "resumed/.keep", "");
    let id = windowed(&server, "resumed", false);
    server.wait_for_state(ALPHA, &id, "running");
    std::thread::sleep(Duration::from_secs(1));
    put_file(&server, ALPHA, "resumed/events.jsonl", EVENTS);
    server.wait_for_metric_above(ALPHA, &id, "records_in", 2);
    server.restart(libc::SIGTERM);
    server.wait_for_state(ALPHA, &id, "running");
    std::thread::sleep(Duration::from_secs(1));
    // An event past the window's end moves the watermark past it.
    put_file(
        &server,
        ALPHA,
        "resumed/later.jsonl",
        "{\"k\":\"a\",\"ts\":20000}\n",
    );
    let mut got = BTreeMap::new();
    poll(|| {
        got = first_window(&output(&server, ALPHA, "out/resumed.jsonl"));
        !got.is_empty()
    });
    assert_eq!(
        got,
        window_counts(2, 1),
        "the window open at the restart was not emitted with its records from before; {}",
        server.log()
    );
}

/// A reducer swapped through `PUT /v1/jobs/{id}/operators/{name}` is the
/// one a restarted server builds the job with (as the job's `reducer`),
/// and its counts go on from the checkpoint: no key's count ever falls,
/// and the last counts hold the records of both runs.
#[test]
fn a_swapped_reducer_outlives_a_restart() {
    let mut server = Server::start(&tenants(""));
    server.upload(ALPHA, "count", guests::REDUCE_TRAP);
    let id = server.submit(
        ALPHA,
        "name = \"reduced\"\nworkers = 1\n[batch]\ninterval = \"100ms\"\n\
         [[sources]]\nkind = \"generator\"\nrate = 500\nvalue_size = 10\nkeys = 5\n\
         [[operators]]\nname = \"count\"\nreducer = \"count\"\n\
         [[sinks]]\nkind = \"jsonl\"\npath = \"counts.jsonl\"\n",
    );
    server.wait_for_metric_above(ALPHA, &id, "records_out", 0);
    let path = format!("/v1/jobs/{id}/operators/count");
    let wrong_world = server.put(&path, ALPHA, &std::fs::read(guests::UPPERCASE).unwrap());
    assert_eq!(wrong_world.status, 422, "{}", wrong_world.text);
    assert!(
        wrong_world
            .text
            .contains("a `reducer` operator needs `reduce`"),
        "{}",
        wrong_world.text
    );
    let swapped = server.put(&path, ALPHA, &std::fs::read(guests::REDUCE_TRAP).unwrap());
    assert_eq!(swapped.status, 200, "{}", swapped.text);
    assert_eq!(swapped.body["adopted"], true, "{}", swapped.text);
    let record = server
        .dir
        .path()
        .join(format!("data/tenants/alpha/jobs/{id}/job.json"));
    assert_eq!(read_json(&record)["adopted"][0]["operator"], "count");

    let first_run = output(&server, ALPHA, "counts.jsonl").len();
    server.restart(libc::SIGTERM);
    server.wait_for_state(ALPHA, &id, "running");
    let before = server.metric(ALPHA, &id, "records_out");
    server.wait_for_metric_above(ALPHA, &id, "records_out", before);
    let stop = server.post(&format!("/v1/jobs/{id}/stop"), ALPHA, b"");
    assert_eq!(stop.status, 202, "{}", stop.text);
    server.wait_for_state(ALPHA, &id, "stopped");
    let lines = output(&server, ALPHA, "counts.jsonl");
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for line in &lines {
        let key = line["key"].as_str().unwrap().to_string();
        let count: u64 = line["value"].as_str().unwrap().parse().unwrap();
        let was = seen.insert(key.clone(), count).unwrap_or(0);
        assert!(count > was, "the count of {key} fell from {was} to {count}");
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let total = |lines: &[Value]| -> u64 {
        last_per_key(lines)
            .values()
            .map(|v| v.parse::<u64>().unwrap())
            .sum()
    };
    assert!(
        total(&lines) >= total(&lines[..first_run]) + server.metric(ALPHA, &id, "records_in"),
        "the counts after the restart hold the first run's and the second's"
    );
}
