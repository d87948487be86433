//! What a tenant's job file may do: the same format as `sluice run`, held
//! to the tenant's caps and kept away from the host.
//!
//! - `plugin = "uppercase"` and `reducer = "sum"` name components the tenant
//!   uploaded (`PUT /v1/plugins/{name}`), never paths.
//! - `file` and `directory` sources and `jsonl` and `directory` sinks take
//!   relative paths without `..`, resolved in the tenant's file area.
//! - `stdin` and `stdout` are the server's own and are refused; `socket`
//!   sources may connect only to loopback addresses; Kafka settings are
//!   limited to those that name no file, library or command.
//! - `[limits]` may ask for less than the tenant's caps, never more; what a
//!   job leaves out is the tenant's value. `workers` and `partitions` are
//!   capped too.
//! - `[dead_letter]` turns the dead-letter file on; the server chooses where
//!   it is (one per job) and serves it at `/v1/jobs/{id}/dead-letters`.
//! - `[checkpoint]`'s `path`, if given, is a relative path without `..` in
//!   the tenant's file area, like the others; without one (or without
//!   `[checkpoint]`) the server keeps the job's checkpoints in the job's own
//!   directory.

use super::tenant::{Tenant, check_name};
use crate::model::units::{format_duration, format_size};
use crate::spec::{
    ConfigError, DeadLetterConfig, Delivery, JobConfig, LimitsConfig, SinkConfig, SourceConfig,
    line_of,
};
use std::path::{Component, Path, PathBuf};
use toml::Spanned;

/// Where a tenant's job finds its plugins and files.
#[derive(Debug, Clone)]
pub struct Places {
    /// The tenant's uploaded components, `<name>.wasm`.
    pub plugins: PathBuf,
    /// The tenant's file area: relative paths of the job resolve here.
    pub files: PathBuf,
    /// The job's dead-letter file.
    pub dead_letter: PathBuf,
    /// The job's name on the server (`<tenant>/<id>`), from which default
    /// transactional ids are made: one per job, kept across its restarts.
    pub job: String,
}

/// Librdkafka settings a tenant's Kafka source or sink may set: tuning and
/// credentials, none that names a file, a library or a command.
pub const KAFKA_SETTINGS: &[&str] = &[
    "client.id",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.wait.max.ms",
    "max.partition.fetch.bytes",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "linger.ms",
    "batch.num.messages",
    "batch.size",
    "compression.type",
    "message.max.bytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "socket.timeout.ms",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
];

