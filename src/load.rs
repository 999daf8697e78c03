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

use crate::matrix::{STEP, code_name};
use anyhow::Context;
use client::{IncrementerClient, Reply, connect};
use hdrhistogram::Histogram;
use semver::{Version, VersionReq};
use serde::Serialize;
use services::Api;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

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

/// How one noted call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// Verified, but slower than the log's threshold.
    Slow,
    /// Failed with this status code (its name).
    Failed(String),
    /// Answered, but wrongly.
    Wrong,
}

/// One call a [`CallLog`] noted.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The client's API version.
    pub api: Api,
    /// When it was sent, since the load started.
    pub sent: Duration,
    /// How long it took.
    pub took: Duration,
    /// How it ended.
    pub outcome: CallOutcome,
}

impl CallRecord {
    /// When it ended, since the load started.
    pub fn done(&self) -> Duration {
        self.sent + self.took
    }
}

/// The calls of a load run that failed, were answered wrongly or took longer than `slow`,
/// shared by its clients. Verified prompt calls are not noted, so a run of millions of calls
/// keeps only its incidents.
#[derive(Debug, Clone)]
pub struct CallLog {
    slow: Duration,
    calls: Arc<std::sync::Mutex<Vec<CallRecord>>>,
    /// Per client version, verified calls that ended in each [`CallLog::TICK`] of the run.
    verified: Arc<[std::sync::Mutex<Vec<u32>>; 2]>,
}

impl CallLog {
    /// A log noting verified calls slower than `slow` besides every failed or wrong one.
    pub fn new(slow: Duration) -> Self {
        Self {
            slow,
            calls: Arc::default(),
            verified: Arc::default(),
        }
    }

    /// The resolution at which verified calls are counted.
    pub const TICK: Duration = Duration::from_millis(10);

    /// Records one call of `api` sent at `sent` (since the load started) that took `took`:
    /// counted as verified when `failed` is `None` (and noted too when slow), noted when it
    /// failed or was wrong.
    pub fn record(&self, api: Api, sent: Duration, took: Duration, failed: Option<CallOutcome>) {
        if failed.is_none() {
            self.verified(api, sent + took);
        }
        if let Some(outcome) = failed.or(Some(CallOutcome::Slow).filter(|_| took > self.slow)) {
            self.note(CallRecord {
                api,
                sent,
                took,
                outcome,
            });
        }
    }

    fn verified(&self, api: Api, done: Duration) {
        let tick = (done.as_nanos() / Self::TICK.as_nanos()) as usize;
        let mut ticks = self.verified[api as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if ticks.len() <= tick {
            ticks.resize(tick + 1, 0);
        }
        ticks[tick] += 1;
    }

    /// Verified calls of `api` that ended in each [`TICK`](Self::TICK) since the load started.
    pub fn verified_per_tick(&self, api: Api) -> Vec<u32> {
        self.verified[api as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn note(&self, record: CallRecord) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    /// The calls noted so far, in the order they ended.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A flag value that must be a positive, finite number.
pub fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        Ok(value) => Err(format!("must be a positive number, got {value}")),
        Err(err) => Err(format!("{text:?} is not a number: {err}")),
    }
}

/// One client version's figures in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Tally {
    /// Requests sent.
    pub requests: u64,
    /// Replies that verified.
    pub ok: u64,
    /// Failed calls by status code name, with one message each.
    pub errors: BTreeMap<String, (u64, String)>,
    /// Replies that did not verify.
    pub wrong: u64,
    /// The first few wrong replies, described.
    pub wrong_examples: Vec<String>,
    /// Replies per serving version.
    pub served_by: BTreeMap<String, u64>,
    /// Median latency of verified replies, µs (`None` when nothing was answered correctly).
    pub p50_us: Option<f64>,
    /// 99th percentile, µs.
    pub p99_us: Option<f64>,
    /// Slowest, µs.
    pub max_us: Option<f64>,
    #[serde(skip)]
    histogram: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            requests: 0,
            ok: 0,
            errors: BTreeMap::new(),
            wrong: 0,
            wrong_examples: Vec::new(),
            served_by: BTreeMap::new(),
            p50_us: None,
            p99_us: None,
            max_us: None,
            histogram: Histogram::new_with_bounds(1, 600_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.wrong += other.wrong;
        for (code, (count, message)) in &other.errors {
            let entry = self
                .errors
                .entry(code.clone())
                .or_insert((0, message.clone()));
            entry.0 += count;
        }
        let room = 5usize.saturating_sub(self.wrong_examples.len());
        self.wrong_examples
            .extend(other.wrong_examples.iter().take(room).cloned());
        for (version, count) in &other.served_by {
            *self.served_by.entry(version.clone()).or_default() += count;
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        let measured = !self.histogram.is_empty();
        let us = |ns: u64| Some(ns as f64 / 1e3).filter(|_| measured);
        self.p50_us = us(self.histogram.value_at_quantile(0.5));
        self.p99_us = us(self.histogram.value_at_quantile(0.99));
        self.max_us = us(self.histogram.max());
    }

    /// Failed calls, all codes together.
    pub fn failed(&self) -> u64 {
        self.errors.values().map(|(count, _)| count).sum()
    }
}

/// A latency for a table: one decimal, or `–` when nothing was measured.
fn micros(us: Option<f64>) -> String {
    us.map_or_else(|| "–".to_string(), |us| format!("{us:.1}"))
}

/// Width of one time-series bucket.
pub const BUCKET: Duration = Duration::from_millis(100);

/// One client version's figures in one [`BUCKET`] of the run (by completion time).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Point {
    /// Requests completed in the bucket (verified, failed or wrong).
    pub requests: u64,
    /// Of those, failed with a status or answered wrongly.
    pub failed: u64,
    /// 99th percentile of the verified replies' latencies, µs (`None`: none verified).
    pub p99_us: Option<f64>,
}

/// The run over time: one [`Point`] per [`BUCKET`] and client version, from the start of the
/// load, and when each phase began.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    /// Bucket width, ms.
    pub bucket_ms: u64,
    /// When each phase began, s from the start of the load (the first is 0).
    pub phase_starts_s: Vec<f64>,
    /// v1 clients, bucket by bucket.
    pub v1: Vec<Point>,
    /// v2 clients, bucket by bucket.
    pub v2: Vec<Point>,
}

