//! The checkpoint store: a directory of files, one per checkpoint, each
//! written under a temporary name, synced and renamed into place, and
//! checked by a CRC-32 on reading, so a checkpoint is either whole or not
//! there.
//!
//! A `<batch>.delta` file holds the metadata and the state entries that
//! changed since the previous checkpoint (named in its metadata); every
//! [`COMPACT_EVERY`] deltas a background thread merges the chain into a
//! `<batch>.base` file holding all state, and removes what the base after
//! it no longer needs. Loading takes the newest checkpoint whose chain back
//! to a base (or to the job's first checkpoint) is whole; a file that fails
//! its check is renamed `*.corrupt` and the one before it is used.

use super::Meta;
use super::entries::{self, Instance, InstanceState};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Deltas at least between two merges into a base; a merge also waits until
/// the deltas since the base hold as many bytes as the base, so that merging
/// (which rewrites all state) costs no more than the changes written.
pub const COMPACT_EVERY: u32 = 10;

const MAGIC: &[u8; 8] = b"SLUICE\x01\x00";
const DELTA: &str = "delta";
const BASE: &str = "base";

/// A checkpoint store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the directory failed.
    #[error("checkpoint directory {}: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
}

/// What a checkpoint write took.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// The file's size.
    pub bytes: u64,
    /// Time to encode, write and sync it.
    pub took: Duration,
}

/// A checkpoint read back: its metadata and every instance's state.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The metadata of the checkpoint.
    pub meta: Meta,
    /// Per operator instance, its entries.
    pub state: HashMap<Instance, InstanceState>,
}

/// A directory of checkpoints.
pub struct Store {
    dir: PathBuf,
    /// The batch of the newest checkpoint written or loaded.
    last: Option<u64>,
    deltas_since_base: u32,
    /// Bytes of the base the chain starts from, and of the deltas after it.
    base_bytes: u64,
    delta_bytes: u64,
    compactor: Option<std::thread::JoinHandle<()>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error,
    }
}

fn file_name(batch: u64, kind: &str) -> String {
    format!("{batch:020}.{kind}")
}

