//! `sluice serve` as a real process, over real HTTP: tokens, tenants kept
//! apart, uploads checked, job files vetted, jobs run, watched, stopped,
//! and a hostile tenant's job paused while another tenant's goes on.

use crate::server::{Server, contained_attacks, line_server, poll};
use serde_json::Value;
use sluice::serve::tenant::{hash_token, to_hex};
use sluice_tests::guests;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

const ADMIN: &str = "admin-token";
const ALPHA: &str = "alpha-token";
const BETA: &str = "beta-token";

/// A tenants file with tenants `alpha` and `beta` and the admin; `alpha`
/// gets `alpha_extra` (e.g. `max_jobs = 1`) and the file `top` on top.
fn tenants(top: &str, alpha_extra: &str) -> String {
    format!(
        "admin_token_sha256 = \"{}\"\n{top}\n\
         [breaker]\nfailures = 3\nwindow = \"60s\"\nbackoff = \"100ms\"\n\
         [[tenants]]\nname = \"alpha\"\ntoken_sha256 = \"{}\"\n{alpha_extra}\n\
         [tenants.limits]\nmemory = \"64MiB\"\ncpu_per_batch = \"300ms\"\nstate = \"64KiB\"\n\
         [[tenants]]\nname = \"beta\"\ntoken_sha256 = \"{}\"\nmax_workers = 1\n",
        to_hex(&hash_token(ADMIN)),
        to_hex(&hash_token(ALPHA)),
        to_hex(&hash_token(BETA)),
    )
}

/// An endless job of tenant-side generator records through `uppercase`.
fn generator_job(sink: &str) -> String {
    format!(
        "name = \"steady\"\nworkers = 1\n[batch]\ninterval = \"100ms\"\n\
         [[sources]]\nkind = \"generator\"\nrate = 500\nvalue_size = 20\n\
         [[operators]]\nplugin = \"uppercase\"\n{sink}"
    )
}

const DISCARD: &str = "[[sinks]]\nkind = \"discard\"\n";

#[test]
fn a_missing_or_unknown_token_is_401() {
    let server = Server::start(&tenants("", ""));
    for (token, words) in [(None, "missing token"), (Some("guess"), "unknown token")] {
        for path in ["/v1/jobs", "/v1/plugins", "/v1/admin/tenants"] {
            let r = server.request("GET", path, token, None);
            assert_eq!(r.status, 401, "{path}: {}", r.text);
            assert_eq!(r.www_authenticate.as_deref(), Some("Bearer"), "{path}");
            assert!(
                r.body["error"].as_str().unwrap().contains(words),
                "{}",
                r.text
            );
        }
    }
    // A tenant's token is not the admin's.
    let r = server.get("/v1/admin/tenants", ALPHA);
    assert_eq!(r.status, 403, "{}", r.text);
    // The right tokens get in.
    assert_eq!(server.get("/v1/jobs", ALPHA).status, 200);
    assert_eq!(server.get("/v1/admin/tenants", ADMIN).status, 200);
}

#[test]
fn another_tenants_job_is_as_absent_as_a_job_that_never_existed() {
    let server = Server::start(&tenants("", ""));
    server.upload(ALPHA, "uppercase", guests::UPPERCASE);
    let id = server.submit(ALPHA, &generator_job(DISCARD));
    server.wait_for_state(ALPHA, &id, "running");
    for suffix in ["", "/metrics", "/logs", "/dead-letters"] {
        let theirs = server.get(&format!("/v1/jobs/{id}{suffix}"), BETA);
        let nobodys = server.get(&format!("/v1/jobs/ffffffffffffffff{suffix}"), BETA);
        assert_eq!(theirs.status, 404, "{suffix}: {}", theirs.text);
        assert_eq!(nobodys.status, 404, "{suffix}: {}", nobodys.text);
        assert_eq!(theirs.text, nobodys.text, "{suffix}");
    }
    let stop = server.post(&format!("/v1/jobs/{id}/stop"), BETA, b"");
    assert_eq!(stop.status, 404, "{}", stop.text);
    // Beta sees none of alpha's jobs or plugins, and its stop did nothing.
    assert_eq!(
        server.get("/v1/jobs", BETA).body["jobs"],
        serde_json::json!([])
    );
    assert_eq!(
        server.get("/v1/plugins", BETA).body["plugins"],
        serde_json::json!([])
    );
    let before = server.metric(ALPHA, &id, "records_in");
    server.wait_for_metric_above(ALPHA, &id, "records_in", before);
    assert_eq!(server.status(ALPHA, &id)["state"], "running");
}

#[test]
fn a_body_that_is_not_wasm_is_refused_with_the_reason() {
    let server = Server::start(&tenants("", ""));
    let r = server.put("/v1/plugins/upper", ALPHA, b"SELECT * FROM plugins;");
    assert_eq!(r.status, 400, "{}", r.text);
    let reason = r.body["error"].as_str().unwrap();
    assert!(reason.contains("not a WebAssembly file"), "{reason}");
    assert_eq!(
        server.get("/v1/plugins", ALPHA).body["plugins"],
        serde_json::json!([])
    );
}

