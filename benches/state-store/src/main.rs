//! Sluice's checkpoint store (`sluice::state::Store`: one synced delta file
//! per checkpoint, merged into a base every 10) measured against two
//! embedded stores, fjall (LSM) and redb (copy-on-write B-tree), on the
//! same operator state and the same changes.
//!
//! The state: one operator instance holding `--keys` entries (default
//! 1,000,000), keys `key-00000001` (12 bytes), values 16 bytes (a count and
//! a sum, as a running accumulator holds). Then `--checkpoints` batches
//! (default 30), each changing `--changed` distinct keys (default 10,000 =
//! 1%), picked at random with a fixed seed: `--deletes` of them (default
//! 1,000 = 0.1% of the state) deleted, as many new keys inserted (so the
//! state stays at its size) and the rest updated. Each batch's changes are
//! generated up front, sorted by key (what the B-tree and the LSM like
//! best; Sluice's store does not care) and handed to every store in the same
//! order. A checkpoint counts only once durable, and the next one begins
//! only after it:
//!
//! - Sluice: the changes encoded by `DeltaWriter`, then `Store::write`
//!   (temporary file, fsync, rename, directory fsync);
//! - fjall: one write batch committed with `PersistMode::SyncAll` (journal
//!   fsync);
//! - redb: one write transaction committed with the default durability
//!   (`Durability::Immediate`).
//!
//! Background work (Sluice's compaction, fjall's flushes and compactions)
//! runs as it would, concurrently with the next checkpoints; its writes are
//! counted in the amortised bytes. Recovery reopens the store and loads the
//! whole state into a `HashMap` (Sluice: `Store::load`; fjall and redb: a
//! full scan), first with the store's files dropped from the page cache
//! (`posix_fadvise(DONTNEED)` after `fsync`), then warm; the result is
//! compared with the expected state.

use sluice::operators::StateWriter;
use sluice::state::{DeltaWriter, Instance, InstanceState, Meta, Store};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error>>;

/// One change: a key and its new value (`None`: deleted).
type Change = (Vec<u8>, Option<Vec<u8>>);

const LOCK: &str = include_str!("../Cargo.lock");

#[derive(Debug, Clone)]
struct Config {
    keys: u64,
    checkpoints: usize,
    changed: usize,
    deletes: usize,
    seed: u64,
    dir: PathBuf,
    stores: Vec<String>,
    gap: Duration,
    keep: bool,
}

