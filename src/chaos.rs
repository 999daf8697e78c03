//! `testbed chaos`: faults injected into a running gateway's backends under mixed-version load,
//! with the gateway's health watched all along, to see that no reply is ever wrong, that calls
//! fail only while a fault lasts, and that health tells the truth about what calls see.
//!
//! Four `testbed serve` processes: the gateway (`--upstream ... --admin-addr`) and three
//! backends behind it, `v1=1.0.0` (the only one of increment.v1), `v2a=2.0.0` and
//! `v2b=2.1.0` (two of increment.v2: unpinned v2 calls go to v2b, the highest, and can move to
//! v2a when v2b is gone). This process runs v1 and v2 clients (every reply verified, as
//! `testbed mixed`), watches `grpc.health.v1.Health/Watch` of both services on the gateway,
//! and injects in turn, each fault lasting `--fault-ms`:
//!
//! 1. SIGKILL of v1, then v1 restarted on the same port;
//! 2. SIGSTOP of v1, then SIGCONT;
//! 3. and 4. the same two for v2b;
//! 5. drain, remove and add again of v2b through the admin API;
//! 6. replace: a new v1 process put in the old one's place (admin Replace), the old one
//!    stopped by SIGTERM.
//!
//! A fault's window runs from the injection to `--settle-ms` after it was undone. The run
//! repeats the cycle until `--cycles` are done and the clients made `--requests` in all. Health
//! is *truthful* while it says SERVING as calls of its API succeed and NOT_SERVING as they fail
//! or hang (a call slower than `--slow-ms` counts as hanging); every span where it was not is a
//! disagreement, its length the lag. The run fails when a reply was wrong, a call failed outside
//! every window, or a disagreement lasted longer than `--health-target-ms`.

pub mod timeline;

use crate::cli::JsonOut;
use crate::load::{CallLog, CallOutcome, CallRecord, Load, LoadOptions, LoadReport};
use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use port::admin::AdminClient;
use port::admin::pb::{AddRequest, DrainRequest, RemoveRequest, ReplaceRequest};
use port::child::{ChildServer, Signal};
use serde::Serialize;
use services::Api;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timeline::{Disagreement, HealthEvent, Kind, Span, ms};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// `testbed chaos`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// v1 clients, each a sequential chain on its own connection.
    #[arg(long, default_value_t = 4)]
    pub v1_clients: usize,
    /// v2 clients (unpinned within ^2, so selection may move between v2a and v2b).
    #[arg(long, default_value_t = 4)]
    pub v2_clients: usize,
    /// Repeat the fault cycle until the clients have made this many requests in all.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Fault cycles to run at least.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub cycles: u32,
    /// How long each fault lasts (a killed backend stays down, a stopped one stopped), ms.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub fault_ms: u64,
    /// How long a fault's window stays open after the fault was undone, ms: failures and
    /// health changes then still belong to the fault.
    #[arg(long, default_value_t = 2000)]
    pub settle_ms: u64,
    /// Quiet time before the first fault and between two windows, ms: calls must not fail then.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub steady_ms: u64,
    /// Longest health may disagree with what calls see, ms; a longer lag fails the run.
    #[arg(long, default_value_t = 200)]
    pub health_target_ms: u64,
    /// A verified call slower than this counts as hanging (health should then not say
    /// SERVING), ms.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub slow_ms: u64,
    /// Also write the report as JSON to this file (`-`: stdout).
    #[arg(long, value_parser = JsonOut::parse)]
    pub json: Option<JsonOut>,
}

impl ChaosArgs {
    /// The defaults of the flags, as `testbed chaos` without any.
    pub fn defaults() -> Self {
        <Self as clap::FromArgMatches>::from_arg_matches(
            &<Self as clap::Args>::augment_args(clap::Command::new("chaos"))
                .get_matches_from(["chaos"]),
        )
        .unwrap_or_else(|err| unreachable!("the defaults of testbed chaos parse: {err}"))
    }
}

