//! Mixed-version client load: N v1 and M v2 clients at once against one address, each a
//! sequential chain (or paced to a rate), every reply verified. Used by `testbed mixed` and, with
//! phases, by `testbed rollout`.
//!
//! Closed loop (the default) a client sends its next request when the previous reply arrives
//! (or at its next tick with `--rate`), and a latency is the call's own time. Open loop
//! (`--open-loop --rate R`, as wrk2 or ghz's constant schedule) request k of a client is due at
//! `start + k / R` whatever happened before, and its latency counts from that intended send
//! time: a stall delays every request scheduled behind it, and they all show it, instead of the
//! client quietly sending less (coordinated omission).
//!
//! Besides the per-phase tallies, every run records a time series per client version: requests
//! completed, failed and p99 per 100 ms ([`Series`]), and when each phase began.
//!
//! A reply is *wrong* when its value is not `sent + step`, its request id is not the one sent,
//! or the version that served it (the router's `x-api-version` response header, or v2's
//! `served_by_version`) is outside the client's requirement. Wrong replies fail the run.

mod calls;
mod chain;
mod report;
mod series;
mod tally;

pub use calls::{CallLog, CallOutcome, CallRecord};
pub use report::LoadReport;
pub use series::{BUCKET, Point, Series};
pub use tally::Tally;

use anyhow::Context;
use chain::ChainClient;
use client::connect;
use semver::VersionReq;
use series::{RawBucket, points};
use services::Api;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a tally names as "served by" when the reply carried no `x-api-version` (a server
/// reached without the router, or a proxy that does not add it).
pub const NO_VERSION_HEADER: &str = "(no version header)";

/// What load to generate; `testbed mixed` takes these as flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadOptions {
    /// v1 clients, each a sequential chain on its own connection.
    #[arg(long, default_value_t = 4)]
    pub v1_clients: usize,
    /// v2 clients, each sending step 5 and request ids.
    #[arg(long, default_value_t = 4)]
    pub v2_clients: usize,
    /// Stop each client after this many requests (else run until stopped).
    #[arg(long = "requests", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests_per_client: Option<u64>,
    /// Pace each client to this many requests per second (default: back to back).
    #[arg(long = "rate", value_parser = positive)]
    pub rate_per_client: Option<f64>,
    /// Open loop: each client sends on a fixed schedule of --rate requests per second and
    /// latencies count from each request's intended send time (wrk2's constant schedule).
    #[arg(long, requires = "rate_per_client")]
    pub open_loop: bool,
    /// x-api-version requirement the v1 clients send (e.g. "^1").
    #[arg(long)]
    pub v1_requirement: Option<VersionReq>,
    /// x-api-version requirement the v2 clients send; replies from other versions count as
    /// wrong.
    #[arg(long, default_value = "^2")]
    pub v2_requirement: Option<VersionReq>,
    /// v2 clients wait until health reports `increment.v2.Incrementer` SERVING before their first
    /// call, as a careful client of a service that may not be deployed yet would.
    #[arg(skip)]
    pub v2_waits_for_health: bool,
    /// Where each client notes its calls that did not succeed promptly (`testbed chaos` reads
    /// when calls failed from it).
    #[arg(skip)]
    pub call_log: Option<CallLog>,
}

/// A flag value that must be a positive, finite number.
pub fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        Ok(value) => Err(format!("must be a positive number, got {value}")),
        Err(err) => Err(format!("{text:?} is not a number: {err}")),
    }
}

/// Sends one increment of each version that has clients to `addr` before any load, and fails
/// when the server there does not serve it (`UNIMPLEMENTED`): a gateway of another API, say,
/// whose every call would fail.
pub async fn check_serves(addr: SocketAddr, options: &LoadOptions) -> anyhow::Result<()> {
    for (api, clients) in [(Api::V1, options.v1_clients), (Api::V2, options.v2_clients)] {
        if clients == 0 {
            continue;
        }
        let channel = connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let client = ChainClient::new(api, channel, options);
        if let Err(status) = client.first_call().await
            && status.code() == tonic::Code::Unimplemented
        {
            anyhow::bail!(
                "{addr} does not serve the Incrementer example's {} (UNIMPLEMENTED: {}); nothing was loaded. `testbed mixed` loads that example; for your own API give --traffic FILE --old grpc://OLD",
                api.package(),
                status.message()
            );
        }
    }
    Ok(())
}

