//! The latency runs: what each hop costs, from a function call to REST to gRPC unary and
//! streams, and from Python to Rust, measured side by side in one run.
//!
//! Every row runs the same workload: `requests` sequential dependent increments (each request
//! sent only after the previous reply, starting from 0); the final value must equal the request
//! count or the run fails. Servers of network rows run in their own processes on 127.0.0.1.

pub mod baseline;
mod chains;
mod h2load;
mod halt_poll;
mod handshake;
mod placement;
pub mod proxies;
mod report;
mod tuned;

pub use halt_poll::HaltPoll;
pub use handshake::{ConnectFigures, HandshakeResult};
pub use placement::CpuList;
pub use proxies::{LoadFigures, PathFigures, ProxiesResult};
pub use report::percentile_plot::{
    MAIN_ROWS, PERCENTILE_COLORS, PercentileLine, percentile_svg, percentile_x,
};
pub use report::percentiles::{PERCENTILES, Percentile, percentiles};
pub use report::{BenchReport, RowResult, RowsSkipped, check_writable};

use anyhow::Context;
use baseline::Baseline;
use chains::{Chain, Incrementer};
use client::tools::{self, MissingTool};
use port::Deployment;
use port::child::ChildServer;
use port::tls::{ClientTls, PkiFiles, TestPki};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

/// Which tokio runtime the Rust sides (client and servers) use.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Flavor {
    /// One thread: no cross-thread wake-ups.
    CurrentThread,
    /// tokio's default work-stealing pool.
    #[default]
    MultiThread,
}

impl Flavor {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::CurrentThread => "current-thread",
            Flavor::MultiThread => "multi-thread",
        }
    }

    /// Builds a runtime of this flavour.
    pub fn runtime(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        }
        .enable_all()
        .build()
    }
}

/// How to run the latency runs; `testbed bench` takes these as flags. The fields marked
/// "set by the caller" are not flags: the command line fills them in.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Sequential dependent calls per chain (the final value must equal it).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Unmeasured calls per chain before measuring.
    #[arg(long, default_value_t = 1_000)]
    pub warmup: u64,
    /// Alternate through the rows this many times and report medians.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub repeat: usize,
    /// Independent chains at once on the network rows (Python clients: one process each).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub concurrency: usize,
    /// Only these rows (repeatable; default all).
    #[arg(long = "row", value_enum)]
    pub rows: Vec<Row>,
    /// Pin the client and every server process to these CPUs (taskset -c syntax: 0, 0,1, 0-3).
    /// On small VMs one shared CPU removes the cross-CPU wake-up that dominates a round trip.
    #[arg(long)]
    pub cpus: Option<CpuList>,
    /// Pin the server processes to these CPUs instead of --cpus: client and servers on CPUs of
    /// their own, e.g. --cpus 0 --server-cpus 1.
    #[arg(long)]
    pub server_cpus: Option<CpuList>,
    /// Let an idle vCPU poll this long before it halts, for this run only (root, on a KVM guest
    /// with the cpuidle-haltpoll driver; the old value is put back afterwards). Shows what
    /// waking a halted vCPU costs a round trip.
    #[arg(long)]
    pub halt_poll_ns: Option<u64>,
    /// The runtime flavour of the Rust sides (set by the caller: the global `--runtime`).
    #[arg(skip)]
    pub flavor: Flavor,
    /// Told after each row (set by the caller; `None`: nobody is told).
    #[arg(skip)]
    pub progress: Option<Progress>,
    /// The `testbed` executable that serves the Rust targets (set by the caller: this one, from
    /// the command line; `CARGO_BIN_EXE_testbed` in tests).
    #[arg(skip)]
    pub testbed_exe: PathBuf,
}

impl BenchOptions {
    /// The rows this run is to run, in order: those asked for, or every row.
    pub fn rows_to_run(&self) -> Vec<Row> {
        if self.rows.is_empty() {
            Row::ALL.to_vec()
        } else {
            self.rows.clone()
        }
    }

