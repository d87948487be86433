//! A histogram of durations with fixed buckets, lock-free, so that any
//! thread may observe into it and a scrape may read it at the same time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The buckets' upper bounds, in seconds: 100 µs to 1 min, about three per
/// decade, so that a 2 ms batch and a 20 s checkpoint both land in a bucket
/// of their own size.
pub const BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Observed durations: a count per bucket (past the last bound: `+Inf`),
/// their number, sum and largest.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

/// A histogram at one moment.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct HistogramView {
    /// Durations observed.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_s: f64,
    /// The largest, in seconds.
    pub max_s: f64,
    /// Per bucket, its upper bound in seconds and the durations at most
    /// that long (cumulative, as Prometheus counts them); the last bound is
    /// `+Inf`.
    #[serde(serialize_with = "cumulative")]
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = BUCKETS.partition_point(|b| *b < secs);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// The histogram now; its buckets hold the count of each bucket alone.
    pub fn view(&self) -> HistogramView {
        let mut buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(&self.counts)
            .map(|(b, c)| (*b, c.load(Ordering::Relaxed)))
            .collect();
        buckets.push((
            f64::INFINITY,
            self.counts[BUCKETS.len()].load(Ordering::Relaxed),
        ));
        HistogramView {
            // The count is the buckets' sum, so the two always agree.
            count: buckets.iter().map(|(_, c)| c).sum(),
            sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            max_s: self.max_ns.load(Ordering::Relaxed) as f64 / 1e9,
            buckets,
        }
    }
}

/// The buckets as JSON: cumulative, `+Inf` as a string.
fn cumulative<S: serde::Serializer>(buckets: &[(f64, u64)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(buckets.len()))?;
    let mut total = 0;
    for (bound, count) in buckets {
        total += count;
        match bound.is_finite() {
            true => seq.serialize_element(&(bound, total))?,
            false => seq.serialize_element(&("+Inf", total))?,
        }
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_bucket_of_their_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100)); // on the first bound: first bucket
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(120)); // past every bound
        let v = h.view();
        assert_eq!(v.count, 4);
        assert_eq!(v.buckets[0], (0.0001, 1));
        assert_eq!(v.buckets[1], (0.00025, 1));
        assert_eq!(v.buckets[5], (0.005, 1));
        assert_eq!(v.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((v.sum_s - 120.003201).abs() < 1e-9);
        assert_eq!(v.max_s, 120.0);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["buckets"][5], serde_json::json!([0.005, 3]));
        assert_eq!(json["buckets"][18], serde_json::json!(["+Inf", 4]));
    }
}
