//! `testbed`: serve v1 and v2 of the Incrementer API side by side, run the compatibility matrix,
//! load, roll out, measure, and print the experiment's report. `testbed --help` lists the
//! commands. This file parses the command line and dispatches to the library.

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;
use testbed::cli;
use testbed::commands::{Cli, Command};
use testbed::terminal::{self, bar, bar_progress, spinner};

/// Exit codes: 0 success; 1 an error, or a result that differs from what was promised (a matrix
/// cell, a failed or wrong request, a requested row that could not run); 2 bad flags (clap).
fn main() -> ExitCode {
    let cli = match testbed::serve_config::expanded(std::env::args_os()) {
        Ok(args) => Cli::parse_from(args),
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
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
    terminal::init_logging(default_level);
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
        Command::Replay(args) => {
            let code = cli::replay(&args).await?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Command::Canary(args) => {
            let code = testbed::canary::run(&args).await?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Command::Serve(args) => testbed::serve::serve(&args).await,
        Command::Route(args) => {
            let code = testbed::route::run(&args).await?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Command::Docs(args) => testbed::docs::run(&args).await,
        Command::XdsBootstrap(args) => {
            print!("{}", testbed::xds::bootstrap::bootstrap(&args));
            Ok(())
        }
        Command::Pki(args) => port::pki::run(&args).map(|written| {
            for path in written.0 {
                println!("wrote {}", path.display());
            }
        }),
        Command::Matrix(args) => {
            let code = cli::matrix(&args).await?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Command::Mixed(args) => {
            let spinner = spinner(&format!(
                "to {}",
                args.addr.map_or("a local router".into(), |a| a.to_string())
            ));
            let result = cli::mixed(&args, |done| spinner.set_position(done)).await;
            spinner.finish_and_clear();
            return Ok(ExitCode::from(u8::try_from(result?).unwrap_or(1)));
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
            return Ok(ExitCode::from(u8::try_from(result?).unwrap_or(1)));
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