/// The faults of one cycle, in order: what is done, and to which backend.
const CYCLE: [(Fault, &str); 6] = [
    (Fault::Kill, "v1"),
    (Fault::Stop, "v1"),
    (Fault::Kill, "v2b"),
    (Fault::Stop, "v2b"),
    (Fault::DrainRemoveAdd, "v2b"),
    (Fault::Replace, "v1"),
];

/// What is done to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// SIGKILL, then a new process on the same port.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Stop,
    /// Admin Drain, Remove, then Add of the same upstream.
    DrainRemoveAdd,
    /// A new process of the same backend put in its place (admin Replace), the old one
    /// stopped by SIGTERM.
    Replace,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill+restart",
            Fault::Stop => "stop+continue",
            Fault::DrainRemoveAdd => "drain+remove+add",
            Fault::Replace => "replace",
        }
    }
}

/// One backend process behind the gateway.
#[derive(Debug)]
struct Backend {
    name: &'static str,
    version: &'static str,
    api: Api,
    /// Where it listens; a restarted process listens there again.
    addr: SocketAddr,
    /// `None` while it is killed.
    child: Option<ChildServer>,
}

impl Backend {
    /// `testbed serve --backend API --addr ADDR`; a port freed just now may be taken by
    /// another process for a moment, so a start on a given port is tried a few times.
    async fn start(exe: &Path, api: Api, addr: SocketAddr) -> anyhow::Result<ChildServer> {
        let addr = addr.to_string();
        let args = ["serve", "--backend", api.name(), "--addr", &addr];
        let mut tries = 0;
        loop {
            match ChildServer::testbed(exe, &args).await {
                Ok(child) => return Ok(child),
                Err(_) if tries < 20 => tries += 1,
                Err(err) => return Err(err.context(format!("cannot start {api} on {addr}"))),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn upstream(&self) -> String {
        format!("{}={}@{}", self.name, self.version, self.addr)
    }

    fn process(&self) -> anyhow::Result<&ChildServer> {
        self.child
            .as_ref()
            .with_context(|| format!("backend {} is not running", self.name))
    }
}

/// The gateway, its admin API and the backends.
#[derive(Debug)]
struct Fleet {
    exe: PathBuf,
    gateway: ChildServer,
    admin: AdminClient,
    backends: Vec<Backend>,
}

impl Fleet {
    async fn start(exe: &Path) -> anyhow::Result<Self> {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut backends = Vec::new();
        for (name, version, api) in [
            ("v1", "1.0.0", Api::V1),
            ("v2a", "2.0.0", Api::V2),
            ("v2b", "2.1.0", Api::V2),
        ] {
            let child = Backend::start(exe, api, any).await?;
            backends.push(Backend {
                name,
                version,
                api,
                addr: child.addr,
                child: Some(child),
            });
        }
        let upstreams: Vec<String> = backends.iter().map(Backend::upstream).collect();
        let (gateway, admin, _) = crate::rollout::gateway_process(exe, &upstreams).await?;
        Ok(Self {
            exe: exe.to_path_buf(),
            gateway,
            admin,
            backends,
        })
    }

    fn backend(&mut self, name: &str) -> anyhow::Result<&mut Backend> {
        self.backends
            .iter_mut()
            .find(|b| b.name == name)
            .with_context(|| format!("no backend {name}"))
    }

    /// Injects `fault` into backend `name`, holds it for `hold`, undoes it; returns when it
    /// was undone.
    async fn inject(&mut self, fault: Fault, name: &str, hold: Duration) -> anyhow::Result<()> {
        let refused = |call: &'static str| {
            move |status: tonic::Status| anyhow::anyhow!("the gateway refused {call}: {status:?}")
        };
        let exe = self.exe.clone();
        let backend = self.backend(name)?;
        let (api, addr) = (backend.api, backend.addr);
        match fault {
            Fault::Kill => {
                if let Some(child) = backend.child.take() {
                    child.kill().await?;
                }
                tokio::time::sleep(hold).await;
                backend.child = Some(Backend::start(&exe, api, addr).await?);
            }
            Fault::Stop => {
                backend.process()?.signal(Signal::SIGSTOP)?;
                tokio::time::sleep(hold).await;
                backend.process()?.signal(Signal::SIGCONT)?;
            }
            Fault::DrainRemoveAdd => {
                let upstream = backend.upstream();
                let timeout_ms = u32::try_from(hold.as_millis()).unwrap_or(u32::MAX);
                let name = name.to_string();
                self.admin
                    .drain(DrainRequest {
                        name: name.clone(),
                        timeout_ms,
                    })
                    .await
                    .map_err(refused("Drain"))?;
                self.admin
                    .remove(RemoveRequest { name })
                    .await
                    .map_err(refused("Remove"))?;
                tokio::time::sleep(hold / 2).await;
                self.admin
                    .add(AddRequest {
                        upstream,
                        descriptor_set: Vec::new(),
                    })
                    .await
                    .map_err(refused("Add"))?;
            }
            Fault::Replace => {
                let fresh = Backend::start(&exe, api, ([127, 0, 0, 1], 0).into()).await?;
                backend.addr = fresh.addr;
                let old = backend.child.replace(fresh);
                let upstream = backend.upstream();
                self.admin
                    .replace(ReplaceRequest {
                        upstream,
                        descriptor_set: Vec::new(),
                    })
                    .await
                    .map_err(refused("Replace"))?;
                tokio::time::sleep(hold).await;
                if let Some(old) = old {
                    old.terminate().await?;
                }
            }
        }
        Ok(())
    }

    async fn shutdown(self) -> anyhow::Result<()> {
        self.gateway.terminate().await?;
        for child in self.backends.into_iter().filter_map(|b| b.child) {
            child.kill().await?;
        }
        Ok(())
    }
}

/// Watches `service` on the gateway, noting each status that differs from the last.
async fn watch_health(
    addr: SocketAddr,
    service: &'static str,
    origin: Instant,
    events: Arc<Mutex<Vec<HealthEvent>>>,
) -> anyhow::Result<()> {
    let mut health = HealthClient::new(client::connect(addr).await?);
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let mut updates = health.watch(request).await?.into_inner();
    while let Some(update) = updates.message().await? {
        let status = update.status().as_str_name().to_string();
        let mut events = events.lock().unwrap_or_else(|e| e.into_inner());
        if events.last().is_none_or(|e| e.status != status) {
            events.push(HealthEvent {
                at: origin.elapsed(),
                status,
            });
        }
    }
    Ok(())
}

/// One fault, as it was injected and what was seen during its window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// What was done.
    pub fault: Fault,
    /// To which backend.
    pub backend: String,
    /// The API version that backend serves.
    pub api: String,
    /// When it was injected, s since the load started.
    pub start_s: f64,
    /// When it was undone, s.
    pub undone_s: f64,
    /// When its window closed, s.
    pub end_s: f64,
    /// Calls that failed in the window (client version and code).
    pub failed: BTreeMap<String, u64>,
    /// Wrong replies in the window.
    pub wrong: u64,
    /// The health of the backend's service during the window: ms since the injection, status.
    pub health: Vec<(f64, String)>,
    /// From the injection to the first change of that health, ms.
    pub health_change_ms: Option<f64>,
    /// From the undoing to health saying SERVING again (0 if it never stopped), ms.
    pub health_back_ms: Option<f64>,
    /// Longest span health said SERVING while calls failed or hung, ms (any service).
    pub serving_while_failing_ms: f64,
    /// Longest span health said NOT_SERVING while calls succeeded, ms.
    pub not_serving_while_ok_ms: f64,
    /// Longest noted call of the backend's API in the window (calls under --slow-ms that did
    /// not fail are not noted), ms.
    pub longest_call_ms: f64,
    /// Calls of that API sent while the fault lasted that hung past --slow-ms or failed after
    /// it: calls still sent to an unusable backend.
    pub new_calls_hung: u64,
    #[serde(skip)]
    span: Span,
}

/// What `testbed chaos` saw.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// The flags it ran with (except --json).
    pub settings: BTreeMap<String, u64>,
    /// Each fault's window, in order.
    pub windows: Vec<Window>,
    /// Calls that failed outside every window.
    pub stray_failures: u64,
    /// The first few of them, described.
    pub stray_examples: Vec<String>,
    /// Every span where health and calls disagreed.
    pub disagreements: Vec<Disagreement>,
    /// The longest of them, ms (0 when health was always truthful).
    pub longest_disagreement_ms: f64,
    /// The load: per-version tallies and time series.
    pub load: LoadReport,
}