#[test]
fn a_component_of_another_world_or_version_is_refused() {
    let server = Server::start(&tenants("", ""));
    let r = server.put(
        "/v1/plugins/other",
        ALPHA,
        &std::fs::read(guests::OTHER_WORLD).unwrap(),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let reason = r.body["error"].as_str().unwrap();
    assert!(
        reason.contains("does not implement the `transform` or the `reduce` world"),
        "{reason}"
    );
    let r = server.put(
        "/v1/plugins/old",
        ALPHA,
        &std::fs::read(guests::WRONG_VERSION).unwrap(),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let reason = r.body["error"].as_str().unwrap();
    assert!(reason.contains("sluice:operator@0.9.0"), "{reason}");
    assert_eq!(
        server.get("/v1/plugins", ALPHA).body["plugins"],
        serde_json::json!([])
    );
    // A job cannot name what was refused.
    let r = server.post(
        "/v1/jobs",
        ALPHA,
        format!("[[sources]]\nkind = \"generator\"\n[[operators]]\nplugin = \"old\"\n{DISCARD}")
            .as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("no plugin \\\"old\\\" has been uploaded"),
        "{}",
        r.text
    );
}

#[test]
fn an_oversized_upload_is_413() {
    let server = Server::start(&tenants("max_plugin_size = \"1MiB\"", ""));
    // Announced too large: refused before the body is read.
    let mut conn = TcpStream::connect(&server.address).unwrap();
    write!(
        conn,
        "PUT /v1/plugins/big HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ALPHA}\r\n\
         Content-Length: {}\r\n\r\n",
        server.address,
        2 << 20
    )
    .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("larger than the 1 MiB"), "{reply}");
    // Sent without a length (chunked) and too large: refused while read.
    let mut big = std::fs::read(guests::UPPERCASE).unwrap();
    big.resize((1 << 20) + 1, 0);
    let r = server
        .agent
        .put(format!("{}/v1/plugins/big", server.base))
        .header("Authorization", format!("Bearer {ALPHA}"))
        .send(ureq::SendBody::from_reader(&mut big.as_slice()));
    let status = r
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 413);
    assert_eq!(
        server.get("/v1/plugins", ALPHA).body["plugins"],
        serde_json::json!([])
    );
    // Within the bound, the same component is accepted.
    server.upload(ALPHA, "uppercase", guests::UPPERCASE);
}

#[test]
fn a_malformed_job_file_is_400_naming_the_field() {
    let server = Server::start(&tenants("", ""));
    for (job, field) in [
        (
            format!("workers = 0\n[[sources]]\nkind = \"generator\"\n{DISCARD}"),
            "field `workers`",
        ),
        (
            format!("[[sources]]\nkind = \"generator\"\nrecrods = 3\n{DISCARD}"),
            "unknown field `recrods`",
        ),
        (
            format!("[[sources]]\nkind = \"generator\"\n{DISCARD}[limits]\nmemory = \"64MB\"\n"),
            "field `limits.memory`",
        ),
        (
            format!("[[sources]]\nkind = \"generator\"\n{DISCARD}[limits]\nmemory = \"1GiB\"\n"),
            "field `limits.memory`: 1 GiB is above this tenant's cap of 64 MiB",
        ),
        (
            format!(
                "[[sources]]\nkind = \"generator\"\n{DISCARD}[limits]\ncpu_per_batch = \"10s\"\n"
            ),
            "field `limits.cpu_per_batch`: 10s is above this tenant's cap of 300ms",
        ),
        ("this is not toml".to_string(), "job.toml"),
    ] {
        let r = server.post("/v1/jobs", ALPHA, job.as_bytes());
        assert_eq!(r.status, 400, "{job}: {}", r.text);
        let error = r.body["error"].as_str().unwrap();
        assert!(error.contains(field), "{job}: {error}");
    }
    assert_eq!(
        server.get("/v1/jobs", ALPHA).body["jobs"],
        serde_json::json!([])
    );
}

/// The host memory of a job's keyed state is bounded by the tenant's
/// `state` cap: a job may ask for less, never more, and one that leaves it
/// out gets the cap, so an aggregate over many keys is stopped at it and
/// paused, naming the limit.
#[test]
fn a_tenants_job_cannot_hold_more_keyed_state_than_the_tenants_cap() {
    let server = Server::start(&tenants("", ""));
    let job = |limits: &str| {
        format!(
            "workers = 1\n[[sources]]\nkind = \"generator\"\nrecords = 20000\nkeys = 5000\n\
             [[operators]]\nbuiltin = \"aggregate\"\nconfig = {{ function = \"count\" }}\n\
             {DISCARD}{limits}"
        )
    };
    let r = server.post(
        "/v1/jobs",
        ALPHA,
        job("[limits]\nstate = \"1MiB\"\n").as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text
            .contains("field `limits.state`: 1 MiB is above this tenant's cap of 64 KiB"),
        "{}",
        r.text
    );
    for (limits, breach) in [
        ("", "limit `state` = 64 KiB exceeded"),
        (
            "[limits]\nstate = \"32KiB\"\n",
            "limit `state` = 32 KiB exceeded",
        ),
    ] {
        let id = server.submit(ALPHA, &job(limits));
        let status = server.wait_for_state(ALPHA, &id, "paused");
        let reason = status["reason"].as_str().unwrap();
        assert!(reason.contains(breach), "{reason}");
    }
    // Beta's cap is the default, 256 MiB: the same job runs to its end.
    let id = server.submit(BETA, &job(""));
    server.wait_for_state(BETA, &id, "finished");
    assert_eq!(server.metric(BETA, &id, "records_in"), 20000);
}

