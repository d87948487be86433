//! The Wasm runtime: the only module that knows about wasmtime.
//!
//! A [`Runtime`] holds one engine and linker. [`Runtime::load`] compiles a
//! component once (or loads it from the on-disk cache, keyed by content hash
//! and engine), checks it against the `transform` world and pre-links it into
//! a [`Plugin`]. [`Plugin::instantiate`] then makes one [`WasmOperator`] per
//! (operator, worker) cheaply. WASI is default-deny: no directories, no
//! environment, no sockets; stdout, stderr and the `log` import go to the
//! host log.

mod log;

pub use log::{GuestLog, LogTags};

use crate::batch::Batch;
use crate::operator::{Operator, OperatorError, OperatorFactory, RejectedRecord};
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

use bindings::exports::sluice::operator::transformer as wit;
use bindings::sluice::operator::host as wit_host;

/// The package and version of the contract this host implements.
pub const CONTRACT: &str = "sluice:operator@0.1.0";
/// The interface a `transform` component must export.
pub const TRANSFORM_EXPORT: &str = "sluice:operator/transformer@0.1.0";

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
    /// The engine could not be set up.
    #[error("wasm engine: {0}")]
    Engine(String),
}

/// What `sluice plugin check` reports for a valid component.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The world the component implements (`transform`).
    pub world: &'static str,
    /// The contract package and version.
    pub contract: &'static str,
    /// Size of the component file in bytes.
    pub size: usize,
    /// SHA-256 of the component file, hex.
    pub sha256: String,
    /// Everything the component imports.
    pub imports: Vec<String>,
}

/// Per-store state: WASI context (default-deny) and the guest's log.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    log: GuestLog,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::sluice::operator::types::Host for StoreState {}

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
}

impl Runtime {
    /// A runtime caching compiled components in the default cache directory
    /// (`$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice`, else `~/.cache/sluice`).
    pub fn new() -> Result<Self, LoadError> {
        Self::with_cache_dir(default_cache_dir())
    }

    /// A runtime caching compiled components in `cache_dir` (or not at all).
    pub fn with_cache_dir(cache_dir: Option<PathBuf>) -> Result<Self, LoadError> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
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
            }),
        })
    }

    /// Compiles (or loads from cache) and checks the component at `path`.
    pub fn load(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            path: path.to_owned(),
            error,
        })?;
        self.load_bytes(&bytes, path)
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
        if !exports.iter().any(|e| e == TRANSFORM_EXPORT) {
            return Err(invalid(explain_wrong_world(&exports)));
        }
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            invalid(format!(
                "the component needs imports this host does not provide: {e:#} \
                 (operators may import only sluice:operator/host and the WASI 0.2 CLI interfaces)"
            ))
        })?;
        let pre = bindings::TransformPre::new(pre).map_err(|e| {
            invalid(format!(
                "the component exports `{TRANSFORM_EXPORT}` with the wrong signature: {e:#}"
            ))
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into());
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                name,
                pre,
                engine: engine.clone(),
                info: PluginInfo {
                    world: "transform",
                    contract: CONTRACT,
                    size: bytes.len(),
                    sha256,
                    imports,
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

fn default_cache_dir() -> Option<PathBuf> {
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
        "the component does not implement the `transform` world of {CONTRACT}: it exports {list}, \
         but an operator must export `{TRANSFORM_EXPORT}`"
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A checked, pre-linked component, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    name: String,
    pre: bindings::TransformPre<StoreState>,
    engine: Engine,
    info: PluginInfo,
}

impl Plugin {
    /// What the component is.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// The plugin's file stem.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A fresh instance, initialised with `config`.
    pub fn instantiate(
        &self,
        tags: LogTags,
        config: &[(String, String)],
    ) -> Result<WasmOperator, OperatorError> {
        let mut op = WasmOperator {
            plugin: self.clone(),
            config: config.to_vec(),
            instance: None,
            log: GuestLog::new(tags),
        };
        op.ensure_instance()?;
        Ok(op)
    }

    /// An [`OperatorFactory`] for this plugin under `name`, with `config`.
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
}

/// Makes one [`WasmOperator`] per worker.
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
        let tags = LogTags {
            job: job.to_string(),
            operator: self.name.clone(),
            worker,
        };
        Ok(Box::new(self.plugin.instantiate(tags, &self.config)?))
    }
}

struct Instance {
    store: Store<StoreState>,
    bindings: bindings::Transform,
}

/// One instance of a component, owned by one worker.
pub struct WasmOperator {
    plugin: Plugin,
    config: Vec<(String, String)>,
    instance: Option<Instance>,
    log: GuestLog,
}

