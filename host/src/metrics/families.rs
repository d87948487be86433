//! Every metric family Sluice exposes, by name, with its help text and
//! type; `docs/metrics.md` says what each means, its unit and labels.

use prometheus_client::metrics::MetricType;

/// A metric family: its name, help text and type.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The name (a counter's series add `_total`).
    pub name: &'static str,
    /// What it counts.
    pub help: &'static str,
    /// Counter, gauge or histogram.
    pub ty: MetricType,
}

impl Family {
    /// The name its samples go by: a counter's with `_total` (a
    /// histogram's add `_bucket`, `_sum` and `_count`).
    pub fn series(&self) -> String {
        match self.ty {
            MetricType::Counter => format!("{}_total", self.name),
            _ => self.name.to_string(),
        }
    }
}

/// `sluice_job_start_time_seconds`: When the job's run started, in Unix seconds.
pub const JOB_START_TIME_SECONDS: Family = Family {
    name: "sluice_job_start_time_seconds",
    help: "When the job's run started, in Unix seconds.",
    ty: MetricType::Gauge,
};

/// `sluice_batch_interval_seconds`: The job's micro-batch interval.
pub const BATCH_INTERVAL_SECONDS: Family = Family {
    name: "sluice_batch_interval_seconds",
    help: "The job's micro-batch interval.",
    ty: MetricType::Gauge,
};

/// `sluice_batches`: Micro-batches that carried records.
pub const BATCHES: Family = Family {
    name: "sluice_batches",
    help: "Micro-batches that carried records.",
    ty: MetricType::Counter,
};

/// `sluice_batch_scheduling_delay_seconds`: Per micro-batch, the time from its cut to the start of its processing.
pub const BATCH_SCHEDULING_DELAY_SECONDS: Family = Family {
    name: "sluice_batch_scheduling_delay_seconds",
    help: "Per micro-batch, the time from its cut to the start of its processing.",
    ty: MetricType::Histogram,
};

/// `sluice_batch_processing_seconds`: Per micro-batch, the time from the start of its processing to its sinks written.
pub const BATCH_PROCESSING_SECONDS: Family = Family {
    name: "sluice_batch_processing_seconds",
    help: "Per micro-batch, the time from the start of its processing to its sinks written.",
    ty: MetricType::Histogram,
};

/// `sluice_batch_total_delay_seconds`: Per micro-batch, the time from its first record read to its sinks written.
pub const BATCH_TOTAL_DELAY_SECONDS: Family = Family {
    name: "sluice_batch_total_delay_seconds",
    help: "Per micro-batch, the time from its first record read to its sinks written.",
    ty: MetricType::Histogram,
};

/// `sluice_input_pending_records`: Records read and not yet in a micro-batch.
pub const INPUT_PENDING_RECORDS: Family = Family {
    name: "sluice_input_pending_records",
    help: "Records read and not yet in a micro-batch.",
    ty: MetricType::Gauge,
};

/// `sluice_late_records`: Records that arrived after their windows closed.
pub const LATE_RECORDS: Family = Family {
    name: "sluice_late_records",
    help: "Records that arrived after their windows closed.",
    ty: MetricType::Counter,
};

/// `sluice_dead_letters`: Records written to the dead-letter file.
pub const DEAD_LETTERS: Family = Family {
    name: "sluice_dead_letters",
    help: "Records written to the dead-letter file.",
    ty: MetricType::Counter,
};

/// `sluice_skipped_records`: Records dropped under `on_breach = "skip"`.
pub const SKIPPED_RECORDS: Family = Family {
    name: "sluice_skipped_records",
    help: "Records dropped under `on_breach = \"skip\"`.",
    ty: MetricType::Counter,
};

/// `sluice_source_records`: Records read from the source.
pub const SOURCE_RECORDS: Family = Family {
    name: "sluice_source_records",
    help: "Records read from the source.",
    ty: MetricType::Counter,
};

/// `sluice_source_bytes`: Bytes of record payload read from the source.
pub const SOURCE_BYTES: Family = Family {
    name: "sluice_source_bytes",
    help: "Bytes of record payload read from the source.",
    ty: MetricType::Counter,
};

/// `sluice_source_waiting_records`: Records the source handed over that wait in the job's input channel.
pub const SOURCE_WAITING_RECORDS: Family = Family {
    name: "sluice_source_waiting_records",
    help: "Records the source handed over that wait in the job's input channel.",
    ty: MetricType::Gauge,
};

/// `sluice_source_backpressured_seconds`: Time the source waited for room in the job's input channel.
pub const SOURCE_BACKPRESSURED_SECONDS: Family = Family {
    name: "sluice_source_backpressured_seconds",
    help: "Time the source waited for room in the job's input channel.",
    ty: MetricType::Counter,
};

/// `sluice_kafka_consumer_lag_records`: Records between a Kafka source's position and the end of the topic-partition.
pub const KAFKA_CONSUMER_LAG_RECORDS: Family = Family {
    name: "sluice_kafka_consumer_lag_records",
    help: "Records between a Kafka source's position and the end of the topic-partition.",
    ty: MetricType::Gauge,
};

