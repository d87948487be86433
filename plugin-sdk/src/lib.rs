//! Write [Sluice](https://example.invalid/sluice) stream operators in Rust.
//!
//! An operator is a type implementing [`Operator`], exported with
//! [`export_operator!`] and built as a WebAssembly component:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2
//! ```
//!
//! The host calls the component once per micro-batch of one partition, never
//! once per record. The batch crosses the boundary as a few flat buffers
//! ([`Batch`]); this crate hides that layout behind per-record views
//! ([`Record`]) and an output builder ([`Output`]). Operators that want the last
//! bit of speed override [`Operator::process_batch`] and work on whole buffers.
//!
//! # A complete operator
//!
//! ```
//! use sluice_sdk::{export_operator, Config, Error, Operator, Output, Record};
//!
//! /// Keeps records whose value contains a configured word, upper-cased.
//! pub struct ShoutIfContains {
//!     word: Vec<u8>,
//! }
//!
//! impl Operator for ShoutIfContains {
//!     fn init(config: &Config) -> Result<Self, Error> {
//!         config.allow_only(&["word"])?;
//!         Ok(Self { word: config.require("word")?.as_bytes().to_vec() })
//!     }
//!
//!     fn process_record(&mut self, record: Record<'_>, out: &mut Output) -> Result<(), String> {
//!         if record.value.windows(self.word.len()).any(|w| w == self.word.as_slice()) {
//!             out.emit_with(record.key, record.timestamp, |value| {
//!                 value.extend(record.value.iter().map(u8::to_ascii_uppercase));
//!             });
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_operator!(ShoutIfContains);
//!
//! // The same operator runs natively in a plain unit test, without Wasm:
//! let mut harness = sluice_sdk::testing::Harness::<ShoutIfContains>::new(&[("word", "fox")]).unwrap();
//! let out = harness.run_lines(&["the quick fox", "a lazy dog"]).unwrap();
//! assert_eq!(out, ["THE QUICK FOX"]);
//! ```
//!
//! # Building
//!
//! The plugin crate is a `cdylib` (plus `rlib` for native tests and
//! benchmarks). A `.cargo/config.toml` in the plugin's workspace enables
//! `simd128` for the Wasm target, which makes byte loops several times faster:
//!
//! ```toml
//! [target.wasm32-wasip2]
//! rustflags = ["-C", "target-feature=+simd128"]
//! ```
//!
//! # Keyed reducers
//!
//! A [`Reducer`] folds new values into a per-key accumulator that the host
//! keeps (Spark's `reduceByKey` / `updateStateByKey`). It is exported with
//! [`export_reducer!`] as the `reduce` world; the host makes one call per
//! partition batch with every key of the batch, and the SDK calls
//! [`Reducer::reduce`] once per key inside that call:
//!
//! ```
//! use sluice_sdk::{export_reducer, Config, Error, Group, Reducer};
//!
//! /// Counts values per key; the accumulator is the count as decimal text.
//! pub struct CountValues;
//!
//! impl Reducer for CountValues {
//!     fn init(config: &Config) -> Result<Self, Error> {
//!         config.allow_only(&[])?;
//!         Ok(CountValues)
//!     }
//!
//!     fn reduce(&mut self, group: &Group<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
//!         let so_far: u64 = match group.accumulator() {
//!             None => 0,
//!             Some(a) => std::str::from_utf8(a)
//!                 .ok()
//!                 .and_then(|t| t.parse().ok())
//!                 .ok_or_else(|| Error::Failed("corrupt accumulator".into()))?,
//!         };
//!         out.extend_from_slice((so_far + group.len() as u64).to_string().as_bytes());
//!         Ok(())
//!     }
//! }
//!
//! export_reducer!(CountValues);
//!
//! let mut harness = sluice_sdk::testing::ReducerHarness::<CountValues>::new(&[]).unwrap();
//! harness.run(&[("a", "x"), ("b", "y"), ("a", "z")]).unwrap();
//! assert_eq!(harness.run(&[("a", "w")]).unwrap(), [("a".to_string(), "3".to_string())]);
//! ```
//!
//! # State across versions
//!
//! A job can swap an operator for a new version while it runs. An operator
//! whose instance keeps state that must survive the swap implements
//! [`Stateful`] and is exported with [`export_stateful_operator!`] (the
//! `stateful-transform` world): the host takes a snapshot from the running
//! instance and restores it into the new version's instance before its
//! first batch.
//!
//! ```
//! use sluice_sdk::{export_stateful_operator, Config, Error, Operator, Output, Record, Stateful};
//!
//! /// Numbers the records it sees, across versions.
//! pub struct Numbered { seen: u64 }
//!
//! impl Operator for Numbered {
//!     fn init(_: &Config) -> Result<Self, Error> {
//!         Ok(Numbered { seen: 0 })
//!     }
//!     fn process_record(&mut self, r: Record<'_>, out: &mut Output) -> Result<(), String> {
//!         self.seen += 1;
//!         out.emit(r.key, format!("{} {}", self.seen, String::from_utf8_lossy(r.value)).as_bytes(), r.timestamp);
//!         Ok(())
//!     }
//! }
//!
//! impl Stateful for Numbered {
//!     fn snapshot(&self) -> Result<Vec<u8>, Error> {
//!         Ok(self.seen.to_le_bytes().to_vec())
//!     }
//!     fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
//!         let bytes = state.try_into().map_err(|_| Error::Failed("not a snapshot of Numbered".into()))?;
//!         self.seen = u64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! export_stateful_operator!(Numbered);
//! ```
//!
//! Errors follow the contract in `docs/operator-contract.md`: a record that
//! cannot be processed is *rejected* (its reason reaches the dead-letter file),
//! a bad setting is [`Error::BadConfig`], anything else is [`Error::Failed`].

