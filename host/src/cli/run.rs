//! `sluice run`: one job in this process, until its inputs end or a signal.

use super::watch;
use crate::exec::Job;
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
}

pub(super) fn run_job(path: PathBuf, options: RunOptions) -> anyhow::Result<ExitCode> {
    let RunOptions {
        quiet,
        watch,
        drain,
        reset_state,
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
        let job = if quiet { job } else { job.with_progress() };
        let summary = job.run(stop_rx).await?;
        eprintln!("{summary}");
        Ok(ExitCode::SUCCESS)
    });
    // A source stuck in an uncancellable read (a terminal) must not keep the
    // process alive once the job has finished.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}
