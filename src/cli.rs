//! What each `testbed` command takes and does. The flags of the libraries' options structs are
//! flattened in (`#[command(flatten)]`), so nothing here mirrors a library struct; `main.rs`
//! only parses, renders progress and dispatches.

use crate::load::{Load, LoadOptions, LoadReport};
use crate::matrix::{self, ClientKind};
use crate::rollout::{self, RolloutOptions};
use crate::traffic_load::{self, Pace, TrafficArgs, TrafficLoadReport};
use crate::traffic_rollout::{self, TrafficRolloutArgs};
use anyhow::Context;
use bench::BenchOptions;
use port::Deployment;
use port::server;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `testbed matrix`.
#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    /// Also write the cells as JSON to this file (`-`: to stdout, instead of the tables).
    #[arg(long, value_parser = JsonOut::parse)]
    pub json: Option<JsonOut>,
    /// Only these clients (repeatable; default all).
    #[arg(long = "client", value_enum)]
    pub clients: Vec<ClientKind>,
    /// Only these deployments (repeatable; default all).
    #[arg(long = "deployment", value_enum)]
    pub deployments: Vec<Deployment>,
    /// Also run every client through this real proxy, in three columns (front of the router,
    /// version routing, v1 retired): nginx, haproxy, envoy or all (repeatable). A proxy that is
    /// not installed is skipped with the command that installs it (an error under CI=true).
    #[arg(long = "proxy", value_parser = ["nginx", "haproxy", "envoy", "all"])]
    pub proxies: Vec<String>,
    /// Or the matrix of your own API's two builds.
    #[command(flatten)]
    pub api: matrix::any_api::ApiMatrixArgs,
}

/// The proxies named by `--proxy` values, each once, in the order of [`proxy::ProxyKind::ALL`].
fn proxy_kinds(names: &[String]) -> Vec<proxy::ProxyKind> {
    proxy::ProxyKind::ALL
        .into_iter()
        .filter(|kind| names.iter().any(|n| n == "all" || n == kind.name()))
        .collect()
}

/// Runs the matrix and prints it; fails when any cell differs from what the API promises (a
/// skipped client included), so CI can use the exit code.
pub async fn matrix(args: &MatrixArgs) -> anyhow::Result<i32> {
    JsonOut::check_all([&args.json])?;
    if args.api.old.is_some() {
        let exe = std::env::current_exe().context("cannot find the testbed executable")?;
        let dir = tempfile::Builder::new()
            .prefix("testbed-matrix")
            .tempdir()?;
        let (proxies, skipped) = matrix::proxies::installed(&proxy_kinds(&args.proxies))?;
        let mut found = matrix::any_api::run(&args.api, &proxies, &exe, dir.path()).await?;
        found.notes.extend(skipped);
        if !args.json.as_ref().is_some_and(JsonOut::is_stdout) {
            print!("{}", found.render());
        }
        if let Some(out) = &args.json {
            out.write(&found)?;
        }
        return Ok(found.exit_code(args.api.baseline.allow_inconclusive));
    }
    let clients = or_all(&args.clients, &ClientKind::ALL);
    let deployments = or_all(&args.deployments, &Deployment::ALL);
    let (proxies, skipped) = matrix::proxies::installed(&proxy_kinds(&args.proxies))?;
    let mut cells = matrix::run(&clients, &deployments).await?;
    let exe = std::env::current_exe().context("cannot find the testbed executable")?;
    for &kind in &proxies {
        cells.extend(matrix::proxies::run(&clients, kind, &exe).await?);
    }
    let mismatches = matrix::mismatches(&cells);
    if !args.json.as_ref().is_some_and(JsonOut::is_stdout) {
        print!("{}", matrix::render(&cells));
        for note in &skipped {
            println!("{note}");
        }
    }
    if let Some(out) = &args.json {
        let proxies: Vec<&str> = proxies.iter().map(|k| k.name()).collect();
        out.write(&serde_json::json!({
            "settings": { "clients": clients, "deployments": deployments, "proxies": proxies },
            "cells": cells,
            "mismatches": mismatches,
            "skipped": skipped,
        }))?;
    }
    anyhow::ensure!(
        mismatches.is_empty(),
        "{} of {} probes differ from what the API promises",
        mismatches.len(),
        cells.len() * 2
    );
    Ok(0)
}

fn or_all<T: Clone>(chosen: &[T], all: &[T]) -> Vec<T> {
    if chosen.is_empty() { all } else { chosen }.to_vec()
}

