//! The Prometheus exposition of jobs' figures, in the OpenMetrics text
//! format, encoded by `prometheus-client` from a snapshot taken at the
//! scrape: every family is written once, with a series per job (and
//! tenant), so a scrape of several jobs is one valid exposition.

use super::families::*;
use super::histogram::HistogramView;
use super::view::JobFigures;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::registry::Registry;

/// The media type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One job's figures and the labels every series of it carries (`job`, and
/// `tenant` on a server).
#[derive(Debug, Clone)]
pub struct Scope {
    /// Labels of every series, in order.
    pub labels: Vec<(&'static str, String)>,
    /// The job's figures.
    pub figures: JobFigures,
}

/// The figures of `jobs` as an OpenMetrics text exposition.
pub fn encode(jobs: Vec<Scope>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Jobs(jobs)));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct Jobs(Vec<Scope>);

type Labels = Vec<(&'static str, String)>;

/// One sample's value.
enum Value<'a> {
    Count(f64),
    Gauge(f64),
    Histogram(&'a HistogramView),
}

/// Writes `family` with the series `samples` gives
/// (nothing when it gives none).
fn family<'v>(
    enc: &mut DescriptorEncoder<'_>,
    family: &Family,
    samples: impl IntoIterator<Item = (Labels, Value<'v>)>,
) -> Result<(), std::fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = enc.encode_descriptor(family.name, family.help, None, family.ty)?;
    for (labels, value) in samples {
        let mut series = metric.encode_family(&labels)?;
        // Whole numbers (records, bytes, versions) are written as integers.
        let n = whole(&value);
        match (value, n) {
            (Value::Count(_), Some(n)) => {
                series.encode_counter::<NoLabelSet, _, u64>(&(n as u64), None)?
            }
            (Value::Count(v), None) => series.encode_counter::<NoLabelSet, _, f64>(&v, None)?,
            (Value::Gauge(_), Some(n)) => series.encode_gauge(&n)?,
            (Value::Gauge(v), None) => series.encode_gauge(&v)?,
            (Value::Histogram(h), _) => {
                series.encode_histogram::<NoLabelSet>(h.sum_s, h.count, &h.buckets, None)?
            }
        }
    }
    Ok(())
}

/// A counter's or gauge's value as an integer, when it is a whole number
/// that an `f64` holds exactly (a count never comes near 2^53).
fn whole(value: &Value<'_>) -> Option<i64> {
    let v = match value {
        Value::Count(v) if *v >= 0.0 => *v,
        Value::Gauge(v) => *v,
        _ => return None,
    };
    (v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0).then_some(v as i64)
}

