//! What each `testbed` command takes and does. The flags of the libraries' options structs are
//! flattened in (`#[command(flatten)]`), so nothing here mirrors a library struct; `main.rs`
//! only parses, renders progress and dispatches.

use crate::load::{Load, LoadOptions};
use crate::matrix::{self, ClientKind};
use crate::rollout::{self, RolloutOptions};
use anyhow::Context;
use bench::BenchOptions;
use port::Deployment;
use port::deployment::catalog;
use port::server::{self, Layout, ServeOptions};
use port::upstream::UpstreamSpec;
use router::RouteTable;
use services::Api;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `testbed serve`.
#[derive(Debug, clap::Args)]
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
    /// Route to a backend in another process: NAME=VERSION@HOST:PORT[+PACKAGE...]; the API is
    /// increment.v{MAJOR}, +increment.v1 also routes v1 requests to it. Repeatable.
    #[arg(long = "upstream", conflicts_with = "deployment")]
    pub upstreams: Vec<UpstreamSpec>,
    /// Limits and timeouts.
    #[command(flatten)]
    pub options: ServeOptions,
}

/// Serves until Ctrl-C or SIGTERM, then stops gracefully.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let (layout, label) = if let Some(api) = args.backend {
        (Layout::Direct(vec![api]), format!("{api} backend"))
    } else if !args.upstreams.is_empty() {
        let backends = args
            .upstreams
            .iter()
            .map(UpstreamSpec::backend)
            .collect::<Result<Vec<_>, _>>()
            .context("bad upstream address")?;
        let table =
            RouteTable::new(catalog()?, backends).context("cannot route to these upstreams")?;
        (Layout::Routed(table), "router over upstreams".to_string())
    } else {
        let layout = args.deployment.layout(args.options.max_message_bytes)?;
        (layout, args.deployment.to_string())
    };
    let running = server::start_with(args.addr, layout, &label, &args.options).await?;
    println!("testbed serving {label} on {}", running.addr);
    port::signal::shutdown().await?;
    tracing::info!("shutting down; in-flight requests may finish");
    running.shutdown().await
}

/// `testbed matrix`.
#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Only these clients (repeatable; default all).
    #[arg(long = "client", value_enum)]
    pub clients: Vec<ClientKind>,
    /// Only these deployments (repeatable; default all).
    #[arg(long = "deployment", value_enum)]
    pub deployments: Vec<Deployment>,
}

/// Runs the matrix and prints it.
pub async fn matrix(args: &MatrixArgs) -> anyhow::Result<()> {
    let clients = or_all(&args.clients, &ClientKind::ALL);
    let deployments = or_all(&args.deployments, &Deployment::ALL);
    let cells = matrix::run(&clients, &deployments).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cells)?);
    } else {
        print!("{}", matrix::render(&cells));
    }
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
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs mixed-version load and prints what it saw; fails when any reply failed or was wrong.
/// `progress` is told the requests completed so far, every 50 ms.
pub async fn mixed(args: &MixedArgs, progress: impl Fn(u64)) -> anyhow::Result<()> {
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
    write_json(&args.json, &report)?;
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
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs the rollout and prints what it saw; fails when any reply was wrong, or (unless v1 was
/// killed on purpose) when any request failed.
pub async fn rollout(
    args: &RolloutArgs,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the testbed executable")?;
    let report = rollout::run(&args.rollout, &exe, progress).await?;
    print!("{}", report.render());
    write_json(&args.json, &report)?;
    let [v1, v2] = report.load.totals();
    anyhow::ensure!(
        v1.wrong + v2.wrong == 0,
        "the rollout answered some requests wrongly"
    );
    // A killed backend is expected to fail requests; a graceful rollout must not.
    anyhow::ensure!(
        args.rollout.kill_v1 || report.load.clean(),
        "the rollout failed some requests"
    );
    Ok(())
}

/// `testbed bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to run and where.
    #[command(flatten)]
    pub bench: BenchOptions,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw the per-call latencies as an SVG figure here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the latency runs (`options` completed by the caller) and prints the table.
pub async fn bench(args: &BenchArgs, options: BenchOptions) -> anyhow::Result<()> {
    let report = bench::run_until(options, port::signal::shutdown()).await?;
    print!("{}", report.render());
    if let Some(path) = &args.json {
        report.write_json(path)?;
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
    #[arg(long, default_value_t = 10_000)]
    pub requests: u64,
}

fn write_json<T: serde::Serialize>(path: &Option<PathBuf>, value: &T) -> anyhow::Result<()> {
    if let Some(path) = path {
        let json = serde_json::to_string_pretty(value)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
