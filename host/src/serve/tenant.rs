//! The tenants file: who may use the server, with which token, and within
//! which limits. Tokens are never stored: the file holds the hex SHA-256 of
//! each bearer token, and a request's token is hashed and compared with
//! every tenant's hash in constant time.

use crate::model::units::{parse_duration, parse_duration_or_zero};
use crate::spec::limits::Limits;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default per-job memory of a tenant without `limits.memory`.
pub const DEFAULT_TENANT_MEMORY: u64 = 256 << 20;
/// Default per-call deadline of a tenant without `limits.cpu_per_batch`.
pub const DEFAULT_TENANT_CPU: Duration = Duration::from_secs(1);
/// Default keyed state per instance of a tenant without `limits.state`.
pub const DEFAULT_TENANT_STATE: u64 = 256 << 20;
/// Default records a join instance of a tenant's job may emit per
/// micro-batch, without `limits.join_output`.
pub const DEFAULT_TENANT_JOIN_OUTPUT: u64 = 100_000;
/// Default jobs a tenant may run at once.
pub const DEFAULT_MAX_JOBS: usize = 4;
/// Default workers (threads) one job of a tenant may ask for.
pub const DEFAULT_MAX_WORKERS: usize = 2;
/// Default partitions one job of a tenant may ask for.
pub const DEFAULT_MAX_PARTITIONS: usize = 8;
/// Default bound on an uploaded plugin or file.
pub const DEFAULT_MAX_PLUGIN_SIZE: u64 = 16 << 20;
/// Default bound on a submitted job file.
pub const DEFAULT_MAX_JOB_SIZE: u64 = 256 << 10;
/// Default time a removed tenant's jobs get to stop before they are halted.
pub const DEFAULT_REMOVAL_GRACE: Duration = Duration::from_secs(30);

/// A problem with the tenants file or a tenant added through the API.
#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    /// The file could not be read.
    #[error("cannot read tenants file {path}: {error}")]
    Read {
        /// The tenants file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}: {message}")]
    Syntax {
        /// The tenants file.
        path: PathBuf,
        /// The parser's message, with line and field.
        message: String,
    },
    /// A field has a value the server cannot use.
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        /// The tenants file (`request` for the admin API).
        path: PathBuf,
        /// Dotted path of the field.
        field: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
}

/// The tenants file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsFile {
    /// Hex SHA-256 of the admin token (the admin routes are off without it).
    pub admin_token_sha256: Option<String>,
    /// Largest plugin or file upload, e.g. `"16MiB"`.
    pub max_plugin_size: Option<String>,
    /// Largest job file, e.g. `"256KiB"`.
    pub max_job_size: Option<String>,
    /// How long a removed tenant's jobs get to stop by themselves before
    /// they are halted, e.g. `"30s"` (default; `"0s"`: halt at once).
    pub removal_grace: Option<String>,
    /// When a failing job is restarted, and when it is paused.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// The tenants.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
}

/// The `[breaker]` table: restarts with backoff, and a pause after too many
/// failures.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Failures within `window` after which a job is paused. Default 3.
    pub failures: Option<usize>,
    /// The window failures are counted in, e.g. `"60s"` (default).
    pub window: Option<String>,
    /// Wait before the first restart, doubled for each further one, e.g.
    /// `"1s"` (default).
    pub backoff: Option<String>,
    /// Longest wait between restarts, e.g. `"30s"` (default).
    pub max_backoff: Option<String>,
}

/// A `[[tenants]]` entry, also the body of `POST /v1/admin/tenants` and
/// what the server keeps of a tenant added so (its `tenant.json`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Name: letters, digits, `-` and `_`, at most 64.
    pub name: String,
    /// Hex SHA-256 of the tenant's bearer token.
    pub token_sha256: String,
    /// Jobs the tenant may have running (or restarting) at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<usize>,
    /// Workers one job may ask for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<usize>,
    /// Partitions one job may ask for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_partitions: Option<usize>,
    /// Caps and defaults of every job's `[limits]`.
    #[serde(default)]
    pub limits: TenantLimitsConfig,
}

