//! A sink that keeps records in memory, for tests and embedding.

use super::Sink;
use crate::model::batch::Batch;
use std::sync::{Arc, Mutex};

/// An owned record: (key, value, timestamp).
pub type OwnedRecord = (Option<Vec<u8>>, Vec<u8>, i64);

/// Keeps every output record in memory, for tests and embedding.
#[derive(Clone, Default)]
pub struct CollectSink {
    records: Arc<Mutex<Vec<OwnedRecord>>>,
    batches: Arc<Mutex<u64>>,
}

impl CollectSink {
    /// An empty collector; clones share the same storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// The records collected so far, as (key, value, timestamp).
    pub fn records(&self) -> Vec<OwnedRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The values collected so far, as text.
    pub fn values(&self) -> Vec<String> {
        self.records()
            .into_iter()
            .map(|(_, v, _)| String::from_utf8_lossy(&v).into_owned())
            .collect()
    }

    /// Number of non-empty batches written.
    pub fn batches(&self) -> u64 {
        *self.batches.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sink for CollectSink {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn write(&mut self, _batch_no: u64, parts: &[Batch]) -> std::io::Result<()> {
        let mut recs = self.records.lock().unwrap_or_else(|p| p.into_inner());
        for r in parts.iter().flat_map(|p| p.iter()) {
            recs.push((r.key.map(<[u8]>::to_vec), r.value.to_vec(), r.timestamp));
        }
        *self.batches.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Ok(())
    }
}
