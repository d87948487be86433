//! The Wasm runtime: the only module that knows about wasmtime.
//!
//! A [`Runtime`] holds one engine and linker. [`Runtime::load`] compiles a
//! component once (or loads it from the on-disk cache, keyed by content hash
//! and engine), finds which world it implements — `transform` or `reduce` —
//! and pre-links it into a [`Plugin`]. [`Plugin::instantiate`] then makes one
//! [`WasmOperator`] per (operator, partition) cheaply, and
//! [`Plugin::instantiate_reducer`] one [`WasmReducer`]. WASI is default-deny:
//! no directories, no environment, no sockets; stdout, stderr and the `log`
//! import go to the host log. Every instance is held to its job's
//! [`Limits`]: memory, a deadline per call (epoch interruption, advanced by
//! one background thread per runtime) and output size.

mod log;
mod reducer;
pub mod reload;
mod sandbox;

pub use log::{GuestLog, LogTags};
pub use reducer::{WasmReducer, WasmReducerFactory};

use crate::model::batch::Batch;
use crate::operators::{Operator, OperatorError, OperatorFactory, RejectedRecord};
use crate::spec::ReduceMode;
use crate::spec::limits::{self, Limits};
use sandbox::{MemoryLimiter, Ticker};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

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
    fn noun(self) -> &'static str {
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

/// Per-store state: WASI context (default-deny), the guest's log and the
/// limiter of its memories and tables.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    log: GuestLog,
    limiter: MemoryLimiter,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit_types::Host for StoreState {}

impl wit_host::Host for StoreState {
    fn log(&mut self, level: wit_host::Level, message: String) {
        let level = match level {
            wit_host::Level::Trace => tracing::Level::TRACE,
            wit_host::Level::Debug => tracing::Level::DEBUG,
            wit_host::Level::Info => tracing::Level::INFO,
            wit_host::Level::Warn => tracing::Level::WARN,
            wit_host::Level::Error => tracing::Level::ERROR,
        };
        self.log.line(level, &message);
    }
}

/// The wasmtime engine, linker and compiled-component cache.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<StoreState>,
    cache_dir: Option<PathBuf>,
    /// Advances the engine's epoch while this runtime or a plugin loaded by
    /// it exists; `None` when the compiled code has no deadline checks.
    ticker: Option<Arc<Ticker>>,
}

impl Runtime {
    /// A runtime caching compiled components in the default cache directory
    /// (`$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice`, else `~/.cache/sluice`).
    pub fn new() -> Result<Self, LoadError> {
        Self::with_cache_dir(default_cache_dir())
    }

    /// A runtime caching compiled components in `cache_dir` (or not at all)
    /// that can enforce `cpu_per_batch`. It starts one thread that advances
    /// the engine's epoch every 10 ms, the clock of the calls' deadlines;
    /// the thread ends when the runtime and every plugin loaded by it are
    /// dropped.
    pub fn with_cache_dir(cache_dir: Option<PathBuf>) -> Result<Self, LoadError> {
        Self::with_options(cache_dir, true)
    }

