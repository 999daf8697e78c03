//! Mixed-version client load: N v1 and M v2 clients at once against one address, each a
//! sequential chain (or paced to a rate), every reply verified. Used by `testbed mixed` and, with
//! phases, by `testbed rollout`.
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
        }
        let totals = self.totals();
        let options = &self.settings;
        Json {
            settings: Settings {
                v1_clients: options.v1_clients,
                v2_clients: options.v2_clients,
                requests_per_client: options.requests_per_client,
                rate_per_client: options.rate_per_client,
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
        let mut out = format!("{table}\n");
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

/// One client's API version and its tally per phase.
type ClientTallies = (Api, Vec<Tally>);

/// A load run in progress.
#[derive(Debug)]
pub struct Load {
    settings: LoadOptions,
    stop: watch::Sender<bool>,
    phase: Arc<AtomicUsize>,
    phases: Vec<String>,
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
        let apis = std::iter::repeat_n(Api::V1, options.v1_clients)
            .chain(std::iter::repeat_n(Api::V2, options.v2_clients));
        for api in apis {
            let channel = connect(addr)
                .await
                .with_context(|| format!("cannot connect a load client to {addr}"))?;
            let client = ChainClient::new(api, channel, options);
            let stopped = stopped.clone();
            let (current, completed) = (current.clone(), completed.clone());
            tasks.push(tokio::spawn(client.run(stopped, current, completed)));
        }
        Ok(Self {
            settings: options.clone(),
            stop,
            phase: current,
            phases: vec![phase.to_string()],
            completed,
            started: Instant::now(),
            tasks,
        })
    }

    /// Starts a new phase: requests sent from now on are counted under `name`.
    pub fn next_phase(&mut self, name: &str) {
        self.phases.push(name.to_string());
        self.phase.store(self.phases.len() - 1, Ordering::Release);
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
        for task in self.tasks {
            let (api, phases) = task.await.context("a load client panicked")??;
            let column = usize::from(api == Api::V2);
            for (phase, tally) in phases.iter().enumerate() {
                tallies[phase][column].merge(tally);
            }
        }
        Ok(LoadReport {
            settings: self.settings,
            phases: self.phases,
            tallies,
            seconds: self.started.elapsed().as_secs_f64(),
        })
    }
}

/// One client's chain.
struct ChainClient {
    client: IncrementerClient,
    requirement: Option<VersionReq>,
    limit: Option<u64>,
    pace: Option<Duration>,
    wait_for_health: bool,
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
            wait_for_health: api == Api::V2 && options.v2_waits_for_health,
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
    ) -> anyhow::Result<ClientTallies> {
        let mut tallies: Vec<Tally> = Vec::new();
        if self.wait_for_health {
            self.wait_until_serving(&mut stopped).await?;
        }
        let mut pacing = self.pace.map(tokio::time::interval);
        let (mut value, mut sent) = (0i64, 0u64);
        while !*stopped.borrow() && self.limit.is_none_or(|limit| sent < limit) {
            if let Some(interval) = pacing.as_mut() {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.changed() => break,
                }
            }
            sent += 1;
            let current = phase.load(Ordering::Acquire);
            if tallies.len() <= current {
                tallies.resize_with(current + 1, Tally::new);
            }
            let tally = &mut tallies[current];
            tally.requests += 1;
            let started = Instant::now();
            let result = self.call(value, sent).await;
            let elapsed = started.elapsed();
            completed.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok(answer) => match self.verify(value, sent, &answer) {
                    None => {
                        tally.ok += 1;
                        tally.histogram.saturating_record(elapsed.as_nanos() as u64);
                        let served_by = answer.served_by.unwrap_or_else(|| "direct".into());
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
        Ok((self.api(), tallies))
    }
}