    /// Checks the options before any work starts (a run checks them first; the command line may
    /// call this earlier still): the counts are at least 1, and every row that must run can. A
    /// row must run when it was asked for by name with `--row`, or under `CI=true`; the tools it
    /// needs (Python with grpcio, h2load) are looked for now, so that a missing one fails the
    /// run in a moment rather than after it, with the fix.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.requests >= 1,
            "--requests must be at least 1 (got {}): each chain must make a call to measure",
            self.requests
        );
        anyhow::ensure!(self.repeat >= 1, "--repeat must be at least 1 (got 0)");
        anyhow::ensure!(
            self.concurrency >= 1,
            "--concurrency must be at least 1 (got 0)"
        );
        if self.rows.is_empty() && !in_ci() {
            return Ok(());
        }
        let why = if self.rows.is_empty() {
            "under CI=true every row must run"
        } else {
            "it was asked for with --row"
        };
        for row in self.rows_to_run() {
            if let Err(missing) = row.tools() {
                anyhow::bail!(
                    "row {} ({}) cannot run, and {why}: {missing}",
                    row.flag(),
                    row.label()
                );
            }
        }
        Ok(())
    }
}

/// Whether this is a CI run (`CI=true`), where every row must run.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(err) => Err(format!("{text:?} is not a whole number: {err}")),
    }
}

/// Where a run has got to: `done` of `total` rows (over all rounds), and what runs now.
#[derive(Debug, Clone)]
pub struct Step {
    /// Rows finished.
    pub done: usize,
    /// Rows in the whole run.
    pub total: usize,
    /// What runs next, e.g. "round 2 raw TCP ping-pong (floor)"; empty when finished.
    pub message: String,
}

/// A callback told each [`Step`] of a run. The library draws nothing itself: the command line
/// renders it as a progress bar, tests ignore it.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(Step) + Send + Sync>);

impl Progress {
    /// Calls `report` with every step.
    pub fn new(report: impl Fn(Step) + Send + Sync + 'static) -> Self {
        Self(Arc::new(report))
    }

