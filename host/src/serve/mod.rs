//! `sluice serve`: one process running many tenants' jobs behind an HTTP
//! API.
//!
//! Tenants authenticate with bearer tokens whose SHA-256 hashes are listed
//! in a tenants file ([`tenant`]); each uploads its own components and
//! submits job files in the `sluice run` format ([`spec`] says what a
//! tenant's job may do), and sees only its own jobs, plugins, files, logs
//! and dead letters. Every job runs as a tokio task of the server on one
//! shared [`Runtime`] with deadline checks compiled in, held to the
//! tenant's limits; a job that fails is restarted with backoff and paused
//! after too many failures ([`job`]). Every job is checkpointed (in its
//! own directory unless its `[checkpoint]` names a path in the tenant's
//! file area), so a restarted job resumes where it was. Tenants added
//! through the API, uploaded plugins and submitted jobs are kept under the
//! data directory and survive a restart of the server, which starts again
//! the jobs that were running ([`persist`] has the layout). Guest log lines
//! are kept per job ([`log`]). The routes are in [`api`].
//!
//! ```text
//! $ sluice serve --config tenants.toml --data /var/lib/sluice
//! listening on http://127.0.0.1:7070
//! ```
//!
//! `docs/threat-model.md` says what the server protects and what it does
//! not. Uses every module but [`crate::cli`].

pub mod api;
pub mod job;
pub mod log;
pub mod persist;
mod restore;
pub mod spec;
pub mod tenant;
pub mod ui;

pub use log::LogCapture;

use crate::spec::ConfigError;
use crate::wasm::{LoadError, Runtime};
use job::{Identity, JobEntry, Recipe};
use persist::{JobRecord, RecordState};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tenant::{Settings, Tenant, TenantConfig, TenantsError, TenantsFile};