#[test]
fn a_tenant_runs_at_most_max_jobs() {
    let server = Server::start(&tenants("", "max_jobs = 1"));
    server.upload(ALPHA, "uppercase", guests::UPPERCASE);
    let first = server.submit(ALPHA, &generator_job(DISCARD));
    let r = server.post("/v1/jobs", ALPHA, generator_job(DISCARD).as_bytes());
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.text.contains("max_jobs"), "{}", r.text);
    // Another tenant is not held to alpha's count.
    server.upload(BETA, "uppercase", guests::UPPERCASE);
    server.submit(BETA, &generator_job(DISCARD));
    // Once the first has stopped, there is room again.
    let stop = server.post(&format!("/v1/jobs/{first}/stop"), ALPHA, b"");
    assert_eq!(stop.status, 202, "{}", stop.text);
    server.wait_for_state(ALPHA, &first, "stopped");
    server.submit(ALPHA, &generator_job(DISCARD));
}

#[test]
fn a_job_file_cannot_reach_the_host() {
    let server = Server::start(&tenants("", ""));
    server.upload(ALPHA, "uppercase", guests::UPPERCASE);
    let generator = "[[sources]]\nkind = \"generator\"\n";
    for (job, words) in [
        (
            format!("[[sources]]\nkind = \"file\"\npath = \"../../../../etc/passwd\"\n{DISCARD}"),
            "field `sources[0].path`",
        ),
        (
            format!("[[sources]]\nkind = \"directory\"\npath = \"/etc\"\n{DISCARD}"),
            "is absolute",
        ),
        (
            format!("{generator}[[sinks]]\nkind = \"jsonl\"\npath = \"/tmp/escaped.jsonl\"\n"),
            "field `sinks[0].path`",
        ),
        (
            format!("{generator}[[sinks]]\nkind = \"directory\"\npath = \"out/../../../x\"\n"),
            "`..`",
        ),
        (
            format!("[[sources]]\nkind = \"stdin\"\n{DISCARD}"),
            "field `sources[0].kind`",
        ),
        (
            format!("[[sources]]\nkind = \"socket\"\naddress = \"10.1.2.3:80\"\n{DISCARD}"),
            "is not a loopback address",
        ),
        (
            format!(
                "{generator}[[operators]]\nplugin = {:?}\n{DISCARD}",
                guests::UPPERCASE
            ),
            "not a path",
        ),
    ] {
        let r = server.post("/v1/jobs", ALPHA, job.as_bytes());
        assert_eq!(r.status, 400, "{job}: {}", r.text);
        let error = r.body["error"].as_str().unwrap();
        assert!(error.contains(words), "{job}: {error}");
    }
    assert_eq!(
        server.get("/v1/jobs", ALPHA).body["jobs"],
        serde_json::json!([])
    );
    assert!(!std::path::Path::new("/tmp/escaped.jsonl").exists());
    // The file routes are held to the same area.
    let r = server.put("/v1/files/..%2F..%2Fescape.txt", ALPHA, b"x");
    assert_eq!(r.status, 400, "{}", r.text);
}

#[test]
fn a_job_runs_reports_metrics_and_logs_and_stops() {
    let server = Server::start(&tenants("", ""));
    server.upload(ALPHA, "uppercase", guests::UPPERCASE);
    let plugins = server.get("/v1/plugins", ALPHA);
    assert_eq!(
        plugins.body["plugins"][0]["name"], "uppercase",
        "{}",
        plugins.text
    );
    let id = server.submit(
        ALPHA,
        &generator_job("[[sinks]]\nkind = \"jsonl\"\npath = \"out/upper.jsonl\"\n"),
    );
    let listed = server.get("/v1/jobs", ALPHA);
    assert_eq!(listed.body["jobs"][0]["id"], id.as_str(), "{}", listed.text);
    assert_eq!(listed.body["jobs"][0]["name"], "steady", "{}", listed.text);
    // The counters grow while it runs.
    let first = server.wait_for_metric_above(ALPHA, &id, "records_out", 0);
    server.wait_for_metric_above(ALPHA, &id, "records_out", first);
    assert!(server.metric(ALPHA, &id, "batches") > 0);
    assert_eq!(server.status(ALPHA, &id)["state"], "running");

    let stop = server.post(&format!("/v1/jobs/{id}/stop"), ALPHA, b"");
    assert_eq!(stop.status, 202, "{}", stop.text);
    server.wait_for_state(ALPHA, &id, "stopped");
    let out = server.metric(ALPHA, &id, "records_out");
    assert!(out >= first, "{out} < {first}");

    // Its log holds its own lines: the start and the summary.
    let logs = server.get(&format!("/v1/jobs/{id}/logs"), ALPHA);
    assert_eq!(logs.status, 200, "{}", logs.text);
    let lines: Vec<String> = logs.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect();
    assert!(lines.iter().any(|l| l == "started"), "{lines:?}");
    let summary = format!("job `alpha/{id}` stopped: ");
    assert!(lines.iter().any(|l| l.starts_with(&summary)), "{lines:?}");

    // The output is in the tenant's file area, uppercased, every record.
    let file = server.get("/v1/files/out/upper.jsonl", ALPHA);
    assert_eq!(file.status, 200);
    let records: Vec<Value> = file
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len() as u64, out);
    for r in &records {
        let v = r["value"].as_str().unwrap();
        assert_eq!(v, v.to_uppercase(), "{v}");
        assert!(v.chars().any(|c| c.is_ascii_uppercase()), "{v}");
    }
}

