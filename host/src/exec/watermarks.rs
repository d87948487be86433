//! The event-time watermarks of the stateful stages, as each batch moves
//! them.

use super::coordinator::{Coordinator, Flow};
use crate::metrics::WatermarkRow;

impl Coordinator {
    /// Moves stage `s`'s watermark with the flows entering it at
    /// `processing_time`; returns the event time it derived from before and
    /// after, and notes each input stream's figures in `marks`.
    pub(super) fn advance_watermark(
        &mut self,
        s: usize,
        flows: &[Flow],
        processing_time: i64,
        marks: &mut Vec<WatermarkRow>,
    ) -> (Option<i64>, Option<i64>) {
        // One watermark for all partitions: per input stream the
        // largest event time that reached the stage; the slowest
        // stream holds the watermark back, so a source read faster
        // than another does not make the other's records late. A
        // record too far ahead of processing time moves nothing
        // (its operator sets it aside), and a stream idle for
        // `idle_timeout` holds nothing back.
        let rules = self.stages[s].watermark;
        let first_batch = *self.first_batch_time.get_or_insert(processing_time);
        for flow in flows {
            let batch_max = flow
                .parts
                .iter()
                .filter_map(|p| {
                    p.timestamps
                        .iter()
                        .copied()
                        .filter(|t| !rules.too_far_ahead(*t, processing_time))
                        .max()
                })
                .max();
            let seen = &mut self.stage_max_ts[s][flow.stream];
            *seen = (*seen).max(batch_max);
            if flow.parts.iter().any(|p| !p.is_empty()) {
                self.stage_last_records[s][flow.stream] = Some(processing_time);
            }
        }
        let before = self.stage_watermark_base[s];
        let idle = |i: usize| {
            rules.idle_timeout.is_some_and(|t| {
                let last = self.stage_last_records[s][i].unwrap_or(first_batch);
                processing_time.saturating_sub(last) >= t
            })
        };
        let inputs = &self.stages[s].inputs;
        let held_by: Vec<usize> = inputs.iter().copied().filter(|i| !idle(*i)).collect();
        let base = if held_by.is_empty() {
            // Every stream idle: what has been seen is all there is.
            inputs.iter().filter_map(|i| self.stage_max_ts[s][*i]).max()
        } else {
            held_by
                .iter()
                .map(|i| self.stage_max_ts[s][*i])
                .collect::<Option<Vec<i64>>>()
                .and_then(|m| m.into_iter().min())
        };
        let after = base.max(before);
        self.stage_watermark_base[s] = after;
        marks.extend(inputs.iter().map(|i| WatermarkRow {
            stage: s,
            stream: match self.job.streams.get(*i).map(String::as_str) {
                None | Some("") => "(default)".into(),
                Some(name) => name.to_string(),
            },
            event_time_ms: self.stage_max_ts[s][*i],
            watermark_ms: after,
            lag_ms: after.map(|w| processing_time.saturating_sub(w)),
        }));
        (before, after)
    }
}