    /// A runtime whose compiled code checks call deadlines (`deadlines`) or
    /// does not. The checks sit in every loop of the guest code and cost up
    /// to half the speed of tight loops; without them a job that sets
    /// `cpu_per_batch` is refused, since nothing could interrupt a call.
    pub fn with_options(cache_dir: Option<PathBuf>, deadlines: bool) -> Result<Self, LoadError> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        config.epoch_interruption(deadlines);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let ticker = deadlines
            .then(|| Ticker::start(&engine).map(Arc::new))
            .transpose()
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch thread: {e}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        bindings::Transform::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache_dir,
                ticker,
            }),
        })
    }

    /// Whether the runtime can interrupt a call at its deadline.
    pub fn enforces_deadlines(&self) -> bool {
        self.inner.ticker.is_some()
    }

    /// Compiles (or loads from cache) and checks the component at `path`,
    /// of either world.
    pub fn load(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            path: path.to_owned(),
            error,
        })?;
        self.load_bytes(&bytes, path)
    }

    /// Like [`Runtime::load`], and refuses a component of another world than
    /// `world` with [`LoadError::WrongWorld`], which names the job-file field.
    pub fn load_world(&self, path: &Path, world: World) -> Result<Plugin, LoadError> {
        let plugin = self.load(path)?;
        if plugin.world() != world {
            return Err(LoadError::WrongWorld {
                path: path.to_owned(),
                found: plugin.world(),
            });
        }
        Ok(plugin)
    }

    /// Like [`Runtime::load`] for bytes already in memory; `path` names them in errors.
    pub fn load_bytes(&self, bytes: &[u8], path: &Path) -> Result<Plugin, LoadError> {
        let invalid = |message: String| LoadError::Invalid {
            path: path.to_owned(),
            message,
        };
        check_header(bytes).map_err(invalid)?;
        let sha256 = hex(&Sha256::digest(bytes));
        let component = self.compile_cached(bytes, &sha256).map_err(invalid)?;
        let engine = &self.inner.engine;
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        // A component exporting both interfaces is taken as a transformer.
        let world = [World::Transform, World::Reduce]
            .into_iter()
            .find(|w| exports.iter().any(|e| e == w.export()))
            .ok_or_else(|| invalid(explain_wrong_world(&exports)))?;
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            invalid(format!(
                "the component needs imports this host does not provide: {e:#} \
                 (operators may import only sluice:operator/host and the WASI 0.2 CLI interfaces)"
            ))
        })?;
        let wrong_signature = |e: wasmtime::Error| {
            invalid(format!(
                "the component exports `{}` with the wrong signature: {e:#}",
                world.export()
            ))
        };
        let stateful = world == World::Transform && exports.iter().any(|e| e == STATEFUL_EXPORT);
        let pre = match world {
            World::Transform => {
                let state = match stateful {
                    true => Some(wit_state::GuestIndices::new(&pre).map_err(|e| {
                        invalid(format!(
                            "the component exports `{STATEFUL_EXPORT}` with the wrong signature: {e:#}"
                        ))
                    })?),
                    false => None,
                };
                Pre::Transform(
                    bindings::TransformPre::new(pre).map_err(wrong_signature)?,
                    state,
                )
            }
            World::Reduce => {
                Pre::Reduce(reduce_bindings::ReducePre::new(pre).map_err(wrong_signature)?)
            }
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into());
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                name,
                pre,
                engine: engine.clone(),
                ticker: self.inner.ticker.clone(),
                info: PluginInfo {
                    world: if stateful {
                        "stateful-transform"
                    } else {
                        world.name()
                    },
                    contract: CONTRACT,
                    size: bytes.len(),
                    sha256,
                    imports,
                    stateful,
                },
            }),
        })
    }

    fn compile_cached(&self, bytes: &[u8], sha256: &str) -> Result<Component, String> {
        let engine = &self.inner.engine;
        let cache_file = self.inner.cache_dir.as_ref().map(|dir| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()))
        });
        if let Some(file) = &cache_file
            && file.exists()
        {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash (part of its name),
            // into a cache directory that only Sluice writes.
            match unsafe { Component::deserialize_file(engine, file) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(
                    "ignoring unreadable compiled-component cache {}: {e:#}",
                    file.display()
                ),
            }
        }
        let component =
            Component::new(engine, bytes).map_err(|e| format!("not a valid component: {e:#}"))?;
        if let Some(file) = &cache_file
            && let Err(e) = write_cache(file, &component)
        {
            tracing::debug!(
                "could not cache compiled component at {}: {e}",
                file.display()
            );
        }
        Ok(component)
    }
}

fn write_cache(file: &Path, component: &Component) -> std::io::Result<()> {
    let data = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, file)
}

/// The default cache of compiled components: `$SLUICE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/sluice`, else `~/.cache/sluice`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SLUICE_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("sluice"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("sluice"))
}

/// Tells a component from a core module or a file that is not Wasm at all.
fn check_header(bytes: &[u8]) -> Result<(), String> {
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

fn explain_wrong_world(exports: &[String]) -> String {
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

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A checked, pre-linked component, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

/// The pre-linked component, by world.
enum Pre {
    /// With the indices of its `stateful` exports, when it has them.
    Transform(
        bindings::TransformPre<StoreState>,
        Option<wit_state::GuestIndices>,
    ),
    Reduce(reduce_bindings::ReducePre<StoreState>),
}

struct PluginInner {
    name: String,
    pre: Pre,
    engine: Engine,
    /// Keeps the epoch advancing while the plugin has instances; `None`
    /// without deadline checks.
    ticker: Option<Arc<Ticker>>,
    info: PluginInfo,
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
        ))
    }

    /// An [`OperatorFactory`] for this `transform` plugin under `name`, with `config`.
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

    /// An [`OperatorFactory`] for this `reduce` component under `name`, with
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