#[test]
fn a_hostile_job_is_paused_while_another_tenants_job_keeps_going() {
    let server = Server::start(&tenants("", "max_jobs = 3"));
    server.upload(BETA, "uppercase", guests::UPPERCASE);
    let steady = server.submit(BETA, &generator_job(DISCARD));
    server.wait_for_metric_above(BETA, &steady, "records_out", 0);

    server.upload(ALPHA, "hostile", guests::HOSTILE);
    let hostile = |lines: &'static str| {
        format!(
            "workers = 1\n[batch]\ninterval = \"100ms\"\n\
             [[sources]]\nkind = \"socket\"\naddress = \"{}\"\n\
             [[operators]]\nplugin = \"hostile\"\n{DISCARD}",
            line_server(lines)
        )
    };
    let bomb = server.submit(ALPHA, &hostile("BOMB\n"));
    let spin = server.submit(ALPHA, &hostile("LOOP\n"));
    for (id, breach) in [
        (&bomb, "limit `memory` = 64 MiB exceeded"),
        (&spin, "limit `cpu_per_batch` = 300ms exceeded"),
    ] {
        let status = server.wait_for_state(ALPHA, id, "paused");
        let reason = status["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("paused after 3 failure(s) within 60s"),
            "{reason}"
        );
        assert!(reason.contains(breach), "{reason}");
        assert_eq!(server.get(&format!("/v1/jobs/{id}"), ALPHA).body["runs"], 3);
    }
    // The guest's own lines are in its job's log, and only there.
    let logs = server
        .get(&format!("/v1/jobs/{bomb}/logs?lines=1000"), ALPHA)
        .text;
    assert!(
        logs.contains("memory allocation of 1048576 bytes failed"),
        "{logs}"
    );
    let steady_logs = server
        .get(&format!("/v1/jobs/{steady}/logs?lines=1000"), BETA)
        .text;
    assert!(!steady_logs.contains("hostile"), "{steady_logs}");

    // Beta's job went on through all of it, and still does.
    assert_eq!(server.status(BETA, &steady)["state"], "running");
    let now = server.metric(BETA, &steady, "records_out");
    server.wait_for_metric_above(BETA, &steady, "records_out", now);
    assert_eq!(
        server.get(&format!("/v1/jobs/{steady}"), BETA).body["runs"],
        1
    );

    // A resumed job gets a fresh count of failures: three more runs, then
    // paused again; a job that is not paused cannot be resumed.
    let r = server.post(&format!("/v1/jobs/{spin}/resume"), ALPHA, b"");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(poll(|| server.get(&format!("/v1/jobs/{spin}"), ALPHA).body
        ["runs"]
        == 6));
    server.wait_for_state(ALPHA, &spin, "paused");
    let r = server.post(&format!("/v1/jobs/{steady}/resume"), BETA, b"");
    assert_eq!(r.status, 409, "{}", r.text);

    // A paused job can be stopped.
    server.post(&format!("/v1/jobs/{bomb}/stop"), ALPHA, b"");
    server.wait_for_state(ALPHA, &bomb, "stopped");
}

