//! `sluice run`: one job in this process, until its inputs end or a signal.

use super::watch;
use crate::exec::Job;
use crate::serve::ui::Watched;
use crate::spec::JobConfig;
use crate::wasm::{self, Runtime};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// How `sluice run` runs its job.
pub(super) struct RunOptions {
    pub(super) quiet: bool,
    pub(super) watch: bool,
    pub(super) drain: bool,
    pub(super) reset_state: bool,
    /// Where to serve the dashboard and metrics.
    pub(super) ui: Option<std::net::SocketAddr>,
}

pub(super) fn run_job(path: PathBuf, options: RunOptions) -> anyhow::Result<ExitCode> {
    let RunOptions {
        quiet,
        watch,
        drain,
        reset_state,
        ui,
    } = options;
    let io_threads = 2;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = rt.block_on(async move {
        // Deadline checks cost speed in every guest loop: compile them in
        // only for a job that asks for a deadline.
        let cfg = JobConfig::from_file(&path, &crate::operators::registry::BUILTINS)?;
        let deadlines = cfg
            .limits()
            .map(|l| l.cpu_per_batch.is_some())
            .unwrap_or(true);
        let runtime = Runtime::with_options(wasm::default_cache_dir(), deadlines)?;
        let base = path.parent().map(PathBuf::from).unwrap_or_default();
        let plugins: Vec<(String, PathBuf)> = cfg
            .operators
            .iter()
            .filter_map(|op| {
                let op = op.get_ref();
                let file = op.plugin.as_ref().or(op.reducer.as_ref())?;
                Some((op.display_name(), base.join(file)))
            })
            .collect();
        let mut job = Job::from_config(cfg, &path, &runtime)?;
        if reset_state {
            if job.checkpointing().is_none() {
                eprintln!("--reset-state: the job keeps no checkpoints ([checkpoint] in the job file)");
            }
            job = job.with_reset_state();
        }
        let bounded = job.is_bounded();
        let checkpointed = job.checkpointing().is_some();
        let drain_flag = job.drain_flag();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::signal::wait_for_signal().await;
            if drain {
                drain_flag.store(true, std::sync::atomic::Ordering::Relaxed);
                eprintln!("stopping: emitting every open window, then flushing sinks (press Ctrl-C again to abort)");
            } else if checkpointed {
                eprintln!("stopping: finishing the current batch and taking a checkpoint; open windows are kept for the resume (--drain emits them now; press Ctrl-C again to abort)");
            } else {
                eprintln!("stopping: finishing the current batch and flushing sinks (press Ctrl-C again to abort)");
            }
            let _ = stop_tx.send(true);
            crate::signal::wait_for_signal().await;
            eprintln!("aborted");
            std::process::exit(130);
        });
        if !bounded && !quiet {
            eprintln!("running `{}` until Ctrl-C or SIGTERM", job.name());
        }
        if watch {
            if plugins.is_empty() {
                eprintln!("--watch: the job has no `plugin` operator or reducer to watch");
            }
            tokio::spawn(watch::watch(
                job.reloader(),
                runtime.clone(),
                plugins,
                std::time::Duration::from_millis(300),
                stop_rx.clone(),
            ));
        }
        let watched = match ui {
            Some(addr) => Some(serve_ui(addr, &job, stop_rx.clone()).await?),
            None => None,
        };
        let job = if quiet { job } else { job.with_progress() };
        let result = job.run(stop_rx).await;
        if let Some(w) = &watched {
            w.ended(match &result {
                Ok(s) if s.interrupted => "stopped",
                Ok(_) => "finished",
                Err(_) => "failed",
            });
        }
        let summary = result?;
        eprintln!("{summary}");
        Ok(ExitCode::SUCCESS)
    });
    // A source stuck in an uncancellable read (a terminal) must not keep the
    // process alive once the job has finished.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}

/// Starts serving `job`'s dashboard and metrics on `addr`, until `stop`.
async fn serve_ui(
    addr: std::net::SocketAddr,
    job: &Job,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Watched> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another process serves there: choose a free port, e.g. --ui 127.0.0.1:4041)"
            }
            _ => "",
        };
        anyhow::anyhow!("--ui: cannot serve the dashboard on {addr}: {e}{hint}")
    })?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "--ui: the dashboard on {addr} has no authentication: anyone who can reach it sees the job"
        );
    }
    let watched = Watched {
        name: job.name().to_string(),
        stats: job.stats(),
        state: std::sync::Arc::new(std::sync::Mutex::new("running".into())),
    };
    let shown = listener.local_addr().unwrap_or(addr);
    eprintln!("dashboard on http://{shown}/ (metrics at http://{shown}/metrics)");
    let served = watched.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::serve::ui::serve(listener, served, stop).await {
            eprintln!("--ui: the dashboard stopped: {e}");
        }
    });
    Ok(watched)
}