/// Makes one [`WasmOperator`] per partition.
pub struct WasmOperatorFactory {
    name: String,
    plugin: Plugin,
    config: Vec<(String, String)>,
}

impl OperatorFactory for WasmOperatorFactory {
    fn name(&self) -> &str {
        &self.name
    }

    fn instantiate(&self, job: &str, worker: usize) -> Result<Box<dyn Operator>, OperatorError> {
        self.instantiate_limited(job, worker, &Limits::default())
    }

    fn instantiate_limited(
        &self,
        job: &str,
        worker: usize,
        limits: &Limits,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        let tags = LogTags {
            job: job.to_string(),
            operator: self.name.clone(),
            worker,
        };
        Ok(Box::new(self.plugin.instantiate_limited(
            tags,
            &self.config,
            limits,
        )?))
    }
}

/// The generated bindings of one world: how to instantiate them from a
/// [`Plugin`] and call their `init`.
trait WorldBindings: Sized {
    /// Instantiates the component, which must be of this world.
    fn instantiate(pre: &Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Self>;

    /// Calls the component's `init`.
    fn call_init(
        &self,
        store: &mut Store<StoreState>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), wit_types::Error>>;
}

/// A `transform` instance, with its `stateful` exports when it has them.
struct TransformBindings {
    transform: bindings::Transform,
    state: Option<wit_state::Guest>,
}

impl WorldBindings for TransformBindings {
    fn instantiate(pre: &Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Self> {
        match pre {
            Pre::Transform(p, None) => Ok(TransformBindings {
                transform: p.instantiate(&mut *store)?,
                state: None,
            }),
            Pre::Transform(p, Some(state)) => {
                let instance = p.instance_pre().instantiate(&mut *store)?;
                Ok(TransformBindings {
                    transform: bindings::Transform::new(&mut *store, &instance)?,
                    state: Some(state.load(&mut *store, &instance)?),
                })
            }
            Pre::Reduce(_) => Err(wasmtime::Error::msg(
                "the component implements the `reduce` world, not `transform`",
            )),
        }
    }

    fn call_init(
        &self,
        store: &mut Store<StoreState>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), wit_types::Error>> {
        self.transform
            .sluice_operator_transformer()
            .call_init(store, config)
    }
}

impl WorldBindings for reduce_bindings::Reduce {
    fn instantiate(pre: &Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Self> {
        match pre {
            Pre::Reduce(p) => p.instantiate(store),
            Pre::Transform(..) => Err(wasmtime::Error::msg(
                "the component implements the `transform` world, not `reduce`",
            )),
        }
    }

    fn call_init(
        &self,
        store: &mut Store<StoreState>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), wit_types::Error>> {
        self.sluice_operator_reducer().call_init(store, config)
    }
}

struct Instance<B> {
    store: Store<StoreState>,
    bindings: B,
}

/// One worker's live instance of a component, whatever its world: creates
/// and initialises it, calls it within the job's limits, forwards its log,
/// and replaces it after a trap or a breach.
struct Session<B> {
    plugin: Plugin,
    config: Vec<(String, String)>,
    limits: Limits,
    instance: Option<Instance<B>>,
    log: GuestLog,
}

impl<B: WorldBindings> Session<B> {
    /// A session with a fresh, initialised instance of `plugin`, which must
    /// implement `world`, held to `limits`.
    fn start(
        plugin: &Plugin,
        world: World,
        tags: LogTags,
        config: &[(String, String)],
        limits: &Limits,
    ) -> Result<Self, OperatorError> {
        if plugin.world() != world {
            return Err(OperatorError::Host(format!(
                "`{}` implements the `{}` world, not `{world}` ({} must export `{}`); \
                 a job runs it as `{} = `",
                plugin.name(),
                plugin.world(),
                world.noun(),
                world.export(),
                plugin.world().field()
            )));
        }
        if let Some(limit) = limits.cpu_per_batch
            && plugin.inner.ticker.is_none()
        {
            return Err(OperatorError::Host(format!(
                "`cpu_per_batch` = {limit:?} cannot be enforced: `{}` was loaded by a runtime \
                 without deadline checks (`Runtime::with_options(.., true)` enables them)",
                plugin.name()
            )));
        }
        let mut session = Session {
            plugin: plugin.clone(),
            config: config.to_vec(),
            limits: limits.clone(),
            instance: None,
            log: GuestLog::new(tags),
        };
        session.ensure_instance()?;
        Ok(session)
    }

    /// Tags the following log lines with micro-batch `batch_no`.
    fn begin_batch(&mut self, batch_no: u64) {
        self.log.set_batch(batch_no);
    }