impl WasmOperator {
    fn ensure_instance(&mut self) -> Result<&mut Instance, OperatorError> {
        if self.instance.is_none() {
            let wasi = WasiCtxBuilder::new()
                .stdout(self.log.stream(false))
                .stderr(self.log.stream(true))
                .build();
            let state = StoreState {
                wasi,
                table: ResourceTable::new(),
                log: self.log.clone(),
            };
            let mut store = Store::new(&self.plugin.inner.engine, state);
            let bindings =
                self.plugin.inner.pre.instantiate(&mut store).map_err(|e| {
                    OperatorError::Host(format!("cannot instantiate component: {e:#}"))
                })?;
            let init = bindings
                .sluice_operator_transformer()
                .call_init(&mut store, &self.config);
            store.data_mut().log.flush();
            match init {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(from_wit(e)),
                Err(trap) => return Err(OperatorError::Trap(describe_trap(&trap, &self.log))),
            }
            self.instance = Some(Instance { store, bindings });
        }
        Ok(self.instance.as_mut().expect("instance set above"))
    }
}

impl Operator for WasmOperator {
    fn begin_batch(&mut self, batch_no: u64) {
        self.log.set_batch(batch_no);
    }

    fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError> {
        // Only what the guest writes during this call may explain a trap in it.
        self.log.take_stderr_tail();
        let instance = self.ensure_instance()?;
        // Move the buffers into the binding's record for the call and back
        // afterwards: lowering copies them into guest memory once, and the
        // host never clones a batch.
        let arg = wit::Batch {
            keys: std::mem::take(&mut input.keys),
            key_ends: std::mem::take(&mut input.key_ends),
            key_present: std::mem::take(&mut input.key_present),
            values: std::mem::take(&mut input.values),
            value_ends: std::mem::take(&mut input.value_ends),
            timestamps: std::mem::take(&mut input.timestamps),
        };
        let result = instance
            .bindings
            .sluice_operator_transformer()
            .call_process(&mut instance.store, &arg);
        input.keys = arg.keys;
        input.key_ends = arg.key_ends;
        input.key_present = arg.key_present;
        input.values = arg.values;
        input.value_ends = arg.value_ends;
        input.timestamps = arg.timestamps;
        instance.store.data_mut().log.flush();
        match result {
            Ok(Ok(out)) => {
                let out = Batch {
                    keys: out.keys,
                    key_ends: out.key_ends,
                    key_present: out.key_present,
                    values: out.values,
                    value_ends: out.value_ends,
                    timestamps: out.timestamps,
                };
                out.validate().map_err(|m| {
                    OperatorError::Host(format!("the operator returned a malformed batch: {m}"))
                })?;
                Ok(out)
            }
            Ok(Err(e)) => Err(from_wit(e)),
            Err(trap) => {
                // A trapped store refuses further calls: discard it; the next
                // call re-creates the instance from the pre-linked component.
                let reason = describe_trap(&trap, &self.log);
                self.instance = None;
                let t = self.log.tags();
                tracing::warn!(job = %t.job, operator = %t.operator, worker = t.worker, "instance trapped and was discarded: {reason}");
                self.ensure_instance().map_err(|e| {
                    OperatorError::Host(format!(
                        "trapped ({reason}), then could not be re-created: {e}"
                    ))
                })?;
                Err(OperatorError::Trap(reason))
            }
        }
    }
}

fn from_wit(e: wit::Error) -> OperatorError {
    match e {
        wit::Error::BadConfig(m) => OperatorError::BadConfig(m),
        wit::Error::Failed(m) => OperatorError::Failed(m),
        wit::Error::BadRecords(rs) => OperatorError::BadRecords(
            rs.into_iter()
                .map(|r| RejectedRecord {
                    index: r.index,
                    reason: r.reason,
                })
                .collect(),
        ),
    }
}

/// A one-line explanation of a trap: its kind, the guest's panic message
/// when it wrote one, and the innermost named frames.
fn describe_trap(err: &wasmtime::Error, log: &GuestLog) -> String {
    use wasmtime::Trap;
    let kind = match err.downcast_ref::<Trap>() {
        Some(Trap::UnreachableCodeReached) => {
            "wasm `unreachable` executed (a panic or abort in the operator)".to_string()
        }
        Some(Trap::StackOverflow) => "stack overflow".to_string(),
        Some(Trap::MemoryOutOfBounds) => "out-of-bounds memory access".to_string(),
        Some(Trap::Interrupt) => "interrupted: the call exceeded its deadline".to_string(),
        Some(Trap::IntegerDivisionByZero) => "integer division by zero".to_string(),
        Some(other) => other.to_string(),
        None => format!("{err:#}"),
    };
    let mut out = kind;
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
        None => stderr.lines().rev().find(|l| !l.trim().is_empty()),
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
            .map(|n| format!("{:#}", rustc_demangle::demangle(n)))
            .filter(|n| !is_runtime_frame(n))
            .take(4)
            .collect();
        if !names.is_empty() {
            out.push_str(&format!("; in {}", names.join(" <- ")));
        }
    }
    out
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
        let msg = explain_wrong_world(&["wasi:cli/run@0.2.0".into()]);
        assert!(
            msg.contains("`wasi:cli/run@0.2.0`") && msg.contains(TRANSFORM_EXPORT),
            "{msg}"
        );
    }
}
