//! Static group membership (KIP-345): a Kafka source's consumer joins its
//! group under a `group.instance.id` that stays the same when its process
//! is restarted, so that the group hands the restarted member its
//! partitions back at once. A dynamic member killed without leaving holds
//! its partitions until its session times out (`session.timeout.ms`, 45 s
//! by default): a restarted job read nothing for that long.
//!
//! The id is derived from the job's name, the source's index in the job and
//! the host's name ([`group_instance_id`]), as Kafka Streams derives its
//! own. Processes of one job on one host tell their ids apart by a number,
//! each claiming the first one free by locking a file in the temporary
//! directory ([`claim`]); the lock ends with the process, so a process
//! restarted after a crash claims the same number again.

use crate::spec::KafkaSourceConfig;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Kafka's longest `group.instance.id` (as for topic names).
const MAX_ID: usize = 249;

/// Room kept at the end of an id for the process number, `_<n>`.
const NUMBER_ROOM: usize = 9;

/// How many processes of one job's source on one host get an id of their
/// own; past that, a source joins as a dynamic member.
const MAX_PROCESSES: usize = 1000;

/// The `group.instance.id` of source number `source` of job `job` on host
/// `host`: `sluice-<job>-<source>-<host>`, with every character Kafka does
/// not take in one (anything but ASCII letters, digits, `.`, `_` and `-`)
/// replaced by `_`, cut to leave room for a process number within Kafka's
/// 249 characters.
pub fn group_instance_id(job: &str, source: usize, host: &str) -> String {
    let id = format!("sluice-{job}-{source}-{host}");
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_ID - NUMBER_ROOM)
        .collect()
}

/// The id of the process numbered `n` among those sharing `base` on one
/// host: `base` itself for the first, then `base_1`, `base_2`... (host
/// names hold no `_`, so no other host's first id looks like these).
fn numbered(base: &str, n: usize) -> String {
    if n == 0 {
        base.to_string()
    } else {
        format!("{base}_{n}")
    }
}

/// The host's name, or `localhost` when it cannot be read.
pub fn hostname() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .chain(std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .find(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
    .clone()
}

/// How a source's consumer is a member of its group.
#[derive(Debug)]
pub enum Membership {
    /// Dynamic: a new member at every start (no job name).
    Dynamic,
    /// Static, under an id the user set in the source's `config`: Kafka's
    /// own behaviour, the member does not leave the group when it closes.
    Configured,
    /// Static, under a derived id, claimed by holding `lock` (released when
    /// dropped, or when the process dies). Leaves the group when it closes
    /// cleanly, so that its partitions move at once.
    Derived {
        /// The `group.instance.id`.
        id: String,
        /// The claim on the id, held for as long as the variant is.
        _lock: File,
    },
}

impl Membership {
    /// The `group.instance.id` to set, if derived.
    pub fn derived_id(&self) -> Option<&str> {
        match self {
            Membership::Derived { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Whether the consumer leaves the group before it closes.
    pub fn leaves_on_close(&self) -> bool {
        matches!(self, Membership::Derived { .. })
    }
}

/// The membership of source number `source` with settings `cfg`: the id
/// the user set, else one derived from the job's name and claimed in the
/// temporary directory, else (no job name, or no lock to be had) dynamic.
pub fn claim(cfg: &KafkaSourceConfig, source: usize) -> Membership {
    if cfg.config.contains_key("group.instance.id") {
        return Membership::Configured;
    }
    let Some(job) = &cfg.job else {
        return Membership::Dynamic;
    };
    let base = group_instance_id(job, source, &hostname());
    match claim_in(&std::env::temp_dir(), &base) {
        Ok(Some((id, lock))) => Membership::Derived { id, _lock: lock },
        Ok(None) => {
            tracing::warn!(
                "kafka: {MAX_PROCESSES} processes on this host already read as `{base}`; this one joins group `{}` as a dynamic member",
                cfg.group
            );
            Membership::Dynamic
        }
        Err(e) => {
            tracing::warn!(
                "kafka: cannot claim the group.instance.id `{base}` ({e}); joining group `{}` as a dynamic member (a restart waits for the session timeout)",
                cfg.group
            );
            Membership::Dynamic
        }
    }
}

/// Claims the first free id of `base` by locking `<id>.lock` in `dir`.
fn claim_in(dir: &Path, base: &str) -> std::io::Result<Option<(String, File)>> {
    for n in 0..MAX_PROCESSES {
        let id = numbered(base, n);
        let path = dir.join(format!("{id}.lock"));
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            // Another user's file: a lock needs no write access.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(&path)?,
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => return Ok(Some((id, file))),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_name_the_job_the_source_and_the_host_in_characters_kafka_takes() {
        assert_eq!(
            group_instance_id("orders", 0, "web-1.example.com"),
            "sluice-orders-0-web-1.example.com"
        );
        assert_eq!(
            group_instance_id("my job/é", 2, "host"),
            "sluice-my_job__-2-host"
        );
        assert_ne!(
            group_instance_id("orders", 0, "h"),
            group_instance_id("orders", 1, "h")
        );
        assert_ne!(
            group_instance_id("orders", 0, "h"),
            group_instance_id("billing", 0, "h")
        );
        let long = group_instance_id(&"j".repeat(400), 0, "h");
        assert_eq!(long.len(), MAX_ID - NUMBER_ROOM);
        assert!(numbered(&long, MAX_PROCESSES - 1).len() <= MAX_ID);
        assert!(!hostname().is_empty());
    }

    #[test]
    fn processes_sharing_an_id_claim_numbers_and_a_released_number_is_claimed_again() {
        let dir = tempfile::tempdir().unwrap();
        let (first, lock) = claim_in(dir.path(), "sluice-j-0-h").unwrap().unwrap();
        let (second, _lock2) = claim_in(dir.path(), "sluice-j-0-h").unwrap().unwrap();
        assert_eq!(first, "sluice-j-0-h");
        assert_eq!(second, "sluice-j-0-h_1");
        // The first process ends (or dies): its restart gets its id back.
        drop(lock);
        let (again, _lock) = claim_in(dir.path(), "sluice-j-0-h").unwrap().unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn an_id_set_in_the_config_or_no_job_name_claims_nothing() {
        let mut cfg: KafkaSourceConfig =
            toml::from_str("brokers = \"127.0.0.1:9\"\ntopics = [\"t\"]\ngroup = \"g\"\n").unwrap();
        assert!(matches!(claim(&cfg, 0), Membership::Dynamic));
        cfg.job = Some("unit-membership".into());
        cfg.config.insert("group.instance.id".into(), "mine".into());
        let m = claim(&cfg, 0);
        assert!(matches!(m, Membership::Configured));
        assert!(!m.leaves_on_close() && m.derived_id().is_none());
    }
}