impl ChaosReport {
    /// Requests made, wrong replies.
    pub fn requests_and_wrong(&self) -> (u64, u64) {
        let [v1, v2] = self.load.totals();
        (v1.requests + v2.requests, v1.wrong + v2.wrong)
    }

    /// What makes the run fail against `target_ms`, one line each (none: it passed).
    pub fn problems(&self, target_ms: u64) -> Vec<String> {
        let mut problems = Vec::new();
        let (_, wrong) = self.requests_and_wrong();
        if wrong > 0 {
            problems.push(format!("{wrong} replies were wrong"));
        }
        if self.stray_failures > 0 {
            problems.push(format!(
                "{} calls failed outside every fault window",
                self.stray_failures
            ));
        }
        if self.longest_disagreement_ms > target_ms as f64 {
            problems.push(format!(
                "health disagreed with calls for {:.0} ms, over the target of {target_ms} ms",
                self.longest_disagreement_ms
            ));
        }
        problems
    }

    /// The windows as a table, and the totals.
    pub fn render(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_header([
            "fault",
            "backend",
            "failed",
            "wrong",
            "health change ms",
            "health back ms",
            "SERVING while failing ms",
            "NOT_SERVING while ok ms",
            "longest call ms",
            "new calls hung",
        ]);
        let opt = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.0}"));
        for w in &self.windows {
            let failed: Vec<String> = w.failed.iter().map(|(k, n)| format!("{n} {k}")).collect();
            table.add_row([
                w.fault.name().to_string(),
                w.backend.clone(),
                if failed.is_empty() {
                    "0".into()
                } else {
                    failed.join(", ")
                },
                w.wrong.to_string(),
                opt(w.health_change_ms),
                opt(w.health_back_ms),
                format!("{:.0}", w.serving_while_failing_ms),
                format!("{:.0}", w.not_serving_while_ok_ms),
                format!("{:.0}", w.longest_call_ms),
                w.new_calls_hung.to_string(),
            ]);
        }
        let (requests, wrong) = self.requests_and_wrong();
        format!(
            "{table}\n{requests} requests in {:.1} s, {wrong} wrong, {} failed outside the fault \
             windows; health disagreed with calls for {:.0} ms at the longest\n",
            self.load.seconds, self.stray_failures, self.longest_disagreement_ms
        )
    }
}

