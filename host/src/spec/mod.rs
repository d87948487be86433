//! The job file: its schema, strict parsing, and validation whose errors
//! name the file, line and field. Uses only [`crate::model`]. A built-in
//! operator's settings stay a raw table here; the built-in checks them
//! itself through [`Builtins`], so this module knows no operator.

pub mod checkpoint;
mod job;
pub mod limits;
mod operator;
pub mod reload;
mod sink;
mod source;

pub use checkpoint::{CheckpointConfig, DEFAULT_CHECKPOINT_INTERVAL, Every};
pub use job::{
    BatchConfig, ConfigError, DEFAULT_MAX_LINE_BYTES, DeadLetterConfig, JobConfig, MAX_BATCH_BYTES,
    MIN_BATCH_BYTES, PartitionBy, line_of,
};
pub use limits::{LimitsConfig, LimitsError};
pub use operator::{Builtins, OperatorConfig, REDUCE_MODES, ReduceMode, SettingError, Shape};
pub use reload::{ReloadConfig, RollbackWindow};
pub use sink::{
    BATCH_METADATA, Delivery, KafkaSinkConfig, SinkConfig, batch_metadata, parse_batch_metadata,
};
pub use source::{KafkaSourceConfig, KafkaStart, SourceConfig, SourceEntry};
