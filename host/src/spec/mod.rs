//! The job file.
mod job;
pub mod limits;
mod operator;
mod sink;
mod source;

pub use job::{BatchConfig, ConfigError, DeadLetterConfig, JobConfig, PartitionBy, line_of};
pub use limits::{LimitsConfig, LimitsError};
pub use operator::{Builtins, OperatorConfig, REDUCE_MODES, ReduceMode, SettingError, Shape};
pub use sink::{Delivery, KafkaSinkConfig, SinkConfig};
pub use source::{KafkaSourceConfig, KafkaStart, SourceConfig, SourceEntry};