/// A tenant's `limits` table: each value is the default of a job that does
/// not set it and the most a job may ask for.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimitsConfig {
    /// Linear memory per instance, e.g. `"64MiB"` (default 256 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Deadline of one call, e.g. `"500ms"` (default 1 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_per_batch: Option<String>,
    /// Output bytes per input byte of one call (default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_ratio: Option<f64>,
    /// Keyed state per operator instance, e.g. `"64MiB"` (default 256 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Records one join instance may emit per micro-batch (default 100,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_output: Option<u64>,
}

/// The server-wide settings of the tenants file, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SHA-256 of the admin token.
    pub admin: Option<[u8; 32]>,
    /// Largest plugin or file upload, bytes.
    pub max_plugin_size: u64,
    /// Largest job file, bytes.
    pub max_job_size: u64,
    /// How long a removed tenant's jobs get to stop before they are halted.
    pub removal_grace: Duration,
    /// The breaker.
    pub breaker: Breaker,
}

/// When a failing job is restarted and when it is paused.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    /// Failures within `window` that pause a job.
    pub failures: usize,
    /// The window failures are counted in.
    pub window: Duration,
    /// Wait before the first restart; doubled for each further one.
    pub backoff: Duration,
    /// Longest wait between restarts.
    pub max_backoff: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failures: 3,
            window: Duration::from_secs(60),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// A tenant, resolved.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Name.
    pub name: String,
    /// SHA-256 of its bearer token.
    pub token_sha256: [u8; 32],
    /// Jobs it may have running at once.
    pub max_jobs: usize,
    /// Workers one job may ask for.
    pub max_workers: usize,
    /// Partitions one job may ask for.
    pub max_partitions: usize,
    /// Caps and defaults of every job's limits (its `on_breach` is unused).
    pub limits: Limits,
}