    fn tell(&self, done: usize, total: usize, message: String) {
        (self.0)(Step {
            done,
            total,
            message,
        })
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// One row of the latency table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Row {
    /// Timer and histogram around a call that does nothing: the harness's own cost.
    Harness,
    /// (1) The increment as an in-process function call.
    InProcess,
    /// (2) Raw TCP ping-pong, 8-byte messages: the floor.
    Tcp,
    /// (3) REST: axum server, hyper HTTP/1.1 keep-alive client, JSON.
    Rest,
    /// (4) gRPC unary, v1, direct.
    UnaryV1,
    /// (4t) As (4), over TLS (rustls, ALPN h2) to a TLS port; measured in alternation with
    /// (4) when both run.
    UnaryTls,
    /// (4b) gRPC unary, v1, direct, tonic's client on hyper's HTTP/2 connection without the
    /// `Buffer` of a `Channel`.
    UnaryUnbuffered,
    /// (4c) gRPC unary, v1, direct, the testbed's own client on `h2`: one write per call, no
    /// task of its own.
    UnaryH2,
    /// (4d) As (4c), against the v1 service alone on a stock tonic server: what the port's own
    /// layers (guard, reflection, health, fallback) cost.
    UnaryH2StockServer,
    /// (5) gRPC unary, v2, direct.
    UnaryV2,
    /// (6) gRPC unary, v2, through the version router.
    UnaryRouter,
    /// (7) gRPC bidi stream, one call in flight, replies matched by request_id.
    StreamPingPong,
    /// (7t) As (7), over TLS; measured in alternation with (7) when both run.
    StreamPingPongTls,
    /// (8) gRPC bidi stream, all sent then all read (not dependent).
    StreamPipelined,
    /// (9) Python grpcio client → Rust server.
    PythonToRust,
    /// (10) Python grpcio client → Python grpcio server.
    PythonToPython,
    /// (11) Rust client → Python grpcio server.
    RustToPython,
    /// (11g) As (11), through the testbed's gateway (`serve --upstream`, the Python server's
    /// descriptors from a file: it serves no reflection); measured in alternation with (11), so
    /// the ratio is what the gateway adds in front of a server the testbed did not write.
    RustToPythonViaGateway,
    /// (12) h2load (nghttp2) → Rust server, direct, direct over TLS and through the router.
    H2load,
    /// (13) What a new connection costs: connect and a first call on a fresh connection, over
    /// plaintext and over TLS, [`handshake::CONNECTIONS`] of each in alternation.
    Handshake,
    /// (14) The same v1 backend directly, through the testbed's router as a proxy (`serve
    /// --upstream`) and through nginx, HAProxy and Envoy: sequential calls in alternation, h2load
    /// at two loads, and each hop's CPU time per request.
    Proxies,
}

impl Row {
    /// Every row, in table order.
    pub const ALL: [Row; 21] = [
        Row::Harness,
        Row::InProcess,
        Row::Tcp,
        Row::Rest,
        Row::UnaryV1,
        Row::UnaryTls,
        Row::UnaryUnbuffered,
        Row::UnaryH2,
        Row::UnaryH2StockServer,
        Row::UnaryV2,
        Row::UnaryRouter,
        Row::StreamPingPong,
        Row::StreamPingPongTls,
        Row::StreamPipelined,
        Row::PythonToRust,
        Row::PythonToPython,
        Row::RustToPython,
        Row::RustToPythonViaGateway,
        Row::H2load,
        Row::Handshake,
        Row::Proxies,
    ];

    /// Label in reports.
    pub fn label(self) -> &'static str {
        match self {
            Row::Harness => "harness (timer + histogram)",
            Row::InProcess => "in-process function call",
            Row::Tcp => "raw TCP ping-pong (floor)",
            Row::Rest => "REST (axum, HTTP/1.1, JSON)",
            Row::UnaryV1 => "gRPC unary v1, direct",
            Row::UnaryTls => "gRPC unary v1, direct, TLS",
            Row::UnaryUnbuffered => "gRPC unary v1, unbuffered client",
            Row::UnaryH2 => "gRPC unary v1, one-write h2 client",
            Row::UnaryH2StockServer => "gRPC unary v1, h2 client → stock tonic",
            Row::UnaryV2 => "gRPC unary v2, direct",
            Row::UnaryRouter => "gRPC unary v2, via router",
            Row::StreamPingPong => "gRPC bidi stream ping-pong",
            Row::StreamPingPongTls => "gRPC bidi stream ping-pong, TLS",
            Row::StreamPipelined => "gRPC bidi stream pipelined (not dependent)",
            Row::PythonToRust => "Python grpcio → Rust server",
            Row::PythonToPython => "Python grpcio → Python server",
            Row::RustToPython => "Rust tonic → Python server",
            Row::RustToPythonViaGateway => "Rust tonic → gateway → Python server",
            Row::H2load => "h2load → Rust server",
            Row::Handshake => "new connection + first call, plaintext and TLS",
            Row::Proxies => "through each proxy: router as proxy, nginx, HAProxy, Envoy",
        }
    }

    /// Whether the row is measured apart from the latency table (its own figures, its own
    /// lines under the table): h2load and the new-connection costs.
    pub fn runs_apart(self) -> bool {
        matches!(self, Row::H2load | Row::Handshake | Row::Proxies)
    }

    /// The plaintext row a TLS row is compared with (the same client, the same server, without
    /// TLS); `None` for the rows that are not over TLS.
    pub fn plaintext_partner(self) -> Option<Row> {
        match self {
            Row::UnaryTls => Some(Row::UnaryV1),
            Row::StreamPingPongTls => Some(Row::StreamPingPong),
            _ => None,
        }
    }

