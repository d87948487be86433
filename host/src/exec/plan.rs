//! The plan: the operators a job file names (built-ins from the registry,
//! Wasm components from the runtime), the streams they read and write, and
//! the stages the chain splits into, each keyed stage behind an exchange.

use super::exchange::{Combine, Exchange};
use super::job::{Job, JobError};
use super::worker::Route;
use crate::operators::registry::BUILTINS;
use crate::operators::{OnStream, OperatorFactory, WatermarkRules};
use crate::spec::{JobConfig, SourceConfig};
use crate::wasm::Runtime;
use std::path::Path;
use std::sync::Arc;

impl Job {
    /// Builds a job from a parsed job file at `path`.
    pub fn from_config(cfg: JobConfig, path: &Path, runtime: &Runtime) -> Result<Job, JobError> {
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = cfg.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "job".into())
        });
        let limits = cfg.limits().map_err(|e| JobError::Invalid(e.to_string()))?;
        let mut b = Job::builder(name.clone())
            .base_dir(&base)
            .partition_by(cfg.partition_by)
            .limits(limits);
        if let Some(w) = &cfg.workers {
            b = b.workers(*w.get_ref());
        }
        if let Some(p) = &cfg.partitions {
            b = b.partitions(*p.get_ref());
        }
        if let Some(i) = cfg.interval() {
            b = b.interval(i);
        }
        if let Some(m) = &cfg.batch.max_records {
            b = b.max_records(*m.get_ref());
        }
        if let Some(bytes) = cfg.max_batch_bytes() {
            b = b.max_batch_bytes(bytes);
        }
        if let Some(bytes) = cfg.max_line_bytes() {
            b = b.max_line_bytes(bytes);
        }
        for s in &cfg.sources {
            let s = s.get_ref();
            b = match &s.name {
                Some(name) => b.named_source(name, s.source.clone()),
                None => b.source(s.source.clone()),
            };
        }
        if let Some(c) = &cfg.checkpoint {
            let every = c
                .every()
                .map_err(|(field, _, m)| JobError::Invalid(format!("checkpoint.{field}: {m}")))?;
            let dir = c
                .path
                .clone()
                .unwrap_or_else(|| Path::new("checkpoints").join(&name));
            b = b.checkpoint(base.join(dir), every);
        }
        if let Some(r) = &cfg.reload {
            let window = r
                .window()
                .map_err(|(field, _, m)| JobError::Invalid(format!("reload.{field}: {m}")))?;
            b = b.rollback_window(window);
        }
        for (i, op) in cfg.operators.iter().enumerate() {
            let op = op.get_ref();
            let name = op.display_name();
            // What shapes the operator's state: its kind and, for built-ins
            // and reducers, its settings (a plugin's settings may change
            // with its versions).
            let kind = match (&op.plugin, &op.reducer, &op.builtin) {
                (Some(_), _, _) => "plugin".to_string(),
                (_, Some(_), _) => {
                    format!("reducer, mode {}", op.mode.as_deref().unwrap_or("update"))
                }
                (_, _, b) => format!("builtin {}", b.as_deref().unwrap_or("count")),
            };
            b = b.fingerprint(format!("operators[{i}].kind"), kind);
            if let Some(input) = &op.input {
                b = b.fingerprint(format!("operators[{i}].input"), input.clone());
            }
            if op.plugin.is_none() {
                for (k, v) in op.config_pairs() {
                    b = b.fingerprint(format!("operators[{i}].config.{k}"), v);
                }
            }
            let factory: Arc<dyn OperatorFactory> = if let Some(plugin) = &op.plugin {
                let loaded = runtime
                    .load_world(&base.join(plugin), crate::wasm::World::Transform)
                    .map_err(|error| JobError::Load {
                        operator: name.clone(),
                        error,
                    })?;
                let (factory, cell) =
                    crate::wasm::swappable(&loaded, name.clone(), op.config_pairs());
                b.cells.push(cell);
                factory
            } else if let Some(reducer) = &op.reducer {
                let loaded = runtime
                    .load_world(&base.join(reducer), crate::wasm::World::Reduce)
                    .map_err(|error| JobError::Load {
                        operator: name.clone(),
                        error,
                    })?;
                let mode = op
                    .mode
                    .as_deref()
                    .unwrap_or("update")
                    .parse()
                    .map_err(|m| {
                        JobError::Invalid(format!("operator `{name}`: field `mode`: {m}"))
                    })?;
                let (factory, cell) =
                    crate::wasm::swappable_reducer(&loaded, name.clone(), op.config_pairs(), mode);
                b.cells.push(cell);
                factory
            } else {
                let builtin = op.builtin.as_deref().unwrap_or("count");
                BUILTINS
                    .factory(builtin, &name, &op.config_pairs())
                    .map_err(|(key, m)| {
                        JobError::Invalid(format!("operator `{name}`: setting `{key}`: {m}"))
                    })?
            };
            b = b.operator_arc(match &op.input {
                Some(stream) => Arc::new(OnStream::new(stream, factory)),
                None => factory,
            });
        }
        for s in &cfg.sinks {
            b = b.sink(s.get_ref().clone());
        }
        if let Some(d) = &cfg.dead_letter {
            b = b.dead_letter(d.path.clone());
        }
        b.build()
    }
}

