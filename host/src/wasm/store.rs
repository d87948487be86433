//! Stores and sessions: a default-deny WASI context per instance, the
//! `host` imports, and the [`Session`] that creates an instance, calls it
//! within the job's limits and replaces it after a trap or a breach.

use super::component::{Plugin, Pre, World};
use super::log::{GuestLog, LogTags};
use super::sandbox::{self, Deadline, Halted, MemoryLimiter};
use super::trap::{trap_context, trap_kind};
use super::{bindings, reduce_bindings, wit_host, wit_state, wit_types};
use crate::operators::{OperatorError, RejectedRecord};
use crate::signal::Halt;
use crate::spec::limits::{self, Limits};
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Per-store state: WASI context (default-deny), the guest's log, the
/// limiter of its memories and tables, and the call's deadline.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    log: GuestLog,
    limiter: MemoryLimiter,
    deadline: Deadline,
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

/// The generated bindings of one world: how to instantiate them from a
/// [`Plugin`] and call their `init`.
pub(super) trait WorldBindings: Sized {
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
pub(super) struct TransformBindings {
    pub(super) transform: bindings::Transform,
    pub(super) state: Option<wit_state::Guest>,
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

pub(super) struct Instance<B> {
    store: Store<StoreState>,
    bindings: B,
}

/// One worker's live instance of a component, whatever its world: creates
/// and initialises it, calls it within the job's limits, forwards its log,
/// and replaces it after a trap or a breach.
pub(super) struct Session<B> {
    pub(super) plugin: Plugin,
    config: Vec<(String, String)>,
    limits: Limits,
    instance: Option<Instance<B>>,
    log: GuestLog,
    /// The job's halt, from the thread that started the session.
    halt: Option<Halt>,
}

impl<B: WorldBindings> Session<B> {
    /// A session with a fresh, initialised instance of `plugin`, which must
    /// implement `world`, held to `limits`.
    pub(super) fn start(
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
            halt: Halt::current(),
        };
        session.ensure_instance()?;
        Ok(session)
    }

    /// Tags the following log lines with micro-batch `batch_no`.
    pub(super) fn begin_batch(&mut self, batch_no: u64) {
        self.log.set_batch(batch_no);
    }

    /// The bytes of linear memory the live instance holds (none while
    /// there is no instance).
    pub(super) fn memory_used(&self) -> Option<u64> {
        let instance = self.instance.as_ref()?;
        Some(instance.store.data().limiter.used() as u64)
    }

    /// The operator's name in the job.
    pub(super) fn operator(&self) -> &str {
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
            deadline: Deadline::new(self.halt.clone()),
        };
        let mut store = Store::new(&self.plugin.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut s| s.data_mut().deadline.next());
        store
    }

    /// Whether the job was halted: no instance is created or called then.
    fn halted(&self) -> bool {
        self.halt.as_ref().is_some_and(Halt::is_raised)
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
        if self.halted() {
            return Err(OperatorError::Host(Halted.to_string()));
        }
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
    pub(super) fn call<T>(
        &mut self,
        input: usize,
        f: impl FnOnce(&B, &mut Store<StoreState>) -> wasmtime::Result<Result<T, wit_types::Error>>,
    ) -> Result<T, OperatorError> {
        let fuel = sandbox::hostcall_fuel(&self.limits, input);
        self.call_with_fuel(input, fuel, f)
    }

    /// Like [`Session::call`] without input, for the call that hands the
    /// instance's state to the host (`snapshot`): the state is no output of
    /// a batch, so `output_ratio` does not hold it (a snapshot past it would
    /// fail and take the instance, and the state, with it). It cannot be
    /// larger than the instance's `memory`, the bytes it may pass; once it
    /// is lifted it is held to `max_state`, and a state past that is
    /// refused with the instance, and its state, left as they were.
    pub(super) fn call_for_state(
        &mut self,
        f: impl FnOnce(
            &B,
            &mut Store<StoreState>,
        ) -> wasmtime::Result<Result<Vec<u8>, wit_types::Error>>,
    ) -> Result<Vec<u8>, OperatorError> {
        let fuel = usize::try_from(self.limits.memory).unwrap_or(usize::MAX);
        let state = self.call_with_fuel(0, fuel, f)?;
        self.check_state(state.len(), "the instance's snapshot")?;
        Ok(state)
    }

    /// Checks the size of a state crossing the boundary whole (`what`)
    /// against `max_state`.
    pub(super) fn check_state(&self, bytes: usize, what: &str) -> Result<(), OperatorError> {
        let allowed = self.limits.state_allowed();
        if bytes as u64 <= allowed {
            return Ok(());
        }
        Err(OperatorError::Limit {
            limit: crate::spec::limits::Limit::MaxState,
            value: crate::model::units::format_size(allowed),
            detail: format!(
                "{what} is {}",
                crate::model::units::format_size(bytes as u64)
            ),
        })
    }

    fn call_with_fuel<T>(
        &mut self,
        input: usize,
        fuel: usize,
        f: impl FnOnce(&B, &mut Store<StoreState>) -> wasmtime::Result<Result<T, wit_types::Error>>,
    ) -> Result<T, OperatorError> {
        // Only what the guest writes during this call may explain a trap in it.
        self.log.take_stderr_tail();
        let deadline = self.deadline();
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
    pub(super) fn check_output(
        &mut self,
        input: usize,
        output: usize,
    ) -> Result<(), OperatorError> {
        sandbox::check_output(&self.limits, input, output).map_err(|breach| self.discard(breach))
    }

    /// Discards the instance after `error` (a trapped store refuses further
    /// calls; an instance over a limit is not trusted further) and creates
    /// the next one at once, so that a component that cannot start again is
    /// reported now. Returns the error to report.
    fn discard(&mut self, error: OperatorError) -> OperatorError {
        self.instance = None;
        if self.halted() {
            return error;
        }
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
    let first = store.data_mut().deadline.start(ticks);
    store.set_epoch_deadline(first);
    store.set_hostcall_fuel(fuel);
}

pub(super) fn from_wit(e: wit_types::Error) -> OperatorError {
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