    /// The row's name on the command line (`--row NAME`).
    pub fn flag(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map_or_else(|| format!("{self:?}"), |value| value.get_name().to_string())
    }

    /// Finds the external tools the row needs; a missing one is a [`MissingTool`], with the
    /// fix.
    pub fn tools(self) -> Result<(), MissingTool> {
        match self {
            Row::PythonToRust => {
                tools::python()?;
                tools::python_client("bench_client.py")?;
            }
            Row::PythonToPython => {
                tools::python()?;
                tools::python_client("bench_client.py")?;
                tools::python_client("increment_server.py")?;
            }
            Row::RustToPython | Row::RustToPythonViaGateway => {
                tools::python()?;
                tools::python_client("increment_server.py")?;
            }
            Row::H2load => {
                tools::h2load()?;
            }
            Row::Proxies => {
                tools::h2load()?;
                // Outside CI the row runs with the proxies that are installed and names the
                // others with their fix; under CI every one must be there.
                if in_ci() {
                    for kind in proxy::ProxyKind::ALL {
                        kind.find()?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The server process a network row talks to (see [`Targets::addr`]); `None` for the rows
    /// that run in this process or start their own tool.
    fn target(self) -> Option<Target> {
        match self {
            Row::Harness | Row::InProcess | Row::H2load | Row::Handshake | Row::Proxies => None,
            Row::Tcp => Some(Target::Baseline(Baseline::Tcp)),
            Row::Rest => Some(Target::Baseline(Baseline::Rest)),
            Row::UnaryV1
            | Row::UnaryUnbuffered
            | Row::UnaryH2
            | Row::UnaryV2
            | Row::StreamPingPong
            | Row::StreamPipelined
            | Row::PythonToRust => Some(Target::Port(Deployment::Direct)),
            Row::UnaryH2StockServer => Some(Target::Baseline(Baseline::StockGrpc)),
            Row::UnaryRouter => Some(Target::Port(Deployment::SideBySide)),
            Row::UnaryTls | Row::StreamPingPongTls => Some(Target::TlsPort),
            Row::PythonToPython | Row::RustToPython => Some(Target::Python),
            Row::RustToPythonViaGateway => Some(Target::GatewayToPython),
        }
    }
}

/// A server process the rows talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    /// `testbed bench-target KIND`: a baseline server.
    Baseline(Baseline),
    /// `testbed serve --deployment NAME`: the testbed's own port.
    Port(Deployment),
    /// `testbed serve --deployment direct --tls-cert F --tls-key K`: the direct port over TLS,
    /// with the run's certificates ([`Targets::tls`]).
    TlsPort,
    /// The Python grpcio server, 4 worker threads.
    Python,
    /// `testbed serve --upstream` in front of [`Target::Python`], the API's descriptors given
    /// as a file ([`Targets::descriptors`]).
    GatewayToPython,
}

/// Pairs of rows whose ratio is a target: the same client against two servers. When both rows
/// run they are measured in alternating blocks of calls ([`chains::run_interleaved`]), so drift
/// on a shared machine hits both alike.
const INTERLEAVED: [(Row, Row); 5] = [
    (Row::UnaryV2, Row::UnaryRouter),
    (Row::UnaryH2StockServer, Row::UnaryH2),
    (Row::UnaryV1, Row::UnaryTls),
    (Row::StreamPingPong, Row::StreamPingPongTls),
    (Row::RustToPython, Row::RustToPythonViaGateway),
];

/// The pair `row` is measured in, if its partner runs too.
fn interleaved_pair(row: Row, rows: &[Row]) -> Option<(Row, Row)> {
    INTERLEAVED
        .into_iter()
        .find(|&(a, b)| (row == a || row == b) && rows.contains(&a) && rows.contains(&b))
}

/// The server processes the rows need, started once and shared by all repeats, and the run's
/// TLS certificates.
#[derive(Debug, Default)]
struct Targets {
    by_name: HashMap<Target, ChildServer>,
    pki: Option<RunPki>,
    descriptors: Option<tempfile::NamedTempFile>,
}

/// Certificates made once per run for the TLS rows ([`TestPki`]: a CA and a server certificate
/// for `localhost` and 127.0.0.1), written to a folder of their own that goes when the run ends.
#[derive(Debug)]
struct RunPki {
    pki: TestPki,
    files: PkiFiles,
}

impl RunPki {
    fn generate() -> anyhow::Result<Self> {
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("testbed-bench-tls-{}-{run}", std::process::id()));
        let pki = TestPki::generate().context("cannot make the TLS rows' certificates")?;
        let files = pki.write_to(&dir)?;
        Ok(Self { pki, files })
    }
}

impl Drop for RunPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files.dir);
    }
}

