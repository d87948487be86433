//! Time: window assignment (which windows a timestamp belongs to), session
//! merging, watermarks and the clock.
//!
//! Windows are half-open intervals `[start, end)` of milliseconds, aligned to
//! the Unix epoch (a 30 s window starts at a multiple of 30 s), so every
//! worker and every run assigns a timestamp to the same windows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A window kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `length`.
    Tumbling {
        /// Window length in milliseconds.
        length: i64,
    },
    /// Windows of `length` starting every `slide`; a record belongs to
    /// `length / slide` windows (rounded up).
    Sliding {
        /// Window length in milliseconds.
        length: i64,
        /// Distance between window starts in milliseconds.
        slide: i64,
    },
    /// Per key, records closer than `gap` to each other form one window.
    Session {
        /// Inactivity gap in milliseconds.
        gap: i64,
    },
}

/// A window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

/// The watermark after `max_event_time` (the largest event time seen, if
/// any) with a bound on out-of-orderness of `delay` milliseconds.
pub fn watermark(max_event_time: Option<i64>, delay: i64) -> i64 {
    max_event_time
        .map(|t| t.saturating_sub(delay))
        .unwrap_or(i64::MIN)
}

/// Milliseconds of a duration, saturating.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl WindowKind {
    /// The fixed windows (tumbling or sliding) containing `ts`, earliest
    /// first. Session windows depend on other records; see [`Sessions`].
    pub fn assign(&self, ts: i64, out: &mut Vec<Window>) {
        out.clear();
        match *self {
            // Bounds are computed in i128, so a timestamp at either end of
            // the i64 range neither wraps nor loops; a window reaching past
            // the range is cut at the range's end.
            WindowKind::Tumbling { length } => {
                let (ts, length) = (i128::from(ts), i128::from(length.max(1)));
                let start = ts - ts.rem_euclid(length);
                out.push(Window {
                    start: saturate(start),
                    end: saturate(start + length),
                });
            }
            WindowKind::Sliding { length, slide } => {
                let (t, length, slide) = (
                    i128::from(ts),
                    i128::from(length.max(1)),
                    i128::from(slide.max(1)),
                );
                let last = t - t.rem_euclid(slide);
                let mut start = last - ((length - 1) / slide) * slide;
                while start <= last {
                    if t < start + length {
                        out.push(Window {
                            start: saturate(start),
                            end: saturate(start + length),
                        });
                    }
                    start += slide;
                }
            }
            WindowKind::Session { gap } => out.push(Window {
                start: ts,
                end: ts.saturating_add(gap),
            }),
        }
    }
}

/// `x` within the range of `i64`.
fn saturate(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

/// Which clock places records in windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// The record's own timestamp; windows close on the watermark.
    Event,
    /// The time the micro-batch was cut.
    Processing,
}

/// The session windows of one key, kept sorted and disjoint.
#[derive(Debug, Clone, Default)]
pub struct Sessions<A> {
    /// (window, accumulator) pairs.
    pub windows: Vec<(Window, A)>,
}

impl<A> Sessions<A> {
    /// How many sessions a record at `ts` with gap `gap` would merge into
    /// one ([`Sessions::add`]); 0 when it would open a session of its own.
    /// Sessions are disjoint, so those merged are exactly those that
    /// overlap `[ts, ts + gap)`.
    pub fn overlapping(&self, ts: i64, gap: i64) -> usize {
        let end = ts.saturating_add(gap);
        self.windows
            .iter()
            .filter(|(sw, _)| sw.start < end && ts < sw.end)
            .count()
    }

    /// Adds a record at `ts` with gap `gap`: it opens `[ts, ts + gap)` and
    /// merges every session that overlaps it. `merge` folds one accumulator
    /// into another; `add` folds the record in. Returns the resulting window.
    pub fn add(
        &mut self,
        ts: i64,
        gap: i64,
        fresh: impl FnOnce() -> A,
        mut merge: impl FnMut(&mut A, A),
        add: impl FnOnce(&mut A),
    ) -> Window {
        let mut w = Window {
            start: ts,
            end: ts.saturating_add(gap),
        };
        let mut acc = fresh();
        let mut kept = Vec::with_capacity(self.windows.len() + 1);
        for (sw, sa) in self.windows.drain(..) {
            if sw.start < w.end && w.start < sw.end {
                w = Window {
                    start: w.start.min(sw.start),
                    end: w.end.max(sw.end),
                };
                merge(&mut acc, sa);
            } else {
                kept.push((sw, sa));
            }
        }
        add(&mut acc);
        let pos = kept.partition_point(|(sw, _)| sw.start < w.start);
        kept.insert(pos, (w, acc));
        self.windows = kept;
        w
    }
}

