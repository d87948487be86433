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

#[cfg(test)]
use crate::model::claim::numbered;
#[cfg(test)]
use crate::model::claim::{MAX_ID, NUMBER_ROOM};
use crate::model::claim::{MAX_PROCESSES, claim_in, hostname, kafka_name};
use crate::spec::KafkaSourceConfig;
use std::fs::File;

/// The `group.instance.id` of source number `source` of job `job` on host
/// `host`: `sluice-<job>-<source>-<host>`, with every character Kafka does
/// not take in one (anything but ASCII letters, digits, `.`, `_` and `-`)
/// replaced by `_`, cut to leave room for a process number within Kafka's
/// 249 characters.
pub fn group_instance_id(job: &str, source: usize, host: &str) -> String {
    kafka_name(&format!("sluice-{job}-{source}-{host}"))
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