/// What one client saw in one bucket: verified latencies (µs) and failures.
#[derive(Debug, Clone, Default)]
struct RawBucket {
    latencies_us: Vec<f32>,
    failed: u64,
}

/// Merges clients' buckets into points: the p99 is taken over every verified reply of the
/// bucket (nearest rank).
fn points(clients: &[&Vec<RawBucket>], buckets: usize) -> Vec<Point> {
    (0..buckets)
        .map(|i| {
            let mut latencies: Vec<f32> = Vec::new();
            let mut failed = 0;
            for client in clients {
                if let Some(bucket) = client.get(i) {
                    latencies.extend_from_slice(&bucket.latencies_us);
                    failed += bucket.failed;
                }
            }
            latencies.sort_by(f32::total_cmp);
            let p99_us = (!latencies.is_empty()).then(|| {
                let rank = ((latencies.len() as f64) * 0.99).ceil() as usize;
                f64::from(latencies[rank.clamp(1, latencies.len()) - 1])
            });
            Point {
                requests: latencies.len() as u64 + failed,
                failed,
                p99_us,
            }
        })
        .collect()
}

/// Everything a load run saw: per phase, per client version.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// What was run.
    pub settings: LoadOptions,
    /// Phase names, in order.
    pub phases: Vec<String>,
    /// `tallies[phase]` holds the v1 and the v2 tally of that phase.
    pub tallies: Vec<[Tally; 2]>,
    /// Wall time of the run, s.
    pub seconds: f64,
    /// The run over time, per 100 ms.
    pub series: Series,
}

/// The v1 and v2 figures of something, keyed by version in JSON.
#[derive(Serialize)]
struct ByVersion<'a> {
    v1: &'a Tally,
    v2: &'a Tally,
}

impl Serialize for LoadReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Phase<'a> {
            name: &'a str,
            #[serde(flatten)]
            tallies: ByVersion<'a>,
        }
        #[derive(Serialize)]
        struct Settings {
            v1_clients: usize,
            v2_clients: usize,
            requests_per_client: Option<u64>,
            rate_per_client: Option<f64>,
            open_loop: bool,
            v1_requirement: Option<String>,
            v2_requirement: Option<String>,
            v2_waits_for_health: bool,
        }
        #[derive(Serialize)]
        struct Json<'a> {
            settings: Settings,
            seconds: f64,
            phases: Vec<Phase<'a>>,
            totals: ByVersion<'a>,
            series: &'a Series,
        }
        let totals = self.totals();
        let options = &self.settings;
        Json {
            settings: Settings {
                v1_clients: options.v1_clients,
                v2_clients: options.v2_clients,
                requests_per_client: options.requests_per_client,
                rate_per_client: options.rate_per_client,
                open_loop: options.open_loop,
                v1_requirement: options.v1_requirement.as_ref().map(ToString::to_string),
                v2_requirement: options.v2_requirement.as_ref().map(ToString::to_string),
                v2_waits_for_health: options.v2_waits_for_health,
            },
            seconds: self.seconds,
            phases: self
                .phases
                .iter()
                .zip(&self.tallies)
                .map(|(name, [v1, v2])| Phase {
                    name,
                    tallies: ByVersion { v1, v2 },
                })
                .collect(),
            totals: ByVersion {
                v1: &totals[0],
                v2: &totals[1],
            },
            series: &self.series,
        }
        .serialize(serializer)
    }
}

