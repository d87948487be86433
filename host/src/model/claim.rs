//! A numbered claim on a name among the processes of one host: the first
//! process to lock `<name>.lock` in a directory holds `name`, the next
//! `name_1`, and so on; the lock ends with the process, so a process
//! restarted after a crash claims its number again. Kafka's static group
//! membership and the exactly-once sink's transactional ids use it, so a
//! restarted job takes back its partitions and aborts its predecessor's
//! open transaction at once.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Kafka's longest `group.instance.id` (as for topic names).
pub const MAX_ID: usize = 249;

/// Room kept at the end of an id for the process number, `_<n>`.
pub const NUMBER_ROOM: usize = 9;

/// How many processes of one job's source on one host get an id of their
/// own; past that, a source joins as a dynamic member.
pub const MAX_PROCESSES: usize = 1000;

/// `name` with every character Kafka does not take in an id (anything but
/// ASCII letters, digits, `.`, `_` and `-`) replaced by `_`, cut to leave
/// room for a process number within Kafka's 249 characters.
pub fn kafka_name(name: &str) -> String {
    name.chars()
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
pub fn numbered(base: &str, n: usize) -> String {
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

/// Claims the first free id of `base` by locking `<id>.lock` in `dir`.
pub fn claim_in(dir: &Path, base: &str) -> std::io::Result<Option<(String, File)>> {
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

/// A name this process claimed, and how many users hold it now.
struct Held {
    base: String,
    name: String,
    users: usize,
    _lock: File,
}

static HELD: std::sync::Mutex<Vec<Held>> = std::sync::Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<Held>> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A name of `base` for one user in this process: one this process claimed
/// before and nobody [`hold`]s now (a job built again gets its name back),
/// else the next one free on the host, claimed in the temporary directory
/// for as long as the process lives. `None` when none can be claimed.
pub fn name_for(base: &str) -> Option<String> {
    let mut held = held();
    if let Some(h) = held.iter().find(|h| h.base == base && h.users == 0) {
        return Some(h.name.clone());
    }
    // This process's own locks conflict too, so two users get two names.
    let (name, lock) = claim_in(&std::env::temp_dir(), base).ok().flatten()?;
    held.push(Held {
        base: base.to_string(),
        name: name.clone(),
        users: 0,
        _lock: lock,
    });
    Some(name)
}

/// A user starts using `name` (from [`name_for`]): until it [`let_go`]es,
/// `name_for` gives others another name.
pub fn hold(name: &str) {
    if let Some(h) = held().iter_mut().find(|h| h.name == name) {
        h.users += 1;
    }
}

/// A user of `name` is done with it.
pub fn let_go(name: &str) {
    if let Some(h) = held().iter_mut().find(|h| h.name == name) {
        h.users = h.users.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_name_goes_to_no_one_else_and_comes_back_when_let_go() {
        let base = format!("sluice-unit-claim-{}", std::process::id());
        let a = name_for(&base).unwrap();
        hold(&a);
        let b = name_for(&base).unwrap();
        assert_ne!(a, b, "two users at once");
        hold(&b);
        let_go(&a);
        assert_eq!(
            name_for(&base).unwrap(),
            a,
            "built again, the name comes back"
        );
        let_go(&b);
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
}
