//! One latency run: its own thread and runtime, the rounds through the rows (pairs in
//! alternation, rows measured apart handed to their modules), skips, and the report.

use crate::chains;
use crate::concurrent::{concurrent, concurrent_pairs};
use crate::python::python_chains;
use crate::row::{Row, interleaved_pair};
use crate::targets::Targets;
use crate::{BenchOptions, BenchReport, HaltPoll, RowResult, RowsSkipped, in_ci};
use crate::{h2load, handshake, proxies, tuned};
use anyhow::Context;
use client::tools::MissingTool;
use std::net::SocketAddr;

/// Runs the latency rows and returns the report (medians over the repeats). The client side runs
/// on a runtime of `options.flavor`, on a thread of its own (pinned as `options.cpus` says, with
/// the servers it starts), whatever runtime the caller is on.
///
/// The options are checked first ([`BenchOptions::check`]). A row that cannot run because a
/// tool is missing is skipped and reported, unless it must run: asked for with `--row` (then
/// the run fails with [`RowsSkipped`], which carries the report of the rows that did run) or
/// under `CI=true` (then it fails at once).
pub fn run(options: &BenchOptions) -> anyhow::Result<BenchReport> {
    options.check()?;
    require_requested(options, run_checked(options)?)
}

/// The report, unless a row asked for by name with `--row` was skipped: then [`RowsSkipped`],
/// naming each and its fix. Skips of rows nobody named (a run of every row outside CI) are only
/// reported.
fn require_requested(options: &BenchOptions, report: BenchReport) -> anyhow::Result<BenchReport> {
    if options.rows.is_empty() || report.skipped.is_empty() {
        return Ok(report);
    }
    Err(RowsSkipped {
        report: Box::new(report),
    }
    .into())
}