impl Targets {
    /// The run's certificates, made the first time a TLS row asks.
    fn pki(&mut self) -> anyhow::Result<&RunPki> {
        let pki = match self.pki.take() {
            Some(pki) => pki,
            None => RunPki::generate()?,
        };
        Ok(self.pki.insert(pki))
    }

    /// How a client of [`Target::TlsPort`] reaches it: trusting the run's CA, no client
    /// certificate.
    fn tls(&mut self) -> anyhow::Result<ClientTls> {
        Ok(self.pki()?.pki.client(None))
    }

    /// The API's descriptors in a file of the run's own, written the first time a gateway asks.
    fn descriptors(&mut self) -> anyhow::Result<PathBuf> {
        if let Some(file) = &self.descriptors {
            return Ok(file.path().to_path_buf());
        }
        let mut file = tempfile::Builder::new()
            .prefix("testbed-bench-descriptors-")
            .suffix(".binpb")
            .tempfile()
            .context("cannot create the gateway's descriptor file")?;
        std::io::Write::write_all(&mut file, services::FILE_DESCRIPTOR_SET)
            .context("cannot write the gateway's descriptor file")?;
        let path = file.path().to_path_buf();
        self.descriptors = Some(file);
        Ok(path)
    }

    async fn addr(&mut self, name: Target, options: &BenchOptions) -> anyhow::Result<SocketAddr> {
        if let Some(target) = self.by_name.get(&name) {
            return Ok(target.addr);
        }
        let runtime = ["--runtime", options.flavor.name()];
        let exe = &options.testbed_exe;
        let target = match name {
            Target::Baseline(kind) => {
                let command = ["bench-target", kind.name(), "--addr", "127.0.0.1:0"];
                ChildServer::testbed(exe, &[&runtime[..], &command].concat()).await?
            }
            Target::Port(deployment) => {
                let command = [
                    "serve",
                    "--deployment",
                    deployment.name(),
                    "--addr",
                    "127.0.0.1:0",
                ];
                ChildServer::testbed(exe, &[&runtime[..], &command].concat()).await?
            }
            Target::TlsPort => {
                let files = &self.pki()?.files;
                let cert = files.server_cert.display().to_string();
                let key = files.server_key.display().to_string();
                let command = [
                    "serve",
                    "--deployment",
                    Deployment::Direct.name(),
                    "--addr",
                    "127.0.0.1:0",
                    "--tls-cert",
                    &cert,
                    "--tls-key",
                    &key,
                ];
                ChildServer::testbed(exe, &[&runtime[..], &command].concat()).await?
            }
            Target::Python => {
                let mut command = tokio::process::Command::new(tools::python()?);
                command
                    .arg(tools::python_client("increment_server.py")?)
                    .args(["--addr", "127.0.0.1:0", "--workers", "4"]);
                ChildServer::spawn(command, "python increment_server.py").await?
            }
            Target::GatewayToPython => {
                let python = Box::pin(self.addr(Target::Python, options)).await?;
                let upstream = format!("python=1.0.0@{python}");
                let descriptors = format!("python={}", self.descriptors()?.display());
                let command = [
                    "serve",
                    "--addr",
                    "127.0.0.1:0",
                    "--upstream",
                    &upstream,
                    "--descriptors",
                    &descriptors,
                ];
                ChildServer::testbed(exe, &[&runtime[..], &command].concat()).await?
            }
        };
        if let Some(cpus) = &options.server_cpus {
            let pid = target.pid().context("the server exited as it started")?;
            cpus.pin_process(pid)?;
        }
        let addr = target.addr;
        self.by_name.insert(name, target);
        Ok(addr)
    }
}

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