fn with(base: &Labels, more: &[(&'static str, String)]) -> Labels {
    base.iter().cloned().chain(more.iter().cloned()).collect()
}

/// Per job, its series of one family.
fn per_job<'a, F, I>(jobs: &'a [Scope], f: F) -> Vec<(Labels, Value<'a>)>
where
    F: Fn(&'a Scope) -> I,
    I: IntoIterator<Item = (Labels, Value<'a>)>,
{
    jobs.iter().flat_map(f).collect()
}

impl Collector for Jobs {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use Value::{Count, Gauge as G, Histogram as H};
        let jobs = &self.0;
        let e = &mut enc;
        let one = |f: fn(&JobFigures) -> Value<'_>| {
            per_job(jobs, move |s| [(s.labels.clone(), f(&s.figures))])
        };
        family(
            e,
            &JOB_START_TIME_SECONDS,
            one(|f| G(f.started_ms as f64 / 1e3)),
        )?;
        family(
            e,
            &BATCH_INTERVAL_SECONDS,
            per_job(jobs, |s| {
                s.figures
                    .interval_ms
                    .map(|ms| (s.labels.clone(), G(ms as f64 / 1e3)))
            }),
        )?;
        family(e, &BATCHES, one(|f| Count(f.totals.batches as f64)))?;
        family(
            e,
            &BATCH_SCHEDULING_DELAY_SECONDS,
            one(|f| H(&f.meters.scheduling)),
        )?;
        family(
            e,
            &BATCH_PROCESSING_SECONDS,
            one(|f| H(&f.meters.processing)),
        )?;
        family(e, &BATCH_TOTAL_DELAY_SECONDS, one(|f| H(&f.meters.total)))?;
        family(
            e,
            &INPUT_PENDING_RECORDS,
            one(|f| G(f.meters.pending as f64)),
        )?;
        family(e, &LATE_RECORDS, one(|f| Count(f.totals.late as f64)))?;
        family(
            e,
            &DEAD_LETTERS,
            one(|f| Count(f.totals.dead_lettered as f64)),
        )?;
        family(e, &SKIPPED_RECORDS, one(|f| Count(f.totals.skipped as f64)))?;
        encode_sources(e, jobs)?;
        encode_operators(e, jobs)?;
        encode_stages(e, jobs)?;
        encode_sinks(e, jobs)?;
        encode_time(e, jobs)?;
        Ok(())
    }
}

fn encode_sources(e: &mut DescriptorEncoder<'_>, jobs: &[Scope]) -> Result<(), std::fmt::Error> {
    let per_source = |f: fn(&super::view::SourceView) -> Value<'static>| {
        per_job(jobs, move |s| {
            s.figures
                .meters
                .sources
                .iter()
                .map(move |src| (with(&s.labels, &[("source", src.name.clone())]), f(src)))
        })
    };
    family(
        e,
        &SOURCE_RECORDS,
        per_source(|s| Value::Count(s.records as f64)),
    )?;
    family(
        e,
        &SOURCE_BYTES,
        per_source(|s| Value::Count(s.bytes as f64)),
    )?;
    family(
        e,
        &SOURCE_WAITING_RECORDS,
        per_source(|s| Value::Gauge(s.waiting as f64)),
    )?;
    family(
        e,
        &SOURCE_BACKPRESSURED_SECONDS,
        per_source(|s| Value::Count(s.backpressured_s)),
    )?;
    family(
        e,
        &KAFKA_CONSUMER_LAG_RECORDS,
        per_job(jobs, |s| {
            s.figures.meters.kafka_lag.iter().map(move |l| {
                let labels = with(
                    &s.labels,
                    &[
                        ("topic", l.topic.clone()),
                        ("partition", l.partition.to_string()),
                    ],
                );
                (labels, Value::Gauge(l.lag as f64))
            })
        }),
    )?;
    Ok(())
}

fn encode_operators(e: &mut DescriptorEncoder<'_>, jobs: &[Scope]) -> Result<(), std::fmt::Error> {
    type Op = super::view::OperatorView;
    let ops = || {
        jobs.iter().flat_map(|s| {
            s.figures.meters.stages.iter().flat_map(move |st| {
                st.operators.iter().map(move |o| {
                    let labels = with(
                        &s.labels,
                        &[
                            ("stage", st.stage.to_string()),
                            ("operator", o.name.clone()),
                        ],
                    );
                    (labels, o)
                })
            })
        })
    };
    let per_op =
        |f: fn(&Op) -> f64, ty: fn(f64) -> Value<'static>| ops().map(move |(l, o)| (l, ty(f(o))));
    let per_partition = |f: fn(&super::view::PartitionView) -> u64| {
        ops().flat_map(move |(l, o)| {
            o.partitions.iter().map(move |p| {
                (
                    with(&l, &[("partition", p.partition.to_string())]),
                    Value::Count(f(p) as f64),
                )
            })
        })
    };
    family(e, &OPERATOR_RECORDS_IN, per_partition(|p| p.records_in))?;
    family(e, &OPERATOR_RECORDS_OUT, per_partition(|p| p.records_out))?;
    family(
        e,
        &OPERATOR_BYTES_IN,
        per_op(|o| o.bytes_in as f64, Value::Count),
    )?;
    family(
        e,
        &OPERATOR_BYTES_OUT,
        per_op(|o| o.bytes_out as f64, Value::Count),
    )?;
    family(
        e,
        &OPERATOR_CALL_SECONDS,
        ops().map(|(l, o)| (l, Value::Histogram(&o.call))),
    )?;
    family(
        e,
        &OPERATOR_REJECTED_RECORDS,
        per_op(|o| o.rejected as f64, Value::Count),
    )?;
    family(e, &OPERATOR_TRAPS, per_op(|o| o.traps as f64, Value::Count))?;
    family(
        e,
        &OPERATOR_INSTANCE_RESTARTS,
        per_op(|o| o.restarts as f64, Value::Count),
    )?;
    family(
        e,
        &OPERATOR_LIMIT_BREACHES,
        ops().flat_map(|(l, o)| {
            o.breaches.iter().map(move |(limit, n)| {
                (
                    with(&l, &[("limit", limit.to_string())]),
                    Value::Count(*n as f64),
                )
            })
        }),
    )?;
    family(
        e,
        &OPERATOR_DEAD_LETTERS,
        per_op(|o| o.dead_letters as f64, Value::Count),
    )?;
    family(
        e,
        &OPERATOR_LATE_RECORDS,
        per_op(|o| o.late as f64, Value::Count),
    )?;
    family(
        e,
        &OPERATOR_VERSION,
        per_op(|o| o.version as f64, Value::Gauge),
    )?;
    family(
        e,
        &OPERATOR_LIMIT,
        ops().flat_map(|(l, o)| {
            o.limits.iter().map(move |u| {
                (
                    with(&l, &[("limit", u.limit.to_string())]),
                    Value::Gauge(u.allowed),
                )
            })
        }),
    )?;
    family(
        e,
        &OPERATOR_LIMIT_USED,
        ops().flat_map(|(l, o)| {
            o.limits.iter().filter_map(move |u| {
                u.used
                    .map(|v| (with(&l, &[("limit", u.limit.to_string())]), Value::Gauge(v)))
            })
        }),
    )?;
    family(
        e,
        &OPERATOR_VERSION_EVENTS,
        per_job(jobs, |s| {
            let mut counts: std::collections::BTreeMap<(String, &'static str), u64> =
                Default::default();
            for v in &s.figures.versions {
                let outcome = match (v.adopted, v.rolled_back) {
                    (_, true) => "rolled_back",
                    (true, false) => "adopted",
                    (false, false) => "refused",
                };
                *counts.entry((v.operator.clone(), outcome)).or_default() += 1;
            }
            counts
                .into_iter()
                .map(|((op, outcome), n)| {
                    (
                        with(
                            &s.labels,
                            &[("operator", op), ("outcome", outcome.to_string())],
                        ),
                        Value::Count(n as f64),
                    )
                })
                .collect::<Vec<_>>()
        }),
    )?;
    Ok(())
}

fn encode_stages(e: &mut DescriptorEncoder<'_>, jobs: &[Scope]) -> Result<(), std::fmt::Error> {
    let per_stage = |f: fn(&super::view::StageView) -> f64| {
        per_job(jobs, move |s| {
            s.figures.meters.stages.iter().map(move |st| {
                (
                    with(&s.labels, &[("stage", st.stage.to_string())]),
                    Value::Count(f(st)),
                )
            })
        })
    };
    family(e, &STAGE_BUSY_SECONDS, per_stage(|s| s.busy_s))?;
    family(
        e,
        &STAGE_BACKPRESSURED_SECONDS,
        per_stage(|s| s.backpressured_s),
    )?;
    Ok(())
}

fn encode_sinks(e: &mut DescriptorEncoder<'_>, jobs: &[Scope]) -> Result<(), std::fmt::Error> {
    let per_sink = |f: fn(&super::view::SinkView) -> u64| {
        per_job(jobs, move |s| {
            s.figures.meters.sinks.iter().map(move |k| {
                (
                    with(&s.labels, &[("sink", k.name.clone())]),
                    Value::Count(f(k) as f64),
                )
            })
        })
    };
    family(e, &SINK_RECORDS, per_sink(|k| k.records))?;
    family(e, &SINK_BYTES, per_sink(|k| k.bytes))?;
    Ok(())
}

fn encode_time(e: &mut DescriptorEncoder<'_>, jobs: &[Scope]) -> Result<(), std::fmt::Error> {
    let per_mark = |f: fn(&super::view::WatermarkRow) -> Option<i64>| {
        per_job(jobs, move |s| {
            s.figures.meters.watermarks.iter().filter_map(move |w| {
                let labels = with(
                    &s.labels,
                    &[("stage", w.stage.to_string()), ("stream", w.stream.clone())],
                );
                f(w).map(|ms| (labels, Value::Gauge(ms as f64 / 1e3)))
            })
        })
    };
    family(e, &STREAM_EVENT_TIME_SECONDS, per_mark(|w| w.event_time_ms))?;
    family(e, &WATERMARK_SECONDS, per_mark(|w| w.watermark_ms))?;
    family(e, &WATERMARK_LAG_SECONDS, per_mark(|w| w.lag_ms))?;
    let per_checkpoint = |f: fn(&super::view::CheckpointView) -> Value<'static>| {
        per_job(jobs, move |s| {
            s.figures
                .checkpoints
                .as_ref()
                .map(|c| (s.labels.clone(), f(c)))
        })
    };
    family(
        e,
        &CHECKPOINTS,
        per_checkpoint(|c| Value::Count(c.count as f64)),
    )?;
    family(
        e,
        &CHECKPOINT_DURATION_SECONDS,
        per_job(jobs, |s| {
            s.figures.checkpoints.as_ref().map(|_| {
                (
                    s.labels.clone(),
                    Value::Histogram(&s.figures.meters.checkpoint),
                )
            })
        }),
    )?;
    family(
        e,
        &CHECKPOINT_SIZE_BYTES,
        per_checkpoint(|c| Value::Gauge(c.last_bytes as f64)),
    )?;
    family(
        e,
        &CHECKPOINT_AGE_SECONDS,
        per_checkpoint(|c| Value::Gauge(c.age_s)),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{OperatorView, SourceView, StageView, Totals};

    fn figures(records: u64) -> JobFigures {
        JobFigures {
            totals: Totals {
                batches: 3,
                ..Totals::default()
            },
            meters: crate::metrics::JobMetricsView {
                sources: vec![SourceView {
                    name: "file \"a\\b\".txt".into(),
                    records,
                    ..SourceView::default()
                }],
                stages: vec![StageView {
                    operators: vec![OperatorView {
                        name: "split".into(),
                        breaches: [("memory", 2)].into_iter().collect(),
                        ..OperatorView::default()
                    }],
                    ..StageView::default()
                }],
                ..Default::default()
            },
            ..JobFigures::default()
        }
    }

    #[test]
    fn each_family_is_written_once_with_a_series_per_job() {
        let text = encode(vec![
            Scope {
                labels: vec![("job", "a".into())],
                figures: figures(5),
            },
            Scope {
                labels: vec![("job", "b".into())],
                figures: figures(7),
            },
        ]);
        assert_eq!(
            text.matches("# TYPE sluice_source_records counter").count(),
            1,
            "{text}"
        );
        // Label values are escaped as the format says.
        assert!(
            text.contains(
                "sluice_source_records_total{job=\"a\",source=\"file \\\"a\\\\b\\\".txt\"} 5"
            ),
            "{text}"
        );
        assert!(
            text.contains("{job=\"b\",source=\"file \\\"a\\\\b\\\".txt\"} 7"),
            "{text}"
        );
        assert!(text.contains("sluice_operator_limit_breaches_total{job=\"a\",stage=\"0\",operator=\"split\",limit=\"memory\"} 2"), "{text}");
        assert!(text.contains("sluice_batches_total{job=\"b\"} 3"), "{text}");
        // A job without checkpoints has no checkpoint series, and the
        // exposition ends as OpenMetrics requires.
        assert!(!text.contains("sluice_checkpoints"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_count_and_sum() {
        let h = crate::metrics::Histogram::default();
        h.observe(std::time::Duration::from_millis(3));
        h.observe(std::time::Duration::from_millis(30));
        let mut f = figures(0);
        f.meters.processing = h.view();
        let text = encode(vec![Scope {
            labels: vec![("job", "a".into())],
            figures: f,
        }]);
        for line in [
            "sluice_batch_processing_seconds_bucket{le=\"0.0025\",job=\"a\"} 0",
            "sluice_batch_processing_seconds_bucket{le=\"0.005\",job=\"a\"} 1",
            "sluice_batch_processing_seconds_bucket{le=\"0.05\",job=\"a\"} 2",
            "sluice_batch_processing_seconds_bucket{le=\"+Inf\",job=\"a\"} 2",
            "sluice_batch_processing_seconds_count{job=\"a\"} 2",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(
            text.contains("sluice_batch_processing_seconds_sum{job=\"a\"} 0.033"),
            "{text}"
        );
    }
}
