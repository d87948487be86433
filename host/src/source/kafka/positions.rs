//! Where the records of a chunk came from, and the offsets to commit once
//! the job has written them.

use super::SourceConsumer;
use super::ownership::{Lease, Ownership, Partition};
use crate::model::batch::{self, Batch};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where each record of a chunk came from, and the consumer that read it.
pub struct Positions {
    // The lease drops before the consumer, whose close waits for leased
    // records.
    lease: Lease,
    consumer: Arc<SourceConsumer>,
    /// The partitions the records come from, with the epoch of the
    /// assignment they were read under.
    partitions: Vec<(Partition, u64)>,
    /// Per record: index into `partitions`, and offset.
    records: Vec<(u32, i64)>,
}

impl Positions {
    pub(super) fn new(consumer: &Arc<SourceConsumer>, ownership: &Arc<Ownership>) -> Self {
        Positions {
            consumer: consumer.clone(),
            lease: ownership.lease(),
            partitions: Vec::new(),
            records: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, topic: &str, partition: i32, offset: i64) {
        let i = match self
            .partitions
            .iter()
            .position(|((t, p), _)| *p == partition && t == topic)
        {
            Some(i) => i,
            None => {
                let key = (topic.to_string(), partition);
                // A partition not owned (yet) gets no epoch that could
                // commit.
                let epoch = self.lease.ownership().epoch(&key).unwrap_or(0);
                self.partitions.push((key, epoch));
                self.partitions.len() - 1
            }
        };
        self.records.push((i as u32, offset));
    }

    /// Per partition, the offset after its last record here.
    pub(crate) fn next_offsets(&self) -> Vec<(Partition, i64)> {
        let mut next = vec![i64::MIN; self.partitions.len()];
        for &(i, offset) in &self.records {
            next[i as usize] = next[i as usize].max(offset.saturating_add(1));
        }
        self.partitions
            .iter()
            .zip(next)
            .filter(|(_, n)| *n != i64::MIN)
            .map(|((p, _), n)| (p.clone(), n))
            .collect()
    }

    /// `records` (read at these positions) without those of partitions
    /// this member no longer owns under the same assignment; the positions
    /// forget them too.
    pub(super) fn keep_owned(&mut self, records: &Batch) -> Batch {
        let ownership = self.lease.ownership().clone();
        let stale: Vec<bool> = self
            .partitions
            .iter()
            .map(|(p, epoch)| !ownership.owns(p, *epoch))
            .collect();
        if !stale.contains(&true) {
            return records.clone();
        }
        let drop: Vec<u32> = (0..self.records.len() as u32)
            .filter(|&r| stale[self.records[r as usize].0 as usize])
            .collect();
        self.records.retain(|(i, _)| !stale[*i as usize]);
        // Renumber the partitions that stay.
        let mut renumber = vec![0u32; stale.len()];
        let mut kept = 0;
        for (i, s) in stale.iter().enumerate() {
            renumber[i] = kept;
            kept += u32::from(!s);
        }
        for r in &mut self.records {
            r.0 = renumber[r.0 as usize];
        }
        let mut i = 0;
        self.partitions.retain(|_| {
            i += 1;
            !stale[i - 1]
        });
        batch::without(records, &drop)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Splits off the positions of the first `n` records (a chunk cut
    /// between two micro-batches).
    pub fn split_first(&mut self, n: usize) -> Positions {
        let rest = self.records.split_off(n.min(self.records.len()));
        Positions {
            consumer: self.consumer.clone(),
            lease: self.lease.clone(),
            partitions: self.partitions.clone(),
            records: std::mem::replace(&mut self.records, rest),
        }
    }
}

/// The offsets to commit after a micro-batch: per consumer (one per Kafka
/// source, each of its own group) and (topic, partition), the offset after
/// the batch's last record from it.
pub struct Offsets {
    by_consumer: Vec<ConsumerOffsets>,
}

/// One consumer's offsets of a micro-batch.
struct ConsumerOffsets {
    // The lease drops before the consumer (see `Positions`).
    lease: Lease,
    consumer: Arc<SourceConsumer>,
    /// Per partition: the epoch of the assignment the records were read
    /// under, and the offset after them.
    next: BTreeMap<Partition, (u64, i64)>,
}

impl ConsumerOffsets {
    /// The partitions still owned under the same assignment, and those
    /// that are not.
    fn owned(&self) -> (Vec<(&Partition, i64)>, Vec<&Partition>) {
        let ownership = self.lease.ownership();
        let (mut owned, mut revoked) = (Vec::new(), Vec::new());
        for (p, &(epoch, offset)) in &self.next {
            if ownership.owns(p, epoch) {
                owned.push((p, offset));
            } else {
                revoked.push(p);
            }
        }
        (owned, revoked)
    }
}

fn partition_list<'a>(
    offsets: impl IntoIterator<Item = (&'a Partition, i64)>,
) -> Result<TopicPartitionList, String> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(offset))
            .map_err(|e| format!("cannot list {topic}/{partition}: {e}"))?;
    }
    Ok(tpl)
}