/// Parses a tenant's job file and makes it safe to run: plugins resolved
/// in the tenant's store, paths confined to its file area, limits within
/// its caps. Errors name the field like those of `sluice run`. Looks the
/// plugins up in the tenant's store: blocking file I/O.
pub fn vet(text: &str, tenant: &Tenant, places: &Places) -> Result<JobConfig, ConfigError> {
    let file = Path::new("job.toml");
    let mut cfg = JobConfig::from_str(text, file, &crate::operators::registry::BUILTINS)?;
    let invalid =
        |span: std::ops::Range<usize>, field: &str, message: String| ConfigError::Invalid {
            path: file.to_owned(),
            line: line_of(text, span.start),
            field: field.to_string(),
            message,
        };
    let whole = 0..0;

    for (field, v, cap) in [
        ("workers", &mut cfg.workers, tenant.max_workers),
        ("partitions", &mut cfg.partitions, tenant.max_partitions),
    ] {
        match v {
            Some(n) if *n.get_ref() > cap => {
                return Err(invalid(
                    n.span(),
                    field,
                    format!(
                        "{} is above this tenant's cap of {cap} (accepted: 1 to {cap})",
                        n.get_ref()
                    ),
                ));
            }
            Some(_) => {}
            None if field == "workers" => {
                *v = Some(Spanned::new(
                    whole.clone(),
                    cap.min(crate::exec::default_workers()),
                ))
            }
            None => {}
        }
    }
    if cfg.partitions.is_none() {
        let workers = cfg.workers.as_ref().map_or(1, |w| *w.get_ref());
        cfg.partitions = Some(Spanned::new(
            whole.clone(),
            workers.min(tenant.max_partitions),
        ));
    }

    for (i, s) in cfg.sources.iter_mut().enumerate() {
        let span = s.span();
        let field = |f: &str| format!("sources[{i}].{f}");
        match &mut s.get_mut().source {
            SourceConfig::File { path } | SourceConfig::Directory { path, .. } => {
                *path =
                    confine(path, &places.files).map_err(|m| invalid(span, &field("path"), m))?;
            }
            SourceConfig::Stdin {} => {
                return Err(invalid(
                    span,
                    &field("kind"),
                    "the server's standard input is not for jobs (accepted: file, directory, \
                     socket, kafka, generator)"
                        .into(),
                ));
            }
            SourceConfig::Socket { address } => {
                check_loopback(address).map_err(|m| invalid(span, &field("address"), m))?;
            }
            SourceConfig::Kafka(k) => {
                check_brokers(&k.brokers)
                    .map_err(|m| invalid(span.clone(), &field("brokers"), m))?;
                k.group = tenant_scoped(tenant, &k.group);
                check_kafka(&k.config).map_err(|(key, m)| {
                    invalid(span.clone(), &field(&format!("config.{key:?}")), m)
                })?;
            }
            SourceConfig::Generator { .. } => {}
        }
    }
    for (i, s) in cfg.sinks.iter_mut().enumerate() {
        let span = s.span();
        let field = |f: &str| format!("sinks[{i}].{f}");
        match s.get_mut() {
            SinkConfig::Jsonl { path } | SinkConfig::Directory { path } => {
                *path =
                    confine(path, &places.files).map_err(|m| invalid(span, &field("path"), m))?;
            }
            SinkConfig::Stdout { .. } => {
                return Err(invalid(
                    span,
                    &field("kind"),
                    "the server's standard output is not for jobs (accepted: jsonl, directory, \
                     discard, kafka)"
                        .into(),
                ));
            }
            SinkConfig::Kafka(k) => {
                check_brokers(&k.brokers)
                    .map_err(|m| invalid(span.clone(), &field("brokers"), m))?;
                if k.delivery == Delivery::ExactlyOnce {
                    let id = crate::sink::kafka::transactional_id(k, &places.job, i);
                    k.transactional_id = Some(tenant_scoped(tenant, &id));
                }
                check_kafka(&k.config).map_err(|(key, m)| {
                    invalid(span.clone(), &field(&format!("config.{key:?}")), m)
                })?;
            }
            SinkConfig::Discard {} => {}
        }
    }
    for (i, op) in cfg.operators.iter_mut().enumerate() {
        let span = op.span();
        let o = op.get_mut();
        // The operator keeps the plugin's name, not the stored file's.
        if o.name.is_none() {
            o.name = Some(o.display_name());
        }
        for (field, value) in [("plugin", &mut o.plugin), ("reducer", &mut o.reducer)] {
            if let Some(p) = value {
                *p = stored_plugin(p, &places.plugins)
                    .map_err(|m| invalid(span.clone(), &format!("operators[{i}].{field}"), m))?;
            }
        }
    }
    if let Some(c) = &mut cfg.checkpoint
        && let Some(path) = &mut c.path
    {
        // The table has no span of its own: point at its header.
        let at = text
            .find("[checkpoint]")
            .or_else(|| text.find("checkpoint"))
            .unwrap_or(0);
        *path = confine(path, &places.files).map_err(|m| invalid(at..at, "checkpoint.path", m))?;
    }
    if cfg.dead_letter.is_some() {
        cfg.dead_letter = Some(DeadLetterConfig {
            path: places.dead_letter.clone(),
        });
    }
    cfg.limits = Some(cap_limits(cfg.limits.take(), tenant, &invalid)?);
    Ok(cfg)
}

/// A Kafka consumer group or transactional id within the tenant's own
/// namespace, `<tenant>:<name>`. Tenant names cannot hold `:`, so no
/// tenant can name another's group (and join it, take its partitions and
/// commit its offsets) or transactional id (and fence its producer).
fn tenant_scoped(tenant: &Tenant, name: &str) -> String {
    format!("{}:{name}", tenant.name)
}