impl TenantsFile {
    /// Reads and checks a tenants file.
    pub fn load(path: &Path) -> Result<(Settings, Vec<Tenant>), TenantsError> {
        let text = std::fs::read_to_string(path).map_err(|error| TenantsError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks tenants-file text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<(Settings, Vec<Tenant>), TenantsError> {
        let file: TenantsFile = toml::from_str(text).map_err(|e| TenantsError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |field: &str, message: String| TenantsError::Invalid {
            path: path.to_owned(),
            field: field.to_string(),
            message,
        };
        let admin = file
            .admin_token_sha256
            .as_deref()
            .map(|h| parse_hash(h).map_err(|m| invalid("admin_token_sha256", m)))
            .transpose()?;
        let size = |field: &str, value: &Option<String>, default: u64| match value {
            None => Ok(default),
            Some(v) => match crate::model::units::parse_size(v) {
                Ok(0) => Err(invalid(field, "must be more than 0 bytes".into())),
                Ok(n) => Ok(n),
                Err(m) => Err(invalid(field, m)),
            },
        };
        let max_plugin_size = size(
            "max_plugin_size",
            &file.max_plugin_size,
            DEFAULT_MAX_PLUGIN_SIZE,
        )?;
        let max_job_size = size("max_job_size", &file.max_job_size, DEFAULT_MAX_JOB_SIZE)?;
        let removal_grace = match &file.removal_grace {
            None => DEFAULT_REMOVAL_GRACE,
            Some(v) => parse_duration_or_zero(v).map_err(|m| invalid("removal_grace", m))?,
        };
        let breaker = file.breaker.resolve().map_err(|(f, m)| invalid(f, m))?;
        let mut tenants: Vec<Tenant> = Vec::new();
        for (i, t) in file.tenants.iter().enumerate() {
            let tenant = t
                .resolve()
                .map_err(|(f, m)| invalid(&format!("tenants[{i}].{f}"), m))?;
            if tenants.iter().any(|o| o.name == tenant.name) {
                return Err(invalid(
                    &format!("tenants[{i}].name"),
                    format!("two tenants are called {:?}", tenant.name),
                ));
            }
            if tenants
                .iter()
                .any(|o| o.token_sha256 == tenant.token_sha256)
                || admin == Some(tenant.token_sha256)
            {
                return Err(invalid(
                    &format!("tenants[{i}].token_sha256"),
                    "another tenant or the admin has the same token; give each its own".into(),
                ));
            }
            tenants.push(tenant);
        }
        Ok((
            Settings {
                admin,
                max_plugin_size,
                max_job_size,
                removal_grace,
                breaker,
            },
            tenants,
        ))
    }
}

impl BreakerConfig {
    fn resolve(&self) -> Result<Breaker, (&'static str, String)> {
        let d = Breaker::default();
        let duration = |field: &'static str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(v) => parse_duration(v).map_err(|m| (field, m)),
        };
        let failures = self.failures.unwrap_or(d.failures);
        if failures == 0 {
            return Err((
                "breaker.failures",
                "must be at least 1 (1: pause at the first failure)".into(),
            ));
        }
        Ok(Breaker {
            failures,
            window: duration("breaker.window", &self.window, d.window)?,
            backoff: duration("breaker.backoff", &self.backoff, d.backoff)?,
            max_backoff: duration("breaker.max_backoff", &self.max_backoff, d.max_backoff)?,
        })
    }
}

impl TenantConfig {
    /// The tenant this entry describes; the error names the field (relative
    /// to the entry) and what is accepted.
    pub fn resolve(&self) -> Result<Tenant, (String, String)> {
        check_name(&self.name).map_err(|m| ("name".to_string(), m))?;
        let token_sha256 =
            parse_hash(&self.token_sha256).map_err(|m| ("token_sha256".to_string(), m))?;
        let count = |field: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err((field.to_string(), "must be at least 1".to_string())),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let mut limits = Limits {
            memory: DEFAULT_TENANT_MEMORY,
            cpu_per_batch: Some(DEFAULT_TENANT_CPU),
            state: DEFAULT_TENANT_STATE,
            join_output: DEFAULT_TENANT_JOIN_OUTPUT,
            ..Limits::default()
        };
        let l = &self.limits;
        if let Some(m) = &l.memory {
            limits.memory =
                crate::model::units::parse_size(m).map_err(|m| ("limits.memory".into(), m))?;
        }
        if let Some(c) = &l.cpu_per_batch {
            limits.cpu_per_batch =
                Some(parse_duration(c).map_err(|m| ("limits.cpu_per_batch".into(), m))?);
        }
        if let Some(r) = l.output_ratio {
            limits.output_ratio = Some(r);
        }
        if let Some(st) = &l.state {
            limits.state =
                crate::model::units::parse_size(st).map_err(|m| ("limits.state".into(), m))?;
        }
        if let Some(j) = l.join_output {
            limits.join_output = j;
        }
        limits
            .validate()
            .map_err(|(limit, m)| (format!("limits.{limit}"), m))?;
        Ok(Tenant {
            name: self.name.clone(),
            token_sha256,
            max_jobs: count("max_jobs", self.max_jobs, DEFAULT_MAX_JOBS)?,
            max_workers: count("max_workers", self.max_workers, DEFAULT_MAX_WORKERS)?,
            max_partitions: count(
                "max_partitions",
                self.max_partitions,
                DEFAULT_MAX_PARTITIONS,
            )?,
            limits,
        })
    }
}

/// Checks a tenant, plugin or file name: 1 to 64 letters, digits, `-`, `_`
/// and `.`, starting with a letter or digit (so never `.` or `..`).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a usable name (accepted: 1 to 64 letters, digits, `-`, `_` or `.`, \
             starting with a letter or digit)"
        ))
    }
}

/// SHA-256 of a bearer token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A hash as 64 lowercase hex digits, as the tenants file holds it.
pub fn to_hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits.
pub fn parse_hash(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    let err = || {
        "expected the SHA-256 of the token as 64 hex digits (make one with \
         `sluice serve hash-token` or `printf %s TOKEN | sha256sum`)"
            .to_string()
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(err());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| err())?;
    }
    Ok(out)
}