#![warn(missing_docs)]

// The generated bindings refer to this crate by name, from inside it too.
extern crate self as sluice_sdk;

mod batch;
pub mod bytes;
mod config;
mod reduce;
pub mod testing;

pub use batch::{Batch, Header, HeaderIter, Headers, Output, Record};
pub use config::Config;
pub use reduce::{Accumulators, Group, Groups, Reducer, Value, reduce_all};

/// Bindings generated from the WIT contract (`wit/operator.wit`).
///
/// Operators do not use these directly; [`export_operator!`] wires an
/// [`Operator`] to them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "transform",
        pub_export_macro: true,
        export_macro_name: "__export_transform_world",
        default_bindings_module: "sluice_sdk::bindings",
        runtime_path: "sluice_sdk::__private::wit_bindgen_rt",
    });
}

/// Bindings generated for the `reduce` world; they share the `types` and
/// `host` interfaces with [`bindings`].
///
/// Reducers do not use these directly; [`export_reducer!`] wires a
/// [`Reducer`] to them.
#[doc(hidden)]
pub mod reduce_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "reduce",
        with: {
            "sluice:operator/types@0.2.0": sluice_sdk::bindings::sluice::operator::types,
            "sluice:operator/host@0.2.0": sluice_sdk::bindings::sluice::operator::host,
        },
        pub_export_macro: true,
        export_macro_name: "__export_reduce_world",
        default_bindings_module: "sluice_sdk::reduce_bindings",
        runtime_path: "sluice_sdk::__private::wit_bindgen_rt",
    });
}

/// Bindings generated for the `stateful-transform` world; they share the
/// `types` and `host` interfaces with [`bindings`].
///
/// Operators do not use these directly; [`export_stateful_operator!`] wires
/// a [`Stateful`] operator to them.
#[doc(hidden)]
pub mod stateful_bindings {
    // Only the `stateful` export: the `transformer` export comes from
    // [`bindings`], and both macros together export the whole world.
    wit_bindgen::generate!({
        inline: "package sluice:sdk; world state { export sluice:operator/stateful@0.2.0; }",
        path: "../wit",
        world: "sluice:sdk/state",
        with: {
            "sluice:operator/types@0.2.0": sluice_sdk::bindings::sluice::operator::types,
        },
        pub_export_macro: true,
        export_macro_name: "__export_stateful_transform_world",
        default_bindings_module: "sluice_sdk::stateful_bindings",
        runtime_path: "sluice_sdk::__private::wit_bindgen_rt",
    });
}

