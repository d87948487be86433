//! Where the records of a chunk came from, and the offsets to commit once
//! the job has written them.

use super::ownership::{Lease, Partition};
use super::{Origin, SourceConsumer};
use crate::model::batch::{self, Batch};
use crate::source::position::Position;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Where each record of a chunk came from, and the consumer that read it.
pub struct Positions {
    // The lease drops before the consumer, whose close waits for leased
    // records.
    lease: Lease,
    consumer: Arc<SourceConsumer>,
    /// The source's index in the job.
    source: usize,
    /// The offsets the source resumed from, by partition.
    resume: Arc<HashMap<Partition, i64>>,
    /// The partitions the records come from, with the epoch of the
    /// assignment they were read under and the offset the source resumed
    /// from in them (`i64::MIN`: none).
    partitions: Vec<(Partition, u64, i64)>,
    /// Per record: index into `partitions`, and offset.
    records: Vec<(u32, i64)>,
}

impl Positions {
    pub(super) fn new(origin: &Origin) -> Self {
        Positions {
            consumer: origin.consumer.clone(),
            lease: origin.ownership.lease(),
            source: origin.source,
            resume: origin.resume.clone(),
            partitions: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Where a record read at `offset` of `topic`/`partition` goes: the
    /// index of its partition among these positions', for
    /// [`Positions::push_at`]; `None` if it lies below the offset the
    /// source resumed from in that partition (the checkpoint holds its
    /// output), and the record is to be dropped. The resume offset is
    /// looked up once per partition and chunk, when the partition first
    /// appears in it.
    pub(super) fn admit(&mut self, topic: &str, partition: i32, offset: i64) -> Option<u32> {
        let i = match self
            .partitions
            .iter()
            .position(|((t, p), _, _)| *p == partition && t == topic)
        {
            Some(i) => i,
            None => {
                let key = (topic.to_string(), partition);
                // A partition not owned (yet) gets no epoch that could
                // commit.
                let epoch = self.lease.ownership().epoch(&key).unwrap_or(0);
                let resume = self.resume.get(&key).copied().unwrap_or(i64::MIN);
                self.partitions.push((key, epoch, resume));
                self.partitions.len() - 1
            }
        };
        (offset >= self.partitions[i].2).then_some(i as u32)
    }

    /// Adds the position of a record admitted at index `at`.
    pub(super) fn push_at(&mut self, at: u32, offset: i64) {
        self.records.push((at, offset));
    }

    /// Adds the position of a record, unless it is below the offset the
    /// source resumed from; whether it was added.
    #[cfg(test)]
    pub(super) fn push(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let at = self.admit(topic, partition, offset);
        if let Some(at) = at {
            self.push_at(at, offset);
        }
        at.is_some()
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
            .map(|((p, _, _), n)| (p.clone(), n))
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
            .map(|(p, epoch, _)| !ownership.owns(p, *epoch))
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
            source: self.source,
            resume: self.resume.clone(),
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
    /// The source's index in the job.
    source: usize,
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
                        source: p.source,
                        next: BTreeMap::new(),
                    });
                    by_consumer.len() - 1
                }
            };
            let next = &mut by_consumer[i].next;
            for &(i, offset) in &p.records {
                let (partition, epoch, _) = &p.partitions[i as usize];
                let e = next.entry(partition.clone()).or_insert((*epoch, 0));
                // A later assignment's records supersede an earlier one's.
                *e = (*e).max((*epoch, offset.saturating_add(1)));
            }
        }
        by_consumer.retain(|c| !c.next.is_empty());
        (!by_consumer.is_empty()).then_some(Offsets { by_consumer })
    }

    /// Takes in the offsets of a `later` batch, so that one commit (at a
    /// checkpoint) covers both: per consumer and partition, the later
    /// batch's offset and epoch replace the earlier's. A partition only
    /// the earlier batch read keeps its epoch, so that a commit still
    /// leaves it out if it was reassigned since. [`Offsets::finish`] on the
    /// merged offsets finishes every batch merged in.
    pub fn merge(&mut self, later: Offsets) {
        for c in later.by_consumer {
            match self
                .by_consumer
                .iter_mut()
                .find(|o| Arc::ptr_eq(&o.consumer, &c.consumer))
            {
                // Records are read, and batches cut, in order: the later
                // batch's records of a partition come from the same or a
                // later assignment, further on.
                Some(o) => o.next.extend(c.next),
                None => self.by_consumer.push(c),
            }
        }
    }

    /// Where each Kafka source is after these offsets' records, by the
    /// source's index in the job, for a checkpoint: per topic and
    /// partition (sorted), the offset of the next record. A partition
    /// revoked since its records were read is still listed: the job holds
    /// those records' results.
    pub fn positions(&self) -> Vec<(usize, Position)> {
        let mut by_source: Vec<(usize, Position)> = self
            .by_consumer
            .iter()
            .map(|c| {
                let offsets = c
                    .next
                    .iter()
                    .map(|((topic, partition), &(_, next))| (topic.clone(), *partition, next))
                    .collect();
                (c.source, Position::Kafka { offsets })
            })
            .collect();
        by_source.sort_by_key(|(source, _)| *source);
        by_source
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
    use crate::source::kafka::membership::Membership;
    use crate::source::kafka::ownership::Ownership;
    use rdkafka::config::ClientConfig;
    use std::time::Duration;

    fn p(n: i32) -> Partition {
        ("t".to_string(), n)
    }

    /// A consumer that never connects (nothing is polled).
    fn consumer(ownership: &Arc<Ownership>) -> Arc<SourceConsumer> {
        let inner = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("group.id", "unit")
            .create_with_context(SourceContext {
                ownership: ownership.clone(),
                meter: None,
                drain: Duration::ZERO,
            })
            .unwrap();
        Arc::new(SourceConsumer {
            inner,
            membership: Membership::Dynamic,
        })
    }

    /// Source number `source` reading with consumer `c`, resumed from
    /// `resume`.
    fn origin(
        c: &Arc<SourceConsumer>,
        o: &Arc<Ownership>,
        source: usize,
        resume: &[(&str, i32, i64)],
    ) -> Origin {
        let resume: Vec<(String, i32, i64)> = resume
            .iter()
            .map(|(t, p, n)| (t.to_string(), *p, *n))
            .collect();
        Origin {
            consumer: c.clone(),
            ownership: o.clone(),
            source,
            resume: Arc::new(crate::source::kafka::resume_offsets(&resume)),
        }
    }

    /// Positions of source 0, not resumed.
    fn positions(c: &Arc<SourceConsumer>, o: &Arc<Ownership>) -> Positions {
        Positions::new(&origin(c, o, 0, &[]))
    }

    #[test]
    fn records_of_a_revoked_partition_are_dropped_from_a_chunk() {
        let o = Arc::new(Ownership::default());
        o.assigned([p(0), p(1)]);
        let c = consumer(&o);
        let mut positions = positions(&c, &o);
        let mut records = Batch::new();
        for (i, (partition, offset)) in [(0, 10), (1, 20), (0, 11), (1, 21)].iter().enumerate() {
            records.push(None, format!("r{i}").as_bytes(), 0);
            assert!(positions.push("t", *partition, *offset));
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
        let mut positions = positions(&c, &o);
        assert!(positions.push("t", 0, 5) && positions.push("t", 1, 7));
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
        let mut before = positions(&c, &o);
        assert!(before.push("t", 0, 90));
        o.revoked(&[p(0)], false, Duration::ZERO);
        o.assigned([p(0)]);
        // The new assignment starts again at the last commit, below 90.
        let mut after = positions(&c, &o);
        assert!(after.push("t", 0, 40));
        let offsets = Offsets::after([&before, &after]).unwrap();
        let (owned, _) = offsets.by_consumer[0].owned();
        assert_eq!(owned, vec![(&p(0), 41)]);
    }

    /// The offsets of chunks read by source `source` from `(partition,
    /// offset)` records.
    fn read(
        c: &Arc<SourceConsumer>,
        o: &Arc<Ownership>,
        source: usize,
        records: &[(i32, i64)],
    ) -> Offsets {
        let mut positions = Positions::new(&origin(c, o, source, &[]));
        for &(partition, offset) in records {
            assert!(positions.push("t", partition, offset));
        }
        Offsets::after([&positions]).unwrap()
    }

    #[test]
    fn merged_offsets_take_the_later_batch_per_partition_and_keep_the_rest() {
        let o = Arc::new(Ownership::default());
        o.assigned([p(0), p(1), p(2)]);
        let c = consumer(&o);
        let mut merged = read(&c, &o, 0, &[(0, 10), (1, 20), (0, 11)]);
        merged.merge(read(&c, &o, 0, &[(1, 21), (2, 5)]));
        merged.merge(read(&c, &o, 0, &[(1, 22)]));
        let (owned, revoked) = merged.by_consumer[0].owned();
        assert_eq!(owned, vec![(&p(0), 12), (&p(1), 23), (&p(2), 6)]);
        assert!(revoked.is_empty());
        assert_eq!(merged.by_consumer.len(), 1);
    }

    #[test]
    fn merged_offsets_keep_the_epochs_so_a_commit_still_skips_reassigned_partitions() {
        let o = Arc::new(Ownership::default());
        o.assigned([p(0), p(1)]);
        let c = consumer(&o);
        let mut merged = read(&c, &o, 0, &[(0, 90), (1, 30)]);
        // p0 goes away and comes back: the new assignment starts again at
        // the last commit, below 90. p1 goes away for good.
        o.revoked(&[p(0), p(1)], false, Duration::ZERO);
        o.assigned([p(0)]);
        merged.merge(read(&c, &o, 0, &[(0, 40)]));
        let (owned, revoked) = merged.by_consumer[0].owned();
        // The later assignment's offset, under its epoch, commits; p1's
        // stale epoch keeps it out.
        assert_eq!(owned, vec![(&p(0), 41)]);
        assert_eq!(revoked, vec![&p(1)]);
        // A partition only the earlier batch read keeps that batch's
        // epoch: reassigned since, it stays out.
        o.assigned([p(1)]);
        let mut stale = read(&c, &o, 0, &[(0, 50)]);
        o.revoked(&[p(0)], false, Duration::ZERO);
        o.assigned([p(0)]);
        stale.merge(read(&c, &o, 0, &[(1, 7)]));
        let (owned, revoked) = stale.by_consumer[0].owned();
        assert_eq!(owned, vec![(&p(1), 8)]);
        assert_eq!(revoked, vec![&p(0)]);
    }

    #[test]
    fn offsets_of_two_sources_merge_apart_and_give_each_source_its_positions() {
        let (oa, ob) = (
            Arc::new(Ownership::default()),
            Arc::new(Ownership::default()),
        );
        oa.assigned([p(0), p(1)]);
        ob.assigned([("u".to_string(), 0)]);
        let (ca, cb) = (consumer(&oa), consumer(&ob));
        let mut merged = read(&ca, &oa, 1, &[(1, 4), (0, 8)]);
        let mut other = Positions::new(&origin(&cb, &ob, 0, &[]));
        assert!(other.push("u", 0, 2));
        merged.merge(Offsets::after([&other]).unwrap());
        merged.merge(read(&ca, &oa, 1, &[(1, 6)]));
        assert_eq!(merged.by_consumer.len(), 2);
        assert_eq!(
            merged.positions(),
            vec![
                (
                    0,
                    Position::Kafka {
                        offsets: vec![("u".into(), 0, 3)]
                    }
                ),
                (
                    1,
                    Position::Kafka {
                        offsets: vec![("t".into(), 0, 9), ("t".into(), 1, 7)]
                    }
                ),
            ]
        );
    }

    #[test]
    fn records_below_the_offsets_resumed_from_are_dropped_per_partition() {
        let o = Arc::new(Ownership::default());
        o.assigned([p(0), p(1), p(2)]);
        let c = consumer(&o);
        // The checkpoint got to offset 12 of p0 and 5 of p1 (and of a
        // partition this member does not read).
        let from = origin(&c, &o, 0, &[("t", 0, 12), ("t", 1, 5), ("x", 0, 99)]);
        let mut positions = Positions::new(&from);
        let read = [(0, 10), (1, 5), (0, 11), (2, 0), (0, 12), (1, 6), (0, 13)];
        let kept: Vec<(i32, i64)> = read
            .iter()
            .copied()
            .filter(|&(partition, offset)| positions.push("t", partition, offset))
            .collect();
        assert_eq!(kept, vec![(1, 5), (2, 0), (0, 12), (1, 6), (0, 13)]);
        assert_eq!(positions.len(), kept.len());
        assert_eq!(
            positions.next_offsets(),
            vec![(p(0), 14), (p(1), 7), (p(2), 1)]
        );
        // The next chunk looks the offsets up again: a partition read again
        // from an earlier commit (after a rebalance) is filtered again.
        let mut next = Positions::new(&from);
        assert!(!next.push("t", 0, 3));
        assert!(next.push("t", 0, 12));
        // A chunk cut between batches keeps the filter.
        let mut rest = next.split_first(1);
        assert!(!rest.push("t", 1, 4));
        assert!(next.push("t", 1, 5));
    }
}
