//! The `sluice` command line: argument parsing, signals, exit codes and
//! error printing. The binary's `main` only calls [`main`].

pub mod plugin;
mod watch;

use crate::exec::Job;
use crate::model::batch::Batch;
use crate::spec::JobConfig;
use crate::wasm::{self, PluginInfo, Runtime};
use anyhow::Context;
use clap::{Parser, Subcommand};
use plugin::{sample, sample::SampleFormat, scaffold, scaffold::SdkSource};
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
        /// Swap in a new version of a `plugin` operator when its .wasm file
        /// changes, without stopping the job (the state moves to the new
        /// version; a version that fails is refused and the old one goes on).
        #[arg(long)]
        watch: bool,
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

#[derive(Subcommand)]
enum PluginCommand {
    /// Say which world and contract version a component implements, or why it does not.
    Check {
        /// The component (.wasm).
        file: PathBuf,
    },
    /// Create a new operator crate that builds and passes its test as generated.
    New {
        /// Crate name, e.g. `word-filter`.
        name: String,
        /// Directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path of a local `plugin-sdk` to depend on (default: the SDK this
        /// `sluice` was built with, when present, else the published crate).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build an operator crate as a Wasm component and check it.
    Build {
        /// The crate's directory.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Run a component over sample records and show what it does with them.
    Test {
        /// The component (.wasm).
        file: PathBuf,
        /// Sample records: text lines, or JSON lines (`.jsonl`) with value, key, timestamp.
        #[arg(long)]
        input: PathBuf,
        /// An operator setting, `key=value`; repeat for more.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_setting)]
        config: Vec<(String, String)>,
        /// Sample format (default: by file extension).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Records to show (all by default).
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Lines,
    Jsonl,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Parses the process arguments, runs the command and maps the outcome to an
/// exit code: 0 success, 1 failure, 2 a plugin that fails `plugin check`.
pub fn main() -> ExitCode {
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
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
        Command::Run { job, quiet, watch } => run_job(job, quiet, watch),
        Command::Deploy {
            file,
            job,
            operator,
            server,
            token,
        } => deploy(&file, &job, &operator, &server, token),
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
            println!(
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
        Command::Plugin {
            command: PluginCommand::New { name, dir, sdk },
        } => {
            let sdk = match sdk {
                Some(p) => SdkSource::Path(
                    std::fs::canonicalize(&p).with_context(|| format!("--sdk {}", p.display()))?,
                ),
                None => SdkSource::detect(),
            };
            let root = scaffold::create(&dir, &name, &sdk)?;
            println!("created operator crate {}", root.display());
            println!(
                "next: cd {} && cargo test && sluice plugin build",
                root.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Build { path },
        } => {
            let runtime = Runtime::new()?;
            let built = plugin::build::build(&path, &runtime)?;
            println!(
                "built {} ({:.1} KB): implements world `{}` of {}",
                built.path.display(),
                built.info.size as f64 / 1024.0,
                built.info.world,
                built.info.contract
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command:
                PluginCommand::Test {
                    file,
                    input,
                    config,
                    format,
                    limit,
                },
        } => {
            let runtime = Runtime::new()?;
            let plugin = runtime.load(&file)?;
            let format = match format {
                Some(Format::Lines) => SampleFormat::Lines,
                Some(Format::Jsonl) => SampleFormat::Jsonl,
                None => SampleFormat::for_path(&input),
            };
            let records = sample::read_sample(&input, format)?;
            let name = plugin.name().to_string();
            let report = sample::run(&plugin, &name, &config, records.clone())?;
            print_report(
                &name,
                plugin.info(),
                &records,
                &report,
                limit.unwrap_or(usize::MAX),
            );
            Ok(ExitCode::SUCCESS)
        }
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

fn print_report(
    name: &str,
    info: &PluginInfo,
    input: &Batch,
    report: &sample::Report,
    limit: usize,
) {
    let show = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(b));
    println!(
        "operator `{name}` ({}, world `{}`): {} record(s) in, {} out, {} rejected",
        info.contract,
        info.world,
        report.records,
        report.output.len(),
        report.rejected.len()
    );
    println!("output:");
    for r in report.output.iter().take(limit) {
        match r.key {
            Some(k) => println!(
                "  [{}] key={} value={} ts={}",
                r.index,
                show(k),
                show(r.value),
                r.timestamp
            ),
            None => println!("  [{}] value={} ts={}", r.index, show(r.value), r.timestamp),
        }
    }
    if report.output.len() > limit {
        println!("  ... ({} more)", report.output.len() - limit);
    }
    if !report.rejected.is_empty() {
        println!("rejected:");
        for (i, reason) in &report.rejected {
            let value = input.get(*i).map(|r| show(r.value)).unwrap_or_default();
            println!("  record {i} (value {value}): {reason}");
        }
    }
    let per = report.elapsed.as_secs_f64() * 1e6 / report.records.max(1) as f64;
    println!(
        "time: {per:.2} µs per record ({:.1} µs for {} record(s) in one batch, including the first call's warm-up)",
        report.elapsed.as_secs_f64() * 1e6,
        report.records
    );
}

fn run_job(path: PathBuf, quiet: bool, watch: bool) -> anyhow::Result<ExitCode> {
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
                Some((op.display_name(), base.join(op.plugin.as_ref()?)))
            })
            .collect();
        let job = Job::from_config(cfg, &path, &runtime)?;
        let bounded = job.is_bounded();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::signal::wait_for_signal().await;
            eprintln!("stopping: finishing the current batch and flushing sinks (press Ctrl-C again to abort)");
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
                eprintln!("--watch: the job has no `plugin` operator to watch");
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

/// `sluice deploy`: uploads `file` as the next version of `operator` of
/// job `job` on `server` and prints what became of it.
fn deploy(
    file: &std::path::Path,
    job: &str,
    operator: &str,
    server: &str,
    token: Option<String>,
) -> anyhow::Result<ExitCode> {
    let token = token
        .or_else(|| std::env::var("SLUICE_TOKEN").ok())
        .filter(|t| !t.is_empty())
        .context("no token: pass --token or set SLUICE_TOKEN")?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let url = format!(
        "{}/v1/jobs/{}/operators/{}",
        server.trim_end_matches('/'),
        path_segment(job),
        path_segment(operator)
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(
            crate::serve::api::DEPLOY_WAIT + std::time::Duration::from_secs(30),
        ))
        .build()
        .into();
    eprintln!(
        "uploading {} ({} bytes) as operator `{operator}` of job {job}; waiting for the job to try it",
        file.display(),
        bytes.len()
    );
    let mut response = agent
        .put(&url)
        .header("Authorization", format!("Bearer {token}"))
        .send(&bytes[..])
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    match status {
        200 => {
            println!(
                "version {} of `{operator}` adopted from batch {} ({:.0} ms after the upload)",
                body["version"],
                body["first_batch"],
                body["after_ms"].as_f64().unwrap_or(0.0)
            );
            Ok(ExitCode::SUCCESS)
        }
        202 => {
            println!(
                "version {} of `{operator}` uploaded, not decided yet: {}",
                body["version"],
                body["note"].as_str().unwrap_or_default()
            );
            Ok(ExitCode::from(2))
        }
        _ => {
            let why = body["error"].as_str().map_or(text.as_str(), |e| e);
            eprintln!("error: {status}: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `text` as one URL path segment: every byte but the unreserved ones
/// percent-encoded.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("counter"), "counter");
        assert_eq!(path_segment("my op/../x"), "my%20op%2F..%2Fx");
        assert_eq!(path_segment("é"), "%C3%A9");
    }
}
