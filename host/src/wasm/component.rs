//! What a component is: the contract's worlds, the checks that tell a
//! usable component from anything else (with an error that says how to fix
//! it), and the pre-linked [`Plugin`] that instances are made from.

use super::sandbox::Ticker;
use super::store::{Session, StoreState};
use super::transform::{WasmOperator, WasmOperatorFactory};
use super::{LogTags, WasmReducer, WasmReducerFactory, bindings, reduce_bindings, wit_state};
use crate::operators::OperatorError;
use crate::spec::ReduceMode;
use crate::spec::limits::Limits;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::Engine;

/// The package and version of the contract this host implements.
pub const CONTRACT: &str = "sluice:operator@0.2.0";
/// The interface a `transform` component must export.
pub const TRANSFORM_EXPORT: &str = "sluice:operator/transformer@0.2.0";
/// The interface a transformer with state to carry across versions exports
/// besides [`TRANSFORM_EXPORT`] (world `stateful-transform`).
pub const STATEFUL_EXPORT: &str = "sluice:operator/stateful@0.2.0";
/// The interface a `reduce` component must export.
pub const REDUCER_EXPORT: &str = "sluice:operator/reducer@0.2.0";

/// The worlds of the contract a component can implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// A record transformer (map, flatMap, filter, key-by): exports `transformer`.
    Transform,
    /// A keyed reducer whose accumulators the host keeps: exports `reducer`.
    Reduce,
}

impl World {
    /// The world's name in the WIT file.
    pub fn name(self) -> &'static str {
        match self {
            World::Transform => "transform",
            World::Reduce => "reduce",
        }
    }

    /// The interface a component of this world must export.
    pub fn export(self) -> &'static str {
        match self {
            World::Transform => TRANSFORM_EXPORT,
            World::Reduce => REDUCER_EXPORT,
        }
    }

    /// The field of a job file's `[[operators]]` entry that takes a
    /// component of this world.
    pub fn field(self) -> &'static str {
        match self {
            World::Transform => "plugin",
            World::Reduce => "reducer",
        }
    }

    /// What the job file calls a component of this world.
    pub(super) fn noun(self) -> &'static str {
        match self {
            World::Transform => "a plugin",
            World::Reduce => "a reducer",
        }
    }

    fn other(self) -> World {
        match self {
            World::Transform => World::Reduce,
            World::Reduce => World::Transform,
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {error}")]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not a usable component; the message says why.
    #[error("{path}: {message}")]
    Invalid {
        /// The plugin file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A valid component of the other world than the job-file field asks for.
    #[error(
        "field `{}`: {} implements the `{found}` world, not `{}`; {} must export `{}` \
         (give a `{found}` component as `{} = ` instead)",
        found.other().field(), path.display(), found.other(), found.other().noun(),
        found.other().export(), found.field()
    )]
    WrongWorld {
        /// The plugin file.
        path: PathBuf,
        /// The world it implements.
        found: World,
    },
    /// The engine could not be set up.
    #[error("wasm engine: {0}")]
    Engine(String),
}

/// What `sluice plugin check` reports for a valid component.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The world the component implements: `transform`,
    /// `stateful-transform` (a transformer that exports its state) or
    /// `reduce`.
    pub world: &'static str,
    /// The contract package and version.
    pub contract: &'static str,
    /// Size of the component file in bytes.
    pub size: usize,
    /// SHA-256 of the component file, hex.
    pub sha256: String,
    /// Everything the component imports.
    pub imports: Vec<String>,
    /// Whether the transformer exports its state (`snapshot` / `restore`),
    /// so that the state moves to a new version on a hot swap.
    pub stateful: bool,
}

/// Tells a component from a core module or a file that is not Wasm at all.
pub(super) fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(
            "not a WebAssembly file (it does not start with the `\\0asm` magic bytes)".into(),
        );
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(
            "a core WebAssembly module, not a component: build the operator with \
             `cargo build --release --target wasm32-wasip2` (or wrap a module with \
             `wasm-tools component new`)"
                .into(),
        ),
        _ => Err(format!(
            "a WebAssembly file of an unsupported version or layer ({:02x?})",
            &bytes[4..8]
        )),
    }
}

