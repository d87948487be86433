//! The `sluice` command line: argument parsing, logging, exit codes and
//! error printing, and one file per command — `run` (with `--watch`),
//! `deploy`, `plugin` (for operator authors); `serve` starts
//! [`crate::serve`]. The top of the stack: it may use every module. The
//! binary's `main` only calls [`main`].

/// `println!` that does not panic when standard output is closed early
/// (`sluice plugin check x.wasm | head -1`): what the reader no longer
/// wants is dropped, and the command ends as it would have.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod deploy;
pub mod plugin;
mod run;
mod watch;

use anyhow::Context;
use clap::{Parser, Subcommand};
use plugin::PluginCommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// Sluice: a stream processor whose operators are WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where `sluice run --ui` serves without an address.
pub const DEFAULT_UI: &str = "127.0.0.1:4040";

#[derive(Subcommand)]
enum Command {
    /// Run a job file until its inputs end (or until Ctrl-C / SIGTERM).
    Run {
        /// The job file (TOML).
        job: PathBuf,
        /// Do not print progress lines.
        #[arg(long)]
        quiet: bool,
        /// Swap in a new version of a `plugin` operator or a reducer when its
        /// .wasm file changes, without stopping the job (the state moves to
        /// the new version; a version that fails its probe batch is refused,
        /// one that fails within the `[reload]` rollback window is rolled
        /// back, and the old one goes on).
        #[arg(long)]
        watch: bool,
        /// On Ctrl-C or SIGTERM, emit every open window and result before
        /// stopping, as at the end of the input. Without it, a job with a
        /// `[checkpoint]` stops with a final checkpoint and emits its open
        /// windows after the resume, when the watermark passes them.
        #[arg(long)]
        drain: bool,
        /// Throw away the job's checkpoints and start afresh (its state and
        /// input positions are lost).
        #[arg(long)]
        reset_state: bool,
        /// Serve a live dashboard of the job at `/` and its Prometheus
        /// metrics at `/metrics` while it runs, on this address
        /// (127.0.0.1:4040 when none is given).
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_UI)]
        ui: Option<std::net::SocketAddr>,
    },
    /// Work with operator plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Swap a new version of a `plugin` operator into a job running on a
    /// `sluice serve` server; waits until the job adopted or refused it.
    /// Exits with 0 when adopted, 1 when refused, 2 when not decided yet.
    Deploy {
        /// The new version: a component (.wasm) of the `transform` world.
        file: PathBuf,
        /// The job's id on the server.
        #[arg(long)]
        job: String,
        /// The operator to replace, by its name in the job file.
        #[arg(long)]
        operator: String,
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        server: String,
        /// The tenant's bearer token (default: $SLUICE_TOKEN).
        #[arg(long)]
        token: Option<String>,
    },
    /// Serve several tenants' jobs over an HTTP API.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Serve {
        #[command(subcommand)]
        command: Option<ServeCommand>,
        /// The tenants file (TOML).
        #[arg(long, required = true)]
        config: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = crate::serve::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Allow a non-loopback --listen address (behind a TLS proxy).
        #[arg(long)]
        public: bool,
        /// Directory for plugins, files, dead letters and compiled code.
        #[arg(long, default_value = "sluice-data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum ServeCommand {
    /// Print the SHA-256 of a bearer token, for the tenants file (reads the
    /// token from standard input when it is not given).
    HashToken {
        /// The token.
        token: Option<String>,
    },
}

/// Parses the process arguments, runs the command and maps the outcome to an
/// exit code: 0 success, 1 failure, 2 a plugin that fails `plugin check`.
pub fn main() -> ExitCode {
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    crate::exec::tune_allocator();
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    // The server keeps each job's log lines for its tenant.
    let capture = crate::serve::LogCapture::new();
    let serving = matches!(cli.command, Command::Serve { command: None, .. });
    tracing_subscriber::registry()
        .with(fmt)
        .with(serving.then(|| capture.layer()))
        .init();
    match run(cli, capture) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, capture: crate::serve::LogCapture) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            job,
            quiet,
            watch,
            drain,
            reset_state,
            ui,
        } => run::run_job(
            job,
            run::RunOptions {
                quiet,
                watch,
                drain,
                reset_state,
                ui,
            },
        ),
        Command::Deploy {
            file,
            job,
            operator,
            server,
            token,
        } => deploy::deploy(&file, &job, &operator, &server, token),
        Command::Serve {
            command: Some(ServeCommand::HashToken { token }),
            ..
        } => {
            let token = match token {
                Some(t) => t,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            anyhow::ensure!(!token.is_empty(), "the token is empty");
            say!(
                "{}",
                crate::serve::tenant::to_hex(&crate::serve::tenant::hash_token(&token))
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            command: None,
            config,
            listen,
            public,
            data,
        } => {
            let config = config.context("--config is required")?;
            crate::serve::main(
                crate::serve::Options {
                    config,
                    listen,
                    public,
                    data,
                },
                capture,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { command } => plugin::run(command),
    }
}