/// Numbers the job's streams: 0 is the unnamed stream, then named sources
/// in order, then the outputs of operators that start a stream (joins).
/// Checks that every stream an operator reads exists before it.
pub(super) fn name_streams(
    sources: &[(Option<String>, SourceConfig)],
    ops: &[Arc<dyn OperatorFactory>],
) -> Result<Vec<String>, JobError> {
    let mut streams = vec![String::new()];
    for name in sources.iter().filter_map(|(n, _)| n.as_ref()) {
        if !streams.contains(name) {
            streams.push(name.clone());
        }
    }
    for op in ops {
        for input in op.inputs().unwrap_or_default() {
            if input.is_empty() || !streams.contains(&input) {
                return Err(JobError::Invalid(format!(
                    "operator `{}` reads the stream {input:?}, but no source or earlier join is called that (streams: {})",
                    op.name(),
                    streams[1..]
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if let Some(out) = op.output_stream() {
            if streams.contains(&out) {
                return Err(JobError::Invalid(format!(
                    "operator `{}` names its output stream {out:?}, which already exists; rename the operator",
                    op.name()
                )));
            }
            streams.push(out);
        }
    }
    Ok(streams)
}

pub(super) fn stream_number(streams: &[String], name: &str) -> usize {
    streams.iter().position(|s| s == name).unwrap_or(0)
}

/// Splits the operator chain into stages: a keyed operator starts a new
/// stage, preceded by a hash exchange. With `uncombined`, a stateful keyed
/// operator gets the records themselves, not a combiner's partial records:
/// it may refuse records at the `state` limit, and the job then sets them
/// aside (`on_breach` is `skip` or `dead-letter`), so they must be the
/// records that came in, counted one by one.
pub(super) fn split_stages(
    ops: &[Arc<dyn OperatorFactory>],
    streams: &[String],
    sources: &[usize],
    uncombined: bool,
) -> Vec<Stage> {
    // The streams flowing at each point of the chain.
    let mut flowing: Vec<usize> = Vec::new();
    for s in sources {
        if !flowing.contains(s) {
            flowing.push(*s);
        }
    }
    let mut stages = vec![Stage {
        ops: Vec::new(),
        routes: Vec::new(),
        inputs: flowing.clone(),
        keyed: false,
        stateful: false,
        watermark: WatermarkRules::default(),
        exchange: Exchange::default(),
    }];
    for op in ops {
        if op.keyed() {
            stages.push(Stage {
                ops: Vec::new(),
                routes: Vec::new(),
                inputs: flowing.clone(),
                keyed: true,
                stateful: false,
                watermark: WatermarkRules::default(),
                exchange: Exchange::default(),
            });
        }
        let route = Route {
            accepts: op
                .inputs()
                .map(|names| names.iter().map(|n| stream_number(streams, n)).collect()),
            output: op.output_stream().map(|n| stream_number(streams, &n)),
        };
        if op.keyed() {
            let stage = stages.last_mut().expect("just pushed");
            stage.exchange = Exchange {
                combine: op
                    .combiner()
                    .filter(|_| !(uncombined && op.stateful()))
                    .map(|c| Combine {
                        accepts: route.accepts.clone(),
                        combiner: c,
                    }),
                unkeyed_together: op.unkeyed_together(),
            };
        }
        if let Some(out) = route.output {
            let reads = |s: &usize| route.accepts.as_ref().is_none_or(|a| a.contains(s));
            flowing.retain(|s| !reads(s));
            if !flowing.contains(&out) {
                flowing.push(out);
            }
        }
        let stage = stages.last_mut().expect("at least one stage");
        stage.stateful |= op.stateful();
        stage.watermark = stage.watermark.and(op.watermark_rules());
        stage.ops.push(op.clone());
        stage.routes.push(route);
    }
    stages.retain(|s| !s.ops.is_empty() || !s.keyed);
    stages
}

pub(super) struct Stage {
    pub(super) ops: Vec<Arc<dyn OperatorFactory>>,
    /// Per operator, the streams it reads and writes.
    pub(super) routes: Vec<Route>,
    /// The streams that enter the stage.
    pub(super) inputs: Vec<usize>,
    /// How records enter the stage, when it is keyed.
    pub(super) exchange: Exchange,
    pub(super) keyed: bool,
    /// Some operator keeps state across batches (sees every boundary).
    pub(super) stateful: bool,
    /// Which records move the stage's watermark, which streams hold it.
    pub(super) watermark: WatermarkRules,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::{Count, NativeOperator};

    /// An operator that is not keyed; what it does does not matter here.
    fn unkeyed() -> NativeOperator {
        NativeOperator::new("unkeyed", |_, _| Ok(()))
    }

    #[test]
    fn stages_split_before_keyed_operators() {
        let ops: Vec<Arc<dyn OperatorFactory>> = vec![
            Arc::new(unkeyed()),
            Arc::new(Count::new("c")),
            Arc::new(unkeyed()),
        ];
        let stages = split_stages(&ops, &[], &[0], false);
        assert_eq!(
            stages
                .iter()
                .map(|s| (s.ops.len(), s.keyed))
                .collect::<Vec<_>>(),
            [(1, false), (2, true)]
        );
        let stages = split_stages(
            &[Arc::new(Count::new("c")) as Arc<dyn OperatorFactory>],
            &[],
            &[0],
            false,
        );
        assert_eq!(
            stages
                .iter()
                .map(|s| (s.ops.len(), s.keyed))
                .collect::<Vec<_>>(),
            [(0, false), (1, true)]
        );
    }
}
