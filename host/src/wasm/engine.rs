//! The engine: one wasmtime engine and linker per runtime, and the on-disk
//! cache of compiled components, keyed by content hash and engine, so that a
//! restart does not compile again.

use super::component::{
    CONTRACT, LoadError, Plugin, PluginInfo, PluginInner, Pre, STATEFUL_EXPORT, World,
    check_header, explain_wrong_world,
};
use super::sandbox::Ticker;
use super::store::StoreState;
use super::{bindings, reduce_bindings, wit_state};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

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
    let tmp = temp_path(file);
    let written = std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A name to write `file` under before renaming it into place, of this
/// writer alone: threads of one process compiling the same component at
/// once must not write into one temporary file, which the first rename
/// would publish half-written, to be loaded as native code.
fn temp_path(file: &Path) -> PathBuf {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    file.with_extension(format!("tmp{}-{n}", std::process::id()))
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

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_writers_of_one_cache_file_never_share_a_temporary_file() {
        let file = Path::new("/cache/abc-0123.cwasm");
        let names: Vec<PathBuf> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..4).map(|_| s.spawn(|| temp_path(file))).collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let distinct: std::collections::HashSet<&PathBuf> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        // Each sits beside the file, so the rename stays on one file system.
        assert!(names.iter().all(|n| n.parent() == file.parent()));
    }
}