#[test]
fn dead_letters_are_visible_only_to_their_owner() {
    let server = Server::start(&tenants("", ""));
    server.upload(ALPHA, "trap", guests::TRAP);
    let input = server.put("/v1/files/in.txt", ALPHA, b"first\nREJECT me\nlast\n");
    assert_eq!(input.status, 201, "{}", input.text);
    let id = server.submit(
        ALPHA,
        "[[sources]]\nkind = \"file\"\npath = \"in.txt\"\n\
         [[operators]]\nplugin = \"trap\"\n\
         [[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n\
         [dead_letter]\npath = \"ignored.jsonl\"\n",
    );
    server.wait_for_state(ALPHA, &id, "finished");
    assert_eq!(server.metric(ALPHA, &id, "dead_lettered"), 1);
    assert_eq!(server.metric(ALPHA, &id, "records_out"), 2);

    let dead = server.get(&format!("/v1/jobs/{id}/dead-letters"), ALPHA);
    assert_eq!(dead.status, 200, "{}", dead.text);
    let records = dead.body["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{}", dead.text);
    let record = records[0].to_string();
    assert!(record.contains("REJECT me"), "{record}");
    assert!(
        record.contains("this record asked to be rejected"),
        "{record}"
    );
    // The server chose the file: not where the job file asked.
    let files = server.get("/v1/files", ALPHA).text;
    assert!(!files.contains("ignored.jsonl"), "{files}");

    // The guest's log line from its init is the job's.
    let logs = server.get(&format!("/v1/jobs/{id}/logs"), ALPHA).text;
    assert!(logs.contains("trap fixture initialised"), "{logs}");

    // Beta sees neither the dead letters nor the logs nor the files.
    let theirs = server.get(&format!("/v1/jobs/{id}/dead-letters"), BETA);
    let nobodys = server.get("/v1/jobs/0000000000000000/dead-letters", BETA);
    assert_eq!(theirs.status, 404);
    assert_eq!(theirs.text, nobodys.text);
    assert_eq!(server.get(&format!("/v1/jobs/{id}/logs"), BETA).status, 404);
    assert_eq!(server.get("/v1/files/in.txt", BETA).status, 404);
    assert_eq!(
        server.get("/v1/files", BETA).body["files"],
        serde_json::json!([])
    );
}

#[test]
fn the_admin_adds_and_removes_tenants() {
    let server = Server::start(&tenants("", ""));
    let gamma = "gamma-token";
    assert_eq!(server.get("/v1/jobs", gamma).status, 401);
    let body = serde_json::json!({
        "name": "gamma",
        "token_sha256": to_hex(&hash_token(gamma)),
        "max_jobs": 1,
        "limits": { "memory": "32MiB", "state": "8MiB", "join_output": 500 },
    });
    let r = server.post("/v1/admin/tenants", ADMIN, body.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["limits"]["memory"], "32 MiB");
    assert_eq!(r.body["limits"]["state"], "8 MiB");
    assert_eq!(r.body["limits"]["join_output"], 500);
    // Tenants cannot add tenants; a second gamma is refused.
    assert_eq!(
        server
            .post("/v1/admin/tenants", ALPHA, body.to_string().as_bytes())
            .status,
        403
    );
    assert_eq!(
        server
            .post("/v1/admin/tenants", ADMIN, body.to_string().as_bytes())
            .status,
        409
    );
    let bad = serde_json::json!({ "name": "delta", "token_sha256": "plaintext" });
    let r = server.post("/v1/admin/tenants", ADMIN, bad.to_string().as_bytes());
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("token_sha256"), "{}", r.text);

    server.upload(gamma, "uppercase", guests::UPPERCASE);
    let id = server.submit(gamma, &generator_job(DISCARD));
    server.wait_for_metric_above(gamma, &id, "records_out", 0);
    let listed = server.get("/v1/admin/tenants", ADMIN);
    let names: Vec<&str> = listed.body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);

    let r = server.request("DELETE", "/v1/admin/tenants/gamma", Some(ADMIN), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["stopping_jobs"], 1);
    assert_eq!(server.get("/v1/jobs", gamma).status, 401);
    assert_eq!(server.get("/v1/jobs", ALPHA).status, 200);
    // Its job stops and all its data goes; a new gamma (once the old one
    // is gone) starts empty, even with the same token.
    let data = server.dir.path().join("data/tenants/gamma");
    assert!(
        poll(|| !data.exists()),
        "gamma's data is still there; {}",
        server.log()
    );
    let r = server.post("/v1/admin/tenants", ADMIN, body.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        server.get("/v1/jobs", gamma).body["jobs"],
        serde_json::json!([])
    );
    assert_eq!(server.get(&format!("/v1/jobs/{id}"), gamma).status, 404);
    assert_eq!(
        server.get("/v1/plugins", gamma).body["plugins"],
        serde_json::json!([])
    );
}