/// The job's limits within the tenant's caps, the tenant's values for those
/// it leaves out.
fn cap_limits(
    asked: Option<LimitsConfig>,
    tenant: &Tenant,
    invalid: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
) -> Result<LimitsConfig, ConfigError> {
    let mut l = asked.unwrap_or_default();
    // Parsing already succeeded: the values resolve.
    let resolved = l
        .resolve()
        .map_err(|e| invalid(e.span, &e.field, e.message))?;
    let cap = &tenant.limits;
    let above = |what: String, cap: String| format!("{what} is above this tenant's cap of {cap}");
    match &l.memory {
        Some(m) if resolved.memory > cap.memory => {
            return Err(invalid(
                m.span(),
                "limits.memory",
                above(format_size(resolved.memory), format_size(cap.memory)),
            ));
        }
        Some(_) => {}
        None => l.memory = Some(Spanned::new(0..0, cap.memory.to_string())),
    }
    if let Some(cap_cpu) = cap.cpu_per_batch {
        match (&l.cpu_per_batch, resolved.cpu_per_batch) {
            (Some(c), Some(asked)) if asked > cap_cpu => {
                return Err(invalid(
                    c.span(),
                    "limits.cpu_per_batch",
                    above(format_duration(asked), format_duration(cap_cpu)),
                ));
            }
            (Some(_), _) => {}
            (None, _) => {
                l.cpu_per_batch = Some(Spanned::new(
                    0..0,
                    format!("{}ms", cap_cpu.as_secs_f64() * 1000.0),
                ))
            }
        }
    }
    if let Some(cap_ratio) = cap.output_ratio {
        match (&l.output_ratio, resolved.output_ratio) {
            (Some(r), Some(asked)) if asked > cap_ratio => {
                return Err(invalid(
                    r.span(),
                    "limits.output_ratio",
                    above(asked.to_string(), cap_ratio.to_string()),
                ));
            }
            (Some(_), _) => {}
            (None, _) => l.output_ratio = Some(Spanned::new(0..0, cap_ratio)),
        }
    }
    match &l.state {
        Some(st) if resolved.state > cap.state => {
            return Err(invalid(
                st.span(),
                "limits.state",
                above(format_size(resolved.state), format_size(cap.state)),
            ));
        }
        Some(_) => {}
        None => l.state = Some(Spanned::new(0..0, cap.state.to_string())),
    }
    match &l.join_output {
        Some(j) if resolved.join_output > cap.join_output => {
            return Err(invalid(
                j.span(),
                "limits.join_output",
                above(
                    resolved.join_output.to_string(),
                    cap.join_output.to_string(),
                ),
            ));
        }
        Some(_) => {}
        // Validated at most `MAX_JOIN_OUTPUT`, within an i64.
        None => {
            l.join_output = Some(Spanned::new(
                0..0,
                i64::try_from(cap.join_output).unwrap_or(i64::MAX),
            ))
        }
    }
    Ok(l)
}

/// `path` inside `root`: it must be relative, with no `..`, `.`-only or
/// empty components.
pub fn confine(path: &Path, root: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err("is empty (accepted: a relative path in the tenant's file area)".into());
    }
    for c in path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "{shown:?} leaves the tenant's file area through `..` (accepted: a relative path without `..`)"
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "{shown:?} is absolute (accepted: a relative path, resolved in the tenant's file area)"
                ));
            }
        }
    }
    Ok(root.join(path))
}

/// The stored component a job's `plugin = "<name>"` names.
fn stored_plugin(name: &Path, plugins: &Path) -> Result<PathBuf, String> {
    let text = name.to_string_lossy();
    check_name(&text).map_err(|m| {
        format!("{m}; name a plugin uploaded with PUT /v1/plugins/{{name}}, not a path")
    })?;
    let path = plugins.join(format!("{text}.wasm"));
    if !path.is_file() {
        return Err(format!(
            "no plugin {text:?} has been uploaded (known: {})",
            known_plugins(plugins).join(", ")
        ));
    }
    Ok(path)
}