/// Runs the gateway, the backends and the load (children of `testbed_exe`), injects the
/// faults and reports what was seen. `progress` is told the fault under way and the requests
/// completed so far.
pub async fn run(
    args: &ChaosArgs,
    testbed_exe: &Path,
    progress: impl Fn(&str, u64),
) -> anyhow::Result<ChaosReport> {
    anyhow::ensure!(
        args.v1_clients > 0 && args.v2_clients > 0,
        "give both --v1-clients and --v2-clients a number above 0"
    );
    let mut fleet = Fleet::start(testbed_exe).await?;
    let log = CallLog::new(Duration::from_millis(args.slow_ms));
    let options = LoadOptions {
        v1_clients: args.v1_clients,
        v2_clients: args.v2_clients,
        requests_per_client: None,
        rate_per_client: None,
        open_loop: false,
        v1_requirement: None,
        v2_requirement: Some("^2".parse()?),
        v2_waits_for_health: false,
        call_log: Some(log.clone()),
    };
    let load = Load::start(fleet.gateway.addr, &options, "chaos").await?;
    let health: [Arc<Mutex<Vec<HealthEvent>>>; 2] = Default::default();
    let watchers: Vec<_> = Api::ALL
        .iter()
        .map(|api| {
            let events = health[*api as usize].clone();
            tokio::spawn(watch_health(
                fleet.gateway.addr,
                api.service(),
                load.started(),
                events,
            ))
        })
        .collect();
    let (steady, hold, settle) = (
        Duration::from_millis(args.steady_ms),
        Duration::from_millis(args.fault_ms),
        Duration::from_millis(args.settle_ms),
    );
    let mut injected = Vec::new();
    progress("steady", load.completed());
    tokio::time::sleep(steady).await;
    for (round, (fault, name)) in CYCLE.iter().cycle().enumerate() {
        let cycles_done = round / CYCLE.len() >= args.cycles as usize;
        if round % CYCLE.len() == 0 && cycles_done
            || cycles_done && args.requests.is_none_or(|n| load.completed() >= n)
        {
            break;
        }
        progress(&format!("{} {name}", fault.name()), load.completed());
        let start = load.started().elapsed();
        fleet.inject(*fault, name, hold).await?;
        let undone = load.started().elapsed();
        progress(
            &format!("settling after {} {name}", fault.name()),
            load.completed(),
        );
        tokio::time::sleep(settle).await;
        let end = load.started().elapsed();
        let api = fleet.backend(name)?.api;
        injected.push((*fault, name.to_string(), api, start, undone, end));
        tokio::time::sleep(steady).await;
    }
    let end = load.started().elapsed();
    for watcher in &watchers {
        watcher.abort();
    }
    let load = load.stop().await?;
    fleet.shutdown().await?;
    let health = health.map(|events| events.lock().unwrap_or_else(|e| e.into_inner()).clone());
    Ok(judge(args, load, &log, &health, &injected, end))
}