/// Milliseconds since the Unix epoch: the processing time of a batch, the
/// ingestion timestamp of line records.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tumbling_aligns_to_epoch() {
        let mut out = Vec::new();
        WindowKind::Tumbling { length: 30_000 }.assign(65_000, &mut out);
        assert_eq!(
            out,
            [Window {
                start: 60_000,
                end: 90_000
            }]
        );
        WindowKind::Tumbling { length: 10 }.assign(-1, &mut out);
        assert_eq!(out, [Window { start: -10, end: 0 }]);
    }

    #[test]
    fn a_timestamp_at_either_end_of_time_neither_wraps_nor_loops() {
        let mut out = Vec::new();
        let sliding = WindowKind::Sliding {
            length: 10_000,
            slide: 5_000,
        };
        for ts in [i64::MAX, i64::MAX - 1, i64::MIN, i64::MIN + 1] {
            sliding.assign(ts, &mut out);
            assert!(!out.is_empty() && out.len() <= 2, "{ts}: {out:?}");
            for w in &out {
                assert!(
                    w.start <= ts && (ts < w.end || w.end == i64::MAX),
                    "{ts}: {w:?}"
                );
            }
            WindowKind::Tumbling { length: 30_000 }.assign(ts, &mut out);
            assert_eq!(out.len(), 1);
            assert!(out[0].start <= ts && (ts < out[0].end || out[0].end == i64::MAX));
        }
    }

    #[test]
    fn sliding_gives_every_covering_window() {
        let mut out = Vec::new();
        WindowKind::Sliding {
            length: 30,
            slide: 10,
        }
        .assign(25, &mut out);
        let starts: Vec<i64> = out.iter().map(|w| w.start).collect();
        assert_eq!(starts, [0, 10, 20]);
    }

    #[test]
    fn sessions_merge_across_a_bridge() {
        let mut s = Sessions::<u32>::default();
        let add = |s: &mut Sessions<u32>, ts| s.add(ts, 10, || 0, |a, b| *a += b, |a| *a += 1);
        add(&mut s, 0);
        add(&mut s, 30);
        assert_eq!(s.windows.len(), 2);
        let w = add(&mut s, 15); // within 10 of neither start... [15,25) overlaps [0,10)? no; [30,40)? no
        assert_eq!(w, Window { start: 15, end: 25 });
        assert_eq!(s.windows.len(), 3);
        let w = add(&mut s, 8); // [8,18) overlaps [0,10) and [15,25)
        assert_eq!(w, Window { start: 0, end: 25 });
        assert_eq!(
            s.windows
                .iter()
                .map(|(w, a)| (w.start, *a))
                .collect::<Vec<_>>(),
            [(0, 3), (30, 1)]
        );
    }

    proptest! {
        /// Every assigned window contains the timestamp, windows are aligned
        /// to the slide, and no covering window is missed.
        #[test]
        fn sliding_assignment_is_exact(ts in -1_000_000i64..1_000_000, slide in 1i64..500, k in 1i64..6, extra in 0i64..3) {
            let length = slide * k + extra.min(slide - 1);
            let mut out = Vec::new();
            WindowKind::Sliding { length, slide }.assign(ts, &mut out);
            for w in &out {
                prop_assert!(w.start <= ts && ts < w.end);
                prop_assert_eq!(w.start.rem_euclid(slide), 0);
                prop_assert_eq!(w.end - w.start, length);
            }
            let lo = (ts - length).div_euclid(slide) - 2;
            let hi = ts.div_euclid(slide) + 2;
            let brute = (lo..=hi)
                .map(|i| i * slide)
                .filter(|s| *s <= ts && ts < s + length)
                .count();
            prop_assert_eq!(out.len(), brute);
        }

        /// `overlapping` tells ahead of `add` how many sessions the record
        /// merges: the number of sessions changes by one minus that.
        #[test]
        fn overlapping_predicts_how_many_sessions_merge(
            records in proptest::collection::vec((0i64..500, 1i64..60), 1..40)
        ) {
            let mut s = Sessions::<u32>::default();
            for (ts, gap) in records {
                let before = s.windows.len();
                let merged = s.overlapping(ts, gap);
                s.add(ts, gap, || 0, |a, b| *a += b, |a| *a += 1);
                prop_assert_eq!(s.windows.len() + merged, before + 1);
            }
        }
    }
}