/// `sluice_operator_records_in`: Records given to the operator, per partition.
pub const OPERATOR_RECORDS_IN: Family = Family {
    name: "sluice_operator_records_in",
    help: "Records given to the operator, per partition.",
    ty: MetricType::Counter,
};

/// `sluice_operator_records_out`: Records the operator emitted, per partition.
pub const OPERATOR_RECORDS_OUT: Family = Family {
    name: "sluice_operator_records_out",
    help: "Records the operator emitted, per partition.",
    ty: MetricType::Counter,
};

/// `sluice_operator_bytes_in`: Bytes of payload given to the operator.
pub const OPERATOR_BYTES_IN: Family = Family {
    name: "sluice_operator_bytes_in",
    help: "Bytes of payload given to the operator.",
    ty: MetricType::Counter,
};

/// `sluice_operator_bytes_out`: Bytes of payload the operator emitted.
pub const OPERATOR_BYTES_OUT: Family = Family {
    name: "sluice_operator_bytes_out",
    help: "Bytes of payload the operator emitted.",
    ty: MetricType::Counter,
};

/// `sluice_operator_call_seconds`: Per call on a partition batch, the time in the operator (for Wasm, lowering and lifting included).
pub const OPERATOR_CALL_SECONDS: Family = Family {
    name: "sluice_operator_call_seconds",
    help: "Per call on a partition batch, the time in the operator (for Wasm, lowering and lifting included).",
    ty: MetricType::Histogram,
};

/// `sluice_operator_rejected_records`: Records the operator rejected, with a reason.
pub const OPERATOR_REJECTED_RECORDS: Family = Family {
    name: "sluice_operator_rejected_records",
    help: "Records the operator rejected, with a reason.",
    ty: MetricType::Counter,
};

/// `sluice_operator_traps`: Calls in which the operator's Wasm instance trapped.
pub const OPERATOR_TRAPS: Family = Family {
    name: "sluice_operator_traps",
    help: "Calls in which the operator's Wasm instance trapped.",
    ty: MetricType::Counter,
};

/// `sluice_operator_instance_restarts`: Times the operator's Wasm instance was discarded and created again (after a trap or a breach).
pub const OPERATOR_INSTANCE_RESTARTS: Family = Family {
    name: "sluice_operator_instance_restarts",
    help: "Times the operator's Wasm instance was discarded and created again (after a trap or a breach).",
    ty: MetricType::Counter,
};

/// `sluice_operator_limit_breaches`: Calls in which the operator exceeded a limit, by limit.
pub const OPERATOR_LIMIT_BREACHES: Family = Family {
    name: "sluice_operator_limit_breaches",
    help: "Calls in which the operator exceeded a limit, by limit.",
    ty: MetricType::Counter,
};

/// `sluice_operator_dead_letters`: Records the operator sent to the dead-letter file.
pub const OPERATOR_DEAD_LETTERS: Family = Family {
    name: "sluice_operator_dead_letters",
    help: "Records the operator sent to the dead-letter file.",
    ty: MetricType::Counter,
};

/// `sluice_operator_late_records`: Records that reached the operator after their windows closed.
pub const OPERATOR_LATE_RECORDS: Family = Family {
    name: "sluice_operator_late_records",
    help: "Records that reached the operator after their windows closed.",
    ty: MetricType::Counter,
};

/// `sluice_operator_version`: The operator's version in force (1: the one the job started with).
pub const OPERATOR_VERSION: Family = Family {
    name: "sluice_operator_version",
    help: "The operator's version in force (1: the one the job started with).",
    ty: MetricType::Gauge,
};

/// `sluice_operator_limit`: A limit the operator is held to: bytes for memory, seconds for cpu_per_batch.
pub const OPERATOR_LIMIT: Family = Family {
    name: "sluice_operator_limit",
    help: "A limit the operator is held to: bytes for memory, seconds for cpu_per_batch.",
    ty: MetricType::Gauge,
};

/// `sluice_operator_limit_used`: How much of a limit the operator uses: its largest instance's memory, its longest last call.
pub const OPERATOR_LIMIT_USED: Family = Family {
    name: "sluice_operator_limit_used",
    help: "How much of a limit the operator uses: its largest instance's memory, its longest last call.",
    ty: MetricType::Gauge,
};

/// `sluice_operator_version_events`: New operator versions, by outcome (adopted, refused, rolled_back).
pub const OPERATOR_VERSION_EVENTS: Family = Family {
    name: "sluice_operator_version_events",
    help: "New operator versions, by outcome (adopted, refused, rolled_back).",
    ty: MetricType::Counter,
};

/// `sluice_stage_busy_seconds`: Worker time on the stage's partition batches, summed over partitions.
pub const STAGE_BUSY_SECONDS: Family = Family {
    name: "sluice_stage_busy_seconds",
    help: "Worker time on the stage's partition batches, summed over partitions.",
    ty: MetricType::Counter,
};

