//! What each `testbed` command takes and does. The flags of the libraries' options structs are
//! flattened in (`#[command(flatten)]`), so nothing here mirrors a library struct; `main.rs`
//! only parses, renders progress and dispatches.

use crate::load::{Load, LoadOptions, LoadReport};
use crate::matrix::{self, ClientKind};
use crate::rollout::{self, RolloutOptions};
use anyhow::Context;
use bench::BenchOptions;
use port::Deployment;
use port::server::{self, Layout, ServeOptions};
use port::upstream::{DescriptorsSpec, UpstreamSpec};
use services::Api;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `testbed serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = port::upstream::UPSTREAM_SPEC_HELP)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:50051", value_parser = server::parse_addr)]
    pub addr: SocketAddr,
    /// Which implementations serve which API version, and whether the version router is used.
    #[arg(long, value_enum, default_value_t = Deployment::SideBySide)]
    pub deployment: Deployment,
    /// Serve only this implementation (v1 or v2), without a router: a backend for another
    /// process's router.
    #[arg(long, conflicts_with_all = ["deployment", "upstreams"])]
    pub backend: Option<Api>,
    /// Route to a backend in another process: NAME=VERSION@HOST:PORT[+PACKAGE...]. Which API
    /// packages it implements is read from it by gRPC reflection at start (or from
    /// --descriptors); +PACKAGE also routes an older package's requests to it, if compat finds
    /// no breaking wire change. Repeatable.
    #[arg(long = "upstream", conflicts_with = "deployment")]
    pub upstreams: Vec<UpstreamSpec>,
    /// NAME=FILE: the descriptors of upstream NAME (a FileDescriptorSet, as `protoc
    /// --include_imports -o` or `buf build -o` write, or a directory of .proto files), for an
    /// upstream that serves no reflection. Repeatable.
    #[arg(long = "descriptors", requires = "upstreams")]
    pub descriptors: Vec<DescriptorsSpec>,
    /// With upstreams that carry a ;weight=N, the request header whose value decides which side
    /// of the split a call falls on (e.g. x-user-id): one caller stays on one version while the
    /// weights hold. Without it (or without the header) each call falls at random.
    #[arg(long, requires = "upstreams", value_parser = port::observe::header_name)]
    pub sticky_header: Option<http::HeaderName>,
    /// Seconds between reads, by reflection, of each upstream's descriptors (also read at once
    /// when it answers again after being unreachable): a compatible change updates its build,
    /// one that breaks what it declared when it joined marks it drifted and pinned-only (see
    /// docs/gateway.md). 0: never read again.
    #[arg(long, default_value_t = port::drift::DEFAULT_DESCRIPTOR_REFRESH.as_secs())]
    pub descriptor_refresh_secs: u64,
    /// The admin API (`testbed route`), on a listener of its own.
    #[command(flatten)]
    pub admin: port::admin::AdminOptions,
    /// Limits and timeouts.
    #[command(flatten)]
    pub options: ServeOptions,
}