/// A record that an operator could not process, by index in its input batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Index of the record in the input batch.
    pub index: u32,
    /// Why the record was rejected.
    pub reason: String,
}

/// An operator's error, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The configuration is unusable; the job does not start.
    BadConfig(String),
    /// These input records cannot be processed. Prefer [`Output::reject`],
    /// which builds this error for you.
    BadRecords(Vec<RecordError>),
    /// The operator failed as a whole; the job stops with this message.
    Failed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::BadConfig(m) => write!(f, "bad configuration: {m}"),
            Error::BadRecords(rs) => {
                write!(f, "{} bad record(s)", rs.len())?;
                if let Some(first) = rs.first() {
                    write!(f, ", first at index {}: {}", first.index, first.reason)?;
                }
                Ok(())
            }
            Error::Failed(m) => write!(f, "operator failed: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// A stream operator: a map, flatMap, filter or key-by step.
///
/// One value of the implementing type lives in each Wasm instance; the host
/// keeps one instance per (operator, partition), so `&mut self` is never shared
/// between threads and may hold caches or counters.
pub trait Operator: Sized + 'static {
    /// Builds the operator from its settings in the job file.
    ///
    /// Return [`Error::BadConfig`] (for example through [`Config::require`] or
    /// [`Config::allow_only`]) to refuse them.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Handles one input record, emitting zero or more output records to `out`.
    ///
    /// Return `Err(reason)` to reject the record: the host sends it to the
    /// dead-letter file with `reason` (or stops the job when there is none).
    fn process_record(&mut self, record: Record<'_>, out: &mut Output) -> Result<(), String>;

    /// Handles a whole batch. The default calls [`Operator::process_record`]
    /// for each record in order; override it to work on the flat buffers
    /// directly when that is faster. The batch is owned: a map that keeps
    /// record boundaries can change it in place and move it to `out.batch`.
    fn process_batch(&mut self, input: Batch, out: &mut Output) -> Result<(), Error> {
        for record in input.iter() {
            if let Err(reason) = self.process_record(record, out) {
                out.reject(record.index, reason);
            }
        }
        Ok(())
    }
}

/// An [`Operator`] that keeps state across batches which must survive a hot
/// swap to its next version (export it with [`export_stateful_operator!`]).
///
/// When a job swaps in a new version of the operator, the host calls
/// [`Stateful::snapshot`] on the running instance of each partition at a
/// batch boundary and [`Stateful::restore`] on a fresh instance of the new
/// version, after [`Operator::init`] and before its first batch.
pub trait Stateful: Operator {
    /// The operator's state as bytes, in a format its next versions can read.
    fn snapshot(&self) -> Result<Vec<u8>, Error>;

    /// Takes over `state`, a snapshot taken by the previous version. Return
    /// an error when the snapshot cannot be read: the job then keeps the
    /// previous version.
    fn restore(&mut self, state: &[u8]) -> Result<(), Error>;
}

/// Writes a line to the host log, tagged with the job, operator and worker.
///
/// Natively (in unit tests) the line is kept for [`testing::take_log`].
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use bindings::sluice::operator::host;
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    testing::capture_log(level, message);
}

/// Severity of a [`log`] line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Developer details.
    Debug,
    /// Normal operation.
    Info,
    /// Recovered from something unexpected.
    Warn,
    /// Something failed.
    Error,
}

/// The `transformer` exports of an [`Operator`]: the instance's operator
/// slot and the `Guest` implementation; [`export_operator!`] and
/// [`export_stateful_operator!`] expand to it.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_transformer {
    ($op:ty) => {
        use $crate::bindings::exports::sluice::operator::transformer as __t;
        struct __SluiceExport;
        ::std::thread_local! {
            static __STATE: ::core::cell::RefCell<::core::option::Option<$op>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }
        impl __t::Guest for __SluiceExport {
            fn init(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::core::result::Result<(), __t::Error> {
                __STATE.with(|s| $crate::__private::init::<$op>(s, config))
            }
            fn process(input: __t::Batch) -> ::core::result::Result<__t::Batch, __t::Error> {
                __STATE.with(|s| $crate::__private::process::<$op>(s, input))
            }
        }
        $crate::bindings::__export_transform_world!(__SluiceExport with_types_in $crate::bindings);
    };
}

