//! Which partitions a Kafka source owns, and how far their records have got.
//!
//! A consumer group moves partitions between members at a rebalance. Records
//! a member read before it lost a partition may still be on their way
//! through the job; their offsets must not be committed once the partition
//! has a new owner, or they would roll the new owner's commit back. So:
//!
//! - every assignment of a partition gets a new *epoch*, and the records
//!   read carry it ([`super::Positions`]); a commit leaves out partitions
//!   whose epoch has passed;
//! - when partitions are revoked, the source first waits (at most
//!   [`REVOKE_DRAIN`]) for the records already handed to the job to be
//!   written and committed, so that the new owner starts where this member
//!   stopped instead of reading them again;
//! - records read but not yet handed to the job are dropped; the new owner
//!   reads them.

use crate::metrics::{PartitionLag, SourceMeter};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest a revocation waits for the records of the revoked partitions
/// that the job already has; at most half the group's rebalance timeout
/// (`max.poll.interval.ms`, 5 minutes by default), see [`drain_for`].
pub const REVOKE_DRAIN: Duration = Duration::from_secs(10);

/// How long a revocation may wait for records, for a consumer whose
/// `max.poll.interval.ms` is `max_poll_interval` (the member must poll
/// again within it, or the group evicts it).
pub fn drain_for(max_poll_interval: Option<&str>) -> Duration {
    let interval = max_poll_interval
        .and_then(|ms| ms.parse::<u64>().ok())
        .map_or(Duration::from_secs(300), Duration::from_millis);
    REVOKE_DRAIN.min(interval / 2)
}

/// A (topic, partition) pair.
pub type Partition = (String, i32);

/// The source's side of the group protocol, shared by the consumer's
/// callbacks, the reading thread and the commits.
#[derive(Default)]
pub struct Ownership {
    state: Mutex<State>,
    /// Signalled when records are done or leases end.
    progress: Condvar,
    /// Bumped at every assignment and revocation.
    generation: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Owned partitions and the epoch of their assignment.
    owned: HashMap<Partition, u64>,
    next_epoch: u64,
    /// Per owned partition: the offset after the last record handed to the
    /// job, and after the last one the job finished.
    handed: HashMap<Partition, i64>,
    done: HashMap<Partition, i64>,
    /// Live leases: positions or offsets of records the job still holds.
    leases: usize,
}

impl Ownership {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes whenever the assignment changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The epoch of a partition's current assignment, if it is owned.
    pub fn epoch(&self, partition: &Partition) -> Option<u64> {
        self.lock().owned.get(partition).copied()
    }

    /// Whether `epoch` is the current assignment of `partition`.
    pub fn owns(&self, partition: &Partition, epoch: u64) -> bool {
        self.epoch(partition) == Some(epoch)
    }

    /// Partitions newly assigned: each gets a fresh epoch.
    pub fn assigned(&self, partitions: impl IntoIterator<Item = Partition>) {
        let mut s = self.lock();
        for p in partitions {
            s.next_epoch += 1;
            let epoch = s.next_epoch;
            s.handed.remove(&p);
            s.done.remove(&p);
            s.owned.insert(p, epoch);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Partitions revoked. Unless `lost` (the group already gave them
    /// away), first waits up to `drain` for the job to finish the records
    /// of them it holds. Returns the partitions whose records were not all
    /// done in time.
    pub fn revoked(&self, partitions: &[Partition], lost: bool, drain: Duration) -> Vec<Partition> {
        let deadline = Instant::now() + drain;
        let mut s = self.lock();
        let pending = |s: &State| -> Vec<Partition> {
            partitions
                .iter()
                .filter(|p| s.handed.get(*p).is_some_and(|h| s.done.get(*p) < Some(h)))
                .cloned()
                .collect()
        };
        while !lost && s.leases > 0 && !pending(&s).is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self
                .progress
                .wait_timeout(s, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let unfinished = if s.leases > 0 {
            pending(&s)
        } else {
            Vec::new()
        };
        for p in partitions {
            s.owned.remove(p);
            s.handed.remove(p);
            s.done.remove(p);
        }
        drop(s);
        self.generation.fetch_add(1, Ordering::AcqRel);
        unfinished
    }

    /// Records up to (not including) these offsets were handed to the job.
    pub fn handed(&self, next: impl IntoIterator<Item = (Partition, i64)>) {
        let mut s = self.lock();
        for (p, offset) in next {
            if s.owned.contains_key(&p) {
                let e = s.handed.entry(p).or_insert(offset);
                *e = (*e).max(offset);
            }
        }
    }

    /// The job finished (wrote and committed, or gave up) records up to
    /// these offsets of these assignments.
    pub fn done<'a>(&self, next: impl IntoIterator<Item = (&'a Partition, u64, i64)>) {
        let mut s = self.lock();
        for (p, epoch, offset) in next {
            if s.owned.get(p) == Some(&epoch) {
                let e = s.done.entry(p.clone()).or_insert(offset);
                *e = (*e).max(offset);
            }
        }
        drop(s);
        self.progress.notify_all();
    }

    /// A lease on records the job holds: a revocation waits for leased
    /// records only.
    pub fn lease(self: &Arc<Self>) -> Lease {
        self.lock().leases += 1;
        Lease(self.clone())
    }
}

/// Held by the positions and offsets of records on their way through the
/// job; when none is left, nothing the job holds can still finish.
pub struct Lease(Arc<Ownership>);

impl Lease {
    /// The ownership this lease is on.
    pub fn ownership(&self) -> &Arc<Ownership> {
        &self.0
    }
}

impl Clone for Lease {
    fn clone(&self) -> Self {
        self.0.lease()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.lock().leases -= 1;
        self.0.progress.notify_all();
    }
}

/// The consumer's callbacks: rebalances update the [`Ownership`].
pub struct SourceContext {
    pub ownership: Arc<Ownership>,
    /// Where the consumer lag goes, from the client's statistics.
    pub meter: Option<Arc<SourceMeter>>,
    /// How long a revocation waits for records the job holds.
    pub drain: Duration,
}

impl ClientContext for SourceContext {
    /// Per assigned partition, the records between the next one the source
    /// reads and the end (the last stable offset, which is the high
    /// watermark but for open transactions).
    fn stats(&self, statistics: Statistics) {
        let Some(meter) = &self.meter else {
            return;
        };
        let mut lag: Vec<PartitionLag> = statistics
            .topics
            .iter()
            .flat_map(|(topic, t)| {
                t.partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.desired && !p.unknown)
                    .filter_map(move |p| {
                        let end = if p.ls_offset >= 0 {
                            p.ls_offset
                        } else {
                            p.hi_offset
                        };
                        let lag = match p.app_offset >= 0 {
                            true => end - p.app_offset,
                            false => p.consumer_lag,
                        };
                        (end >= 0 && lag >= 0).then(|| PartitionLag {
                            topic: topic.clone(),
                            partition: p.partition,
                            lag,
                        })
                    })
            })
            .collect();
        lag.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        meter.set_lag(lag);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions = partitions(list);
            let lost = consumer.assignment_lost();
            let unfinished = self.ownership.revoked(&partitions, lost, self.drain);
            if lost {
                tracing::warn!(
                    "kafka: partitions {partitions:?} were lost to the group; records of them still on their way are written but not committed"
                );
            } else if !unfinished.is_empty() {
                tracing::warn!(
                    "kafka: partitions {unfinished:?} revoked before their records were written (waited {:?}); their next owner reads those again",
                    self.drain
                );
            } else {
                tracing::info!("kafka: partitions {partitions:?} revoked");
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let partitions = partitions(list);
            tracing::info!("kafka: partitions {partitions:?} assigned");
            self.ownership.assigned(partitions);
        }
    }
}

fn partitions(list: &rdkafka::TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".to_string(), n)
    }