impl Offsets {
    /// The offsets after all of `positions`, if any, kept apart by the
    /// consumer that read them.
    pub fn after<'a>(positions: impl IntoIterator<Item = &'a Positions>) -> Option<Offsets> {
        let mut by_consumer: Vec<ConsumerOffsets> = Vec::new();
        for p in positions {
            let i = match by_consumer
                .iter()
                .position(|c| Arc::ptr_eq(&c.consumer, &p.consumer))
            {
                Some(i) => i,
                None => {
                    by_consumer.push(ConsumerOffsets {
                        consumer: p.consumer.clone(),
                        lease: p.lease.clone(),
                        next: BTreeMap::new(),
                    });
                    by_consumer.len() - 1
                }
            };
            let next = &mut by_consumer[i].next;
            for &(i, offset) in &p.records {
                let (partition, epoch) = &p.partitions[i as usize];
                let e = next.entry(partition.clone()).or_insert((*epoch, 0));
                // A later assignment's records supersede an earlier one's.
                *e = (*e).max((*epoch, offset.saturating_add(1)));
            }
        }
        by_consumer.retain(|c| !c.next.is_empty());
        (!by_consumer.is_empty()).then_some(Offsets { by_consumer })
    }

    /// Adds the offsets of a later batch: per consumer and partition the
    /// later position wins (a later assignment's over an earlier one's).
    pub fn merge(&mut self, later: Offsets) {
        for c in later.by_consumer {
            match self
                .by_consumer
                .iter_mut()
                .find(|o| Arc::ptr_eq(&o.consumer, &c.consumer))
            {
                Some(o) => {
                    for (p, next) in c.next {
                        let e = o.next.entry(p).or_insert(next);
                        *e = (*e).max(next);
                    }
                    o.lease = c.lease;
                }
                None => self.by_consumer.push(c),
            }
        }
    }

    /// The one consumer a transaction commits for (exactly-once takes a job
    /// with a single Kafka source).
    fn single(&self) -> Result<&ConsumerOffsets, String> {
        match self.by_consumer.as_slice() {
            [one] => Ok(one),
            several => Err(format!(
                "the batch holds records of {} Kafka sources; a transaction commits the offsets of one",
                several.len()
            )),
        }
    }

    /// For a transaction: the offsets of the job's single Kafka source and
    /// its group's metadata. A partition revoked while its records were on
    /// their way is an error, so that the transaction is aborted: its
    /// records' output must not be written twice.
    pub fn for_transaction(
        &self,
    ) -> Result<(TopicPartitionList, rdkafka::consumer::ConsumerGroupMetadata), String> {
        let one = self.single()?;
        let (owned, revoked) = one.owned();
        if !revoked.is_empty() {
            return Err(format!(
                "partitions {revoked:?} were given to another member of the group while this batch was written; the batch is aborted, and their new owner reads its records"
            ));
        }
        let metadata = one
            .consumer
            .group_metadata()
            .ok_or("the Kafka source has no consumer group metadata")?;
        Ok((partition_list(owned)?, metadata))
    }

    /// Commits each source's offsets through its own consumer, so that each
    /// group resumes where it stopped, leaving out partitions revoked since
    /// the records were read (their new owner commits them). A failed commit
    /// (the broker is restarting) only means the records may be read again,
    /// so it is logged, not fatal.
    pub fn commit(&self) {
        for c in &self.by_consumer {
            let (owned, _) = c.owned();
            if owned.is_empty() {
                continue;
            }
            let result = partition_list(owned).and_then(|tpl| {
                c.consumer
                    .commit(&tpl, CommitMode::Sync)
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = result {
                tracing::warn!(
                    "kafka: offsets not committed ({e}); those records may be read again"
                );
            }
        }
    }

    /// The job is done with these records (written and committed, or
    /// abandoned): a revocation need not wait for them.
    pub fn finish(&self) {
        for c in &self.by_consumer {
            c.lease.ownership().done(
                c.next
                    .iter()
                    .map(|(p, &(epoch, offset))| (p, epoch, offset)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::kafka::SourceContext;
    use rdkafka::config::ClientConfig;
    use std::time::Duration;

    fn p(n: i32) -> Partition {
        ("t".to_string(), n)
    }

    /// A consumer that never connects (nothing is polled).
    fn consumer(ownership: &Arc<Ownership>) -> Arc<SourceConsumer> {
        let c = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("group.id", "unit")
            .create_with_context(SourceContext {
                ownership: ownership.clone(),
                drain: Duration::ZERO,
            })
            .unwrap();
        Arc::new(c)
    }

    #[test]
    fn records_of_a_revoked_partition_are_dropped_from_a_chunk() {
        let o = Arc::new(Ownership::default());
        o.assigned([p(0), p(1)]);
        let c = consumer(&o);
        let mut positions = Positions::new(&c, &o);
        let mut records = Batch::new();
        for (i, (partition, offset)) in [(0, 10), (1, 20), (0, 11), (1, 21)].iter().enumerate() {
            records.push(None, format!("r{i}").as_bytes(), 0);
            positions.push("t", *partition, *offset);
        }
        o.revoked(&[p(0)], false, Duration::ZERO);
        let kept = positions.keep_owned(&records);
        let values: Vec<&[u8]> = kept.iter().map(|r| r.value).collect();
        assert_eq!(values, [b"r1".as_slice(), b"r3"]);
        assert_eq!(positions.len(), 2);
        assert_eq!(positions.next_offsets(), vec![(p(1), 22)]);
    }

    #[test]
    fn a_commit_leaves_out_partitions_reassigned_since_the_records_were_read() {
        let o = Arc::new(Ownership::default());
        o.assigned([p(0), p(1)]);
        let c = consumer(&o);
        let mut positions = Positions::new(&c, &o);
        positions.push("t", 0, 5);
        positions.push("t", 1, 7);
        let offsets = Offsets::after([&positions]).unwrap();
        // p0 moves away and comes back: a new assignment, whose new owner
        // meanwhile may have committed further.
        o.revoked(&[p(0)], false, Duration::ZERO);
        o.assigned([p(0)]);
        let (owned, revoked) = offsets.by_consumer[0].owned();
        assert_eq!(owned, vec![(&p(1), 8)]);
        assert_eq!(revoked, vec![&p(0)]);
        let Err(refused) = offsets.for_transaction() else {
            panic!("a transaction took offsets of a reassigned partition");
        };
        assert!(refused.contains("aborted"), "{refused}");
    }

    #[test]
    fn offsets_of_a_later_assignment_supersede_an_earlier_one() {
        let o = Arc::new(Ownership::default());
        o.assigned([p(0)]);
        let c = consumer(&o);
        let mut before = Positions::new(&c, &o);
        before.push("t", 0, 90);
        o.revoked(&[p(0)], false, Duration::ZERO);
        o.assigned([p(0)]);
        // The new assignment starts again at the last commit, below 90.
        let mut after = Positions::new(&c, &o);
        after.push("t", 0, 40);
        let offsets = Offsets::after([&before, &after]).unwrap();
        let (owned, _) = offsets.by_consumer[0].owned();
        assert_eq!(owned, vec![(&p(0), 41)]);
    }
}