/// Exports an [`Operator`] as the component's `transformer` interface.
///
/// Use it once per plugin crate, at the crate root. On non-Wasm targets it
/// expands to nothing, so the crate can also be linked natively for tests and
/// benchmarks.
#[macro_export]
macro_rules! export_operator {
    ($op:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::__export_transformer!($op);
        };
    };
}

/// Exports a [`Stateful`] operator as the component's `transformer` and
/// `stateful` interfaces (the `stateful-transform` world), so its state
/// moves to the next version when the job swaps versions.
///
/// Use it once per plugin crate, at the crate root, instead of
/// [`export_operator!`]. On non-Wasm targets it expands to nothing.
#[macro_export]
macro_rules! export_stateful_operator {
    ($op:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::__export_transformer!($op);
            use $crate::stateful_bindings::exports::sluice::operator::stateful as __s;
            impl __s::Guest for __SluiceExport {
                fn snapshot() -> ::core::result::Result<::std::vec::Vec<u8>, __s::Error> {
                    __STATE.with(|s| $crate::__private::snapshot::<$op>(s))
                }
                fn restore(state: ::std::vec::Vec<u8>) -> ::core::result::Result<(), __s::Error> {
                    __STATE.with(|s| $crate::__private::restore::<$op>(s, &state))
                }
            }
            $crate::stateful_bindings::__export_stateful_transform_world!(__SluiceExport with_types_in $crate::stateful_bindings);
        };
    };
}