/// Runs `options.concurrency` chains at once, each on its own connection to `addr`. Every chain
/// warms up first; the measured calls of all begin together, once the last has warmed up.
async fn concurrent<C, F, Fut>(
    options: &BenchOptions,
    addr: SocketAddr,
    connect: F,
) -> anyhow::Result<Vec<Chain>>
where
    C: Incrementer + Send + 'static,
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = anyhow::Result<C>>,
{
    let mut clients = Vec::with_capacity(options.concurrency);
    for _ in 0..options.concurrency {
        clients.push(connect(addr).await?);
    }
    let (warmup, n) = (options.warmup, options.requests);
    let start = Arc::new(Barrier::new(clients.len()));
    at_once(clients, move |mut client| {
        let start = start.clone();
        async move { chains::run(&mut client, warmup, n, Some(&start)).await }
    })
    .await
}

/// As [`concurrent`], for a pair of rows: each of the `options.concurrency` tasks alternates
/// between a client of `a` (made by `connect_a`) and a client of `b` (by `connect_b`; the same
/// client over another transport, say). Each chain's time is its own calls' time.
async fn concurrent_pairs<A, FA, FutA, B, FB, FutB>(
    options: &BenchOptions,
    (a, connect_a): (SocketAddr, FA),
    (b, connect_b): (SocketAddr, FB),
) -> anyhow::Result<[Vec<Chain>; 2]>
where
    A: Incrementer + Send + 'static,
    FA: Fn(SocketAddr) -> FutA,
    FutA: Future<Output = anyhow::Result<A>>,
    B: Incrementer + Send + 'static,
    FB: Fn(SocketAddr) -> FutB,
    FutB: Future<Output = anyhow::Result<B>>,
{
    let mut clients = Vec::with_capacity(options.concurrency);
    for _ in 0..options.concurrency {
        clients.push((connect_a(a).await?, connect_b(b).await?));
    }
    let (warmup, n) = (options.warmup, options.requests);
    let start = Arc::new(Barrier::new(clients.len()));
    let pairs = at_once(clients, move |(mut a, mut b)| {
        let start = start.clone();
        async move { chains::run_interleaved(&mut a, &mut b, warmup, n, Some(&start)).await }
    })
    .await?;
    let (chains_a, chains_b) = pairs.into_iter().unzip();
    Ok([chains_a, chains_b])
}

/// Runs `job` on each of `inputs` as tasks of their own, all at once, and returns their results
/// in the order of `inputs`. The first error ends the others (they may be waiting for it at a
/// barrier) and is returned.
async fn at_once<I, T, J, Fut>(inputs: Vec<I>, job: J) -> anyhow::Result<Vec<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    J: Fn(I) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let job = job(input);
        tasks.spawn(async move { (i, job.await) });
    }
    let mut results: Vec<Option<T>> = std::iter::repeat_with(|| None).take(tasks.len()).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, result) = done.context("a bench chain panicked")?;
        // Returning drops `tasks`, which aborts the chains still running.
        results[i] = Some(result?);
    }
    results
        .into_iter()
        .map(|result| result.context("a bench chain vanished"))
        .collect()
}

