//! The `sluice` command line: argument parsing, signals, exit codes and
//! error printing. The binary's `main` only calls [`main`].

use crate::pipeline::Job;
use crate::runtime::Runtime;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Sluice: a stream processor whose operators are WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job file until its inputs end (or until Ctrl-C / SIGTERM).
    Run {
        /// The job file (TOML).
        job: PathBuf,
        /// Do not print progress lines.
        #[arg(long)]
        quiet: bool,
    },
    /// Work with operator plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Say which world and contract version a component implements, or why it does not.
    Check {
        /// The component (.wasm).
        file: PathBuf,
    },
}

/// Parses the process arguments, runs the command and maps the outcome to an
/// exit code: 0 success, 1 failure, 2 a plugin that fails `plugin check`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { job, quiet } => run_job(job, quiet),
        Command::Plugin {
            command: PluginCommand::Check { file },
        } => {
            let runtime = Runtime::new()?;
            match runtime.load(&file) {
                Ok(plugin) => {
                    let info = plugin.info();
                    println!(
                        "{}: implements world `{}` of {} ({} bytes, sha256 {})",
                        file.display(),
                        info.world,
                        info.contract,
                        info.size,
                        &info.sha256[..16]
                    );
                    println!("imports: {}", info.imports.join(", "));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}

fn run_job(path: PathBuf, quiet: bool) -> anyhow::Result<ExitCode> {
    let io_threads = 2;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let runtime = Runtime::new()?;
        let job = Job::from_file(&path, &runtime)?;
        let bounded = job.is_bounded();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("stopping: finishing the current batch and flushing sinks (press Ctrl-C again to abort)");
            let _ = stop_tx.send(true);
            wait_for_signal().await;
            eprintln!("aborted");
            std::process::exit(130);
        });
        if !bounded && !quiet {
            eprintln!("running `{}` until Ctrl-C or SIGTERM", job.name());
        }
        let job = if quiet { job } else { job.with_progress() };
        let summary = job.run(stop_rx).await?;
        eprintln!("{summary}");
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