/// `testbed mixed`.
#[derive(Debug, clap::Args)]
pub struct MixedArgs {
    /// Server to load; without it a side-by-side router is started in this process.
    #[arg(long, value_parser = server::parse_addr)]
    pub addr: Option<SocketAddr>,
    /// Run for this many seconds (unless --requests is given).
    #[arg(long, default_value = "10", value_parser = crate::load::positive, conflicts_with = "requests_per_client")]
    pub seconds: f64,
    /// The clients and what they send.
    #[command(flatten)]
    pub load: LoadOptions,
    /// Load the gateway at --addr with a traffic file of your own API instead.
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Also write the report as JSON to this file (`-`: stdout).
    #[arg(long, value_parser = JsonOut::parse)]
    pub json: Option<JsonOut>,
}

/// Runs mixed-version load and prints what it saw; fails when any reply failed or was wrong.
/// With `--traffic`, the exit code is the traffic report's (0, 3 or 100). `progress` is told
/// the requests completed so far, every 50 ms.
pub async fn mixed(args: &MixedArgs, progress: impl Fn(u64)) -> anyhow::Result<i32> {
    if args.traffic.given() {
        JsonOut::check_all([&args.json])?;
        let addr = args
            .addr
            .context("--traffic needs --addr: the gateway of your API to load")?;
        let pace = Pace {
            clients: args.traffic.traffic_clients,
            calls_per_client: args.load.requests_per_client,
            rate_per_client: args.load.rate_per_client,
        };
        let report = traffic_load::mixed(
            &args.traffic,
            &addr.to_string(),
            args.seconds,
            pace,
            progress,
        )
        .await?;
        return write_traffic_report(&report, args.json.as_ref());
    }
    anyhow::ensure!(
        args.load.v1_clients + args.load.v2_clients > 0,
        "no clients: give --v1-clients or --v2-clients a number above 0"
    );
    JsonOut::check_all([&args.json])?;
    let local = match args.addr {
        Some(_) => None,
        None => Some(server::start("127.0.0.1:0".parse()?, Deployment::SideBySide).await?),
    };
    let addr = args
        .addr
        .or(local.as_ref().map(|s| s.addr))
        .context("no address to load")?;
    crate::load::check_serves(addr, &args.load).await?;
    let load = Load::start(addr, &args.load, "mixed").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.seconds);
    let counted = args.load.requests_per_client.is_some();
    while !load.finished() && (counted || tokio::time::Instant::now() < deadline) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        progress(load.completed());
    }
    let report = load.stop().await?;
    if let Some(server) = local {
        server.shutdown().await?;
    }
    print!("{}", report.render());
    if let Some(out) = &args.json {
        out.write(&report)?;
    }
    anyhow::ensure!(
        report.clean(),
        "some requests failed or were answered wrongly"
    );
    Ok(0)
}

/// Prints a traffic load's report (unless the JSON goes to stdout) and writes its JSON; its
/// exit code.
pub fn write_traffic_report(
    report: &TrafficLoadReport,
    json: Option<&JsonOut>,
) -> anyhow::Result<i32> {
    if !json.is_some_and(JsonOut::is_stdout) {
        print!("{}", report.render());
    }
    if let Some(out) = json {
        out.write(report)?;
    }
    Ok(report.exit_code())
}

/// `testbed rollout`.
#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    /// The rollout's clients, phases and backends.
    #[command(flatten)]
    pub rollout: RolloutOptions,
    /// Roll out through this proxy instead of the testbed's router (nginx, haproxy or envoy):
    /// v1 and v2 as `testbed serve --backend` processes behind it, the proxy changed between
    /// phases its own way (nginx -s reload, HAProxy's runtime API, Envoy's filesystem
    /// xDS).
    #[arg(long, value_parser = parse_proxy, conflicts_with_all = ["processes", "kill_v1"])]
    pub proxy: Option<proxy::ProxyKind>,
    /// Roll your own API out instead: a gateway in front of --old moved to --new under
    /// --traffic.
    #[command(flatten)]
    pub traffic: TrafficRolloutArgs,
    /// Also write the report as JSON to this file (`-`: stdout).
    #[arg(long, value_parser = JsonOut::parse)]
    pub json: Option<JsonOut>,
}

fn parse_proxy(text: &str) -> Result<proxy::ProxyKind, String> {
    text.parse()
}