/// Runs `options.concurrency` Python bench clients at once against `addr`, each a process of its
/// own (so the GIL does not serialise them), and reads their per-call latencies.
///
/// Each client times its own measured calls (after its own warm-up); the processes start at
/// once, so their measured stretches overlap and the row's wall time is the longest of them.
async fn python_chains(addr: SocketAddr, options: &BenchOptions) -> anyhow::Result<Vec<Chain>> {
    let python = tools::python()?;
    let script = tools::python_client("bench_client.py")?;
    let (requests, warmup) = (options.requests, options.warmup);
    at_once(vec![(); options.concurrency], move |()| {
        let mut command = tokio::process::Command::new(&python);
        command
            .arg(&script)
            .args(["--addr", &addr.to_string()])
            .args(["--requests", &requests.to_string()])
            .args(["--warmup", &warmup.to_string()]);
        let python = python.clone();
        async move {
            let output = command
                .output()
                .await
                .with_context(|| format!("cannot run {}", python.display()))?;
            python_chain(&output, requests)
        }
    })
    .await
}

/// One Python bench client's run, from its output.
fn python_chain(output: &std::process::Output, requests: u64) -> anyhow::Result<Chain> {
    if !output.status.success() {
        anyhow::bail!(
            "python bench client failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    #[derive(serde::Deserialize)]
    struct PythonRun {
        latencies_ns: Vec<u64>,
        #[serde(rename = "final")]
        final_value: i64,
        total_ns: u64,
    }
    let run: PythonRun =
        serde_json::from_slice(&output.stdout).context("python bench client output")?;
    if run.final_value != requests as i64 {
        anyhow::bail!("python chain ended at {}, not {requests}", run.final_value);
    }
    let mut histogram = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3)?;
    for latency in run.latencies_ns {
        histogram.saturating_record(latency);
    }
    Ok(Chain {
        histogram,
        total: Duration::from_nanos(run.total_ns),
        span: None,
        final_value: run.final_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn options(requests: u64, warmup: u64, concurrency: usize) -> BenchOptions {
        BenchOptions {
            requests,
            warmup,
            repeat: 1,
            concurrency,
            rows: Vec::new(),
            cpus: None,
            server_cpus: None,
            halt_poll_ns: None,
            flavor: Flavor::MultiThread,
            progress: None,
            testbed_exe: PathBuf::new(),
        }
    }

    /// An increment that takes `delay` (a sleep, so chains at once overlap), and fails at call
    /// `fail_at` if set.
    struct Slow {
        delay: Duration,
        calls: u64,
        fail_at: Option<u64>,
    }

    impl Slow {
        fn new(delay_ms: u64) -> Self {
            Self {
                delay: Duration::from_millis(delay_ms),
                calls: 0,
                fail_at: None,
            }
        }
    }

    impl Incrementer for Slow {
        async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
            self.calls += 1;
            if self.fail_at == Some(self.calls) {
                anyhow::bail!("call {} failed", self.calls);
            }
            tokio::time::sleep(self.delay).await;
            Ok(value + 1)
        }
    }

    const ANY_ADDR: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

    /// The calls' mean latency as the per-call timer saw it, in µs: independent of the wall
    /// clock the row's calls/s and total come from.
    fn timed_mean_us(chains: &[Chain]) -> f64 {
        let (sum, count) = chains.iter().fold((0.0, 0), |(sum, count), chain| {
            let n = chain.histogram.len();
            (sum + chain.histogram.mean() * n as f64, count + n)
        });
        sum / count as f64 / 1e3
    }

    /// `a` within a factor `1.5` of `b`: figures that should agree, with room for a busy
    /// machine (timer overhead, scheduling) but none for counting four times the calls.
    fn agree(what: &str, a: f64, b: f64) {
        assert!(
            a / b < 1.5 && b / a < 1.5,
            "{what}: {a} and {b} disagree by more than a factor 1.5"
        );
    }

    #[tokio::test]
    async fn calls_per_s_and_total_count_only_the_measured_calls() {
        // Three times as many warm-up calls as measured ones: counting them in the wall time
        // would put calls/s and the total four times off.
        let options = options(20, 60, 1);
        let chains = concurrent(&options, ANY_ADDR, async |_| Ok(Slow::new(2)))
            .await
            .unwrap();
        let row = RowResult::from_chains(Row::Tcp, &chains).unwrap();
        assert_eq!(row.calls, 20);
        let mean = timed_mean_us(&chains);
        // One sequential chain: calls/s is one over the mean latency, the total is the count
        // times the mean, and calls/s is the count over the total.
        agree(
            "calls/s against 1 / timed mean",
            row.calls_per_s,
            1e6 / mean,
        );
        agree(
            "total ms against count × timed mean",
            row.total_ms,
            20.0 * mean / 1e3,
        );
        agree(
            "calls/s against count / total",
            row.calls_per_s,
            row.calls as f64 / (row.total_ms / 1e3),
        );
        agree(
            "calls/s against 1 / mean µs",
            row.calls_per_s,
            1e6 / row.mean_us,
        );
    }

    #[tokio::test]
    async fn chains_at_once_are_timed_together_without_their_warm_up() {
        // Two overlapping chains complete calls twice as fast as one.
        let options = options(20, 60, 2);
        let chains = concurrent(&options, ANY_ADDR, async |_| Ok(Slow::new(2)))
            .await
            .unwrap();
        let row = RowResult::from_chains(Row::Tcp, &chains).unwrap();
        assert_eq!(row.calls, 40);
        let mean = timed_mean_us(&chains);
        agree(
            "calls/s against 2 / timed mean",
            row.calls_per_s,
            2e6 / mean,
        );
        agree(
            "total ms against calls per chain × timed mean",
            row.total_ms,
            20.0 * mean / 1e3,
        );
        agree("mean µs against timed mean", row.mean_us, mean);
    }

    #[tokio::test]
    async fn interleaved_rows_are_timed_by_their_own_calls() {
        let options = options(20, 60, 1);
        let slow = async |_| Ok(Slow::new(2));
        let [a, b] = concurrent_pairs(&options, (ANY_ADDR, slow), (ANY_ADDR, slow))
            .await
            .unwrap();
        for chains in [a, b] {
            let row = RowResult::from_chains(Row::UnaryV2, &chains).unwrap();
            let mean = timed_mean_us(&chains);
            agree(
                "calls/s against 1 / timed mean",
                row.calls_per_s,
                1e6 / mean,
            );
            agree(
                "total ms against count × timed mean",
                row.total_ms,
                20.0 * mean / 1e3,
            );
        }
    }

    #[tokio::test]
    async fn a_chain_that_fails_ends_the_run_instead_of_stranding_the_others() {
        // The second client fails in its warm-up; the first waits for it at the barrier.
        let connected = AtomicUsize::new(0);
        let connect = async |_| {
            let mut client = Slow::new(1);
            if connected.fetch_add(1, Ordering::SeqCst) == 1 {
                client.fail_at = Some(3);
            }
            Ok(client)
        };
        let options = options(20, 10, 2);
        let run = concurrent(&options, ANY_ADDR, connect);
        let result = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("a failed chain left the others waiting");
        let err = result.unwrap_err();
        assert!(err.to_string().contains("call 3 failed"), "{err:#}");
    }

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

    #[test]
    fn row_flags_are_the_command_line_names() {
        assert_eq!(Row::PythonToRust.flag(), "python-to-rust");
        assert_eq!(Row::H2load.flag(), "h2load");
        assert_eq!(Row::UnaryTls.flag(), "unary-tls");
        assert_eq!(Row::StreamPingPongTls.flag(), "stream-ping-pong-tls");
        assert_eq!(Row::Handshake.flag(), "handshake");
        assert!(Row::Tcp.tools().is_ok());
    }
}