/// `sluice_stage_backpressured_seconds`: Time the stage's output waited for the next step (the sinks) to take it.
pub const STAGE_BACKPRESSURED_SECONDS: Family = Family {
    name: "sluice_stage_backpressured_seconds",
    help: "Time the stage's output waited for the next step (the sinks) to take it.",
    ty: MetricType::Counter,
};

/// `sluice_sink_records`: Records written to the sink.
pub const SINK_RECORDS: Family = Family {
    name: "sluice_sink_records",
    help: "Records written to the sink.",
    ty: MetricType::Counter,
};

/// `sluice_sink_bytes`: Bytes of record payload written to the sink.
pub const SINK_BYTES: Family = Family {
    name: "sluice_sink_bytes",
    help: "Bytes of record payload written to the sink.",
    ty: MetricType::Counter,
};

/// `sluice_stream_event_time_seconds`: The largest event time of the stream that reached the stage, in Unix seconds.
pub const STREAM_EVENT_TIME_SECONDS: Family = Family {
    name: "sluice_stream_event_time_seconds",
    help: "The largest event time of the stream that reached the stage, in Unix seconds.",
    ty: MetricType::Gauge,
};

/// `sluice_watermark_seconds`: The stage's watermark, in Unix seconds.
pub const WATERMARK_SECONDS: Family = Family {
    name: "sluice_watermark_seconds",
    help: "The stage's watermark, in Unix seconds.",
    ty: MetricType::Gauge,
};

/// `sluice_watermark_lag_seconds`: Processing time minus the stage's watermark.
pub const WATERMARK_LAG_SECONDS: Family = Family {
    name: "sluice_watermark_lag_seconds",
    help: "Processing time minus the stage's watermark.",
    ty: MetricType::Gauge,
};

/// `sluice_checkpoints`: Checkpoints written.
pub const CHECKPOINTS: Family = Family {
    name: "sluice_checkpoints",
    help: "Checkpoints written.",
    ty: MetricType::Counter,
};

/// `sluice_checkpoint_duration_seconds`: Per checkpoint, the time from the sinks' sync to its commit.
pub const CHECKPOINT_DURATION_SECONDS: Family = Family {
    name: "sluice_checkpoint_duration_seconds",
    help: "Per checkpoint, the time from the sinks' sync to its commit.",
    ty: MetricType::Histogram,
};

/// `sluice_checkpoint_size_bytes`: The size of the last checkpoint file.
pub const CHECKPOINT_SIZE_BYTES: Family = Family {
    name: "sluice_checkpoint_size_bytes",
    help: "The size of the last checkpoint file.",
    ty: MetricType::Gauge,
};

/// `sluice_checkpoint_age_seconds`: Time since the last checkpoint was written.
pub const CHECKPOINT_AGE_SECONDS: Family = Family {
    name: "sluice_checkpoint_age_seconds",
    help: "Time since the last checkpoint was written.",
    ty: MetricType::Gauge,
};

/// Every family, in the order a scrape writes them.
pub const ALL: &[Family] = &[
    JOB_START_TIME_SECONDS,
    BATCH_INTERVAL_SECONDS,
    BATCHES,
    BATCH_SCHEDULING_DELAY_SECONDS,
    BATCH_PROCESSING_SECONDS,
    BATCH_TOTAL_DELAY_SECONDS,
    INPUT_PENDING_RECORDS,
    LATE_RECORDS,
    DEAD_LETTERS,
    SKIPPED_RECORDS,
    SOURCE_RECORDS,
    SOURCE_BYTES,
    SOURCE_WAITING_RECORDS,
    SOURCE_BACKPRESSURED_SECONDS,
    KAFKA_CONSUMER_LAG_RECORDS,
    OPERATOR_RECORDS_IN,
    OPERATOR_RECORDS_OUT,
    OPERATOR_BYTES_IN,
    OPERATOR_BYTES_OUT,
    OPERATOR_CALL_SECONDS,
    OPERATOR_REJECTED_RECORDS,
    OPERATOR_TRAPS,
    OPERATOR_INSTANCE_RESTARTS,
    OPERATOR_LIMIT_BREACHES,
    OPERATOR_DEAD_LETTERS,
    OPERATOR_LATE_RECORDS,
    OPERATOR_VERSION,
    OPERATOR_LIMIT,
    OPERATOR_LIMIT_USED,
    OPERATOR_VERSION_EVENTS,
    STAGE_BUSY_SECONDS,
    STAGE_BACKPRESSURED_SECONDS,
    SINK_RECORDS,
    SINK_BYTES,
    STREAM_EVENT_TIME_SECONDS,
    WATERMARK_SECONDS,
    WATERMARK_LAG_SECONDS,
    CHECKPOINTS,
    CHECKPOINT_DURATION_SECONDS,
    CHECKPOINT_SIZE_BYTES,
    CHECKPOINT_AGE_SECONDS,
];