/// Runs the rollout and prints what it saw; fails when any reply was wrong, or (unless v1 was
/// killed on purpose) when any request failed.
pub async fn rollout(
    args: &RolloutArgs,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> anyhow::Result<i32> {
    anyhow::ensure!(
        args.rollout.v1_clients + args.rollout.v2_clients > 0,
        "no clients: give --v1-clients or --v2-clients a number above 0"
    );
    JsonOut::check_all([&args.json])?;
    let exe = std::env::current_exe().context("cannot find the testbed executable")?;
    if args.traffic.traffic.given() {
        anyhow::ensure!(
            args.proxy.is_none() && !args.rollout.processes,
            "rollout --traffic runs its own gateway process; --proxy and --processes are not supported with it yet"
        );
        let report = traffic_rollout::run(
            &args.traffic,
            args.rollout.phase,
            args.rollout.rate_per_client,
            &exe,
            progress,
        )
        .await?;
        return write_traffic_report(&report, args.json.as_ref());
    }
    if let Some(kind) = args.proxy {
        return proxy_rollout(args, kind, &exe, progress).await.map(|()| 0);
    }
    let report = rollout::run(&args.rollout, &exe, progress).await?;
    print!("{}", report.render());
    if let Some(out) = &args.json {
        out.write(&report)?;
    }
    // A killed backend is expected to fail requests; a graceful rollout must not.
    judge_rollout(&report.load, "the rollout", args.rollout.kill_v1).map(|()| 0)
}

/// Fails when any reply was wrong, or any request failed unless failures were expected.
fn judge_rollout(load: &LoadReport, what: &str, failures_expected: bool) -> anyhow::Result<()> {
    let [v1, v2] = load.totals();
    anyhow::ensure!(
        v1.wrong + v2.wrong == 0,
        "{what} answered some requests wrongly"
    );
    anyhow::ensure!(
        failures_expected || load.clean(),
        "{what} failed some requests"
    );
    Ok(())
}

/// `testbed rollout --proxy KIND`: fails when any reply was wrong or any request failed, as the
/// router's rollout does (the report says in which phase).
async fn proxy_rollout(
    args: &RolloutArgs,
    kind: proxy::ProxyKind,
    exe: &std::path::Path,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> anyhow::Result<()> {
    let report = crate::proxy_rollout::run(kind, &args.rollout, exe, progress).await?;
    print!("{}", report.render());
    if let Some(out) = &args.json {
        out.write(&report)?;
    }
    judge_rollout(&report.load, &format!("the rollout through {kind}"), false)
}

/// `testbed bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to run and where.
    #[command(flatten)]
    pub bench: BenchOptions,
    /// Also write the report as JSON to this file (`-`: stdout).
    #[arg(long, value_parser = JsonOut::parse)]
    pub json: Option<JsonOut>,
    /// Also draw the per-call latencies as an SVG figure here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the latency runs (`options` completed by the caller) and prints the table.
pub async fn bench(args: &BenchArgs, options: BenchOptions) -> anyhow::Result<()> {
    let json_file = args.json.as_ref().and_then(JsonOut::file);
    bench::BenchReport::check_outputs(json_file, args.plot.as_deref())?;
    let report = match bench::run_until(options, port::signal::shutdown()).await {
        Ok(report) => report,
        Err(err) => {
            // The rows that did run are still worth seeing beside the ones that could not.
            if let Some(skipped) = err.downcast_ref::<bench::RowsSkipped>() {
                print!("{}", skipped.report.render());
            }
            return Err(err);
        }
    };
    // With `--json -` stdout carries only the JSON, so that it can be piped.
    if !args.json.as_ref().is_some_and(JsonOut::is_stdout) {
        print!("{}", report.render());
    }
    if let Some(out) = &args.json {
        out.write(&report)?;
    }
    if let Some(path) = &args.plot {
        report.plot(path)?;
    }
    Ok(())
}

/// `testbed report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Measured calls per latency row.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// The complete latency study (four placements, three rounds each, what docs/results.md
    /// reports) instead of the quick one (one round, unpinned).
    #[arg(long)]
    pub full: bool,
    /// Seconds per rollout phase (both rollouts have four).
    #[arg(long, default_value = "2", value_parser = crate::load::positive)]
    pub rollout_phase_seconds: f64,
    /// Also write the report as JSON to this file (`-`: stdout, instead of the text report).
    #[arg(long, value_parser = JsonOut::parse)]
    pub json: Option<JsonOut>,
    /// Also write the report as one self-contained HTML page to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// Runs the main job and prints its report; writes the JSON and the HTML page when asked (the
/// page is drawn from the JSON). Fails when the matrix differs from what the API promises, after
/// writing everything.
pub async fn report(
    args: &ReportArgs,
    flavor: bench::Flavor,
    testbed_exe: &std::path::Path,
    watchers: &crate::report::Watchers,
) -> anyhow::Result<()> {
    JsonOut::check_all([&args.json])?;
    if let Some(html) = &args.html {
        bench::check_writable(html)?;
    }
    let options = crate::report::ReportOptions {
        requests: args.requests,
        full: args.full,
        rollout_phase: Duration::from_secs_f64(args.rollout_phase_seconds),
        flavor,
        testbed_exe: testbed_exe.to_path_buf(),
    };
    let report = crate::report::run(&options, watchers).await?;
    if !args.json.as_ref().is_some_and(JsonOut::is_stdout) {
        print!("{}", report.render());
    }
    let json = serde_json::to_value(&report)?;
    if let Some(out) = &args.json {
        out.write(&json)?;
        if let Some(path) = out.file() {
            eprintln!("JSON report: {}", absolute(path).display());
        }
    }
    if let Some(path) = &args.html {
        std::fs::write(path, crate::report::html::render(&json))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("HTML report: {}", absolute(path).display());
    }
    anyhow::ensure!(
        report.matrix.mismatches.is_empty(),
        "{} matrix probes differ from what the API promises",
        report.matrix.mismatches.len()
    );
    anyhow::ensure!(
        report.proxies.matrix.mismatches.is_empty(),
        "{} probes through proxies differ from what is expected of them",
        report.proxies.matrix.mismatches.len()
    );
    Ok(())
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `testbed probe`: compat's flags plus `--json`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The servers, their descriptors, the requests and the routing.
    #[command(flatten)]
    pub probe: compat::cli::ProbeInput,
    /// Also write the report as JSON to FILE (`-`: stdout, instead of the tables).
    #[arg(long, value_name = "FILE", value_parser = JsonOut::parse)]
    pub json: Option<JsonOut>,
}

/// Runs the probe and prints its tables (and JSON); the exit code is the report's (0, 3 or 100).
pub async fn probe(args: &ProbeArgs) -> anyhow::Result<i32> {
    JsonOut::check_all([&args.json])?;
    let report = compat::cli::probe(&args.probe).await?;
    if !args.json.as_ref().is_some_and(JsonOut::is_stdout) {
        compat::probe::render_text(&report, &mut std::io::stdout())?;
    }
    if let Some(out) = &args.json {
        out.write(&report)?;
    }
    Ok(report.exit_code())
}

/// `testbed replay`: compat's flags plus `--json`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The traffic, the servers, the descriptors and what is compared.
    #[command(flatten)]
    pub replay: compat::cli::ReplayInput,
    /// Also write the report as JSON to FILE (`-`: stdout, instead of the tables).
    #[arg(long, value_name = "FILE", value_parser = JsonOut::parse)]
    pub json: Option<JsonOut>,
}

/// Runs the replay and prints its report (and JSON); the exit code is the report's (0, 3 or
/// 100).
pub async fn replay(args: &ReplayArgs) -> anyhow::Result<i32> {
    JsonOut::check_all([&args.json])?;
    let report = compat::cli::replay(&args.replay).await?;
    if !args.json.as_ref().is_some_and(JsonOut::is_stdout) {
        compat::replay::render_text(&report, &mut std::io::stdout())?;
    }
    if let Some(out) = &args.json {
        out.write(&report)?;
    }
    Ok(report.exit_code())
}

/// Where a command writes its JSON: a file, or stdout for `-`. Every command takes it the same
/// way (`--json FILE`), and checks it before doing any work, so a bad path fails at once rather
/// than after a long run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonOut {
    /// Standard output.
    Stdout,
    /// This file, created or replaced.
    File(PathBuf),
}