/// Exports a [`Reducer`] as the component's `reducer` interface (the
/// `reduce` world).
///
/// Use it once per plugin crate, at the crate root, instead of
/// [`export_operator!`]. On non-Wasm targets it expands to nothing, so the
/// crate can also be linked natively for tests and benchmarks.
#[macro_export]
macro_rules! export_reducer {
    ($r:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::reduce_bindings::exports::sluice::operator::reducer as __r;
            struct __SluiceExport;
            ::std::thread_local! {
                static __STATE: ::core::cell::RefCell<::core::option::Option<$r>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }
            impl __r::Guest for __SluiceExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), __r::Error> {
                    __STATE.with(|s| $crate::__private::init_reducer::<$r>(s, config))
                }
                fn reduce(
                    input: __r::Groups,
                ) -> ::core::result::Result<__r::Accumulators, __r::Error> {
                    __STATE.with(|s| $crate::__private::reduce::<$r>(s, input))
                }
            }
            $crate::reduce_bindings::__export_reduce_world!(__SluiceExport with_types_in $crate::reduce_bindings);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen::rt as wit_bindgen_rt;

    use crate::bindings::exports::sluice::operator::transformer as t;
    use crate::reduce_bindings::exports::sluice::operator::reducer as r;
    use crate::{Batch, Config, Error, Groups, Operator, Output, Reducer};
    use std::cell::RefCell;

    pub fn init<T: Operator>(
        slot: &RefCell<Option<T>>,
        config: Vec<(String, String)>,
    ) -> Result<(), t::Error> {
        let op = T::init(&Config::new(config)).map_err(to_wit)?;
        *slot.borrow_mut() = Some(op);
        Ok(())
    }

    pub fn process<T: Operator>(
        slot: &RefCell<Option<T>>,
        input: t::Batch,
    ) -> Result<t::Batch, t::Error> {
        let mut slot = slot.borrow_mut();
        let op = slot
            .as_mut()
            .ok_or_else(|| t::Error::Failed("process called before init".into()))?;
        let headers = input.headers;
        let input = Batch {
            keys: input.keys,
            key_ends: input.key_ends,
            key_present: input.key_present,
            values: input.values,
            value_ends: input.value_ends,
            timestamps: input.timestamps,
            ..Batch::default()
        };
        let input = match headers {
            None => input,
            Some(h) => Batch {
                header_ends: h.ends,
                header_keys: h.keys,
                header_key_ends: h.key_ends,
                header_values: h.values,
                header_value_ends: h.value_ends,
                header_value_present: h.value_present,
                ..input
            },
        };
        let out = run(op, input).map_err(to_wit)?;
        // No headers in the output: nothing but the option's tag crosses.
        // Any header data at all goes across, for the host to validate.
        let any_headers = !(out.header_ends.is_empty()
            && out.header_keys.is_empty()
            && out.header_key_ends.is_empty()
            && out.header_values.is_empty()
            && out.header_value_ends.is_empty()
            && out.header_value_present.is_empty());
        let headers =
            any_headers.then_some(crate::bindings::sluice::operator::types::RecordHeaders {
                ends: out.header_ends,
                keys: out.header_keys,
                key_ends: out.header_key_ends,
                values: out.header_values,
                value_ends: out.header_value_ends,
                value_present: out.header_value_present,
            });
        Ok(t::Batch {
            keys: out.keys,
            key_ends: out.key_ends,
            key_present: out.key_present,
            values: out.values,
            value_ends: out.value_ends,
            timestamps: out.timestamps,
            headers,
        })
    }

    pub fn snapshot<T: crate::Stateful>(slot: &RefCell<Option<T>>) -> Result<Vec<u8>, t::Error> {
        let slot = slot.borrow();
        let op = slot
            .as_ref()
            .ok_or_else(|| t::Error::Failed("snapshot called before init".into()))?;
        op.snapshot().map_err(to_wit)
    }

    pub fn restore<T: crate::Stateful>(
        slot: &RefCell<Option<T>>,
        state: &[u8],
    ) -> Result<(), t::Error> {
        let mut slot = slot.borrow_mut();
        let op = slot
            .as_mut()
            .ok_or_else(|| t::Error::Failed("restore called before init".into()))?;
        op.restore(state).map_err(to_wit)
    }

    /// The one place that turns `process_batch` plus rejections into the
    /// contract's result; the native harness uses it too.
    pub fn run<T: Operator>(op: &mut T, input: Batch) -> Result<Batch, Error> {
        let mut out = Output::with_capacity_for(&input);
        op.process_batch(input, &mut out)?;
        out.finish()
    }

    pub fn init_reducer<T: Reducer>(
        slot: &RefCell<Option<T>>,
        config: Vec<(String, String)>,
    ) -> Result<(), r::Error> {
        let reducer = T::init(&Config::new(config)).map_err(to_wit)?;
        *slot.borrow_mut() = Some(reducer);
        Ok(())
    }

    pub fn reduce<T: Reducer>(
        slot: &RefCell<Option<T>>,
        input: r::Groups,
    ) -> Result<r::Accumulators, r::Error> {
        let mut slot = slot.borrow_mut();
        let reducer = slot
            .as_mut()
            .ok_or_else(|| r::Error::Failed("reduce called before init".into()))?;
        let input = Groups {
            keys: input.keys,
            key_ends: input.key_ends,
            accumulators: input.accumulators,
            accumulator_ends: input.accumulator_ends,
            has_accumulator: input.has_accumulator,
            values: input.values,
            value_ends: input.value_ends,
            group_ends: input.group_ends,
        };
        let out = crate::reduce_all(reducer, &input).map_err(to_wit)?;
        Ok(r::Accumulators {
            data: out.data,
            ends: out.ends,
        })
    }

    fn to_wit(e: Error) -> t::Error {
        match e {
            Error::BadConfig(m) => t::Error::BadConfig(m),
            Error::Failed(m) => t::Error::Failed(m),
            Error::BadRecords(rs) => t::Error::BadRecords(
                rs.into_iter()
                    .map(|r| crate::bindings::sluice::operator::types::RecordError {
                        index: r.index,
                        reason: r.reason,
                    })
                    .collect(),
            ),
        }
    }
}