/// Serves until Ctrl-C or SIGTERM, then stops gracefully.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    // Before anything starts: the admin API is refused without a token or client CA.
    let admin_config = args.admin.config()?;
    // Before any descriptor is opened: the open-files limit raised, the caps clamped to it.
    let fds = port::fds::Plan::new(
        &args.options.fds,
        args.options.max_connections,
        admin_config.as_ref().map(|config| config.max_connections()),
    )?;
    fds.log();
    let admin_config = admin_config.map(|config| match fds.admin {
        Some((_, cap)) => config.with_max_connections(cap),
        None => config,
    });
    let mut options = ServeOptions {
        max_connections: fds.max_connections,
        ..args.options.clone()
    };
    // The admin API is where the usage table is read (and what the quiet period guards).
    options.observe.track_usage = admin_config.is_some();
    let mut addresses = std::collections::HashMap::new();
    let (layout, label) = if let Some(api) = args.backend {
        (Layout::Direct(vec![api]), format!("{api} backend"))
    } else if !args.upstreams.is_empty() {
        // The port and the admin listener are refused as upstreams: calls would loop back.
        let own: Vec<SocketAddr> = [Some(args.addr), args.admin.admin_addr]
            .into_iter()
            .flatten()
            .collect();
        for spec in &args.upstreams {
            for host_port in spec.host_ports() {
                port::route_checks::refuse_own_address(&spec.name, host_port, &own)
                    .await
                    .map_err(|why| anyhow::anyhow!("--upstream: {why}"))?;
            }
        }
        // What each upstream implements is read from it now, before the port opens.
        port::pool::set_limits(args.options.pool.limits());
        let ca = args.options.tls.upstream_ca.as_deref();
        let gateway = port::upstream::gateway_within(
            &args.upstreams,
            &args.descriptors,
            ca,
            args.admin.max_catalog_bytes,
        )
        .await?;
        addresses = port::admin::addresses(&gateway);
        (
            Layout::Routed(gateway.table.with_sticky_header(args.sticky_header.clone())),
            "router over upstreams".to_string(),
        )
    } else {
        let layout = args.deployment.layout(args.options.max_message_bytes)?;
        (layout, args.deployment.to_string())
    };
    if args.backend.is_none()
        && args.upstreams.is_empty()
        && args.deployment == Deployment::NaiveProxyToV1
    {
        tracing::warn!(
            "naive-proxy-to-v1 answers v2 clients WRONGLY on purpose (v2 requests go to the v1 \
             implementation, which ignores step): it shows what the router prevents"
        );
    }
    let running = server::start_with(args.addr, layout, &label, &options).await?;
    if let Some(router) = &running.router {
        for backend in router.table().backends() {
            tracing::info!(
                backend = %backend.name,
                version = %backend.version,
                api = %backend.api,
                serves = %backend.serves.join(", "),
                "route"
            );
        }
    }
    // Upstreams read by reflection are read again, so that a restart with another build is seen.
    let _drift = running
        .router
        .as_ref()
        .filter(|_| !args.upstreams.is_empty() && args.descriptor_refresh_secs > 0)
        .map(|router| {
            port::drift::DriftWatch::start(
                router.clone(),
                std::time::Duration::from_secs(args.descriptor_refresh_secs),
                args.admin.max_catalog_bytes,
            )
        });
    let admin = match (admin_config, &running.router) {
        (Some(config), Some(router)) => {
            let ca = args.options.tls.upstream_ca.clone();
            let gateway = [running.addr];
            let config = config
                .with_metrics(running.metrics())
                .with_usage(running.usage());
            let admin =
                port::admin::start_guarding(config, router.clone(), addresses, ca, &gateway);
            Some(admin.await?)
        }
        (Some(_), None) => anyhow::bail!("--admin-addr: {label} has no route table to change"),
        (None, _) => None,
    };
    println!("testbed serving {label} on {}", running.addr);
    if let Some(admin) = &admin {
        println!("testbed admin API on {}", admin.address());
    }
    if let Some(metrics) = running.metrics_addr() {
        println!("testbed metrics on http://{metrics}/metrics");
    }
    port::signal::shutdown().await?;
    tracing::info!("shutting down; in-flight requests may finish");
    // Both stop, whatever the first says; the first error is the one reported.
    let admin_stopped = match admin {
        Some(admin) => admin.shutdown().await,
        None => Ok(()),
    };
    let port_stopped = running.shutdown().await;
    admin_stopped.and(port_stopped)
}

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
pub async fn matrix(args: &MatrixArgs) -> anyhow::Result<()> {
    JsonOut::check_all([&args.json])?;
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
    Ok(())
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
    /// Also write the report as JSON to this file (`-`: stdout).
    #[arg(long, value_parser = JsonOut::parse)]
    pub json: Option<JsonOut>,
}

/// Runs mixed-version load and prints what it saw; fails when any reply failed or was wrong.
/// `progress` is told the requests completed so far, every 50 ms.
pub async fn mixed(args: &MixedArgs, progress: impl Fn(u64)) -> anyhow::Result<()> {
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
    Ok(())
}

/// `testbed rollout`.
#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    /// The rollout's clients, phases and backends.
    #[command(flatten)]
    pub rollout: RolloutOptions,
    /// Roll out through this proxy instead of the testbed's router (nginx, haproxy or envoy):
    /// v1 and v2 as `testbed serve --backend` processes behind it, the proxy changed between
    /// phases its own way (nginx -s reload, HAProxy's master-worker reload, Envoy's
    /// filesystem xDS).
    #[arg(long, value_parser = parse_proxy, conflicts_with_all = ["processes", "kill_v1"])]
    pub proxy: Option<proxy::ProxyKind>,
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
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rollout.v1_clients + args.rollout.v2_clients > 0,
        "no clients: give --v1-clients or --v2-clients a number above 0"
    );
    JsonOut::check_all([&args.json])?;
    let exe = std::env::current_exe().context("cannot find the testbed executable")?;
    if let Some(kind) = args.proxy {
        return proxy_rollout(args, kind, &exe, progress).await;
    }
    let report = rollout::run(&args.rollout, &exe, progress).await?;
    print!("{}", report.render());
    if let Some(out) = &args.json {
        out.write(&report)?;
    }
    // A killed backend is expected to fail requests; a graceful rollout must not.
    judge_rollout(&report.load, "the rollout", args.rollout.kill_v1)
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