fn run_checked(options: &BenchOptions) -> anyhow::Result<BenchReport> {
    let options = options.clone();
    std::thread::spawn(move || {
        if let Some(cpus) = &options.cpus {
            cpus.pin_this_thread()?;
        }
        let _halt_poll = options.halt_poll_ns.map(HaltPoll::set).transpose()?;
        let runtime = options
            .flavor
            .runtime()
            .context("cannot start the bench runtime")?;
        runtime.block_on(run_rows(&options))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the bench thread panicked"))?
}

/// Runs [`run`] off the runtime, so that `stop` (Ctrl-C or SIGTERM, say) is heard meanwhile.
/// When `stop` resolves first, a kernel setting the run changed is put back and the run ends
/// with an error; the server processes it started are killed as their handles drop.
pub async fn run_until(
    options: BenchOptions,
    stop: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<BenchReport> {
    let run = tokio::task::spawn_blocking(move || run(&options));
    tokio::select! {
        report = run => report.context("the bench panicked")?,
        result = stop => {
            HaltPoll::restore_now();
            result?;
            anyhow::bail!("interrupted")
        }
    }
}

async fn run_rows(options: &BenchOptions) -> anyhow::Result<BenchReport> {
    let rows = options.rows_to_run();
    let total = rows.len() * options.repeat;
    let mut done = 0;
    let tell = |done: usize, message: String| {
        if let Some(progress) = &options.progress {
            progress.tell(done, total, message);
        }
    };
    let mut targets = Targets::default();
    let mut runs: Vec<(Row, Result<RowResult, String>)> = Vec::new();
    let mut h2load_runs = Vec::new();
    let mut h2load_skipped = None;
    let mut handshake_runs = Vec::new();
    let mut proxies_runs = Vec::new();
    for round in 0..options.repeat {
        let mut measured = Vec::new();
        for &row in &rows {
            if measured.contains(&row) {
                continue;
            }
            let pair = interleaved_pair(row, &rows);
            let these = pair.map_or(vec![row], |(a, b)| vec![a, b]);
            measured.extend(&these);
            tell(done, format!("round {} {}", round + 1, row.label()));
            let result = if row == Row::H2load {
                h2load::run(&mut targets, options)
                    .await
                    .map(|runs| h2load_runs.push(runs))
            } else if row == Row::Proxies {
                proxies::run(options)
                    .await
                    .map(|result| proxies_runs.push(result))
            } else if row == Row::Handshake {
                handshake::run(&mut targets, options)
                    .await
                    .map(|result| handshake_runs.push(result))
            } else if let Some(pair) = pair {
                run_pair(pair, &mut targets, options).await.map(|[a, b]| {
                    runs.push((pair.0, Ok(a)));
                    runs.push((pair.1, Ok(b)));
                })
            } else {
                run_row(row, &mut targets, options)
                    .await
                    .map(|result| runs.push((row, Ok(result))))
            };
            done += these.len();
            let Err(err) = result else { continue };
            // A missing tool skips its row, with the fix; under CI it fails the run, as
            // does any other error anywhere.
            let skippable = err.downcast_ref::<MissingTool>().is_some() && !in_ci();
            if !skippable {
                return Err(err.context(format!("row {:?} failed", row.label())));
            }
            if row == Row::H2load {
                h2load_skipped = Some(err.to_string());
            } else {
                runs.extend(these.into_iter().map(|row| (row, Err(err.to_string()))));
            }
        }
    }
    tell(total, String::new());
    let report = BenchReport::from_runs(options, &rows, runs, h2load_runs, h2load_skipped);
    Ok(report
        .with_handshake(handshake_runs)
        .with_proxies(proxies_runs))
}

async fn run_row(
    row: Row,
    targets: &mut Targets,
    options: &BenchOptions,
) -> anyhow::Result<RowResult> {
    let (n, warmup) = (options.requests, options.warmup);
    let addr = match row.target() {
        Some(name) => targets.addr(name, options).await?,
        // Never used: only the rows that run in this process or start their own tool have none.
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let chains = match row {
        Row::Harness => vec![chains::run(&mut chains::Harness, warmup, n, None).await?],
        Row::InProcess => vec![chains::run(&mut chains::InProcess, warmup, n, None).await?],
        Row::Tcp => concurrent(options, addr, chains::Tcp::connect).await?,
        Row::Rest => concurrent(options, addr, chains::Rest::connect).await?,
        Row::UnaryV1 | Row::RustToPython | Row::RustToPythonViaGateway => {
            concurrent(options, addr, chains::Unary::v1).await?
        }
        Row::UnaryTls => {
            let tls = targets.tls()?;
            let connect = |addr| chains::Unary::v1_tls(addr, tls.clone());
            concurrent(options, addr, connect).await?
        }
        Row::UnaryUnbuffered => concurrent(options, addr, tuned::unbuffered_unary).await?,
        Row::UnaryH2 | Row::UnaryH2StockServer => {
            concurrent(options, addr, tuned::H2Unary::connect).await?
        }
        Row::UnaryV2 | Row::UnaryRouter => concurrent(options, addr, chains::Unary::v2).await?,
        Row::StreamPingPong => concurrent(options, addr, chains::StreamPingPong::connect).await?,
        Row::StreamPingPongTls => {
            let tls = targets.tls()?;
            let connect = |addr| chains::StreamPingPong::connect_tls(addr, tls.clone());
            concurrent(options, addr, connect).await?
        }
        Row::StreamPipelined => {
            let total = chains::pipelined(addr, n).await?;
            return Ok(RowResult::throughput_only(row, n, total));
        }
        Row::PythonToRust | Row::PythonToPython => python_chains(addr, options).await?,
        Row::H2load => anyhow::bail!("h2load rows are run by bench::h2load"),
        Row::Handshake => anyhow::bail!("new connections are measured by bench::handshake"),
        Row::Proxies => anyhow::bail!("the proxies are measured by bench::proxies"),
    };
    RowResult::from_chains(row, &chains)
}

/// Runs a pair of [`INTERLEAVED`] rows in alternation.
async fn run_pair(
    (first, second): (Row, Row),
    targets: &mut Targets,
    options: &BenchOptions,
) -> anyhow::Result<[RowResult; 2]> {
    let mut addr = async |row: Row| match row.target() {
        Some(name) => targets.addr(name, options).await,
        None => anyhow::bail!("{} has no server to interleave with", row.label()),
    };
    let (a, b) = (addr(first).await?, addr(second).await?);
    let [chains_a, chains_b] = match (first, second) {
        (Row::UnaryV2, Row::UnaryRouter) => {
            let v2 = chains::Unary::v2;
            concurrent_pairs(options, (a, v2), (b, v2)).await?
        }
        (Row::UnaryH2StockServer, Row::UnaryH2) => {
            let h2 = tuned::H2Unary::connect;
            concurrent_pairs(options, (a, h2), (b, h2)).await?
        }
        (Row::UnaryV1, Row::UnaryTls) => {
            let tls = targets.tls()?;
            let over_tls = |addr| chains::Unary::v1_tls(addr, tls.clone());
            concurrent_pairs(options, (a, chains::Unary::v1), (b, over_tls)).await?
        }
        (Row::RustToPython, Row::RustToPythonViaGateway) => {
            let v1 = chains::Unary::v1;
            concurrent_pairs(options, (a, v1), (b, v1)).await?
        }
        (Row::StreamPingPong, Row::StreamPingPongTls) => {
            let tls = targets.tls()?;
            let over_tls = |addr| chains::StreamPingPong::connect_tls(addr, tls.clone());
            let plaintext = chains::StreamPingPong::connect;
            concurrent_pairs(options, (a, plaintext), (b, over_tls)).await?
        }
        _ => anyhow::bail!(
            "{} and {} are not measured in alternation",
            first.label(),
            second.label()
        ),
    };
    Ok([
        RowResult::from_chains(first, &chains_a)?,
        RowResult::from_chains(second, &chains_b)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::options;

    #[test]
    fn counts_below_one_are_refused_before_any_work() {
        let mut zero = options(0, 0, 1);
        zero.rows = vec![Row::Harness];
        let err = run(&zero).unwrap_err();
        assert!(
            err.to_string().contains("--requests must be at least 1"),
            "{err:#}"
        );
        for (repeat, concurrency, flag) in [(0, 1, "--repeat"), (1, 0, "--concurrency")] {
            let options = BenchOptions {
                repeat,
                concurrency,
                ..options(10, 0, 1)
            };
            let err = options.check().unwrap_err();
            assert!(err.to_string().contains(flag), "{err:#}");
        }
    }

    #[test]
    fn the_harness_row_runs_by_itself() {
        let mut harness = options(50, 5, 1);
        harness.rows = vec![Row::Harness];
        let report = run(&harness).unwrap();
        assert_eq!(report.rows.len(), 1);
        assert_eq!(report.rows[0].calls, 50);
        assert_eq!(report.warmup, 5);
        assert_eq!(report.requested_rows, Some(vec![Row::Harness]));
    }

    fn skipped_report(options: &BenchOptions) -> BenchReport {
        let reason = "python with grpcio not found; install it with: bash scripts/setup";
        BenchReport::from_runs(
            options,
            &options.rows_to_run(),
            vec![(Row::PythonToRust, Err(reason.to_string()))],
            Vec::new(),
            None,
        )
    }

    #[test]
    fn a_row_asked_for_by_name_that_was_skipped_fails_the_run() {
        let mut named = options(10, 0, 1);
        named.rows = vec![Row::PythonToRust];
        let err = require_requested(&named, skipped_report(&named)).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("--row python-to-rust"), "{message}");
        assert!(message.contains("bash scripts/setup"), "{message}");
        let skipped = err.downcast_ref::<RowsSkipped>().expect("a RowsSkipped");
        assert_eq!(skipped.report.skipped.len(), 1);

        // Every row by default: the skip is reported, not fatal (CI fails it as it happens).
        let all = options(10, 0, 1);
        let report = require_requested(&all, skipped_report(&all)).unwrap();
        assert_eq!(report.skipped.len(), 1);
    }
}