/// Removing a tenant once deleted its directory after a fixed grace whether
/// or not its jobs had ended: a job still in a long call ran on over the
/// deleted files, beside a new tenant of the same name. Now a job that has
/// not stopped within `removal_grace` is halted, and the data goes, and the
/// name is free again, only once every job of the tenant has ended.
#[test]
fn removing_a_tenant_keeps_its_data_until_its_jobs_have_ended() {
    let server = Server::start(&tenants("removal_grace = \"1s\"", ""));
    let gamma = "gamma-token";
    // Calls may run two minutes: a stop alone would wait that long.
    let body = serde_json::json!({
        "name": "gamma",
        "token_sha256": to_hex(&hash_token(gamma)),
        "limits": { "cpu_per_batch": "120s" },
    })
    .to_string();
    let r = server.post("/v1/admin/tenants", ADMIN, body.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text);
    server.upload(gamma, "hostile", guests::HOSTILE);
    let put = server.put("/v1/files/in.txt", gamma, b"LOOP\n");
    assert_eq!(put.status, 201, "{}", put.text);
    let id = server.submit(
        gamma,
        "workers = 1\n[[sources]]\nkind = \"file\"\npath = \"in.txt\"\n\
         [[operators]]\nplugin = \"hostile\"\n\
         [[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
    );
    server.wait_for_metric_above(gamma, &id, "records_in", 0);
    assert_eq!(server.threads("sluice-worker"), 1, "{}", server.log());

    let r = server.request("DELETE", "/v1/admin/tenants/gamma", Some(ADMIN), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["stopping_jobs"], 1, "{}", r.text);
    assert_eq!(r.body["removal_grace"], "1s", "{}", r.text);
    let again = server.post("/v1/admin/tenants", ADMIN, body.as_bytes());
    assert_eq!(again.status, 409, "{}", again.text);
    assert!(again.text.contains("still stopping"), "{}", again.text);
    let listed = server.get("/v1/admin/tenants", ADMIN);
    assert_eq!(
        listed.body["removing"],
        serde_json::json!(["gamma"]),
        "{}",
        listed.text
    );
    // The loop goes on past the grace; then it is halted, its job ends,
    // and only then is the data deleted.
    let data = server.dir.path().join("data/tenants/gamma");
    assert!(
        poll(|| !data.exists()),
        "gamma's data is still there; {}",
        server.log()
    );
    assert_eq!(
        server.threads("sluice-worker"),
        0,
        "gamma's data was deleted while its job still ran; {}",
        server.log()
    );
    let log = std::fs::read_to_string(server.dir.path().join("server.log")).unwrap();
    assert!(log.contains("the job was halted"), "{}", server.log());
    // The name is free again, and the new gamma starts empty.
    assert!(poll(
        || server.get("/v1/admin/tenants", ADMIN).body["removing"] == serde_json::json!([])
    ));
    let r = server.post("/v1/admin/tenants", ADMIN, body.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        server.get("/v1/jobs", gamma).body["jobs"],
        serde_json::json!([])
    );
    assert_eq!(
        server.get("/v1/files", gamma).body["files"],
        serde_json::json!([])
    );
}

/// File I/O ran on the server's async threads: a write that did not return
/// (a stalled disk, here FIFOs at the names the uploads write first) held
/// up every other request, of every tenant. With the I/O on the blocking
/// pool, the server goes on answering, and the uploads finish once their
/// writes can.
#[test]
fn a_stalled_file_write_does_not_hold_up_other_requests() {
    let server = Server::start(&tenants("", ""));
    let files = server.dir.path().join("data/tenants/alpha/files");
    // More uploads than the server has async threads (one per core).
    let stalled = std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
    let fifos: Vec<std::path::PathBuf> = (0..stalled)
        .map(|n| files.join(format!(".stalled.txt.{}-{n}.upload", server.child.id())))
        .collect();
    for fifo in &fifos {
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "{fifo:?}");
    }
    let (answered, uploads) = std::thread::scope(|s| {
        let uploads: Vec<_> = (0..stalled)
            .map(|_| s.spawn(|| server.put("/v1/files/stalled.txt", ALPHA, b"data").status))
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        let impatient: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let answered = impatient
            .get(format!("{}/v1/jobs", server.base))
            .header("Authorization", format!("Bearer {BETA}"))
            .call()
            .map(|r| r.status().as_u16());
        // The disk comes back: each write finds its reader.
        for fifo in &fifos {
            let mut written = Vec::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_end(&mut written)
                .unwrap();
            assert_eq!(written, b"data");
        }
        let uploads: Vec<u16> = uploads.into_iter().map(|u| u.join().unwrap()).collect();
        (answered, uploads)
    });
    assert!(
        matches!(answered, Ok(200)),
        "the server did not answer while {stalled} writes stalled: {answered:?}"
    );
    assert_eq!(uploads, vec![201; stalled]);
}

/// Runs `sluice deploy` against `server` as tenant `token`.
fn sluice_deploy(server: &Server, token: &str, job: &str, wasm: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args(["deploy", wasm, "--job", job, "--operator", "counter"])
        .args(["--server", &server.base])
        .env("SLUICE_TOKEN", token)
        .output()
        .unwrap()
}