pub(super) fn explain_wrong_world(exports: &[String]) -> String {
    let ours: Vec<&String> = exports
        .iter()
        .filter(|e| e.starts_with("sluice:operator/"))
        .collect();
    if let Some(other) = ours.first() {
        let version = other
            .rsplit_once('@')
            .map(|(_, v)| v)
            .unwrap_or("(no version)");
        return format!(
            "the component was built against sluice:operator@{version} (it exports `{other}`), \
             but this host implements {CONTRACT}: rebuild it with a matching sluice-sdk"
        );
    }
    let list = if exports.is_empty() {
        "nothing".to_string()
    } else {
        exports
            .iter()
            .map(|e| format!("`{e}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "the component does not implement the `transform` or the `reduce` world of {CONTRACT}: \
         it exports {list}, but an operator must export `{TRANSFORM_EXPORT}` (world `transform`) \
         or, for a reducer, `{REDUCER_EXPORT}` (world `reduce`)"
    )
}

/// A checked, pre-linked component, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    pub(super) inner: Arc<PluginInner>,
}

/// The pre-linked component, by world.
pub(super) enum Pre {
    /// With the indices of its `stateful` exports, when it has them.
    Transform(
        bindings::TransformPre<StoreState>,
        Option<wit_state::GuestIndices>,
    ),
    Reduce(reduce_bindings::ReducePre<StoreState>),
}

pub(super) struct PluginInner {
    pub(super) name: String,
    pub(super) pre: Pre,
    pub(super) engine: Engine,
    /// Keeps the epoch advancing while the plugin has instances; `None`
    /// without deadline checks.
    pub(super) ticker: Option<Arc<Ticker>>,
    pub(super) info: PluginInfo,
}

impl Plugin {
    /// What the component is.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// The world the component implements.
    pub fn world(&self) -> World {
        match self.inner.pre {
            Pre::Transform(..) => World::Transform,
            Pre::Reduce(_) => World::Reduce,
        }
    }

    /// The plugin's file stem.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A fresh instance of a `transform` component, initialised with
    /// `config`, held to the default [`Limits`].
    pub fn instantiate(
        &self,
        tags: LogTags,
        config: &[(String, String)],
    ) -> Result<WasmOperator, OperatorError> {
        self.instantiate_limited(tags, config, &Limits::default())
    }

    /// A fresh instance of a `transform` component, initialised with
    /// `config`, held to `limits`.
    pub fn instantiate_limited(
        &self,
        tags: LogTags,
        config: &[(String, String)],
        limits: &Limits,
    ) -> Result<WasmOperator, OperatorError> {
        Ok(WasmOperator {
            session: Session::start(self, World::Transform, tags, config, limits)?,
        })
    }

    /// A fresh instance of a `reduce` component, initialised with `config`,
    /// emitting results in `mode`, held to the default [`Limits`].
    pub fn instantiate_reducer(
        &self,
        tags: LogTags,
        config: &[(String, String)],
        mode: ReduceMode,
    ) -> Result<WasmReducer, OperatorError> {
        self.instantiate_reducer_limited(tags, config, mode, &Limits::default())
    }

    /// A fresh instance of a `reduce` component, initialised with `config`,
    /// emitting results in `mode`, held to `limits`.
    pub fn instantiate_reducer_limited(
        &self,
        tags: LogTags,
        config: &[(String, String)],
        mode: ReduceMode,
        limits: &Limits,
    ) -> Result<WasmReducer, OperatorError> {
        Ok(WasmReducer::new(
            Session::start(self, World::Reduce, tags, config, limits)?,
            mode,
            limits.state,
        ))
    }

    /// An [`OperatorFactory`](crate::operators::OperatorFactory) for this `transform` plugin under `name`, with `config`.
    pub fn factory(
        &self,
        name: impl Into<String>,
        config: Vec<(String, String)>,
    ) -> WasmOperatorFactory {
        WasmOperatorFactory {
            name: name.into(),
            plugin: self.clone(),
            config,
        }
    }

    /// An [`OperatorFactory`](crate::operators::OperatorFactory) for this `reduce` component under `name`, with
    /// `config`, emitting in `mode`.
    pub fn reducer_factory(
        &self,
        name: impl Into<String>,
        config: Vec<(String, String)>,
        mode: ReduceMode,
    ) -> WasmReducerFactory {
        WasmReducerFactory::new(name, self.clone(), config, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_tells_module_from_component() {
        assert!(
            check_header(b"hello world")
                .unwrap_err()
                .contains("not a WebAssembly file")
        );
        assert!(
            check_header(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn wrong_version_is_named() {
        let msg = explain_wrong_world(&["sluice:operator/transformer@0.9.0".into()]);
        assert!(
            msg.contains("sluice:operator@0.9.0") && msg.contains(CONTRACT),
            "{msg}"
        );
        // A component of the previous contract, before record headers.
        let msg = explain_wrong_world(&["sluice:operator/reducer@0.1.0".into()]);
        assert!(
            msg.contains("built against sluice:operator@0.1.0")
                && msg.contains("this host implements sluice:operator@0.2.0"),
            "{msg}"
        );
        let msg = explain_wrong_world(&["wasi:cli/run@0.2.0".into()]);
        assert!(
            msg.contains("`wasi:cli/run@0.2.0`")
                && msg.contains(TRANSFORM_EXPORT)
                && msg.contains(REDUCER_EXPORT)
                && msg.contains("`transform` or the `reduce` world"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_world_names_the_field_and_the_expected_export() {
        let err = LoadError::WrongWorld {
            path: "up.wasm".into(),
            found: World::Transform,
        };
        assert_eq!(
            err.to_string(),
            "field `reducer`: up.wasm implements the `transform` world, not `reduce`; \
             a reducer must export `sluice:operator/reducer@0.2.0` \
             (give a `transform` component as `plugin = ` instead)"
        );
        let err = LoadError::WrongWorld {
            path: "sum.wasm".into(),
            found: World::Reduce,
        };
        assert!(
            err.to_string().starts_with(
                "field `plugin`: sum.wasm implements the `reduce` world, not `transform`; \
                 a plugin must export `sluice:operator/transformer@0.2.0`"
            ),
            "{err}"
        );
    }
}
