//! `testbed`: serve v1 and v2 of the Incrementer API side by side, run the compatibility matrix,
//! load, roll out, measure, and print the experiment's report. `testbed --help` lists the
//! commands. This file parses the command line, draws progress and dispatches to the library.

use anyhow::Context;
use bench::{Flavor, Progress};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use testbed::cli;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "gRPC version-compatibility testbed: v1 and v2 side by side, every client against every deployment"
)]
struct Cli {
    /// tokio runtime flavour of this process (the runtime alone moves latencies by 1.5-2x).
    #[arg(long, global = true, value_enum, default_value_t = Flavor::MultiThread)]
    runtime: Flavor,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Incrementer API with health and reflection until Ctrl-C or SIGTERM.
    Serve(Box<cli::ServeArgs>),
    /// Run every client against every deployment and print the compatibility matrix.
    Matrix(cli::MatrixArgs),
    /// N v1 and M v2 clients at once against one address, every reply verified.
    Mixed(cli::MixedArgs),
    /// A zero-downtime v1 → v2 rollout under mixed-version load, every request counted.
    Rollout(cli::RolloutArgs),
    /// The latency runs: sequential dependent increments over every hop, side by side.
    Bench(cli::BenchArgs),
    /// Serve one of the non-gRPC baselines of the latency runs (used by `bench`).
    #[command(hide = true)]
    BenchTarget(bench::baseline::TargetArgs),
    /// The main job: run the whole experiment (matrix, rollout, latency runs) and print its report.
    Report(cli::ReportArgs),
    /// Breaking-change verdict for two versions of any gRPC API (proto dirs, descriptor sets or
    /// grpc://HOST:PORT by reflection), every finding confirmed on the wire; exit 100 when
    /// something breaks.
    Check(compat::cli::CheckArgs),
    /// List or change the routes of a running `testbed serve` through its admin API.
    Route(testbed::route::RouteArgs),
    /// Faults (kill, stop, drain-remove-add, replace) injected into a gateway's backends
    /// under mixed-version load, the gateway's health compared with what calls see.
    Chaos(testbed::chaos::ChaosArgs),
    /// Live compatibility probe: each version's clients call the other version's server (or a
    /// gateway, --via) with generated requests; exit 100 when old clients are affected.
    Probe(cli::ProbeArgs),
    /// Make a CA, a server certificate and client certificates for the TLS set-ups (ca.pem,
    /// server.pem/.key, NAME.pem/.key) in a folder.
    Pki(port::pki::PkiArgs),
}

/// Exit codes: 0 success; 1 an error, or a result that differs from what was promised (a matrix
/// cell, a failed or wrong request, a requested row that could not run); 2 bad flags (clap).
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = cli
        .runtime
        .runtime()
        .context("cannot start the tokio runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only where a terminal shows them, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let exe = std::env::current_exe().context("cannot find the testbed executable")?;
    let done = match cli.command {
        Command::Check(args) => {
            let code = compat::cli::run(&args, &mut std::io::stdout()).await?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Command::Probe(args) => {
            let code = cli::probe(&args).await?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Command::Serve(args) => cli::serve(&args).await,
        Command::Route(args) => testbed::route::run(&args).await,
        Command::Pki(args) => port::pki::run(&args).map(|written| {
            for path in written.0 {
                println!("wrote {}", path.display());
            }
        }),
        Command::Matrix(args) => cli::matrix(&args).await,
        Command::Mixed(args) => {
            let spinner = spinner(&format!(
                "to {}",
                args.addr.map_or("a local router".into(), |a| a.to_string())
            ));
            let result = cli::mixed(&args, |done| spinner.set_position(done)).await;
            spinner.finish_and_clear();
            result
        }
        Command::Chaos(args) => {
            let spinner = spinner("starting");
            let result = testbed::chaos::command(&args, &exe, |fault: &str, done| {
                spinner.set_message(fault.to_string());
                spinner.set_position(done);
            })
            .await;
            spinner.finish_and_clear();
            result
        }
        Command::Rollout(args) => {
            let spinner = spinner("v1 only");
            let result = cli::rollout(&args, &|phase: &str, done| {
                spinner.set_message(phase.to_string());
                spinner.set_position(done);
            })
            .await;
            spinner.finish_and_clear();
            result
        }
        Command::Bench(args) => {
            let bar = bar(args.quiet);
            let options = bench::BenchOptions {
                flavor: cli.runtime,
                progress: Some(bar_progress(&bar)),
                testbed_exe: exe,
                ..args.bench.clone()
            };
            let result = cli::bench(&args, options).await;
            bar.finish_and_clear();
            result
        }
        Command::BenchTarget(args) => {
            bench::baseline::serve_until(&args, port::signal::shutdown()).await
        }
        Command::Report(args) => {
            let bar = bar(false);
            let watchers = testbed::report::Watchers {
                rollout: |_, _| {},
                bench: Some(bar_progress(&bar)),
            };
            let result = cli::report(&args, cli.runtime, &exe, &watchers).await;
            bar.finish_and_clear();
            result
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// A spinner counting requests.
fn spinner(message: &str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {pos} requests {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(message.to_string());
    spinner
}

/// A bar counting latency rows (hidden when `quiet`).
fn bar(quiet: bool) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn bar_progress(bar: &ProgressBar) -> Progress {
    let bar = bar.clone();
    Progress::new(move |step| {
        bar.set_length(step.total as u64);
        bar.set_position(step.done as u64);
        bar.set_message(step.message);
    })
}