/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Ended jobs a tenant's list keeps; older ones are forgotten.
pub const ENDED_JOBS_KEPT: usize = 100;
/// How long a stopping server waits for its jobs to flush.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a stopping server waits for the jobs it halted after
/// [`SHUTDOWN_GRACE`].
pub const HALT_WAIT: Duration = Duration::from_secs(2);
/// How often the removal of a tenant whose jobs have not ended, even
/// halted, is logged.
const STILL_REMOVING_EVERY: Duration = Duration::from_secs(30);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The tenants file is unusable.
    #[error(transparent)]
    Tenants(#[from] TenantsError),
    /// The Wasm engine could not be set up.
    #[error(transparent)]
    Runtime(#[from] LoadError),
    /// The data directory could not be prepared.
    #[error("data directory {path}: {error}")]
    Data {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A record the server kept (a tenant added through the API) is
    /// unusable.
    #[error("{path}: {message}")]
    Record {
        /// The record.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A non-loopback address without `--public`.
    #[error(
        "{0} is not a loopback address: the API speaks plain HTTP, so bearer tokens would cross \
         the network in clear; put a TLS-terminating proxy in front and pass --public to listen on it"
    )]
    NotLoopback(SocketAddr),
    /// The async runtime could not start, or the server failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How to run the server (the command-line flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// The tenants file.
    pub config: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Allow a non-loopback `listen` address.
    pub public: bool,
    /// Plugins, files, dead letters and the compiled-component cache.
    pub data: PathBuf,
}

/// The server's state, shared by the request handlers.
pub struct Server {
    settings: Settings,
    tenants: RwLock<BTreeMap<String, Arc<Tenant>>>,
    jobs: Mutex<HashMap<String, Arc<JobEntry>>>,
    runtime: Runtime,
    data: PathBuf,
    capture: LogCapture,
    /// Makes job ids unguessable: a per-process random key.
    id_key: std::collections::hash_map::RandomState,
    id_counter: std::sync::atomic::AtomicU64,
    /// Tenants removed whose jobs are still stopping; their names cannot
    /// be taken until their data is gone.
    removing: Mutex<std::collections::HashSet<String>>,
    /// Held while a tenant is added or removed: one change (and its
    /// record) at a time.
    admin: tokio::sync::Mutex<()>,
    /// Jobs loaded from their records that are to run, until
    /// [`Server::start_restored`] starts them.
    restored: Mutex<Vec<(Arc<JobEntry>, Recipe)>>,
}

impl Server {
    /// A server for the tenants file's tenants, keeping its data in `data`
    /// and the jobs' log lines in `capture` (which must be installed as a
    /// tracing layer for logs to be served). What an earlier server kept
    /// there is loaded (blocking file I/O): the removals it did not finish
    /// are finished, the tenants added through its API come back, and so
    /// do the jobs; those that were running are started by
    /// [`Server::start_restored`].
    pub fn new(
        settings: Settings,
        tenants: Vec<Tenant>,
        data: &Path,
        capture: LogCapture,
    ) -> Result<Arc<Self>, ServeError> {
        let data_err = |error| ServeError::Data {
            path: data.to_owned(),
            error,
        };
        std::fs::create_dir_all(data.join("tenants")).map_err(data_err)?;
        let data = std::fs::canonicalize(data).map_err(data_err)?;
        // Tenants' code is untrusted: deadlines are always enforceable.
        let runtime = Runtime::with_options(Some(data.join("cache")), true)?;
        let server = Server {
            settings,
            tenants: RwLock::new(BTreeMap::new()),
            jobs: Mutex::new(HashMap::new()),
            runtime,
            data,
            capture,
            id_key: Default::default(),
            id_counter: Default::default(),
            removing: Default::default(),
            admin: Default::default(),
            restored: Default::default(),
        };
        server.load(tenants)?;
        Ok(Arc::new(server))
    }

    /// Vets `text`, a job file of `tenant`, as job `id`, and returns how to
    /// build it and the name the file gave. Blocking file I/O (the plugins
    /// are looked up in the tenant's store).
    fn recipe(
        &self,
        tenant: &Tenant,
        id: &str,
        text: &str,
    ) -> Result<(Recipe, String), ConfigError> {
        let dir = self.tenant_dir(&tenant.name);
        let job_dir = dir.join("jobs").join(id);
        let places = spec::Places {
            plugins: dir.join("plugins"),
            files: dir.join("files"),
            dead_letter: job_dir.join("dead-letters.jsonl"),
            job: format!("{}/{id}", tenant.name),
        };
        let mut config = spec::vet(text, tenant, &places)?;
        let display_name = config.name.take().unwrap_or_else(|| "job".into());
        config.name = Some(format!("{}/{id}", tenant.name));
        let recipe = Recipe {
            config,
            path: places.files.join(persist::JOB_FILE),
            runtime: self.runtime.clone(),
            checkpoints: job_dir.join(persist::CHECKPOINTS),
        };
        Ok((recipe, display_name))
    }

    /// The settings of the tenants file.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The tenant's directory.
    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.data.join("tenants").join(tenant)
    }

    /// Creates the directories of tenant `name` (blocking file I/O).
    fn make_tenant_dirs(&self, name: &str) -> std::io::Result<()> {
        let dir = self.tenant_dir(name);
        for sub in ["plugins", "files", "jobs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        Ok(())
    }

    /// Whether `tenant` exists (it may have been removed since a request
    /// authenticated).
    fn has_tenant(&self, tenant: &str) -> bool {
        read_lock(&self.tenants).contains_key(tenant)
    }

    /// Whether a removed tenant of this name is still being cleaned up.
    fn is_removing(&self, tenant: &str) -> bool {
        lock(&self.removing).contains(tenant)
    }

    /// Removes the tenant `name`, marking it as being cleaned up, so that
    /// no request finds it between the two; `None` if there is none.
    fn take_tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        let mut tenants = write_lock(&self.tenants);
        let removed = tenants.remove(name)?;
        lock(&self.removing).insert(name.to_string());
        Some(removed)
    }

    /// The removed tenants still being cleaned up, sorted.
    fn removing_tenants(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.removing).iter().cloned().collect();
        names.sort();
        names
    }

    /// Ends a removed tenant's jobs and then forgets it: each job is asked
    /// to stop, a job still running after `removal_grace` is halted, and
    /// only once every one has ended are its data and its name given up.
    /// A job that does not end even halted (a sink stuck in a broker's
    /// timeout) keeps it all until it does.
    async fn retire_tenant(&self, tenant: &str) {
        let started = tokio::time::Instant::now();
        let grace = self.settings.removal_grace;
        let mut halted = std::collections::HashSet::new();
        let mut report = started + grace + STILL_REMOVING_EVERY;
        loop {
            // Read again each time: a submission that authenticated before
            // the removal may have added a job since.
            let running: Vec<Arc<JobEntry>> = self
                .jobs_of(tenant)
                .into_iter()
                .filter(|j| !j.status().is_ended())
                .collect();
            if running.is_empty() {
                break;
            }
            let now = tokio::time::Instant::now();
            for j in &running {
                j.request_stop();
                if now >= started + grace && halted.insert(j.who.id.clone()) {
                    tracing::warn!(
                        target: "sluice::serve",
                        job = %j.who.engine_name,
                        "not stopped {} after its tenant's removal: halted",
                        crate::model::units::format_duration(grace)
                    );
                    j.halt();
                }
            }
            if now >= report {
                tracing::warn!(
                    target: "sluice::serve",
                    "tenant `{tenant}` is still being removed: {} job(s) have not ended",
                    running.len()
                );
                report = now + STILL_REMOVING_EVERY;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.forget_tenant(tenant).await;
    }

    /// Forgets a removed tenant whose jobs have all ended: its job entries,
    /// their log rings and its directory (plugins, files, job data).
    async fn forget_tenant(&self, tenant: &str) {
        let gone: Vec<Arc<JobEntry>> = {
            let mut jobs = lock(&self.jobs);
            let ids: Vec<String> = jobs
                .values()
                .filter(|j| j.who.tenant == tenant)
                .map(|j| j.who.id.clone())
                .collect();
            ids.iter().filter_map(|id| jobs.remove(id)).collect()
        };
        for j in &gone {
            self.capture.unregister(&j.who.engine_name);
        }
        let dir = self.tenant_dir(tenant);
        match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Ok(Err(e)) => {
                tracing::warn!(target: "sluice::serve", "removing tenant `{tenant}`'s data: {e}")
            }
            Err(e) => {
                tracing::warn!(target: "sluice::serve", "removing tenant `{tenant}`'s data: {e}")
            }
        }
        lock(&self.removing).remove(tenant);
        tracing::info!(target: "sluice::serve", "tenant `{tenant}` removed with {} job(s)", gone.len());
    }

    /// The tenant whose token hashes to `hash`. Every tenant's hash is
    /// compared, in constant time, so the time taken says nothing about
    /// which tenant (if any) came close.
    fn tenant_by_token(&self, hash: &[u8; 32]) -> Option<Arc<Tenant>> {
        let tenants = read_lock(&self.tenants);
        let mut found = None;
        for t in tenants.values() {
            if tenant::same_hash(&t.token_sha256, hash) {
                found = Some(t.clone());
            }
        }
        found
    }

    /// A new job id, 16 hex digits, unique and hard to guess, and its
    /// number (which goes on after a restart).
    fn new_job_id(&self) -> (String, u64) {
        use std::hash::BuildHasher;
        loop {
            let n = self
                .id_counter
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let a = self.id_key.hash_one(n);
            let b = self.id_key.hash_one((n, std::time::SystemTime::now()));
            let id = format!("{:08x}{:08x}", a as u32 ^ (a >> 32) as u32, b as u32);
            if !lock(&self.jobs).contains_key(&id) {
                return (id, n);
            }
        }
    }

    /// The job `id` if it belongs to `tenant`; another tenant's job is as
    /// absent as a job that never existed.
    fn job(&self, tenant: &str, id: &str) -> Option<Arc<JobEntry>> {
        lock(&self.jobs)
            .get(id)
            .filter(|j| j.who.tenant == tenant)
            .cloned()
    }

    /// Every tenant's jobs, oldest first.
    fn all_jobs(&self) -> Vec<Arc<JobEntry>> {
        let mut jobs: Vec<_> = lock(&self.jobs).values().cloned().collect();
        jobs.sort_by_key(|j| j.who.submitted);
        jobs
    }

    /// The tenant's jobs, oldest first.
    fn jobs_of(&self, tenant: &str) -> Vec<Arc<JobEntry>> {
        let mut jobs: Vec<_> = lock(&self.jobs)
            .values()
            .filter(|j| j.who.tenant == tenant)
            .cloned()
            .collect();
        jobs.sort_by_key(|j| j.who.submitted);
        jobs
    }

    /// Forgets the oldest ended jobs of `tenant` beyond [`ENDED_JOBS_KEPT`],
    /// with their directories (record, checkpoints, dead letters). Call it
    /// on the async runtime.
    fn prune(&self, tenant: &str) {
        let mut jobs = lock(&self.jobs);
        let mut ended: Vec<(Duration, String)> = jobs
            .values()
            .filter(|j| j.who.tenant == tenant)
            .filter_map(|j| j.ended_for().map(|d| (d, j.who.id.clone())))
            .collect();
        if ended.len() <= ENDED_JOBS_KEPT {
            return;
        }
        ended.sort();
        let mut dirs = Vec::new();
        for (_, id) in ended.drain(ENDED_JOBS_KEPT..) {
            if let Some(j) = jobs.remove(&id) {
                self.capture.unregister(&j.who.engine_name);
                dirs.push(j.who.dir.clone());
            }
        }
        drop(jobs);
        tokio::task::spawn_blocking(move || {
            for dir in dirs {
                if let Err(e) = persist::remove_dir(&dir) {
                    tracing::warn!(target: "sluice::serve", "removing {}: {e}", dir.display());
                }
            }
        });
    }

    /// Forgets the ended job `id` of `tenant` and deletes its directory;
    /// `Ok(false)` if it has not ended, `Err` if there is no such job.
    async fn delete_job(&self, tenant: &str, id: &str) -> Result<bool, ()> {
        let entry = {
            let mut jobs = lock(&self.jobs);
            let Some(j) = jobs.get(id).filter(|j| j.who.tenant == tenant) else {
                return Err(());
            };
            if !j.status().is_ended() {
                return Ok(false);
            }
            let j = j.clone();
            jobs.remove(id);
            j
        };
        self.capture.unregister(&entry.who.engine_name);
        let dir = entry.who.dir.clone();
        match tokio::task::spawn_blocking(move || persist::remove_dir(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(target: "sluice::serve", "removing {}: {e}", entry.who.dir.display())
            }
            Err(e) => {
                tracing::warn!(target: "sluice::serve", "removing {}: {e}", entry.who.dir.display())
            }
        }
        Ok(true)
    }

    /// Asks every job to stop and waits (up to `grace`) for them to end;
    /// then halts those still running and waits for them up to
    /// [`HALT_WAIT`].
    pub async fn stop_all(&self, grace: Duration) {
        let jobs: Vec<_> = lock(&self.jobs).values().cloned().collect();
        // Their records keep the state before: a restart starts again those
        // that were running.
        for j in &jobs {
            j.stop_by_server();
        }
        let ended = |jobs: &[Arc<JobEntry>]| jobs.iter().all(|j| j.status().is_ended());
        let deadline = tokio::time::Instant::now() + grace;
        while !ended(&jobs) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if ended(&jobs) {
            return;
        }
        for j in jobs.iter().filter(|j| !j.status().is_ended()) {
            j.halt();
        }
        let deadline = tokio::time::Instant::now() + HALT_WAIT;
        while !ended(&jobs) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_lock<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the server until Ctrl-C or SIGTERM; then stops every job, letting
/// each flush its sinks. Prints `listening on http://ADDRESS` once bound.
pub fn main(options: Options, capture: LogCapture) -> Result<(), ServeError> {
    if !options.listen.ip().is_loopback() && !options.public {
        return Err(ServeError::NotLoopback(options.listen));
    }
    let (settings, tenants) = TenantsFile::load(&options.config)?;
    // Preparing the data directory is file I/O: done before, not on, the
    // async threads.
    let server = Server::new(settings, tenants, &options.data, capture)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|error| ServeError::Listen {
                address: options.listen,
                error,
            })?;
        let address = listener.local_addr()?;
        println!("listening on http://{address}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if settings_admin_missing(&server) {
            tracing::warn!("the tenants file has no admin_token_sha256: the admin routes are off");
        }
        server.start_restored();
        let app = api::router(server.clone());
        axum::serve(listener, app)
            .with_graceful_shutdown(crate::signal::wait_for_signal())
            .await?;
        eprintln!("stopping: letting every job finish its batch and flush its sinks");
        server.stop_all(SHUTDOWN_GRACE).await;
        Ok(())
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    outcome
}

fn settings_admin_missing(server: &Server) -> bool {
    server.settings.admin.is_none()
}