impl LoadReport {
    /// All phases together, v1 then v2.
    pub fn totals(&self) -> [Tally; 2] {
        let mut totals = [Tally::new(), Tally::new()];
        for phase in &self.tallies {
            totals[0].merge(&phase[0]);
            totals[1].merge(&phase[1]);
        }
        totals
    }

    /// Whether every request got a verified reply.
    pub fn clean(&self) -> bool {
        self.totals()
            .iter()
            .all(|t| t.wrong == 0 && t.failed() == 0)
    }

    /// The report as a terminal table.
    pub fn render(&self) -> String {
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        table.set_header([
            "phase",
            "clients",
            "requests",
            "ok",
            "failed",
            "wrong",
            "p50 µs",
            "p99 µs",
            "max µs",
            "served by",
        ]);
        let mut add = |phase: &str, api: &str, t: &Tally| {
            let errors: Vec<String> = t
                .errors
                .iter()
                .map(|(code, (count, _))| format!("{count} {code}"))
                .collect();
            let served: Vec<String> = t
                .served_by
                .iter()
                .map(|(v, n)| format!("{v}: {n}"))
                .collect();
            table.add_row([
                phase.to_string(),
                api.to_string(),
                t.requests.to_string(),
                t.ok.to_string(),
                if errors.is_empty() {
                    "0".into()
                } else {
                    errors.join(", ")
                },
                t.wrong.to_string(),
                micros(t.p50_us),
                micros(t.p99_us),
                micros(t.max_us),
                served.join(", "),
            ]);
        };
        for (name, [v1, v2]) in self.phases.iter().zip(&self.tallies) {
            add(name, "v1", v1);
            add(name, "v2", v2);
        }
        let [v1, v2] = self.totals();
        add("all", "v1", &v1);
        add("all", "v2", &v2);
        let mut out = match (self.settings.open_loop, self.settings.rate_per_client) {
            (true, Some(rate)) => format!(
                "open loop, {rate} requests/s per client on a fixed schedule; latencies from \
                 each request's intended send time\n"
            ),
            (false, Some(rate)) => format!("closed loop, each client paced to {rate}/s\n"),
            _ => "closed loop, each client back to back\n".to_string(),
        };
        out.push_str(&format!("{table}\n"));
        let total = v1.requests + v2.requests;
        out.push_str(&format!(
            "{total} requests in {:.1} s ({:.0}/s); {} failed, {} wrong\n",
            self.seconds,
            total as f64 / self.seconds.max(1e-9),
            v1.failed() + v2.failed(),
            v1.wrong + v2.wrong
        ));
        for example in v1.wrong_examples.iter().chain(&v2.wrong_examples) {
            out.push_str(&format!("wrong: {example}\n"));
        }
        for (code, (_, message)) in v1.errors.iter().chain(&v2.errors) {
            out.push_str(&format!("{code}: {message}\n"));
        }
        out
    }
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

/// One client's chain.
struct ChainClient {
    client: IncrementerClient,
    requirement: Option<VersionReq>,
    limit: Option<u64>,
    pace: Option<Duration>,
    open_loop: bool,
    wait_for_health: bool,
    log: Option<CallLog>,
}

impl ChainClient {
    fn new(api: Api, channel: tonic::transport::Channel, options: &LoadOptions) -> Self {
        let requirement = match api {
            Api::V1 => options.v1_requirement.clone(),
            Api::V2 => options.v2_requirement.clone(),
        };
        let mut client = IncrementerClient::new(api, channel);
        if let Some(requirement) = &requirement {
            client = client.with_requirement(requirement);
        }
        Self {
            client,
            requirement,
            limit: options.requests_per_client,
            pace: options
                .rate_per_client
                .map(|rate| Duration::from_secs_f64(1.0 / rate)),
            open_loop: options.open_loop && options.rate_per_client.is_some(),
            wait_for_health: api == Api::V2 && options.v2_waits_for_health,
            log: options.call_log.clone(),
        }
    }

    fn api(&self) -> Api {
        self.client.api()
    }

    /// The step this client's version applies (v1 has none: 1).
    fn step(&self) -> i64 {
        match self.api() {
            Api::V1 => 1,
            Api::V2 => STEP,
        }
    }

    async fn call(&self, value: i64, request_id: u64) -> Result<Reply, Status> {
        let step = Some(self.step()).filter(|_| self.api() == Api::V2);
        self.client.increment(value, step, request_id).await
    }