/// Compares two hashes in time that does not depend on where they differ.
pub fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn parse(text: &str) -> Result<(Settings, Vec<Tenant>), TenantsError> {
        TenantsFile::parse(text, Path::new("tenants.toml"))
    }

    #[test]
    fn hashes_round_trip_and_compare() {
        let h = hash_token("foo");
        assert_eq!(to_hex(&h), HASH_A);
        assert_eq!(parse_hash(HASH_A), Ok(h));
        assert!(same_hash(&h, &hash_token("foo")));
        assert!(!same_hash(&h, &hash_token("fop")));
        assert!(parse_hash("abc").unwrap_err().contains("64 hex digits"));
        assert!(parse_hash(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_tenant_gets_defaults_and_its_caps() {
        let (settings, tenants) = parse(&format!(
            "[[tenants]]\nname = \"acme\"\ntoken_sha256 = \"{HASH_A}\"\nmax_jobs = 2\n\
             [tenants.limits]\nmemory = \"64MiB\"\n"
        ))
        .unwrap();
        assert_eq!(settings.max_plugin_size, DEFAULT_MAX_PLUGIN_SIZE);
        assert_eq!(settings.breaker, Breaker::default());
        assert_eq!(settings.removal_grace, DEFAULT_REMOVAL_GRACE);
        let t = &tenants[0];
        assert_eq!((t.name.as_str(), t.max_jobs), ("acme", 2));
        assert_eq!(t.limits.memory, 64 << 20);
        assert_eq!(t.limits.cpu_per_batch, Some(DEFAULT_TENANT_CPU));
        assert_eq!(t.limits.state, DEFAULT_TENANT_STATE);
        assert_eq!(t.limits.join_output, DEFAULT_TENANT_JOIN_OUTPUT);
        assert_eq!(t.max_workers, DEFAULT_MAX_WORKERS);
    }

    #[test]
    fn bad_entries_name_the_field() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let msg = err("[[tenants]]\nname = \"a b\"\ntoken_sha256 = \"x\"\n");
        assert!(msg.contains("field `tenants[0].name`"), "{msg}");
        let msg = err("[[tenants]]\nname = \"a\"\ntoken_sha256 = \"x\"\n");
        assert!(
            msg.contains("field `tenants[0].token_sha256`: expected the SHA-256"),
            "{msg}"
        );
        let msg = err(&format!(
            "[[tenants]]\nname = \"a\"\ntoken_sha256 = \"{HASH_A}\"\n[tenants.limits]\nmemory = \"1KiB\"\n"
        ));
        assert!(msg.contains("field `tenants[0].limits.memory`"), "{msg}");
        let msg = err(&format!(
            "[[tenants]]\nname = \"a\"\ntoken_sha256 = \"{HASH_A}\"\n[tenants.limits]\nstate = \"10\"\n"
        ));
        assert!(
            msg.contains("field `tenants[0].limits.state`: 10 bytes is out of range"),
            "{msg}"
        );
        let msg = err(&format!(
            "[[tenants]]\nname = \"a\"\ntoken_sha256 = \"{HASH_A}\"\n[tenants.limits]\njoin_output = 0\n"
        ));
        assert!(
            msg.contains("field `tenants[0].limits.join_output`"),
            "{msg}"
        );
        let msg = err(&format!(
            "[[tenants]]\nname = \"a\"\ntoken_sha256 = \"{HASH_A}\"\n\
             [[tenants]]\nname = \"b\"\ntoken_sha256 = \"{HASH_A}\"\n"
        ));
        assert!(msg.contains("tenants[1].token_sha256"), "{msg}");
        let msg = err("[breaker]\nfailures = 0\n");
        assert!(msg.contains("breaker.failures"), "{msg}");
        let msg = err("removal_grace = \"soon\"\n");
        assert!(msg.contains("field `removal_grace`"), "{msg}");
        let (settings, _) = parse("removal_grace = \"0s\"\n").unwrap();
        assert_eq!(settings.removal_grace, Duration::ZERO);
        let msg = err("max_jobs = 3\n");
        assert!(msg.contains("unknown field `max_jobs`"), "{msg}");
    }

    #[test]
    fn names_cannot_climb_out() {
        for bad in ["", "..", ".hidden", "a/b", "a\\b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["uppercase", "split-words", "out_1.jsonl"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }
}