fn parse_args() -> Res<Config> {
    let mut c = Config {
        keys: 1_000_000,
        checkpoints: 30,
        changed: 10_000,
        deletes: 1_000,
        seed: 0x5EED_0001,
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/state-store/work"),
        stores: vec!["sluice".into(), "fjall".into(), "redb".into()],
        gap: Duration::from_millis(1000),
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--keys" => c.keys = v()?.parse()?,
            "--checkpoints" => c.checkpoints = v()?.parse()?,
            "--changed" => c.changed = v()?.parse()?,
            "--deletes" => c.deletes = v()?.parse()?,
            "--seed" => c.seed = v()?.parse()?,
            "--dir" => c.dir = PathBuf::from(v()?),
            "--stores" => c.stores = v()?.split(',').map(str::to_owned).collect(),
            "--gap-ms" => c.gap = Duration::from_millis(v()?.parse()?),
            "--keep" => c.keep = true,
            "-h" | "--help" => {
                println!(
                    "state-store-bench [--keys N] [--checkpoints N] [--changed N] [--deletes N] \
                     [--seed N] [--dir DIR] [--stores sluice,fjall,redb] [--gap-ms N] [--keep]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if c.changed < 2 * c.deletes {
        return Err("--changed must be at least twice --deletes".into());
    }
    Ok(c)
}

// ---------------------------------------------------------------- workload

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

fn value(count: u64, sum: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&count.to_le_bytes());
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

fn read_value(v: &[u8]) -> (u64, u64) {
    (
        u64::from_le_bytes(v[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(v[8..16].try_into().expect("8 bytes")),
    )
}

/// The initial state as changes, the batches' changes, and the state after
/// all of them.
struct Workload {
    initial: Vec<Change>,
    batches: Vec<Vec<Change>>,
    expected: InstanceState,
}

fn workload(c: &Config) -> Workload {
    let mut rng = Rng(c.seed);
    let mut state = InstanceState::default();
    let mut initial = Vec::with_capacity(c.keys as usize);
    for i in 0..c.keys {
        let (k, v) = (key(i), value(1, rng.below(1000)));
        state.insert(k.clone(), v.clone());
        initial.push((k, Some(v)));
    }
    let mut live: Vec<u64> = (0..c.keys).collect();
    let mut next_key = c.keys;
    let mut batches = Vec::with_capacity(c.checkpoints);
    for _ in 0..c.checkpoints {
        // Distinct existing keys: a partial Fisher-Yates shuffle of `live`.
        let touched = c.changed - c.deletes; // deleted + updated
        for i in 0..touched {
            let j = i + rng.below((live.len() - i) as u64) as usize;
            live.swap(i, j);
        }
        let mut changes = Vec::with_capacity(c.changed);
        for &i in &live[..c.deletes] {
            let k = key(i);
            state.remove(&k);
            changes.push((k, None));
        }
        for &i in &live[c.deletes..touched] {
            let k = key(i);
            let (count, sum) = read_value(&state[&k]);
            let v = value(count + 1, sum + rng.below(1000));
            state.insert(k.clone(), v.clone());
            changes.push((k, Some(v)));
        }
        live.drain(..c.deletes);
        for _ in 0..c.deletes {
            let (k, v) = (key(next_key), value(1, rng.below(1000)));
            live.push(next_key);
            next_key += 1;
            state.insert(k.clone(), v.clone());
            changes.push((k, Some(v)));
        }
        changes.sort();
        batches.push(changes);
    }
    Workload {
        initial,
        batches,
        expected: state,
    }
}

// ------------------------------------------------------------------ stores

/// A store under test, open in its directory.
trait Candidate {
    /// Makes `changes` durable as the checkpoint of `batch`; returns the
    /// size of what the store reports it wrote (Sluice: the file), if it does.
    fn checkpoint(&mut self, batch: u64, changes: &[Change]) -> Res<Option<u64>>;
    /// Waits for background work the checkpoints started.
    fn settle(&mut self) -> Res<()>;
}

const INSTANCE: &str = "count";

/// A recovered state and the open store it came from (closed after the
/// timing).
/// Also the time opening it took, before the state was read.
type Recovered = (InstanceState, Box<dyn std::any::Any>, Duration);

struct Sluice {
    store: Store,
}

impl Sluice {
    fn open(dir: &Path) -> Res<Self> {
        Ok(Sluice {
            store: Store::open(dir)?,
        })
    }
    fn recover(dir: &Path) -> Res<Recovered> {
        let started = Instant::now();
        let mut store = Store::open(dir)?;
        let opened = started.elapsed();
        let loaded = store.load(|_| true)?.ok_or("no checkpoint")?;
        let instance: Instance = (INSTANCE.into(), 0);
        let state = loaded
            .state
            .into_iter()
            .find(|(i, _)| *i == instance)
            .map(|(_, s)| s)
            .unwrap_or_default();
        Ok((state, Box::new(store), opened))
    }
}

impl Candidate for Sluice {
    fn checkpoint(&mut self, batch: u64, changes: &[Change]) -> Res<Option<u64>> {
        let mut w = DeltaWriter::default();
        for (k, v) in changes {
            match v {
                Some(v) => w.put(k, v),
                None => w.delete(k),
            }
        }
        let mut meta = Meta {
            job: "state-store-bench".into(),
            batch,
            ..Meta::default()
        };
        let written = self
            .store
            .write(&mut meta, &[((INSTANCE.into(), 0), w.bytes)])?;
        Ok(Some(written.bytes))
    }
    fn settle(&mut self) -> Res<()> {
        self.store.wait_compaction();
        Ok(())
    }
}

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path) -> Res<Self> {
        let db = fjall::Database::builder(dir).open()?;
        let ks = db.keyspace("state", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, ks })
    }
    fn recover(dir: &Path) -> Res<Recovered> {
        let started = Instant::now();
        let f = Fjall::open(dir)?;
        let opened = started.elapsed();
        let mut state = InstanceState::default();
        for guard in f.ks.iter() {
            let (k, v) = guard.into_inner()?;
            state.insert(k.to_vec(), v.to_vec());
        }
        Ok((state, Box::new(f), opened))
    }
}

impl Candidate for Fjall {
    fn checkpoint(&mut self, _batch: u64, changes: &[Change]) -> Res<Option<u64>> {
        let mut b = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        for (k, v) in changes {
            match v {
                Some(v) => b.insert(&self.ks, k.as_slice(), v.as_slice()),
                None => b.remove(&self.ks, k.as_slice()),
            }
        }
        b.commit()?;
        Ok(None)
    }
    fn settle(&mut self) -> Res<()> {
        // Idle for 5 polls in a row: no flush queued, no compaction running.
        let mut idle = 0;
        while idle < 5 {
            std::thread::sleep(Duration::from_millis(50));
            if self.db.outstanding_flushes() == 0 && self.db.active_compactions() == 0 {
                idle += 1;
            } else {
                idle = 0;
            }
        }
        Ok(())
    }
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("state");
const REDB_FILE: &str = "state.redb";

struct Redb {
    db: redb::Database,
}

impl Redb {
    fn open(dir: &Path) -> Res<Self> {
        Ok(Redb {
            db: redb::Database::create(dir.join(REDB_FILE))?,
        })
    }
    fn recover(dir: &Path) -> Res<Recovered> {
        use redb::{ReadableDatabase, ReadableTable};
        let started = Instant::now();
        let db = redb::Database::open(dir.join(REDB_FILE))?;
        let opened = started.elapsed();
        let mut state = InstanceState::default();
        {
            let tx = db.begin_read()?;
            let table = tx.open_table(TABLE)?;
            for entry in table.iter()? {
                let (k, v) = entry?;
                state.insert(k.value().to_vec(), v.value().to_vec());
            }
        }
        Ok((state, Box::new(Redb { db }), opened))
    }
}

impl Candidate for Redb {
    fn checkpoint(&mut self, _batch: u64, changes: &[Change]) -> Res<Option<u64>> {
        let tx = self.db.begin_write()?; // default durability: Immediate
        {
            let mut table = tx.open_table(TABLE)?;
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        table.insert(k.as_slice(), v.as_slice())?;
                    }
                    None => {
                        table.remove(k.as_slice())?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(None)
    }
    fn settle(&mut self) -> Res<()> {
        Ok(())
    }
}

fn open(name: &str, dir: &Path) -> Res<Box<dyn Candidate>> {
    Ok(match name {
        "sluice" => Box::new(Sluice::open(dir)?),
        "fjall" => Box::new(Fjall::open(dir)?),
        "redb" => Box::new(Redb::open(dir)?),
        other => return Err(format!("unknown store {other}").into()),
    })
}

fn recover(name: &str, dir: &Path) -> Res<Recovered> {
    match name {
        "sluice" => Sluice::recover(dir),
        "fjall" => Fjall::recover(dir),
        "redb" => Redb::recover(dir),
        other => Err(format!("unknown store {other}").into()),
    }
}

fn label(name: &str) -> &'static str {
    match name {
        "sluice" => "Sluice Store",
        "fjall" => "fjall",
        "redb" => "redb",
        _ => "?",
    }
}

// ------------------------------------------------------------ measurement

/// Bytes of the files under `dir`: (apparent size, allocated blocks).
fn disk(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for e in entries.flatten() {
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            let (a, b) = disk(&e.path());
            total.0 += a;
            total.1 += b;
        } else {
            total.0 += m.len();
            total.1 += m.blocks() * 512;
        }
    }
    total
}

/// `wchar` of `/proc/<which>/io`: bytes handed to write(2) and friends.
fn wchar(which: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{which}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("wchar: ").map(|n| n.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

/// Syncs every file under `dir` and drops it from the page cache.
fn evict(dir: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            evict(&p);
        } else if let Ok(f) = std::fs::File::open(&p) {
            let _ = f.sync_all();
            // SAFETY: a valid open descriptor; advice only.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
}

struct Result1 {
    name: String,
    init_time: Duration,
    init_disk: (u64, u64),
    times: Vec<Duration>,
    /// What the store says it wrote, per checkpoint (Sluice: the delta file).
    reported: Vec<u64>,
    /// Growth of the directory's allocated size, per checkpoint.
    growth: Vec<i64>,
    /// Bytes the checkpointing thread wrote, per checkpoint.
    sync_written: Vec<u64>,
    /// Bytes the process wrote from the first incremental checkpoint until
    /// background work settled.
    total_written: u64,
    disk_after: (u64, u64),
    disk_settled: (u64, u64),
    settle_time: Duration,
    files_settled: usize,
    recover_cold: Duration,
    /// Of which opening the store (fjall: replaying its journal).
    open_cold: Duration,
    recover_warm: Duration,
    recovered_keys: usize,
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|es| {
            es.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn run(name: &str, w: &Workload, c: &Config) -> Res<Result1> {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(&c.dir)?;
    let dir = tmp.path().join("store");
    std::fs::create_dir_all(&dir)?;
    let mut store = open(name, &dir)?;

    let started = Instant::now();
    store.checkpoint(1, &w.initial)?;
    let init_time = started.elapsed();
    let init_disk = disk(&dir);

    let mut r = Result1 {
        name: name.into(),
        init_time,
        init_disk,
        times: vec![],
        reported: vec![],
        growth: vec![],
        sync_written: vec![],
        total_written: 0,
        disk_after: (0, 0),
        disk_settled: (0, 0),
        settle_time: Duration::ZERO,
        files_settled: 0,
        recover_cold: Duration::ZERO,
        open_cold: Duration::ZERO,
        recover_warm: Duration::ZERO,
        recovered_keys: 0,
    };
    let process_before = wchar("self");
    let mut before = disk(&dir).1;
    for (n, changes) in w.batches.iter().enumerate() {
        let thread_before = wchar("thread-self");
        let started = Instant::now();
        let reported = store.checkpoint(n as u64 + 2, changes)?;
        r.times.push(started.elapsed());
        r.sync_written.push(wchar("thread-self") - thread_before);
        if let Some(b) = reported {
            r.reported.push(b);
        }
        let now = disk(&dir).1;
        r.growth.push(now as i64 - before as i64);
        // The job's work between two checkpoints; background work goes on.
        std::thread::sleep(c.gap);
        before = disk(&dir).1;
    }
    r.disk_after = disk(&dir);
    let started = Instant::now();
    store.settle()?;
    r.settle_time = started.elapsed();
    r.total_written = wchar("self") - process_before;
    r.disk_settled = disk(&dir);
    r.files_settled = count_files(&dir);
    drop(store);

    evict(&dir);
    let started = Instant::now();
    let (state, handle, opened) = recover(name, &dir)?;
    r.recover_cold = started.elapsed();
    r.open_cold = opened;
    drop(handle);
    r.recovered_keys = state.len();
    if state != w.expected {
        return Err(format!("{name}: the recovered state differs from the expected one").into());
    }
    drop(state);
    let started = Instant::now();
    let (state, handle, _) = recover(name, &dir)?;
    r.recover_warm = started.elapsed();
    drop(handle);
    if state != w.expected {
        return Err(format!("{name}: the recovered state (warm) differs").into());
    }
    if c.keep {
        println!("{}: kept {}", label(name), tmp.keep().display());
    }
    Ok(r)
}

// ----------------------------------------------------------------- report

fn lock_version(name: &str) -> String {
    let needle = format!("name = \"{name}\"\nversion = \"");
    LOCK.find(&needle)
        .and_then(|i| LOCK[i + needle.len()..].split('"').next())
        .unwrap_or("?")
        .to_owned()
}

fn mount_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        if path.starts_with(f[1]) && best.as_ref().is_none_or(|(n, _)| f[1].len() >= *n) {
            best = Some((
                f[1].len(),
                format!("{} on {} type {} ({})", f[0], f[1], f[2], f[3]),
            ));
        }
    }
    best.map(|b| b.1).unwrap_or_else(|| "?".into())
}

fn machine(c: &Config) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("?");
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("## machine");
    println!(
        "command:     {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!(
        "cpu:         {cpu} ({} cores available)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "memory:      {}",
        mem.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
    println!("kernel:      Linux {}", kernel.trim());
    println!("work dir:    {}", c.dir.display());
    println!("filesystem:  {}", mount_of(&c.dir));
    println!("/tmp:        {}", mount_of(Path::new("/tmp")));
    println!(
        "stores:      sluice-host (path, this tree), fjall {} (defaults), redb {} (defaults)",
        lock_version("fjall"),
        lock_version("redb")
    );
    println!(
        "workload:    {} keys (12-byte keys, 16-byte values), 1 operator instance; {} checkpoints \
         of {} changed keys each ({} deletes, {} new keys, {} updates), seed {:#x}; {} ms between \
         checkpoints",
        c.keys,
        c.checkpoints,
        c.changed,
        c.deletes,
        c.deletes,
        c.changed - 2 * c.deletes,
        c.seed,
        c.gap.as_millis()
    );
    println!();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn fmt_bytes(v: f64) -> String {
    let a = v.abs();
    if a >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", v / (1024.0 * 1024.0 * 1024.0))
    } else if a >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", v / (1024.0 * 1024.0))
    } else if a >= 1024.0 {
        format!("{:.0} KiB", v / 1024.0)
    } else {
        format!("{v:.0} B")
    }
}

/// Nearest-rank percentile of `v` (sorted here).
fn pct<T: Copy + PartialOrd>(v: &[T], p: f64) -> T {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank - 1]
}

enum Unit {
    Ms,
    Bytes,
}

fn report(c: &Config, results: &[Result1]) {
    let n = c.checkpoints as f64;
    type Row = (&'static str, Unit, Box<dyn Fn(&Result1) -> Option<f64>>);
    let rows: Vec<Row> = vec![
        (
            "initial checkpoint (all keys): time",
            Unit::Ms,
            Box::new(|r| Some(ms(r.init_time))),
        ),
        (
            "  disk after it (du)",
            Unit::Bytes,
            Box::new(|r| Some(r.init_disk.1 as f64)),
        ),
        (
            "incremental checkpoint: median",
            Unit::Ms,
            Box::new(|r| Some(ms(pct(&r.times, 50.0)))),
        ),
        (
            "  p99",
            Unit::Ms,
            Box::new(|r| Some(ms(pct(&r.times, 99.0)))),
        ),
        (
            "  mean",
            Unit::Ms,
            Box::new(|r| Some(r.times.iter().map(|d| ms(*d)).sum::<f64>() / r.times.len() as f64)),
        ),
        (
            "  disk growth (du, median)",
            Unit::Bytes,
            Box::new(|r| Some(pct(&r.growth, 50.0) as f64)),
        ),
        (
            "  store-reported file size (median)",
            Unit::Bytes,
            Box::new(|r| (!r.reported.is_empty()).then(|| pct(&r.reported, 50.0) as f64)),
        ),
        (
            "  written by the checkpoint (median)",
            Unit::Bytes,
            Box::new(|r| Some(pct(&r.sync_written, 50.0) as f64)),
        ),
        (
            "  written incl. background, amortised",
            Unit::Bytes,
            Box::new(move |r| Some(r.total_written as f64 / n)),
        ),
        (
            "disk after all checkpoints (du)",
            Unit::Bytes,
            Box::new(|r| Some(r.disk_after.1 as f64)),
        ),
        (
            "  after background work settled (du)",
            Unit::Bytes,
            Box::new(|r| Some(r.disk_settled.1 as f64)),
        ),
        (
            "  same, apparent size (ls)",
            Unit::Bytes,
            Box::new(|r| Some(r.disk_settled.0 as f64)),
        ),
        (
            "recovery, load all (cold cache)",
            Unit::Ms,
            Box::new(|r| Some(ms(r.recover_cold))),
        ),
        (
            "recovery, load all (warm cache)",
            Unit::Ms,
            Box::new(|r| Some(ms(r.recover_warm))),
        ),
    ];
    let base = results.iter().find(|r| r.name == "sluice");
    let others: Vec<&Result1> = results.iter().filter(|r| r.name != "sluice").collect();
    let mut header = format!("| {:<40} |", "");
    let mut rule = format!("|{}|", "-".repeat(42));
    for r in results {
        header += &format!(" {:>12} |", label(&r.name));
        rule += &format!("{}:|", "-".repeat(13));
    }
    if base.is_some() {
        for r in &others {
            header += &format!(" {:>14} |", format!("{} / Sluice", r.name));
            rule += &format!("{}:|", "-".repeat(15));
        }
    }
    println!("## results");
    println!("{header}");
    println!("{rule}");
    for (title, unit, f) in &rows {
        let mut line = format!("| {title:<40} |");
        for r in results {
            let cell = match (f(r), unit) {
                (Some(v), Unit::Ms) => fmt_ms(v),
                (Some(v), Unit::Bytes) => fmt_bytes(v),
                (None, _) => "–".into(),
            };
            line += &format!(" {cell:>12} |");
        }
        if let Some(b) = base {
            for r in &others {
                let cell = match (f(r), f(b)) {
                    (Some(v), Some(s)) if s != 0.0 => format!("×{:.2}", v / s),
                    _ => "–".into(),
                };
                line += &format!(" {cell:>14} |");
            }
        }
        println!("{line}");
    }
    println!();
    println!("## details");
    for r in results {
        let times: Vec<String> = r.times.iter().map(|d| format!("{:.1}", ms(*d))).collect();
        println!(
            "{}: recovered {} keys (cold: {} opening, the rest reading); {} files after settling \
             (took {}); per checkpoint (ms): {}",
            label(&r.name),
            r.recovered_keys,
            fmt_ms(ms(r.open_cold)),
            r.files_settled,
            fmt_ms(ms(r.settle_time)),
            times.join(" ")
        );
    }
}

fn main() -> Res<()> {
    let c = parse_args()?;
    std::fs::create_dir_all(&c.dir)?;
    machine(&c);
    let started = Instant::now();
    let w = workload(&c);
    println!(
        "workload generated in {} ({} expected keys at the end)",
        fmt_ms(ms(started.elapsed())),
        w.expected.len()
    );
    let mut results = Vec::new();
    for name in &c.stores {
        let started = Instant::now();
        let r = run(name, &w, &c)?;
        println!(
            "{}: done in {:.1} s",
            label(name),
            started.elapsed().as_secs_f64()
        );
        results.push(r);
    }
    println!();
    report(&c, &results);
    Ok(())
}
