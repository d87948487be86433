//! The meters of a job's run, laid out as its plan: one per source, per
//! operator of each stage, per sink.

use super::job::Job;
use super::plan::Stage;
use super::stats::Run;
use crate::metrics::{JobMeters, LimitSpec, OperatorMeter, SinkMeter, SourceMeter, StageMeter};
use crate::model::units::{format_duration, format_size};
use std::sync::Arc;

/// The meters of a run of `job` over `stages`, installed in its stats so
/// that its figures can be read while it runs.
pub(super) fn start(job: &Job, stages: &[Stage], workers: usize) -> Arc<JobMeters> {
    let sources = job
        .sources
        .iter()
        .map(|(name, cfg)| {
            let described = crate::source::describe(cfg);
            let kind = described.split(' ').next().unwrap_or_default().to_string();
            Arc::new(SourceMeter::new(name.clone().unwrap_or(described), kind))
        })
        .collect();
    let stages = stages
        .iter()
        .map(|s| StageMeter {
            keyed: s.keyed,
            stateful: s.stateful,
            operators: s
                .ops
                .iter()
                .map(|op| {
                    let limits = match op.kind() {
                        "plugin" | "reducer" => wasm_limits(job),
                        _ => Vec::new(),
                    };
                    Arc::new(OperatorMeter::new(
                        op.name(),
                        op.kind(),
                        job.partitions,
                        limits,
                    ))
                })
                .collect(),
            ..StageMeter::default()
        })
        .collect();
    let sinks = job
        .sinks
        .iter()
        .map(|s| {
            let name = s.describe();
            let kind = name.split(' ').next().unwrap_or_default().to_string();
            SinkMeter::new(name, kind)
        })
        .collect();
    let meters = Arc::new(JobMeters::new(sources, stages, sinks));
    job.stats.start_run(Run {
        meters: meters.clone(),
        started_ms: crate::model::time::now_ms(),
        interval_ms: job.interval.map(|d| d.as_millis() as u64),
        partitions: job.partitions,
        workers,
        checkpoints: job.checkpoint.is_some(),
    });
    meters
}

/// The limits a Wasm instance of `job` is held to, with a use to show.
fn wasm_limits(job: &Job) -> Vec<LimitSpec> {
    let mut limits = vec![LimitSpec {
        limit: "memory",
        value: format_size(job.limits.memory),
        allowed: job.limits.memory as f64,
    }];
    if let Some(cpu) = job.limits.cpu_per_batch {
        limits.push(LimitSpec {
            limit: "cpu_per_batch",
            value: format_duration(cpu),
            allowed: cpu.as_secs_f64(),
        });
    }
    limits
}