    /// The operator's name in the job.
    fn operator(&self) -> &str {
        &self.log.tags().operator
    }

    /// A store with a default-deny WASI context: no directories, no
    /// environment, no network, no name lookups; stdout and stderr go to the
    /// log. Its memories, tables and host resources are limited.
    fn new_store(&self) -> Store<StoreState> {
        let wasi = WasiCtxBuilder::new()
            .stdout(self.log.stream(false))
            .stderr(self.log.stream(true))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits::HOST_RESOURCES);
        let state = StoreState {
            wasi,
            table,
            log: self.log.clone(),
            limiter: MemoryLimiter::new(self.limits.memory),
        };
        let mut store = Store::new(&self.plugin.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
    }

    /// The epoch deadline of a call, in ticks from its start.
    fn deadline(&self) -> u64 {
        sandbox::deadline_ticks(self.limits.cpu_per_batch)
    }

    /// A breach or a trap, from a failed call with `input` bytes of input
    /// during which the limiter refused the instance `refused` bytes of
    /// memory.
    fn failure(
        &self,
        err: &wasmtime::Error,
        refused: Option<usize>,
        input: usize,
    ) -> OperatorError {
        let context = trap_context(err, &self.log);
        sandbox::classify(
            err,
            &self.limits,
            refused,
            input,
            || trap_kind(err),
            &context,
        )
    }

    fn ensure_instance(&mut self) -> Result<&mut Instance<B>, OperatorError> {
        if self.instance.is_none() {
            let mut store = self.new_store();
            arm(&mut store, self.deadline(), usize::MAX);
            let bindings = match B::instantiate(&self.plugin.inner.pre, &mut store) {
                Ok(b) => b,
                Err(e) => {
                    return Err(match self.failure(&e, store.data().limiter.refused(), 0) {
                        OperatorError::Trap(_) => {
                            OperatorError::Host(format!("cannot instantiate component: {e:#}"))
                        }
                        breach => breach,
                    });
                }
            };
            arm(&mut store, self.deadline(), usize::MAX);
            let init = bindings.call_init(&mut store, &self.config);
            store.data_mut().log.flush();
            match init {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(from_wit(e)),
                Err(trap) => return Err(self.failure(&trap, store.data().limiter.refused(), 0)),
            }
            self.instance = Some(Instance { store, bindings });
        }
        self.instance
            .as_mut()
            .ok_or_else(|| OperatorError::Host("the instance was not created".into()))
    }

    /// Makes one call into the guest with `input` bytes of input (as they
    /// cross the boundary), within the call deadline, the memory limit and
    /// the bytes `output_ratio` lets it pass to the host. A guest error
    /// becomes the matching [`OperatorError`]; after a trap or a breach the
    /// instance is discarded and re-created, and the trap or breach is
    /// returned.
    fn call<T>(
        &mut self,
        input: usize,
        f: impl FnOnce(&B, &mut Store<StoreState>) -> wasmtime::Result<Result<T, wit_types::Error>>,
    ) -> Result<T, OperatorError> {
        // Only what the guest writes during this call may explain a trap in it.
        self.log.take_stderr_tail();
        let deadline = self.deadline();
        let fuel = sandbox::hostcall_fuel(&self.limits, input);
        let instance = self.ensure_instance()?;
        arm(&mut instance.store, deadline, fuel);
        let result = f(&instance.bindings, &mut instance.store);
        instance.store.data_mut().log.flush();
        let refused = instance.store.data().limiter.refused();
        match result {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(from_wit(e)),
            Err(trap) => {
                let error = self.failure(&trap, refused, input);
                Err(self.discard(error))
            }
        }
    }

    /// Checks a call's output size against the job's `output_ratio`, both in
    /// bytes as they cross the boundary; on a breach the instance is
    /// discarded and re-created.
    fn check_output(&mut self, input: usize, output: usize) -> Result<(), OperatorError> {
        sandbox::check_output(&self.limits, input, output).map_err(|breach| self.discard(breach))
    }