/// One client's API version, its tally per phase and its time series.
type ClientTallies = (Api, Vec<Tally>, Vec<RawBucket>);

/// A load run in progress.
#[derive(Debug)]
pub struct Load {
    settings: LoadOptions,
    stop: watch::Sender<bool>,
    phase: Arc<AtomicUsize>,
    phases: Vec<String>,
    phase_starts: Vec<Duration>,
    completed: Arc<AtomicU64>,
    started: Instant,
    tasks: Vec<JoinHandle<anyhow::Result<ClientTallies>>>,
}

impl Load {
    /// Connects every client to `addr` and starts them; the first phase is named `phase`.
    pub async fn start(
        addr: SocketAddr,
        options: &LoadOptions,
        phase: &str,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let current = Arc::new(AtomicUsize::new(0));
        let completed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        let started = Instant::now();
        let apis = std::iter::repeat_n(Api::V1, options.v1_clients)
            .chain(std::iter::repeat_n(Api::V2, options.v2_clients));
        for api in apis {
            let channel = connect(addr)
                .await
                .with_context(|| format!("cannot connect a load client to {addr}"))?;
            let client = ChainClient::new(api, channel, options);
            let stopped = stopped.clone();
            let (current, completed) = (current.clone(), completed.clone());
            tasks.push(tokio::spawn(
                client.run(stopped, current, completed, started),
            ));
        }
        Ok(Self {
            settings: options.clone(),
            stop,
            phase: current,
            phases: vec![phase.to_string()],
            phase_starts: vec![Duration::ZERO],
            completed,
            started,
            tasks,
        })
    }

    /// Starts a new phase: requests sent from now on are counted under `name`.
    pub fn next_phase(&mut self, name: &str) {
        self.phases.push(name.to_string());
        self.phase_starts.push(self.started.elapsed());
        self.phase.store(self.phases.len() - 1, Ordering::Release);
    }

    /// When the load started: the origin of [`CallRecord::sent`].
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Requests completed so far (verified or not).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Whether every client has finished by itself (after its request count).
    pub fn finished(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }

    /// Stops the clients (each finishes its call in flight) and gathers the figures.
    pub async fn stop(self) -> anyhow::Result<LoadReport> {
        // Clients that already finished no longer listen; that is fine.
        let _ = self.stop.send(true);
        let mut tallies: Vec<[Tally; 2]> = (0..self.phases.len())
            .map(|_| [Tally::new(), Tally::new()])
            .collect();
        let seconds = self.started.elapsed().as_secs_f64();
        let mut raw: [Vec<Vec<RawBucket>>; 2] = [Vec::new(), Vec::new()];
        for task in self.tasks {
            let (api, phases, buckets) = task.await.context("a load client panicked")??;
            let column = usize::from(api == Api::V2);
            for (phase, tally) in phases.iter().enumerate() {
                tallies[phase][column].merge(tally);
            }
            raw[column].push(buckets);
        }
        let buckets = raw.iter().flatten().map(Vec::len).max().unwrap_or(0);
        let series_of = |column: usize| points(&raw[column].iter().collect::<Vec<_>>(), buckets);
        let series = Series {
            bucket_ms: BUCKET.as_millis() as u64,
            phase_starts_s: self
                .phase_starts
                .iter()
                .map(Duration::as_secs_f64)
                .collect(),
            v1: series_of(0),
            v2: series_of(1),
        };
        Ok(LoadReport {
            settings: self.settings,
            phases: self.phases,
            tallies,
            seconds,
            series,
        })
    }
}