/// One injected fault: what, to whom (and its API), when injected, undone, window closed.
type Injected = (Fault, String, Api, Duration, Duration, Duration);

/// Puts the records together into the report.
fn judge(
    args: &ChaosArgs,
    load: LoadReport,
    log: &CallLog,
    health: &[Vec<HealthEvent>; 2],
    injected: &[Injected],
    end: Duration,
) -> ChaosReport {
    let records = &log.calls();
    let verified = Api::ALL.map(|api| log.verified_per_tick(api));
    let mut disagreements: Vec<Disagreement> = Api::ALL
        .iter()
        .flat_map(|&api| {
            let outages = timeline::outages(records, api, &verified[api as usize]);
            timeline::disagreements(api, &health[api as usize], &outages, end)
        })
        .collect();
    disagreements.sort_by(|a, b| a.from_s.total_cmp(&b.from_s));
    let evidence = Evidence {
        records,
        health,
        disagreements: &disagreements,
        slow: Duration::from_millis(args.slow_ms),
    };
    let windows: Vec<Window> = injected
        .iter()
        .map(|&(fault, ref backend, api, from, undone, to)| {
            evidence.window(fault, backend, api, Span { from, to }, undone)
        })
        .collect();
    let stray: Vec<&CallRecord> = records
        .iter()
        .filter(|r| r.outcome != CallOutcome::Slow)
        .filter(|r| !windows.iter().any(|w| w.span.overlaps(&timeline::span(r))))
        .collect();
    let settings = [
        ("v1_clients", args.v1_clients as u64),
        ("v2_clients", args.v2_clients as u64),
        ("requests", args.requests.unwrap_or(0)),
        ("cycles", u64::from(args.cycles)),
        ("fault_ms", args.fault_ms),
        ("settle_ms", args.settle_ms),
        ("steady_ms", args.steady_ms),
        ("health_target_ms", args.health_target_ms),
        ("slow_ms", args.slow_ms),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ChaosReport {
        settings,
        stray_failures: stray.len() as u64,
        stray_examples: stray
            .iter()
            .take(10)
            .map(|r| {
                format!(
                    "{} call sent at {:.3} s: {:?} after {:.0} ms",
                    r.api,
                    r.sent.as_secs_f64(),
                    r.outcome,
                    ms(r.took)
                )
            })
            .collect(),
        longest_disagreement_ms: disagreements.iter().map(|d| d.ms).fold(0.0, f64::max),
        disagreements,
        windows,
        load,
    }
}

/// Everything recorded during the run.
struct Evidence<'a> {
    records: &'a [CallRecord],
    health: &'a [Vec<HealthEvent>; 2],
    disagreements: &'a [Disagreement],
    slow: Duration,
}

