//! `testbed`: serve v1 and v2 of the Incrementer API side by side, run the compatibility matrix,
//! and print the experiment's report. `testbed --help` lists the commands.

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use router::RouteTable;
use services::baseline;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use testbed::bench::{self, BenchOptions, CpuList, Flavor, HaltPoll, Row};
use testbed::clients::Api;
use testbed::clients::ClientKind;
use testbed::deployment::{DEFAULT_MAX_MESSAGE_BYTES, Deployment, catalog};
use testbed::load::{Load, LoadOptions};
use testbed::rollout::RolloutOptions;
use testbed::server::{Layout, ServeOptions};
use testbed::upstream::UpstreamSpec;
use testbed::{matrix, server};
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
    Serve(ServeArgs),
    /// Run every client against every deployment and print the compatibility matrix.
    Matrix {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Only these clients (repeatable; default all).
        #[arg(long = "client", value_enum)]
        clients: Vec<ClientKind>,
        /// Only these deployments (repeatable; default all).
        #[arg(long = "deployment", value_enum)]
        deployments: Vec<Deployment>,
    },
    /// N v1 and M v2 clients at once against one address, every reply verified.
    Mixed(MixedArgs),
    /// A zero-downtime v1 → v2 rollout under mixed-version load, every request counted.
    Rollout(RolloutArgs),
    /// The latency runs: sequential dependent increments over every hop, side by side.
    Bench(BenchArgs),
    /// Serve one of the non-gRPC baselines of the latency runs (used by `bench`).
    #[command(hide = true)]
    BenchTarget {
        /// Which baseline.
        #[arg(value_enum)]
        kind: Baseline,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
    /// The main job: run the whole experiment (matrix and latency runs) and print its report.
    Report {
        /// Measured calls per latency row.
        #[arg(long, default_value_t = 10_000)]
        requests: u64,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: SocketAddr,
    /// Which implementations serve which API version, and whether the version router is used.
    #[arg(long, value_enum, default_value_t = Deployment::SideBySide)]
    deployment: Deployment,
    /// Serve only this implementation, without a router: a backend for another process's router.
    #[arg(long, value_enum, conflicts_with_all = ["deployment", "upstreams"])]
    backend: Option<Api>,
    /// Route to a backend in another process: NAME=VERSION@HOST:PORT[+PACKAGE...]; the API is
    /// increment.v{MAJOR}, +increment.v1 also routes v1 requests to it. Repeatable.
    #[arg(long = "upstream", conflicts_with = "deployment")]
    upstreams: Vec<UpstreamSpec>,
    /// Largest message accepted or sent, in bytes; larger ones get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Calls (HTTP/2 streams) open at once per connection (default: unlimited by the server).
    #[arg(long)]
    max_concurrent_streams: Option<u32>,
    /// Deadline for every call in milliseconds, streams included; a client's grpc-timeout may be
    /// shorter. Past it the call ends with DEADLINE_EXCEEDED.
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// Send an HTTP/2 keep-alive ping to each client every this many seconds.
    #[arg(long)]
    keepalive_interval_secs: Option<u64>,
    /// Close a connection whose keep-alive ping is unanswered for this many seconds.
    #[arg(long, requires = "keepalive_interval_secs")]
    keepalive_timeout_secs: Option<u64>,
}

impl ServeArgs {
    fn options(&self) -> anyhow::Result<ServeOptions> {
        anyhow::ensure!(
            self.max_message_bytes > 0,
            "--max-message-bytes must be at least 1"
        );
        anyhow::ensure!(
            self.max_concurrent_streams != Some(0),
            "--max-concurrent-streams must be at least 1"
        );
        anyhow::ensure!(
            self.request_timeout_ms != Some(0),
            "--request-timeout-ms must be at least 1"
        );
        Ok(ServeOptions {
            max_message_bytes: self.max_message_bytes,
            max_concurrent_streams: self.max_concurrent_streams,
            request_timeout: self.request_timeout_ms.map(Duration::from_millis),
            keepalive_interval: self.keepalive_interval_secs.map(Duration::from_secs),
            keepalive_timeout: self.keepalive_timeout_secs.map(Duration::from_secs),
        })
    }
}

#[derive(clap::Args)]
struct MixedArgs {
    /// Server to load; without it a side-by-side router is started in this process.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// v1 clients (each a sequential chain on its own connection).
    #[arg(long, default_value_t = 4)]
    v1_clients: usize,
    /// v2 clients (each sends step 5 and request ids).
    #[arg(long, default_value_t = 4)]
    v2_clients: usize,
    /// Run for this many seconds...
    #[arg(long, default_value_t = 10.0, conflicts_with = "requests")]
    seconds: f64,
    /// ...or until each client has sent this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Pace each client to this many requests per second (default: back to back).
    #[arg(long)]
    rate: Option<f64>,
    /// x-api-version requirement the v1 clients send (e.g. "^1").
    #[arg(long)]
    v1_requirement: Option<semver::VersionReq>,
    /// x-api-version requirement the v2 clients send; replies from other versions count as wrong.
    #[arg(long, default_value = "^2")]
    v2_requirement: semver::VersionReq,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RolloutArgs {
    /// v1 clients.
    #[arg(long, default_value_t = 4)]
    v1_clients: usize,
    /// v2 clients.
    #[arg(long, default_value_t = 4)]
    v2_clients: usize,
    /// Seconds per phase (v1 only, v2 added, v1 retired, v1 removed).
    #[arg(long, default_value_t = 5.0)]
    phase_seconds: f64,
    /// Pace each client to this many requests per second (default: back to back).
    #[arg(long)]
    rate: Option<f64>,
    /// Run v1 and v2 as separate `testbed serve --backend` processes behind the router.
    #[arg(long)]
    processes: bool,
    /// With --processes: kill v1 without draining (shows the UNAVAILABLE a crash causes).
    #[arg(long, requires = "processes")]
    kill_v1: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn positive(what: &str, value: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(
        value.is_finite() && value > 0.0,
        "{what} must be a positive number, got {value}"
    );
    Ok(value)
}

fn counter(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} requests {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_string());
    bar
}

fn write_json<T: serde::Serialize>(path: &Option<PathBuf>, value: &T) -> anyhow::Result<()> {
    if let Some(path) = path {
        let json = serde_json::to_string_pretty(value)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn mixed(args: MixedArgs) -> anyhow::Result<()> {
    let seconds = positive("--seconds", args.seconds)?;
    if let Some(rate) = args.rate {
        positive("--rate", rate)?;
    }
    let local = match args.addr {
        Some(_) => None,
        None => Some(server::start("127.0.0.1:0".parse()?, Deployment::SideBySide).await?),
    };
    let addr = args
        .addr
        .or(local.as_ref().map(|s| s.addr))
        .context("no address to load")?;
    let options = LoadOptions {
        addr,
        v1_clients: args.v1_clients,
        v2_clients: args.v2_clients,
        requests_per_client: args.requests,
        rate_per_client: args.rate,
        v1_requirement: args.v1_requirement,
        v2_requirement: Some(args.v2_requirement),
        v2_waits_for_health: false,
    };
    let load = Load::start(&options, "mixed").await?;
    let progress = counter(&format!("to {addr}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    while !load.finished() && (args.requests.is_some() || tokio::time::Instant::now() < deadline) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        progress.set_position(load.completed());
    }
    progress.finish_and_clear();
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

async fn rollout(args: RolloutArgs) -> anyhow::Result<()> {
    let options = RolloutOptions {
        v1_clients: args.v1_clients,
        v2_clients: args.v2_clients,
        phase: Duration::from_secs_f64(positive("--phase-seconds", args.phase_seconds)?),
        rate_per_client: args.rate.map(|rate| positive("--rate", rate)).transpose()?,
        processes: match args.processes {
            true => Some(std::env::current_exe().context("cannot find the testbed executable")?),
            false => None,
        },
        kill_v1: args.kill_v1,
    };
    let progress = counter("v1 only");
    let report = testbed::rollout::run(&options, &progress).await?;
    progress.finish_and_clear();
    print!("{}", report.render());
    write_json(&args.json, &report)?;
    let [v1, v2] = report.load.totals();
    anyhow::ensure!(
        v1.wrong + v2.wrong == 0,
        "the rollout answered some requests wrongly"
    );
    // A killed backend is expected to fail requests; a graceful rollout must not.
    anyhow::ensure!(
        args.kill_v1 || report.load.clean(),
        "the rollout failed some requests"
    );
    Ok(())
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Baseline {
    /// Raw TCP ping-pong, 8-byte little-endian integers.
    Tcp,
    /// REST: POST /increment with JSON.
    Rest,
    /// The v1 gRPC service alone on a stock tonic server, none of the port's layers.
    StockGrpc,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Sequential dependent calls per chain (the final value must equal it).
    #[arg(long, default_value_t = 10_000)]
    requests: u64,
    /// Unmeasured calls per chain before measuring.
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,
    /// Alternate through the rows this many times and report medians.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Independent chains at once on the network rows (Python clients: one process each).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Only these rows (repeatable; default all).
    #[arg(long = "row", value_enum)]
    rows: Vec<Row>,
    /// Pin the client and every server process to these CPUs (taskset -c syntax: 0, 0,1, 0-3).
    /// On small VMs one shared CPU removes the cross-CPU wake-up that dominates a round trip.
    #[arg(long)]
    cpus: Option<CpuList>,
    /// Pin the server processes to these CPUs instead of --cpus: client and servers on CPUs of
    /// their own, e.g. --cpus 0 --server-cpus 1.
    #[arg(long)]
    server_cpus: Option<CpuList>,
    /// Let an idle vCPU poll this long before it halts, for this run only (root, on a KVM guest
    /// with the cpuidle-haltpoll driver; the old value is put back afterwards). Shows what waking
    /// a halted vCPU costs a round trip.
    #[arg(long)]
    halt_poll_ns: Option<u64>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also draw the per-call latencies as an SVG figure here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl BenchArgs {
    fn options(&self, flavor: Flavor) -> anyhow::Result<BenchOptions> {
        anyhow::ensure!(self.requests > 0, "--requests must be at least 1");
        anyhow::ensure!(self.repeat > 0, "--repeat must be at least 1");
        anyhow::ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        Ok(BenchOptions {
            requests: self.requests,
            warmup: self.warmup,
            repeat: self.repeat,
            concurrency: self.concurrency,
            flavor,
            cpus: self.cpus.clone(),
            server_cpus: self.server_cpus.clone(),
            halt_poll_ns: self.halt_poll_ns,
            rows: self.rows.clone(),
            progress: !self.quiet,
            testbed_exe: std::env::current_exe().context("cannot find the testbed executable")?,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = cli
        .runtime
        .runtime()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Matrix {
            json,
            clients,
            deployments,
        } => {
            let clients = if clients.is_empty() {
                ClientKind::ALL.to_vec()
            } else {
                clients
            };
            let deployments = if deployments.is_empty() {
                Deployment::ALL.to_vec()
            } else {
                deployments
            };
            let cells = matrix::run(&clients, &deployments).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cells)?);
            } else {
                print!("{}", matrix::render(&cells));
            }
            Ok(())
        }
        Command::Mixed(args) => mixed(args).await,
        Command::Rollout(args) => rollout(args).await,
        Command::Bench(args) => {
            let report = run_bench(args.options(cli.runtime)?).await?;
            print!("{}", report.render());
            if let Some(path) = &args.json {
                report.write_json(path)?;
            }
            if let Some(path) = &args.plot {
                report.plot(path)?;
            }
            Ok(())
        }
        Command::BenchTarget { kind, addr } => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let addr = listener.local_addr()?;
            let (name, server) = match kind {
                Baseline::Tcp => ("tcp", tokio::spawn(baseline::serve_tcp(listener))),
                Baseline::Rest => ("rest", tokio::spawn(baseline::serve_rest(listener))),
                Baseline::StockGrpc => (
                    "stock-grpc",
                    tokio::spawn(async move {
                        baseline::serve_stock_grpc(listener)
                            .await
                            .map_err(std::io::Error::other)
                    }),
                ),
            };
            println!("testbed serving {name} on {addr}");
            tokio::select! {
                result = server => result.context("baseline server panicked")?.context("baseline server failed"),
                result = shutdown_signal() => result,
            }
        }
        Command::Report { requests } => report(cli.runtime, requests).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let options = args.options()?;
    let (layout, label) = if let Some(api) = args.backend {
        (
            Layout::Direct(vec![api]),
            format!("{api:?} backend").to_lowercase(),
        )
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
        let layout = args.deployment.layout(options.max_message_bytes)?;
        (layout, args.deployment.to_string())
    };
    let running = server::start_with(args.addr, layout, &label, &options).await?;
    println!("testbed serving {label} on {}", running.addr);
    shutdown_signal().await?;
    tracing::info!("shutting down; in-flight requests may finish");
    running.shutdown().await
}

/// Runs the latency runs off the runtime, so that Ctrl-C or SIGTERM is heard meanwhile. The
/// process then exits at once: the server processes get the same signal from the terminal, but
/// a kernel setting the run changed must be put back first.
async fn run_bench(options: BenchOptions) -> anyhow::Result<bench::BenchReport> {
    let run = tokio::task::spawn_blocking(move || bench::run(&options));
    tokio::select! {
        report = run => report.context("the bench panicked")?,
        result = shutdown_signal() => {
            HaltPoll::restore_now();
            result?;
            anyhow::bail!("interrupted")
        }
    }
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}

/// Rounds of each latency run in the report; medians are shown.
const REPORT_REPEAT: usize = 3;
/// Guest halt polling in the report's last latency run: longer than any round trip measured
/// here, so a vCPU waiting for a reply never halts.
const REPORT_HALT_POLL_NS: u64 = 200_000;

async fn report(flavor: Flavor, requests: u64) -> anyhow::Result<()> {
    println!("# gRPC version-compatibility testbed report\n");
    println!("## Compatibility matrix\n");
    println!(
        "Rows are clients, columns deployments. ✓ shows the values returned (unary: 41 → 42 for v1, \
         41 + step 5 → 46 for v2; stream: 10,20,30), ✗ a silently wrong answer, otherwise the gRPC status.\n"
    );
    let cells = matrix::run(&ClientKind::ALL, &Deployment::ALL).await?;
    print!("{}", matrix::render(&cells));
    println!("\n## Zero-downtime v1 → v2 rollout (4 v1 + 4 v2 clients, 2 s phases)\n");
    let rollout_options = RolloutOptions {
        v1_clients: 4,
        v2_clients: 4,
        phase: Duration::from_secs(2),
        rate_per_client: None,
        processes: None,
        kill_v1: false,
    };
    let progress = counter("v1 only");
    let rollout = testbed::rollout::run(&rollout_options, &progress).await?;
    progress.finish_and_clear();
    print!("{}", rollout.render());
    anyhow::ensure!(
        rollout.load.clean(),
        "the rollout failed or misanswered some requests"
    );
    println!("\n## Latency runs\n");
    // Where the scheduler puts things (what a user gets by default); then placements held fixed,
    // since unpinned the scheduler may put one server beside the client and the next not (see
    // the README's "Where the unary time goes"): client and servers on vCPUs of their own, the
    // same with idle vCPUs polling before they halt, and everything on one vCPU.
    let base = BenchOptions {
        requests,
        warmup: (requests / 10).min(1_000),
        repeat: REPORT_REPEAT,
        concurrency: 1,
        flavor,
        cpus: None,
        server_cpus: None,
        halt_poll_ns: None,
        rows: Vec::new(),
        progress: true,
        testbed_exe: std::env::current_exe().context("cannot find the testbed executable")?,
    };
    let together = BenchOptions {
        flavor: Flavor::CurrentThread,
        cpus: Some(CpuList::first_allowed()?),
        ..base.clone()
    };
    let mut runs = vec![base.clone()];
    match CpuList::first_two_allowed()? {
        Some((client, servers)) => {
            let apart = BenchOptions {
                flavor: Flavor::CurrentThread,
                cpus: Some(client),
                server_cpus: Some(servers),
                ..base.clone()
            };
            runs.push(apart.clone());
            match HaltPoll::unavailable() {
                None => runs.push(BenchOptions {
                    halt_poll_ns: Some(REPORT_HALT_POLL_NS),
                    ..apart
                }),
                Some(reason) => println!("No run with guest halt polling: {reason}.\n"),
            }
        }
        None => println!("Only one CPU may be used: no run with client and servers apart.\n"),
    }
    runs.push(together);
    for options in runs {
        if let Some(ns) = options.halt_poll_ns {
            println!(
                "Guest halt polling set to {ns} ns for the next run, then put back as it was.\n"
            );
        }
        println!("{}", run_bench(options).await?.render());
    }
    Ok(())
}
