//! The Wasm runtime: the only module that knows about wasmtime. It turns
//! components into [`crate::operators`] and uses only those, [`crate::spec`],
//! [`crate::model`] and a job's [`Halt`](crate::signal::Halt).
//!
//! A [`Runtime`] holds one engine and linker. [`Runtime::load`] compiles a
//! component once (or loads it from the on-disk cache, keyed by content hash
//! and engine), finds which world it implements — `transform` or `reduce` —
//! and pre-links it into a [`Plugin`]. [`Plugin::instantiate`] then makes one
//! [`WasmOperator`] per (operator, partition) cheaply, and
//! [`Plugin::instantiate_reducer`] one [`WasmReducer`]. WASI is default-deny:
//! no directories, no environment, no sockets; stdout, stderr and the `log`
//! import go to the host log. Every instance is held to its job's
//! [`Limits`](crate::spec::limits::Limits): memory, a deadline per call (epoch interruption, advanced by
//! one background thread per runtime) and output size; a call of a job whose
//! halt was raised fails within about 100 ms. A running job's
//! `plugin` operators and reducers can be swapped for new versions, and
//! rolled back within a window when a new one fails ([`reload`]).

mod cell;
mod component;
mod engine;
mod log;
mod reducer;
pub mod reload;
mod replay;
mod sandbox;
mod store;
mod swap;
mod transform;
mod trap;

pub(crate) use cell::VersionCell;
pub use component::{
    CONTRACT, LoadError, Plugin, PluginInfo, REDUCER_EXPORT, STATEFUL_EXPORT, TRANSFORM_EXPORT,
    World,
};
pub(crate) use engine::hex;
pub use engine::{Runtime, default_cache_dir};
pub use log::{GuestLog, LogTags};
pub use reducer::{WasmReducer, WasmReducerFactory};
use store::Session;
pub use store::StoreState;
pub(crate) use swap::{swappable, swappable_reducer};
pub use transform::{WasmOperator, WasmOperatorFactory};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
    });
}

/// The `reduce` world's bindings. Its imports are the transform bindings'
/// own types, so the one linker serves components of both worlds.
mod reduce_bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "reduce",
        with: {
            "sluice:operator/types": super::bindings::sluice::operator::types,
            "sluice:operator/host": super::bindings::sluice::operator::host,
        },
    });
}

/// The `stateful` interface a transformer may export besides
/// `transformer` (the `stateful-transform` world), bound on its own so that
/// one `transform` binding serves components with and without it.
mod state_bindings {
    wasmtime::component::bindgen!({
        inline: "package sluice:host; world state { export sluice:operator/stateful@0.2.0; }",
        path: "../wit",
        world: "sluice:host/state",
        with: {
            "sluice:operator/types": super::bindings::sluice::operator::types,
        },
    });
}

use bindings::exports::sluice::operator::transformer as wit;
use bindings::sluice::operator::host as wit_host;
use bindings::sluice::operator::types as wit_types;
use state_bindings::exports::sluice::operator::stateful as wit_state;