impl Evidence<'_> {
    /// The figures of one fault's window `span`, undone at `undone`.
    fn window(
        &self,
        fault: Fault,
        backend: &str,
        api: Api,
        span: Span,
        undone: Duration,
    ) -> Window {
        let Evidence {
            records,
            health,
            disagreements,
            slow,
        } = *self;
        let inside: Vec<&CallRecord> = records
            .iter()
            .filter(|r| span.overlaps(&timeline::span(r)))
            .collect();
        let mut failed = BTreeMap::new();
        for record in &inside {
            if let Some(code) = timeline::failed(record) {
                *failed.entry(format!("{} {code}", record.api)).or_insert(0) += 1;
            }
        }
        let events = &health[api as usize];
        let during: Vec<&HealthEvent> = events
            .iter()
            .filter(|e| e.at >= span.from && e.at <= span.to)
            .collect();
        let longest = |kind: Kind| {
            disagreements
                .iter()
                .filter(|d| d.kind == kind && d.span.overlaps(&span))
                .map(|d| d.ms)
                .fold(0.0, f64::max)
        };
        let serving_at_undo = events
            .iter()
            .take_while(|e| e.at <= undone)
            .last()
            .is_some_and(HealthEvent::serving);
        let health_back_ms = if serving_at_undo && !during.iter().any(|e| !e.serving()) {
            Some(0.0)
        } else {
            during
                .iter()
                .find(|e| e.at >= undone && e.serving())
                .map(|e| ms(e.at.saturating_sub(undone)))
        };
        let of_api = || inside.iter().filter(|r| r.api == api);
        Window {
            fault,
            backend: backend.to_string(),
            api: api.name().to_string(),
            start_s: span.from.as_secs_f64(),
            undone_s: undone.as_secs_f64(),
            end_s: span.to.as_secs_f64(),
            failed,
            wrong: inside
                .iter()
                .filter(|r| r.outcome == CallOutcome::Wrong)
                .count() as u64,
            health: during
                .iter()
                .map(|e| (ms(e.at.saturating_sub(span.from)), e.status.clone()))
                .collect(),
            health_change_ms: during.first().map(|e| ms(e.at.saturating_sub(span.from))),
            health_back_ms,
            serving_while_failing_ms: longest(Kind::ServingWhileFailing),
            not_serving_while_ok_ms: longest(Kind::NotServingWhileOk),
            longest_call_ms: of_api().map(|r| ms(r.took)).fold(0.0, f64::max),
            new_calls_hung: of_api()
                .filter(|r| r.sent >= span.from && r.sent < undone && r.took >= slow)
                .count() as u64,
            span,
        }
    }
}

/// `testbed chaos`: runs, prints the table, writes the JSON; fails when a reply was wrong, a
/// call failed outside the windows, or health lagged behind calls past the target.
pub async fn command(
    args: &ChaosArgs,
    testbed_exe: &Path,
    progress: impl Fn(&str, u64),
) -> anyhow::Result<()> {
    JsonOut::check_all([&args.json])?;
    let report = run(args, testbed_exe, progress).await?;
    if !args.json.as_ref().is_some_and(JsonOut::is_stdout) {
        print!("{}", report.render());
    }
    if let Some(out) = &args.json {
        out.write(&report)?;
    }
    let problems = report.problems(args.health_target_ms);
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}