    /// Discards the instance after `error` (a trapped store refuses further
    /// calls; an instance over a limit is not trusted further) and creates
    /// the next one at once, so that a component that cannot start again is
    /// reported now. Returns the error to report.
    fn discard(&mut self, error: OperatorError) -> OperatorError {
        self.instance = None;
        let t = self.log.tags();
        tracing::warn!(job = %t.job, operator = %t.operator, worker = t.worker, "instance discarded: {error}");
        match self.ensure_instance() {
            Ok(_) => error,
            Err(e) => OperatorError::Host(format!("{error}, then could not be re-created: {e}")),
        }
    }
}

/// Prepares `store` for a call: forgets the limiter's refusals, sets the
/// call's deadline, `ticks` epochs from now, and the bytes it may pass to
/// the host at once, `fuel`.
fn arm(store: &mut Store<StoreState>, ticks: u64, fuel: usize) {
    store.data_mut().limiter.reset();
    store.set_epoch_deadline(ticks);
    store.set_hostcall_fuel(fuel);
}

/// One instance of a `transform` component, owned by one worker.
pub struct WasmOperator {
    session: Session<TransformBindings>,
}

impl Operator for WasmOperator {
    fn begin_batch(&mut self, batch_no: u64) {
        self.session.begin_batch(batch_no);
    }

    fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError> {
        // Move the buffers into the binding's record for the call and back
        // afterwards: lowering copies them into guest memory once, and the
        // host never clones a batch.
        let size = sandbox::boundary_bytes(input);
        let arg = batch_to_wit(input);
        let result = self.session.call(size, |bindings, store| {
            bindings
                .transform
                .sluice_operator_transformer()
                .call_process(store, &arg)
        });
        *input = batch_from_wit(arg);
        let out = batch_from_wit(result?);
        out.validate().map_err(|m| {
            OperatorError::Host(format!("the operator returned a malformed batch: {m}"))
        })?;
        self.session
            .check_output(size, sandbox::boundary_bytes(&out))?;
        Ok(out)
    }

