use super::*;
use crate::operators::StateWriter;
use crate::state::DeltaWriter;

fn meta(batch: u64) -> Meta {
    Meta {
        job: "j".into(),
        batch,
        ..Meta::default()
    }
}

/// Writes `n` checkpoints of changes to two instances; returns the state
/// after each, as a plain map (the reference).
fn write_many(store: &mut Store, n: u64) -> Vec<HashMap<Instance, InstanceState>> {
    let mut reference: HashMap<Instance, InstanceState> = HashMap::new();
    let mut after = Vec::new();
    for batch in 0..n {
        let mut changes = Vec::new();
        for p in 0..2u32 {
            let inst = ("agg".to_string(), p);
            let mut w = DeltaWriter::default();
            let state = reference.entry(inst.clone()).or_default();
            for k in 0..20u64 {
                let key = format!("k{}", (k * 7 + batch * 3 + u64::from(p)) % 50).into_bytes();
                if (k + batch) % 5 == 0 {
                    w.delete(&key);
                    state.remove(&key);
                } else {
                    let v = format!("{batch}-{k}").into_bytes();
                    w.put(&key, &v);
                    state.insert(key, v);
                }
            }
            changes.push((inst, w.bytes));
        }
        store.write(&mut meta(batch), &changes).unwrap();
        let mut snapshot = reference.clone();
        snapshot.retain(|_, s| !s.is_empty());
        after.push(snapshot);
    }
    store.wait_compaction();
    after
}

#[test]
fn the_newest_checkpoint_loads_as_the_changes_written_and_merges_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let after = write_many(&mut store, 25);
    // Merges ran: bases beside the first, and the oldest files are gone.
    let files = list(dir.path(), false).unwrap();
    let bases: Vec<u64> = files.iter().filter(|f| f.1).map(|f| f.0).collect();
    assert!(bases.len() >= 2, "{files:?}");
    assert!(
        files.first().unwrap().0 > 0,
        "old chains removed: {files:?}"
    );
    let loaded = Store::open(dir.path())
        .unwrap()
        .load(|_| true)
        .unwrap()
        .unwrap();
    assert_eq!(loaded.meta.batch, 24);
    assert_eq!(loaded.state, after[24]);
    // Only batches up to 17 accepted (a sink committed batch 17): the
    // newer ones are dropped and 17 is rebuilt exactly.
    let mut store = Store::open(dir.path()).unwrap();
    let loaded = store.load(|b| b <= 17).unwrap().unwrap();
    assert_eq!(loaded.meta.batch, 17);
    assert_eq!(loaded.state, after[17]);
    assert!(list(dir.path(), false).unwrap().iter().all(|f| f.0 <= 17));
    // Writing goes on after it as a delta of 17.
    let mut m = meta(18);
    store.write(&mut m, &[]).unwrap();
    assert_eq!(m.prev, Some(17));
}

#[test]
fn a_damaged_newest_checkpoint_gives_way_to_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let after = write_many(&mut store, 5);
    let newest = dir.path().join(file_name(4, DELTA));
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&newest, &bytes).unwrap();
    // A half-written one (cut short) is no better.
    let loaded = Store::open(dir.path())
        .unwrap()
        .load(|_| true)
        .unwrap()
        .unwrap();
    assert_eq!(loaded.meta.batch, 3);
    assert_eq!(loaded.state, after[3]);
    assert!(
        dir.path()
            .join(format!("{}.corrupt", file_name(4, DELTA)))
            .exists()
    );
    let third = dir.path().join(file_name(3, DELTA));
    let bytes = std::fs::read(&third).unwrap();
    std::fs::write(&third, &bytes[..bytes.len() - 10]).unwrap();
    let loaded = Store::open(dir.path())
        .unwrap()
        .load(|_| true)
        .unwrap()
        .unwrap();
    assert_eq!(loaded.meta.batch, 2);
    assert_eq!(loaded.state, after[2]);
    // Nothing left: no checkpoint, no error.
    let mut store = Store::open(dir.path()).unwrap();
    store.reset().unwrap();
    assert!(store.load(|_| true).unwrap().is_none());
}