#[test]
fn sluice_deploy_swaps_a_new_version_into_a_running_job() {
    let server = Server::start(&tenants("", ""));
    server.upload(ALPHA, "counter", guests::COUNTER_A);
    let id = server.submit(
        ALPHA,
        "name = \"counted\"\nworkers = 1\n[batch]\ninterval = \"100ms\"\n\
         [[sources]]\nkind = \"generator\"\nrate = 500\nvalue_size = 20\n\
         [[operators]]\nplugin = \"counter\"\n\
         [[sinks]]\nkind = \"jsonl\"\npath = \"counted.jsonl\"\n",
    );
    server.wait_for_metric_above(ALPHA, &id, "records_out", 0);

    let good = sluice_deploy(&server, ALPHA, &id, guests::COUNTER_B);
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        stdout.contains("version 2 of `counter` adopted from batch"),
        "{stdout}"
    );
    let adopted_out = server.metric(ALPHA, &id, "records_out");
    let record = server
        .dir
        .path()
        .join(format!("data/tenants/alpha/jobs/{id}/job.json"));
    let adopted_file = |r: &std::path::Path| -> Value {
        let v: Value = serde_json::from_slice(&std::fs::read(r).unwrap()).unwrap();
        v["adopted"].clone()
    };
    let with_b = adopted_file(&record);
    assert_eq!(with_b[0]["operator"], "counter", "{with_b}");

    // A version that traps is refused with its reason; the job goes on.
    let broken = sluice_deploy(&server, ALPHA, &id, guests::COUNTER_BROKEN);
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(!broken.status.success(), "{stderr}");
    assert!(
        stderr.contains("422") && stderr.contains("version 3 refused") && stderr.contains("broken"),
        "{stderr}"
    );
    let path = format!("/v1/jobs/{id}/operators/counter");
    let wrong_world = server.put(&path, ALPHA, &std::fs::read(guests::SUM).unwrap());
    assert_eq!(wrong_world.status, 422, "{}", wrong_world.text);
    assert!(
        wrong_world.text.contains("`reduce` world"),
        "{}",
        wrong_world.text
    );
    let not_wasm = server.put(&path, ALPHA, b"hello");
    assert_eq!(not_wasm.status, 400, "{}", not_wasm.text);
    assert!(
        not_wasm.text.contains("not a WebAssembly file"),
        "{}",
        not_wasm.text
    );
    let unknown = server.put(
        &format!("/v1/jobs/{id}/operators/nope"),
        ALPHA,
        &std::fs::read(guests::COUNTER_A).unwrap(),
    );
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert!(unknown.text.contains("counter"), "{}", unknown.text);
    // Another tenant cannot tell the job exists.
    let foreign = server.put(&path, BETA, &std::fs::read(guests::COUNTER_A).unwrap());
    assert_eq!(foreign.status, 404, "{}", foreign.text);
    assert_eq!(foreign.body["error"], "no such job");

    server.wait_for_metric_above(ALPHA, &id, "records_out", adopted_out);
    // A version that passes its probe and fails a few batches later is
    // adopted, then rolled back to version 2, which a restart would run.
    let late = server.put(&path, ALPHA, &std::fs::read(guests::COUNTER_LATE).unwrap());
    assert_eq!(late.status, 200, "{}", late.text);
    assert_eq!(late.body["version"], 5, "{}", late.text);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let m = server.get(&format!("/v1/jobs/{id}/metrics"), ALPHA);
        if m.body["versions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|e| e["rolled_back"] == true))
        {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no rollback: {}",
            m.text
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let versions = metrics.body["versions"].as_array().unwrap().clone();
    let seen: Vec<(u64, bool, bool)> = versions
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["adopted"].as_bool().unwrap(),
                v["rolled_back"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (2, true, false),
            (3, false, false),
            (4, false, false),
            (5, true, false),
            (5, false, true)
        ],
        "{}",
        metrics.text
    );
    assert!(
        versions[4]["detail"]
            .as_str()
            .unwrap()
            .contains("breaks after 6 batches"),
        "{}",
        metrics.text
    );
    // Prometheus sees the same: version 2 in force again, and the events
    // by outcome.
    let exposition = server.get("/metrics", ALPHA).text;
    let series = |name: &str, labels: &str| {
        let wanted =
            format!("{name}{{tenant=\"alpha\",job=\"counted\",job_id=\"{id}\",{labels}}} ");
        let line = exposition.lines().find(|l| l.starts_with(&wanted));
        line.map(|l| l[wanted.len()..].to_string())
            .unwrap_or_else(|| panic!("no {wanted} in {exposition}"))
    };
    assert_eq!(
        series(
            "sluice_operator_version",
            "stage=\"0\",operator=\"counter\""
        ),
        "2"
    );
    for (outcome, n) in [("adopted", "2"), ("refused", "2"), ("rolled_back", "1")] {
        let labels = format!("operator=\"counter\",outcome=\"{outcome}\"");
        assert_eq!(
            series("sluice_operator_version_events_total", &labels),
            n,
            "{outcome}"
        );
    }
    // The dashboard's figures time each event, in order, within the run.
    let figures = server.get(&format!("/v1/jobs/{id}/dashboard"), ALPHA);
    let events = figures.body["versions"].as_array().unwrap().clone();
    assert_eq!(events.len(), 5, "{}", figures.text);
    let at: Vec<i64> = events
        .iter()
        .map(|e| e["at_ms"].as_i64().unwrap())
        .collect();
    let started = figures.body["started_ms"].as_i64().unwrap();
    let now = figures.body["now_ms"].as_i64().unwrap();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
    assert!(started <= at[0] && at[4] <= now, "{started} {at:?} {now}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while adopted_file(&record) != with_b {
        assert!(
            std::time::Instant::now() < deadline,
            "the record names version 2's file again: {}",
            adopted_file(&record)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.status(ALPHA, &id)["state"], "running");

    let stop = server.post(&format!("/v1/jobs/{id}/stop"), ALPHA, b"");
    assert_eq!(stop.status, 202, "{}", stop.text);
    server.wait_for_state(ALPHA, &id, "stopped");
    // Version a, then version b (with version 5 for a few batches), and one
    // count running through all of them.
    let file = server.get("/v1/files/counted.jsonl", ALPHA);
    assert_eq!(file.status, 200);
    let lines: Vec<String> = file
        .text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["value"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(lines.len() as u64, server.metric(ALPHA, &id, "records_in"));
    let tags: Vec<&str> = lines.iter().map(|l| l.split('|').next().unwrap()).collect();
    let first_b = tags.iter().position(|t| *t == "b").expect("version b ran");
    assert!(first_b > 0 && tags[..first_b].iter().all(|t| *t == "a"));
    assert!(
        tags[first_b..].iter().all(|t| *t == "b" || *t == "late"),
        "{tags:?}"
    );
    assert!(
        tags.contains(&"late") && tags.last() == Some(&"b"),
        "{tags:?}"
    );
    let counts: Vec<u64> = lines
        .iter()
        .map(|l| l.split('|').nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts, (1..=lines.len() as u64).collect::<Vec<_>>());
}

#[test]
fn every_attack_is_contained_while_another_tenants_job_keeps_going() {
    let server = Server::start(&tenants("", ""));
    server.upload(BETA, "uppercase", guests::UPPERCASE);
    let steady = server.submit(BETA, &generator_job(DISCARD));
    server.wait_for_metric_above(BETA, &steady, "records_out", 0);
    server.upload(ALPHA, "hostile", guests::HOSTILE);
    server.upload(ALPHA, "trap", guests::TRAP);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    // The loop and the memory bomb have their own test (they pause the job).
    for (i, attack) in contained_attacks(listener.local_addr().unwrap())
        .iter()
        .enumerate()
    {
        let before = server.metric(BETA, &steady, "records_out");
        server.contain(ALPHA, &format!("attack-{i}"), attack);
        // The other tenant's job went on processing meanwhile.
        server.wait_for_metric_above(BETA, &steady, "records_out", before);
        assert_eq!(server.status(BETA, &steady)["state"], "running");
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a tenant's operator reached the listener: {other:?}"),
    }
}

#[test]
fn metrics_and_the_dashboard_show_a_tenant_only_its_own_jobs() {
    let server = Server::start(&tenants("", ""));
    server.upload(ALPHA, "uppercase", guests::UPPERCASE);
    server.upload(BETA, "uppercase", guests::UPPERCASE);
    let alpha = server.submit(ALPHA, &generator_job(DISCARD));
    let beta = server.submit(BETA, &generator_job(DISCARD));
    server.wait_for_metric_above(ALPHA, &alpha, "records_out", 0);
    server.wait_for_metric_above(BETA, &beta, "records_out", 0);

    // Prometheus text: each series names its tenant and job.
    let series = |token: &str| -> Vec<String> {
        let r = server.get("/metrics", token);
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
            .lines()
            .filter(|l| l.starts_with("sluice_source_records_total{"))
            .map(str::to_string)
            .collect()
    };
    let of = |id: &str, tenant: &str| format!("tenant=\"{tenant}\",job=\"steady\",job_id=\"{id}\"");
    let admin = series(ADMIN);
    assert_eq!(admin.len(), 2, "{admin:?}");
    assert!(
        admin.iter().any(|l| l.contains(&of(&alpha, "alpha"))),
        "{admin:?}"
    );
    assert!(
        admin.iter().any(|l| l.contains(&of(&beta, "beta"))),
        "{admin:?}"
    );
    let own = series(ALPHA);
    assert_eq!(own.len(), 1, "{own:?}");
    assert!(own[0].contains(&of(&alpha, "alpha")), "{own:?}");
    let page = server.get("/metrics", ALPHA).text;
    assert!(!page.contains("beta") && !page.contains(&beta), "{page}");
    assert!(
        page.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with EOF"
    );
    assert_eq!(server.request("GET", "/metrics", None, None).status, 401);
    assert_eq!(server.get("/metrics", "nobody").status, 401);

    // The dashboard's figures: one's own job, never another tenant's.
    let figures = server.get(&format!("/v1/jobs/{alpha}/dashboard"), ALPHA);
    assert_eq!(figures.status, 200, "{}", figures.text);
    assert_eq!(figures.body["job"], "steady");
    assert!(figures.body["totals"]["records_in"].as_u64().unwrap() > 0);
    assert_eq!(
        figures.body["stages"][0]["operators"][0]["name"], "uppercase",
        "{}",
        figures.text
    );
    let other = server.get(&format!("/v1/jobs/{beta}/dashboard"), ALPHA);
    assert_eq!(other.status, 404, "{}", other.text);
    // The page itself needs no token: it asks for one.
    let page = server.request("GET", "/ui", None, None);
    assert_eq!(page.status, 200);
    assert!(page.text.contains("id=\"token\""), "{}", page.text);
}
