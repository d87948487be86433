//! Tools for operator authors: `sluice plugin new`, `build`, `test` and `check`.
//!
//! - [`scaffold`] creates an operator crate that builds and passes its test
//!   as generated.
//! - [`build`] compiles a crate into a component and checks it against the
//!   contract.
//! - [`sample`] runs a component over sample records and reports what came
//!   out, what was rejected and why, and how long it took.

pub mod build;
pub mod component;
pub mod languages;
pub mod project;
pub mod sample;
pub mod scaffold;
pub mod templates;

use crate::model::batch::Batch;
use crate::wasm::{PluginInfo, Runtime};
use anyhow::Context;
use clap::Subcommand;
use project::Language;
use sample::SampleFormat;
use scaffold::SdkSource;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(super) enum PluginCommand {
    /// Say which world and contract version a component implements, or why it does not.
    Check {
        /// The component (.wasm).
        file: PathBuf,
    },
    /// Create a new operator project that builds and passes its test as generated.
    New {
        /// Operator name, e.g. `word-filter`.
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Language,
        /// Directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Rust only: path of a local `plugin-sdk` to depend on (default:
        /// the SDK this `sluice` was built with, when present, else the
        /// published crate). Other languages get a copy of their SDK.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build an operator project (Rust, C, Python, JavaScript or Go) as a Wasm component and check it.
    Build {
        /// The project's directory.
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
pub(super) enum Format {
    Lines,
    Jsonl,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Runs `sluice plugin COMMAND`.
pub(super) fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::New {
            name,
            lang: lang @ (Language::C | Language::Python | Language::Js | Language::Go),
            dir,
            sdk,
        } => {
            if sdk.is_some() {
                anyhow::bail!("--sdk is for Rust crates; a {lang} project gets a copy of its SDK");
            }
            let root = templates::create(&dir, &name, lang)?;
            say!("created {lang} operator project {}", root.display());
            say!(
                "next: cd {} && {}",
                root.display(),
                templates::next_steps(lang)
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::New { name, dir, sdk, .. } => {
            let sdk = match sdk {
                Some(p) => SdkSource::Path(
                    std::fs::canonicalize(&p).with_context(|| format!("--sdk {}", p.display()))?,
                ),
                None => SdkSource::detect(),
            };
            let root = scaffold::create(&dir, &name, &sdk)?;
            say!("created operator crate {}", root.display());
            say!(
                "next: cd {} && cargo test && sluice plugin build",
                root.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Build { path } => {
            let runtime = Runtime::new()?;
            let built = build::build(&path, &runtime)?;
            // The check above compiled the component with deadline checks,
            // as `plugin test` and jobs with `cpu_per_batch` run it; compile
            // it without them too, as other jobs do, so that the first
            // `sluice run` starts from the cache (interpreted languages take
            // seconds to compile).
            Runtime::with_options(crate::wasm::default_cache_dir(), false)?.load(&built.path)?;
            say!(
                "built {} ({:.1} KB): implements world `{}` of {}",
                built.path.display(),
                built.info.size as f64 / 1024.0,
                built.info.world,
                built.info.contract
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Test {
            file,
            input,
            config,
            format,
            limit,
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
        PluginCommand::Check { file } => {
            let runtime = Runtime::new()?;
            match runtime.load(&file) {
                Ok(plugin) => {
                    let info = plugin.info();
                    say!(
                        "{}: implements world `{}` of {} ({} bytes, sha256 {})",
                        file.display(),
                        info.world,
                        info.contract,
                        info.size,
                        &info.sha256[..16]
                    );
                    say!("imports: {}", info.imports.join(", "));
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
    say!(
        "operator `{name}` ({}, world `{}`): {} record(s) in, {} out, {} rejected",
        info.contract,
        info.world,
        report.records,
        report.output.len(),
        report.rejected.len()
    );
    say!("output:");
    for r in report.output.iter().take(limit) {
        match r.key {
            Some(k) => say!(
                "  [{}] key={} value={} ts={}",
                r.index,
                show(k),
                show(r.value),
                r.timestamp
            ),
            None => say!("  [{}] value={} ts={}", r.index, show(r.value), r.timestamp),
        }
    }
    if report.output.len() > limit {
        say!("  ... ({} more)", report.output.len() - limit);
    }
    if !report.rejected.is_empty() {
        say!("rejected:");
        for (i, reason) in &report.rejected {
            let value = input.get(*i).map(|r| show(r.value)).unwrap_or_default();
            say!("  record {i} (value {value}): {reason}");
        }
    }
    let per = report.elapsed.as_secs_f64() * 1e6 / report.records.max(1) as f64;
    say!(
        "time: {per:.2} µs per record ({:.1} µs for {} record(s) in one batch, including the first call's warm-up)",
        report.elapsed.as_secs_f64() * 1e6,
        report.records
    );
}