/// The names of the plugins in a tenant's store, sorted (blocking file I/O).
pub fn known_plugins(plugins: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(plugins)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".wasm"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// Accepts `host:port` with a loopback IP address or `localhost`.
pub fn check_loopback(address: &str) -> Result<(), String> {
    let refused = || {
        format!(
            "{address:?} is not a loopback address (accepted: 127.0.0.1:PORT, [::1]:PORT or localhost:PORT)"
        )
    };
    if let Ok(a) = address.parse::<std::net::SocketAddr>() {
        return if a.ip().is_loopback() {
            Ok(())
        } else {
            Err(refused())
        };
    }
    match address.rsplit_once(':') {
        Some((host, port))
            if host.eq_ignore_ascii_case("localhost") && port.parse::<u16>().is_ok() =>
        {
            Ok(())
        }
        _ => Err(refused()),
    }
}

/// Every broker of a `brokers` list must be on loopback, like socket
/// sources: a tenant's job reaches no other host.
fn check_brokers(brokers: &str) -> Result<(), String> {
    brokers
        .split(',')
        .map(str::trim)
        .try_for_each(check_loopback)
}

/// SASL mechanisms a tenant may choose; GSSAPI would make librdkafka run
/// a `kinit` command on the host.
const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

fn check_kafka(
    config: &std::collections::BTreeMap<String, String>,
) -> Result<(), (String, String)> {
    for (key, value) in config {
        if key.starts_with("sasl.mechanism")
            && !SASL_MECHANISMS.contains(&value.trim().to_ascii_uppercase().as_str())
        {
            return Err((
                key.clone(),
                format!(
                    "{value:?} is not open to tenants (accepted: {})",
                    SASL_MECHANISMS.join(", ")
                ),
            ));
        }
    }
    for key in config.keys() {
        if !KAFKA_SETTINGS.contains(&key.as_str()) {
            return Err((
                key.clone(),
                format!(
                    "{key:?} is not open to tenants (accepted: {})",
                    KAFKA_SETTINGS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::limits::Limits;
    use std::time::Duration;

    fn tenant() -> Tenant {
        Tenant {
            name: "acme".into(),
            token_sha256: [0; 32],
            max_jobs: 2,
            max_workers: 2,
            max_partitions: 4,
            limits: Limits {
                memory: 64 << 20,
                cpu_per_batch: Some(Duration::from_millis(500)),
                output_ratio: Some(10.0),
                state: 1 << 20,
                join_output: 500,
                ..Limits::default()
            },
        }
    }

    fn places(dir: &Path) -> Places {
        std::fs::create_dir_all(dir.join("plugins")).unwrap();
        std::fs::write(dir.join("plugins/upper.wasm"), b"").unwrap();
        Places {
            plugins: dir.join("plugins"),
            files: dir.join("files"),
            dead_letter: dir.join("jobs/j1/dead-letters.jsonl"),
            job: "acme/j1".into(),
        }
    }

    const GEN: &str = "[[sources]]\nkind = \"generator\"\n";
    const DISCARD: &str = "[[sinks]]\nkind = \"discard\"\n";

    fn vet_text(text: &str) -> Result<JobConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        vet(text, &tenant(), &places(dir.path())).map_err(|e| e.to_string())
    }

    #[test]
    fn a_job_without_limits_gets_the_tenants() {
        let cfg = vet_text(&format!("{GEN}{DISCARD}")).unwrap();
        let limits = cfg.limits().unwrap();
        assert_eq!(limits.memory, 64 << 20);
        assert_eq!(limits.cpu_per_batch, Some(Duration::from_millis(500)));
        assert_eq!(limits.output_ratio, Some(10.0));
        assert_eq!((limits.state, limits.join_output), (1 << 20, 500));
        assert!(*cfg.workers.unwrap().get_ref() <= 2);
    }

    #[test]
    fn a_job_may_ask_for_less_never_more() {
        let cfg = vet_text(&format!(
            "{GEN}{DISCARD}[limits]\nmemory = \"32MiB\"\ncpu_per_batch = \"100ms\"\n"
        ))
        .unwrap();
        let limits = cfg.limits().unwrap();
        assert_eq!(limits.memory, 32 << 20);
        assert_eq!(limits.cpu_per_batch, Some(Duration::from_millis(100)));
        let err = vet_text(&format!("{GEN}{DISCARD}[limits]\nmemory = \"1GiB\"\n")).unwrap_err();
        assert!(
            err.contains("field `limits.memory`: 1 GiB is above this tenant's cap of 64 MiB"),
            "{err}"
        );
        let err =
            vet_text(&format!("{GEN}{DISCARD}[limits]\ncpu_per_batch = \"2s\"\n")).unwrap_err();
        assert!(
            err.contains("field `limits.cpu_per_batch`: 2s is above this tenant's cap of 500ms"),
            "{err}"
        );
        let cfg = vet_text(&format!(
            "{GEN}{DISCARD}[limits]\nstate = \"64KiB\"\njoin_output = 20\n"
        ))
        .unwrap();
        let limits = cfg.limits().unwrap();
        assert_eq!((limits.state, limits.join_output), (64 << 10, 20));
        let err = vet_text(&format!("{GEN}{DISCARD}[limits]\nstate = \"2MiB\"\n")).unwrap_err();
        assert!(
            err.contains("field `limits.state`: 2 MiB is above this tenant's cap of 1 MiB"),
            "{err}"
        );
        let err = vet_text(&format!("{GEN}{DISCARD}[limits]\njoin_output = 501\n")).unwrap_err();
        assert!(
            err.contains("field `limits.join_output`: 501 is above this tenant's cap of 500"),
            "{err}"
        );
        let err = vet_text(&format!("workers = 8\n{GEN}{DISCARD}")).unwrap_err();
        assert!(err.contains("field `workers`: 8 is above"), "{err}");
    }

    #[test]
    fn paths_stay_in_the_file_area() {
        let err = vet_text(&format!(
            "[[sources]]\nkind = \"file\"\npath = \"../../etc/passwd\"\n{DISCARD}"
        ))
        .unwrap_err();
        assert!(
            err.contains("field `sources[0].path`") && err.contains("`..`"),
            "{err}"
        );
        let err = vet_text(&format!(
            "{GEN}[[sinks]]\nkind = \"jsonl\"\npath = \"/tmp/out.jsonl\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("field `sinks[0].path`") && err.contains("absolute"),
            "{err}"
        );
        let cfg = vet_text(&format!(
            "{GEN}[[sinks]]\nkind = \"jsonl\"\npath = \"out/a.jsonl\"\n"
        ))
        .unwrap();
        match cfg.sinks[0].get_ref() {
            SinkConfig::Jsonl { path } => assert!(path.ends_with("files/out/a.jsonl")),
            other => panic!("{other:?}"),
        }
        let err = vet_text(&format!("[[sources]]\nkind = \"stdin\"\n{DISCARD}")).unwrap_err();
        assert!(err.contains("sources[0].kind"), "{err}");
        let err = vet_text(&format!("{GEN}[[sinks]]\nkind = \"stdout\"\n")).unwrap_err();
        assert!(err.contains("sinks[0].kind"), "{err}");
    }

    #[test]
    fn a_checkpoint_path_stays_in_the_file_area() {
        let job = |table: &str| format!("{GEN}{DISCARD}[checkpoint]\n{table}");
        for (path, words) in [("../../etc", "`..`"), ("/var/lib/x", "absolute")] {
            let err = vet_text(&job(&format!("path = {path:?}\n"))).unwrap_err();
            assert!(
                err.contains("field `checkpoint.path`") && err.contains(words),
                "{err}"
            );
            assert!(err.starts_with("job.toml:5: "), "{err}");
        }
        let cfg = vet_text(&job("path = \"state/a\"\nevery_batches = 5\n")).unwrap();
        let c = cfg.checkpoint.unwrap();
        assert!(c.path.unwrap().ends_with("files/state/a"));
        // Without a path the server chooses it.
        let cfg = vet_text(&job("interval = \"1s\"\n")).unwrap();
        assert_eq!(cfg.checkpoint.unwrap().path, None);
    }

    #[test]
    fn sockets_reach_only_loopback() {
        assert!(check_loopback("127.0.0.1:9").is_ok());
        assert!(check_loopback("[::1]:9").is_ok());
        assert!(check_loopback("localhost:9").is_ok());
        assert!(check_loopback("10.0.0.1:9").is_err());
        assert!(check_loopback("example.com:80").is_err());
        let err = vet_text(&format!(
            "[[sources]]\nkind = \"socket\"\naddress = \"192.168.1.1:22\"\n{DISCARD}"
        ))
        .unwrap_err();
        assert!(err.contains("sources[0].address"), "{err}");
    }

    #[test]
    fn plugins_are_names_in_the_store() {
        let cfg = vet_text(&format!(
            "{GEN}[[operators]]\nplugin = \"upper\"\n{DISCARD}"
        ))
        .unwrap();
        let op = cfg.operators[0].get_ref();
        assert!(op.plugin.as_ref().unwrap().ends_with("plugins/upper.wasm"));
        assert_eq!(op.display_name(), "upper");
        let err = vet_text(&format!(
            "{GEN}[[operators]]\nplugin = \"lower\"\n{DISCARD}"
        ))
        .unwrap_err();
        assert!(
            err.contains(
                "field `operators[0].plugin`: no plugin \"lower\" has been uploaded (known: upper)"
            ),
            "{err}"
        );
        let err = vet_text(&format!(
            "{GEN}[[operators]]\nplugin = \"/tmp/x.wasm\"\n{DISCARD}"
        ))
        .unwrap_err();
        assert!(err.contains("not a path"), "{err}");
    }

    /// A tenant once could name another tenant's consumer group (join it,
    /// take its partitions, commit its offsets) or transactional id (fence
    /// its producer).
    #[test]
    fn a_tenant_cannot_name_another_tenants_kafka_group_or_transactional_id() {
        let text = "[[sources]]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopics = [\"t\"]\n\
                    group = \"orders\"\n[[sinks]]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\n\
                    topic = \"out\"\ndelivery = \"exactly-once\"\n";
        let dir = tempfile::tempdir().unwrap();
        let mut other = tenant();
        other.name = "other".into();
        let names_as = |t: &Tenant, text: &str, job: &str| {
            let places = Places {
                job: job.into(),
                ..places(dir.path())
            };
            let cfg = vet(text, t, &places).unwrap();
            let SourceConfig::Kafka(source) = &cfg.sources[0].get_ref().source else {
                panic!("a kafka source");
            };
            let SinkConfig::Kafka(sink) = cfg.sinks[0].get_ref() else {
                panic!("a kafka sink");
            };
            (source.group.clone(), sink.transactional_id.clone())
        };
        let names = |t: &Tenant, text: &str| names_as(t, text, &format!("{}/j1", t.name));
        // A default transactional id is the tenant's, and unique per job.
        let (group, id) = names(&tenant(), text);
        assert_eq!(group, "acme:orders");
        let id = id.unwrap();
        assert!(id.starts_with("acme:sluice-acme_j1-0-out-"), "{id}");
        let (group, other_id) = names(&other, text);
        assert_eq!(group, "other:orders");
        let other_id = other_id.unwrap();
        assert!(
            other_id.starts_with("other:sluice-other_j1-0-out-"),
            "{other_id}"
        );
        let again = names_as(&tenant(), text, "acme/j2").1.unwrap();
        assert_ne!(id, again, "two jobs of one tenant fence each other");
        let restarted = names(&tenant(), text).1.unwrap();
        assert_eq!(id, restarted, "a job keeps its id across its restarts");
        // Naming the other tenant's group outright stays in one's own space.
        let sneaky = text.replace("\"orders\"", "\"acme:orders\"").replace(
            "exactly-once\"",
            "exactly-once\"\ntransactional_id = \"acme:sluice-out\"",
        );
        assert_eq!(
            names(&other, &sneaky),
            (
                "other:acme:orders".into(),
                Some("other:acme:sluice-out".into())
            )
        );
    }

    #[test]
    fn kafka_settings_that_name_files_are_refused() {
        let err = vet_text(&format!(
            "[[sources]]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopics = [\"t\"]\ngroup = \"g\"\n\
             config = {{ \"ssl.key.location\" = \"/etc/shadow\" }}\n{DISCARD}"
        ))
        .unwrap_err();
        assert!(
            err.contains("\"ssl.key.location\" is not open to tenants"),
            "{err}"
        );
    }

    #[test]
    fn kafka_brokers_must_be_on_loopback_and_gssapi_is_refused() {
        let source = |brokers: &str, config: &str| {
            vet_text(&format!(
                "[[sources]]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ntopics = [\"t\"]\n\
                 group = \"g\"\nconfig = {{ {config} }}\n{DISCARD}"
            ))
        };
        let err = source("127.0.0.1:9092,10.0.0.7:9092", "").unwrap_err();
        assert!(err.contains("sources[0].brokers"), "{err}");
        assert!(
            err.contains("\"10.0.0.7:9092\" is not a loopback address"),
            "{err}"
        );
        let err = source("localhost:9092", "\"sasl.mechanisms\" = \"GSSAPI\"").unwrap_err();
        assert!(err.contains("\"GSSAPI\" is not open to tenants"), "{err}");
        source(
            "localhost:9092, [::1]:9093",
            "\"sasl.mechanism\" = \"scram-sha-512\"",
        )
        .unwrap();
        let err = vet_text(&format!(
            "{GEN}[[sinks]]\nkind = \"kafka\"\nbrokers = \"kafka.internal:9092\"\ntopic = \"t\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("sinks[0].brokers"), "{err}");
    }

    #[test]
    fn the_server_places_dead_letters() {
        let cfg = vet_text(&format!(
            "{GEN}{DISCARD}[dead_letter]\npath = \"/etc/evil\"\n"
        ))
        .unwrap();
        assert!(
            cfg.dead_letter
                .unwrap()
                .path
                .ends_with("jobs/j1/dead-letters.jsonl")
        );
    }
}