    /// A `transform` component keeps nothing that must survive a call (see
    /// the operator contract), unless it exports its state.
    fn stateless(&self) -> bool {
        !self.session.plugin.info().stateful
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, OperatorError> {
        if !self.session.plugin.info().stateful {
            return Ok(None);
        }
        self.session
            .call(0, |bindings, store| match &bindings.state {
                Some(state) => state.call_snapshot(store),
                None => Ok(Err(wit_types::Error::Failed(
                    "the instance has no `stateful` exports".into(),
                ))),
            })
            .map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), OperatorError> {
        if !self.session.plugin.info().stateful {
            return Err(OperatorError::Host(format!(
                "`{}` cannot take over the state of the version it replaces: it does not \
                 export `{STATEFUL_EXPORT}` (world `stateful-transform`)",
                self.session.plugin.name()
            )));
        }
        self.session
            .call(state.len(), |bindings, store| match &bindings.state {
                Some(s) => s.call_restore(store, state),
                None => Ok(Err(wit_types::Error::Failed(
                    "the instance has no `stateful` exports".into(),
                ))),
            })
    }
}

/// Moves `batch`'s buffers into the contract's record, leaving it empty.
/// Without headers only the option's tag crosses the boundary.
fn batch_to_wit(batch: &mut Batch) -> wit::Batch {
    let headers = batch.has_headers().then(|| wit_types::RecordHeaders {
        ends: std::mem::take(&mut batch.header_ends),
        keys: std::mem::take(&mut batch.header_keys),
        key_ends: std::mem::take(&mut batch.header_key_ends),
        values: std::mem::take(&mut batch.header_values),
        value_ends: std::mem::take(&mut batch.header_value_ends),
        value_present: std::mem::take(&mut batch.header_value_present),
    });
    wit::Batch {
        keys: std::mem::take(&mut batch.keys),
        key_ends: std::mem::take(&mut batch.key_ends),
        key_present: std::mem::take(&mut batch.key_present),
        values: std::mem::take(&mut batch.values),
        value_ends: std::mem::take(&mut batch.value_ends),
        timestamps: std::mem::take(&mut batch.timestamps),
        headers,
    }
}

/// The contract's record as a [`Batch`], moving its buffers.
fn batch_from_wit(w: wit::Batch) -> Batch {
    let mut batch = Batch {
        keys: w.keys,
        key_ends: w.key_ends,
        key_present: w.key_present,
        values: w.values,
        value_ends: w.value_ends,
        timestamps: w.timestamps,
        ..Batch::default()
    };
    if let Some(h) = w.headers {
        batch.header_ends = h.ends;
        batch.header_keys = h.keys;
        batch.header_key_ends = h.key_ends;
        batch.header_values = h.values;
        batch.header_value_ends = h.value_ends;
        batch.header_value_present = h.value_present;
    }
    batch
}

fn from_wit(e: wit_types::Error) -> OperatorError {
    match e {
        wit_types::Error::BadConfig(m) => OperatorError::BadConfig(m),
        wit_types::Error::Failed(m) => OperatorError::Failed(m),
        wit_types::Error::BadRecords(rs) => OperatorError::BadRecords(
            rs.into_iter()
                .map(|r| RejectedRecord {
                    index: r.index,
                    reason: r.reason,
                })
                .collect(),
        ),
    }
}

/// What kind of trap `err` is, in words.
fn trap_kind(err: &wasmtime::Error) -> String {
    use wasmtime::Trap;
    match err.downcast_ref::<Trap>() {
        Some(Trap::UnreachableCodeReached) => {
            "wasm `unreachable` executed (a panic or abort in the operator)".to_string()
        }
        Some(Trap::StackOverflow) => "stack overflow".to_string(),
        Some(Trap::MemoryOutOfBounds) => "out-of-bounds memory access".to_string(),
        Some(Trap::Interrupt) => "interrupted: the call exceeded its deadline".to_string(),
        Some(Trap::IntegerDivisionByZero) => "integer division by zero".to_string(),
        Some(other) => other.to_string(),
        None => format!("{err:#}"),
    }
}

/// What explains a trap besides its kind: the guest's panic message when it
/// wrote one, and the innermost named frames, each after `; `.
fn trap_context(err: &wasmtime::Error, log: &GuestLog) -> String {
    let mut out = String::new();
    // A Rust guest prints its panic message to stderr just before trapping;
    // otherwise the last thing it wrote is the best explanation there is.
    let stderr = log.take_stderr_tail();
    let explanation = match stderr.find("panicked at") {
        Some(i) => Some(
            stderr[i..]
                .split("\nnote: run with `RUST_BACKTRACE")
                .next()
                .unwrap_or_default(),
        ),
        None => stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE")),
    };
    if let Some(text) = explanation {
        let mut msg = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if msg.len() > 500 {
            let cut = (0..=500)
                .rev()
                .find(|i| msg.is_char_boundary(*i))
                .unwrap_or(0);
            msg.truncate(cut);
            msg.push_str("...");
        }
        out.push_str(&format!("; guest stderr: {msg}"));
    }
    if let Some(bt) = err.downcast_ref::<wasmtime::WasmBacktrace>() {
        let names: Vec<String> = bt
            .frames()
            .iter()
            .filter_map(|f| f.func_name())
            .map(|n| short_frame(&format!("{:#}", rustc_demangle::demangle(n))))
            .filter(|n| !is_runtime_frame(n))
            .take(4)
            .collect();
        if !names.is_empty() {
            out.push_str(&format!("; in {}", names.join(" <- ")));
        }
    }
    out
}

/// A demangled function name with a trait implementation's
/// `<Type as Trait>::method` shortened to `Type::method`, which names the
/// code's own crate first.
fn short_frame(name: &str) -> String {
    let Some(inner) = name.strip_prefix('<') else {
        return name.to_string();
    };
    let mut depth = 0usize;
    let mut as_at = None;
    for (i, c) in inner.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if depth == 0 => {
                return match as_at {
                    Some(a) => format!("{}{}", &inner[..a], &inner[i + 1..]),
                    None => name.to_string(),
                };
            }
            '>' => depth -= 1,
            ' ' if depth == 0 && as_at.is_none() && inner[i..].starts_with(" as ") => {
                as_at = Some(i);
            }
            _ => {}
        }
    }
    name.to_string()
}

/// Frames of the language runtime and panic machinery, which say nothing
/// about where the operator failed.
fn is_runtime_frame(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "std::",
        "core::",
        "alloc::",
        "__rust",
        "rust_begin_unwind",
        "rust_panic",
        "wit_bindgen",
        "dlmalloc",
        "abort",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) || name.contains("panicking")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trait_impl_frames_name_the_type() {
        assert_eq!(
            short_frame("<my_op::_::Export as sluice_sdk::Guest>::process"),
            "my_op::_::Export::process"
        );
        assert_eq!(
            short_frame("<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop"),
            "alloc::vec::Vec<T>::drop"
        );
        assert_eq!(short_frame("my_op::f"), "my_op::f");
        assert_eq!(short_frame("<broken"), "<broken");
    }

    #[test]
    fn runtime_frames_are_hidden() {
        assert!(is_runtime_frame("std::thread::local::LocalKey<T>::with"));
        assert!(is_runtime_frame("rust_begin_unwind"));
        assert!(!is_runtime_frame("my_op::MyOp::process_record"));
    }

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