impl JsonOut {
    /// Parses a `--json` value.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "" => return Err("give a file name, or - for stdout".into()),
            "-" => JsonOut::Stdout,
            path => JsonOut::File(PathBuf::from(path)),
        })
    }

    /// Whether this is stdout.
    pub fn is_stdout(&self) -> bool {
        *self == JsonOut::Stdout
    }

    /// The file, unless this is stdout.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            JsonOut::Stdout => None,
            JsonOut::File(path) => Some(path),
        }
    }

    /// Fails when the file cannot be written, before any work is done (a file that did not
    /// exist is removed again).
    pub fn check(&self) -> anyhow::Result<()> {
        self.file().map_or(Ok(()), bench::check_writable)
    }

    /// [`check`](Self::check)s every given output.
    pub fn check_all<'a>(
        outputs: impl IntoIterator<Item = &'a Option<JsonOut>>,
    ) -> anyhow::Result<()> {
        outputs.into_iter().flatten().try_for_each(JsonOut::check)
    }

    /// Writes `value` as pretty JSON.
    pub fn write<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(value)?;
        match self {
            JsonOut::Stdout => println!("{json}"),
            JsonOut::File(path) => std::fs::write(path, json + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_outputs_are_checked_before_any_work() {
        assert_eq!(JsonOut::parse("-"), Ok(JsonOut::Stdout));
        assert!(JsonOut::parse("").is_err());
        let unwritable = JsonOut::File(PathBuf::from("/nonexistent-dir/out.json"));
        let err = unwritable.check().unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent-dir/out.json"),
            "{err:#}"
        );
        let dir = std::env::temp_dir().join(format!("testbed-json-{}", std::process::id()));
        let fresh = JsonOut::File(dir.clone());
        fresh.check().unwrap();
        assert!(!dir.exists(), "the check leaves no file behind");
    }
}