/// The checkpoint files of `dir`: `(batch, is_base, path)`, oldest first.
/// With `clean`, removes files left by writes a crash cut short (only
/// while nothing is writing).
fn list(dir: &Path, clean: bool) -> Result<Vec<(u64, bool, PathBuf)>, StoreError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            if clean {
                let _ = std::fs::remove_file(entry.path());
            }
            continue;
        }
        let Some((n, kind)) = name.split_once('.') else {
            continue;
        };
        if let (Ok(batch), true) = (n.parse::<u64>(), kind == DELTA || kind == BASE) {
            files.push((batch, kind == BASE, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Encodes a checkpoint file.
fn encode(meta: &Meta, base: bool, sections: &[(&Instance, &[u8])]) -> Vec<u8> {
    let meta = serde_json::to_vec(meta).expect("metadata serialises");
    let size: usize = sections.iter().map(|(i, b)| i.0.len() + b.len() + 16).sum();
    let mut out = Vec::with_capacity(meta.len() + size + 32);
    out.extend_from_slice(MAGIC);
    out.push(u8::from(base));
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for ((name, partition), bytes) in sections {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&partition.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A decoded checkpoint file: metadata, whether it is a base, its sections
/// and its size in bytes.
type Decoded = (Meta, bool, Vec<(Instance, Vec<u8>)>, u64);

/// Decodes a checkpoint file, checking its CRC; `Err` says what is wrong.
fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    if bytes.len() < MAGIC.len() + 13 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a checkpoint file (or cut short)".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err("checksum mismatch".into());
    }
    let mut rest = &body[MAGIC.len()..];
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("ends too soon".into());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let base = take(1)?[0] == 1;
    let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize;
    let meta_len = u32_at(take(4)?);
    let meta: Meta =
        serde_json::from_slice(take(meta_len)?).map_err(|e| format!("metadata: {e}"))?;
    let count = u32_at(take(4)?);
    let mut sections = Vec::with_capacity(count);
    for _ in 0..count {
        let n = u32_at(take(4)?);
        let name = String::from_utf8(take(n)?.to_vec()).map_err(|_| "operator name")?;
        let partition = u32_at(take(4)?) as u32;
        let len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
        sections.push(((name, partition), take(len)?.to_vec()));
    }
    Ok((meta, base, sections, bytes.len() as u64))
}

/// Writes `bytes` to `path` whole or not at all: a temporary file, synced,
/// renamed, and the directory synced.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Reads the chain ending at the checkpoint of `batch`, newest first.
fn read_chain(
    files: &[(u64, bool, PathBuf)],
    batch: u64,
) -> Result<Vec<Decoded>, (PathBuf, String)> {
    let mut chain = Vec::new();
    let mut want = Some(batch);
    while let Some(b) = want {
        // A base of the batch is as good as the chain before it.
        let candidates: Vec<&(u64, bool, PathBuf)> = files
            .iter()
            .filter(|(n, _, _)| *n == b)
            .rev() // base (true) before delta
            .collect();
        let mut last_err = None;
        let mut found = None;
        for (_, _, path) in candidates {
            match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| decode(&bytes))
            {
                Ok(d) if d.0.batch == b => {
                    found = Some(d);
                    break;
                }
                Ok(_) => last_err = Some((path.clone(), "names another batch".into())),
                Err(e) => last_err = Some((path.clone(), e)),
            }
        }
        let Some(d) = found else {
            return Err(last_err.unwrap_or_else(|| {
                (
                    PathBuf::from(file_name(b, DELTA)),
                    "missing from the chain".into(),
                )
            }));
        };
        want = if d.1 { None } else { d.0.prev };
        chain.push(d);
    }
    Ok(chain)
}

/// Merges a chain (newest first) into the state it describes.
fn merge(chain: Vec<Decoded>) -> Result<Loaded, String> {
    let mut it = chain.into_iter().rev();
    let mut loaded = Loaded::default();
    for (meta, _, sections, _) in &mut it {
        for (instance, bytes) in sections {
            entries::apply(loaded.state.entry(instance).or_default(), &bytes)?;
        }
        loaded.meta = meta;
    }
    loaded.state.retain(|_, s| !s.is_empty());
    Ok(loaded)
}

impl Store {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(Store {
            dir: dir.to_owned(),
            last: None,
            deltas_since_base: 0,
            base_bytes: 0,
            delta_bytes: 0,
            compactor: None,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory holds any checkpoint file (whole or not).
    pub fn has_checkpoints(&self) -> Result<bool, StoreError> {
        Ok(!list(&self.dir, false)?.is_empty())
    }

    /// Removes every checkpoint (`--reset-state`).
    pub fn reset(&mut self) -> Result<(), StoreError> {
        self.wait_compaction();
        for (_, _, path) in list(&self.dir, true)? {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        self.last = None;
        self.deltas_since_base = 0;
        self.base_bytes = 0;
        self.delta_bytes = 0;
        sync_dir(&self.dir)
    }

    /// Loads the newest whole checkpoint that `accept` takes (by its
    /// batch; exactly-once sinks accept only the batch whose output they
    /// committed). Newer checkpoints that are refused are removed; files
    /// that fail their check are renamed `*.corrupt`, each with a warning.
    pub fn load(&mut self, accept: impl Fn(u64) -> bool) -> Result<Option<Loaded>, StoreError> {
        self.wait_compaction();
        let mut files = list(&self.dir, true)?;
        let mut batches: Vec<u64> = files.iter().map(|f| f.0).collect();
        batches.dedup();
        for &batch in batches.iter().rev() {
            if !accept(batch) {
                for (_, _, path) in files.iter().filter(|f| f.0 == batch) {
                    tracing::warn!(
                        "checkpoint {} is newer than the output its sink committed: dropped",
                        path.display()
                    );
                    std::fs::remove_file(path).map_err(io(path))?;
                }
                files.retain(|f| f.0 != batch);
                continue;
            }
            match read_chain(&files, batch).and_then(|chain| {
                let deltas = chain.iter().take_while(|d| !d.1).count() as u32;
                // Newest first: the base is last.
                let bytes: Vec<u64> = chain.iter().map(|d| d.3).collect();
                merge(chain)
                    .map(|l| (l, deltas, bytes))
                    .map_err(|e| (PathBuf::from(file_name(batch, DELTA)), e))
            }) {
                Ok((loaded, deltas, bytes)) => {
                    self.last = Some(batch);
                    self.deltas_since_base = deltas;
                    self.base_bytes = bytes.last().copied().unwrap_or(0);
                    self.delta_bytes = bytes.iter().rev().skip(1).sum();
                    return Ok(Some(loaded));
                }
                Err((path, why)) => {
                    tracing::warn!(
                        "checkpoint {} is damaged ({why}); using the one before it",
                        path.display()
                    );
                    if path.exists() {
                        let aside = path.with_extension(format!(
                            "{}.corrupt",
                            path.extension().and_then(|e| e.to_str()).unwrap_or("")
                        ));
                        std::fs::rename(&path, &aside).map_err(io(&path))?;
                    }
                    files.retain(|f| f.2 != path);
                    // Every checkpoint at or after the damaged one depends on
                    // it only if its chain does; try the batches in order.
                }
            }
        }
        self.last = None;
        Ok(None)
    }

    /// Writes the checkpoint of `meta.batch`: `changes` are each
    /// instance's encoded changes since the previous checkpoint. Sets
    /// `meta.prev`. Every [`COMPACT_EVERY`] checkpoints, a merge into a base
    /// starts in the background.
    pub fn write(
        &mut self,
        meta: &mut Meta,
        changes: &[(Instance, Vec<u8>)],
    ) -> Result<Written, StoreError> {
        let started = Instant::now();
        meta.prev = self.last;
        let sections: Vec<(&Instance, &[u8])> = changes
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(i, b)| (i, b.as_slice()))
            .collect();
        let first = self.last.is_none();
        let bytes = encode(meta, first, &sections);
        write_atomic(
            &self.dir,
            &file_name(meta.batch, if first { BASE } else { DELTA }),
            &bytes,
        )?;
        self.last = Some(meta.batch);
        if first {
            self.deltas_since_base = 0;
            self.base_bytes = bytes.len() as u64;
            self.delta_bytes = 0;
        } else {
            self.deltas_since_base += 1;
            self.delta_bytes += bytes.len() as u64;
        }
        if self.deltas_since_base >= COMPACT_EVERY
            && self.delta_bytes >= self.base_bytes
            && self.compactor.as_ref().is_none_or(|c| c.is_finished())
        {
            self.deltas_since_base = 0;
            // The merged base is at most this large.
            self.base_bytes += self.delta_bytes;
            self.delta_bytes = 0;
            let dir = self.dir.clone();
            let batch = meta.batch;
            self.compactor = std::thread::Builder::new()
                .name("sluice-compact".into())
                .spawn(move || {
                    if let Err(e) = compact(&dir, batch) {
                        tracing::warn!("checkpoint compaction in {}: {e}", dir.display());
                    }
                })
                .ok();
        }
        Ok(Written {
            bytes: bytes.len() as u64,
            took: started.elapsed(),
        })
    }

    /// Waits for a merge in the background to end.
    pub fn wait_compaction(&mut self) {
        if let Some(c) = self.compactor.take() {
            let _ = c.join();
        }
    }
}

/// Merges the chain ending at `batch` into `<batch>.base`, then removes the
/// files older than the base before it (one older chain stays, in case).
pub fn compact(dir: &Path, batch: u64) -> Result<(), String> {
    let files = list(dir, false).map_err(|e| e.to_string())?;
    let chain = read_chain(&files, batch).map_err(|(p, e)| format!("{}: {e}", p.display()))?;
    let loaded = merge(chain)?;
    let encoded: Vec<(Instance, Vec<u8>)> = loaded
        .state
        .iter()
        .map(|(i, s)| (i.clone(), entries::encode(s)))
        .collect();
    let sections: Vec<(&Instance, &[u8])> =
        encoded.iter().map(|(i, b)| (i, b.as_slice())).collect();
    write_atomic(
        dir,
        &file_name(batch, BASE),
        &encode(&loaded.meta, true, &sections),
    )
    .map_err(|e| e.to_string())?;
    let previous_base = files
        .iter()
        .filter(|(n, base, _)| *base && *n < batch)
        .map(|f| f.0)
        .max();
    if let Some(keep_from) = previous_base {
        for (n, _, path) in &files {
            if *n < keep_from {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
