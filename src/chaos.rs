//! `testbed chaos`: faults injected into a running gateway's backends under mixed-version load,
//! with the gateway's health watched all along, to see that no reply is ever wrong, that calls
//! fail only while a fault lasts, and that health tells the truth about what calls see.
//!
//! Four `testbed serve` processes: the gateway (`--upstream ... --admin-addr`) and three
//! backends behind it, `v1=1.0.0` (the only one of increment.v1), `v2a=2.0.0` and
//! `v2b=2.1.0` (two of increment.v2: unpinned v2 calls go to v2b, the highest, and can move to
//! v2a when v2b is gone). This process runs v1 and v2 clients (every reply verified, as
//! `testbed mixed`), makes a fresh call of each version every 20 ms ([`fresh`]), watches
//! `grpc.health.v1.Health/Watch` of both services on the gateway,
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
//! or hang (a call slower than `--slow-ms` counts as hanging) with no call of that version
//! verified meanwhile (in 10 ms ticks); every span where it was not is a disagreement, its
//! length the lag. The run fails when a reply was wrong, a call failed outside
//! every window, or a disagreement lasted longer than `--health-target-ms`.

pub mod fresh;
pub mod report;
pub mod timeline;

use crate::cli::JsonOut;
use crate::load::{CallLog, Load, LoadOptions};
use anyhow::Context;
use port::admin::AdminClient;
use port::admin::pb::{AddRequest, DrainRequest, RemoveRequest, ReplaceRequest};
use port::child::{ChildServer, Signal};
pub use report::{ChaosReport, Window};
use serde::Serialize;
use services::Api;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timeline::HealthEvent;

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
    /// One more flag for the gateway's `testbed serve` (repeatable; e.g.
    /// --gateway-arg=--request-timeout-ms=1000).
    #[arg(long = "gateway-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub gateway_args: Vec<String>,
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
    async fn start(exe: &Path, gateway_args: &[String]) -> anyhow::Result<Self> {
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
        let (gateway, admin, _) =
            crate::rollout::gateway_process(exe, &upstreams, gateway_args).await?;
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
                    // A fault is deliberate: no quiet period holds it up.
                    .drain(DrainRequest {
                        name: name.clone(),
                        timeout_ms,
                        force: true,
                    })
                    .await
                    .map_err(refused("Drain"))?;
                self.admin
                    .remove(RemoveRequest { name, force: true })
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
    let mut updates = crate::rollout::health_statuses(addr, service).await?;
    while let Some(status) = updates.next().await? {
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
    let mut fleet = Fleet::start(testbed_exe, &args.gateway_args).await?;
    let log = CallLog::new(Duration::from_millis(args.slow_ms));
    let v2_requirement: semver::VersionReq = "^2".parse()?;
    let options = LoadOptions {
        v1_clients: args.v1_clients,
        v2_clients: args.v2_clients,
        requests_per_client: None,
        rate_per_client: None,
        open_loop: false,
        v1_requirement: None,
        v2_requirement: Some(v2_requirement.clone()),
        v2_waits_for_health: false,
        call_log: Some(log.clone()),
    };
    let load = Load::start(fleet.gateway.addr, &options, "chaos").await?;
    let fresh = fresh::FreshCallers::start(
        fleet.gateway.addr,
        &v2_requirement,
        Duration::from_millis(args.slow_ms),
        load.started(),
        log.clone(),
    )
    .await?;
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
        if cycles_done && args.requests.is_none_or(|n| load.completed() >= n) {
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
    fresh.stop();
    let load = load.stop().await?;
    fleet.shutdown().await?;
    let health = health.map(|events| events.lock().unwrap_or_else(|e| e.into_inner()).clone());
    Ok(report::judge(args, load, &log, &health, &injected, end))
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