    /// Why `answer` is wrong for a request of `value` with id `request_id`, if it is.
    fn verify(&self, value: i64, request_id: u64, answer: &Reply) -> Option<String> {
        let want = value + self.step();
        if answer.value != want {
            return Some(format!(
                "sent {value}, got {} instead of {want}",
                answer.value
            ));
        }
        if answer.request_id != request_id {
            return Some(format!(
                "request {request_id} answered as {}",
                answer.request_id
            ));
        }
        let (Some(requirement), Some(served_by)) = (&self.requirement, &answer.served_by) else {
            return None;
        };
        match Version::parse(served_by) {
            Ok(version) if requirement.matches(&version) => None,
            Ok(version) => Some(format!("served by {version}, outside {requirement}")),
            Err(_) => Some(format!("served by {served_by:?}, not a version")),
        }
    }

    async fn wait_until_serving(&self, stopped: &mut watch::Receiver<bool>) -> Result<(), Status> {
        let mut health = HealthClient::new(self.client.channel().clone());
        let request = HealthCheckRequest {
            service: services::V2_SERVICE.to_string(),
        };
        let mut updates = health.watch(request).await?.into_inner();
        loop {
            tokio::select! {
                update = updates.message() => match update? {
                    Some(update) if update.status() == ServingStatus::Serving => return Ok(()),
                    Some(_) => {}
                    None => return Err(Status::unavailable("health watch ended")),
                },
                _ = stopped.changed() => return Ok(()),
            }
        }
    }

    async fn run(
        self,
        mut stopped: watch::Receiver<bool>,
        phase: Arc<AtomicUsize>,
        completed: Arc<AtomicU64>,
        load_started: Instant,
    ) -> anyhow::Result<ClientTallies> {
        let mut tallies: Vec<Tally> = Vec::new();
        let mut buckets: Vec<RawBucket> = Vec::new();
        if self.wait_for_health {
            self.wait_until_serving(&mut stopped).await?;
        }
        let mut pacing = self
            .pace
            .filter(|_| !self.open_loop)
            .map(tokio::time::interval);
        // Open loop: request k (from 0) is due at schedule_start + k × pace.
        let schedule_start = tokio::time::Instant::now();
        let (mut value, mut sent) = (0i64, 0u64);
        while !*stopped.borrow() && self.limit.is_none_or(|limit| sent < limit) {
            let mut intended = None;
            if let Some(interval) = pacing.as_mut() {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.changed() => break,
                }
            } else if let Some(pace) = self.pace.filter(|_| self.open_loop) {
                let due = schedule_start + pace.mul_f64(sent as f64);
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stopped.changed() => break,
                }
                intended = Some(due.into_std());
            }
            sent += 1;
            let current = phase.load(Ordering::Acquire);
            if tallies.len() <= current {
                tallies.resize_with(current + 1, Tally::new);
            }
            let tally = &mut tallies[current];
            tally.requests += 1;
            let started = intended.unwrap_or_else(Instant::now);
            let result = self.call(value, sent).await;
            let elapsed = started.elapsed();
            completed.fetch_add(1, Ordering::Relaxed);
            let index = (load_started.elapsed().as_millis() / BUCKET.as_millis()) as usize;
            if buckets.len() <= index {
                buckets.resize_with(index + 1, RawBucket::default);
            }
            let bucket = &mut buckets[index];
            let outcome = match &result {
                Ok(answer) if self.verify(value, sent, answer).is_none() => {
                    bucket
                        .latencies_us
                        .push((elapsed.as_nanos() as f64 / 1e3) as f32);
                    None
                }
                Ok(_) => Some(CallOutcome::Wrong),
                Err(status) => Some(CallOutcome::Failed(code_name(status.code()))),
            };
            bucket.failed += u64::from(outcome.is_some());
            if let Some(log) = &self.log {
                let sent = started.saturating_duration_since(load_started);
                log.record(self.api(), sent, elapsed, outcome);
            }
            match result {
                Ok(answer) => match self.verify(value, sent, &answer) {
                    None => {
                        tally.ok += 1;
                        tally.histogram.saturating_record(elapsed.as_nanos() as u64);
                        let served_by =
                            answer.served_by.unwrap_or_else(|| NO_VERSION_HEADER.into());
                        *tally.served_by.entry(served_by).or_default() += 1;
                        value = answer.value;
                    }
                    Some(why) => {
                        tally.wrong += 1;
                        if tally.wrong_examples.len() < 5 {
                            tally
                                .wrong_examples
                                .push(format!("{} client: {why}", self.api()));
                        }
                    }
                },
                Err(status) => {
                    let entry = tally
                        .errors
                        .entry(code_name(status.code()))
                        .or_insert((0, status.message().to_string()));
                    entry.0 += 1;
                }
            }
        }
        Ok((self.api(), tallies, buckets))
    }
}