    #[test]
    fn the_drain_leaves_the_member_time_to_poll() {
        assert_eq!(drain_for(None), REVOKE_DRAIN);
        assert_eq!(drain_for(Some("6000")), Duration::from_secs(3));
        assert_eq!(drain_for(Some("not a number")), REVOKE_DRAIN);
    }

    #[test]
    fn a_reassigned_partition_has_a_new_epoch() {
        let o = Ownership::default();
        o.assigned([p(0)]);
        let first = o.epoch(&p(0)).unwrap();
        o.revoked(&[p(0)], false, Duration::ZERO);
        assert_eq!(o.epoch(&p(0)), None);
        o.assigned([p(0)]);
        assert!(!o.owns(&p(0), first));
        assert!(o.owns(&p(0), o.epoch(&p(0)).unwrap()));
    }

    #[test]
    fn a_revocation_waits_for_the_leased_records_of_its_partitions() {
        let o = Arc::new(Ownership::default());
        o.assigned([p(0), p(1)]);
        let epoch = o.epoch(&p(0)).unwrap();
        let lease = o.lease();
        o.handed([(p(0), 10), (p(1), 5)]);
        let finisher = {
            let o = o.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                o.done([(&p(0), epoch, 10)]);
                drop(lease);
            })
        };
        let started = Instant::now();
        // Only p0 is revoked: p1's records are not waited for.
        let unfinished = o.revoked(&[p(0)], false, Duration::from_secs(5));
        assert!(unfinished.is_empty(), "{unfinished:?}");
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(started.elapsed() < Duration::from_secs(4));
        finisher.join().unwrap();
    }

    #[test]
    fn a_revocation_gives_up_after_the_drain_and_names_what_was_unfinished() {
        let o = Arc::new(Ownership::default());
        o.assigned([p(0)]);
        let _lease = o.lease();
        o.handed([(p(0), 3)]);
        let started = Instant::now();
        let unfinished = o.revoked(&[p(0)], false, Duration::from_millis(100));
        assert_eq!(unfinished, vec![p(0)]);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_lost_assignment_or_no_lease_is_not_waited_for() {
        let o = Arc::new(Ownership::default());
        o.assigned([p(0)]);
        o.handed([(p(0), 3)]);
        let started = Instant::now();
        // No lease: nothing the job holds can finish.
        assert!(o.revoked(&[p(0)], false, Duration::from_secs(5)).is_empty());
        o.assigned([p(0)]);
        let _lease = o.lease();
        o.handed([(p(0), 3)]);
        o.revoked(&[p(0)], true, Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn work_done_under_a_past_epoch_does_not_count_for_the_new_one() {
        let o = Arc::new(Ownership::default());
        o.assigned([p(0)]);
        let old = o.epoch(&p(0)).unwrap();
        o.revoked(&[p(0)], false, Duration::ZERO);
        o.assigned([p(0)]);
        let _lease = o.lease();
        o.handed([(p(0), 7)]);
        o.done([(&p(0), old, 7)]);
        assert_eq!(
            o.revoked(&[p(0)], false, Duration::from_millis(50)),
            vec![p(0)]
        );
    }
}
