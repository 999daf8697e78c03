//! A zero-downtime v1 → v2 rollout under live mixed-version load, every request counted:
//!
//! 1. `v1 only`: v1@1.0.0 serves `increment.v1`; v1 clients run. v2 clients are already
//!    started but wait on the health `Watch` of `increment.v2.Incrementer` (NOT_SERVING): a v2
//!    call now would get `UNIMPLEMENTED` ("no backend serves increment.v2"), never a wrong answer.
//! 2. `v2 added`: v2@2.0.0 joins for `increment.v2`; health turns SERVING and v2 clients start.
//! 3. `v1 retired`: v2 is also routed `increment.v1` (proved wire-compatible), so it wins v1
//!    requests (the higher version); v1 still finishes what it had in flight.
//! 4. `v1 removed`: v1 is drained (waits for its in-flight requests) and removed.
//!
//! Health watchers record every status change. The rollout fails if any request fails or any
//! reply is wrong.
//!
//! With `processes`, v1 and v2 run as `testbed serve --backend` child processes behind the
//! router (remote backends over tonic channels), and step 4 drains v1 and then SIGTERMs it. With
//! `kill_v1` as well, step 3 instead kills the v1 process without draining (as a crash would),
//! so its clients see `UNAVAILABLE` until step 4 retires v1 onto v2: every failure is counted
//! with its status, none is lost or answered wrongly.

use crate::load::{Load, LoadOptions, LoadReport, positive};
use anyhow::Context;
use port::child::ChildServer;
use port::deployment::{catalog, v1_backend, v2_backend};
use port::server::{self, Layout};
use port::upstream::UpstreamSpec;
use router::{Backend, RouteTable};
use serde::Serialize;
use services::Api;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How to run the rollout; `testbed rollout` takes these as flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutOptions {
    /// v1 clients.
    #[arg(long, default_value_t = 4)]
    pub v1_clients: usize,
    /// v2 clients.
    #[arg(long, default_value_t = 4)]
    pub v2_clients: usize,
    /// Seconds per phase (v1 only, v2 added, v1 retired, v1 removed).
    #[arg(long = "phase-seconds", default_value = "5", value_parser = seconds)]
    pub phase: Duration,
    /// Pace each client to this many requests per second (default: back to back).
    #[arg(long = "rate", value_parser = positive)]
    pub rate_per_client: Option<f64>,
    /// Open loop: each client sends on a fixed schedule of --rate requests per second, latencies
    /// counted from each request's intended send time (wrk2's constant schedule).
    #[arg(long, requires = "rate_per_client")]
    pub open_loop: bool,
    /// Run v1 and v2 as separate `testbed serve --backend` processes behind the router.
    #[arg(long)]
    pub processes: bool,
    /// With --processes: kill v1 without draining (shows the UNAVAILABLE a crash causes).
    #[arg(long, requires = "processes")]
    pub kill_v1: bool,
}

/// How long the rollout waits for v1's in-flight requests and streams before removing it anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

fn seconds(text: &str) -> Result<Duration, String> {
    positive(text).map(Duration::from_secs_f64)
}

/// One status a health watcher saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthEvent {
    /// The phase it arrived in.
    pub phase: String,
    /// The service watched.
    pub service: String,
    /// The status, as gRPC names it.
    pub status: String,
}

/// What the rollout saw.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutReport {
    /// Requests per phase and client version.
    pub load: LoadReport,
    /// Health statuses in the order the watchers saw them.
    pub health: Vec<HealthEvent>,
    /// What happened to backend processes.
    pub notes: Vec<String>,
}

impl RolloutReport {
    /// The report for the terminal.
    pub fn render(&self) -> String {
        let mut out = self.load.render();
        out.push_str("health Watch saw:\n");
        for event in &self.health {
            out.push_str(&format!(
                "  [{}] {} → {}\n",
                event.phase, event.service, event.status
            ));
        }
        for note in &self.notes {
            out.push_str(note);
            out.push('\n');
        }
        out
    }
}

/// The v1 and v2 implementations, in this process or as child processes.
#[derive(Debug)]
struct Fleet {
    exe: Option<PathBuf>,
    v1: Option<ChildServer>,
    v2: Option<ChildServer>,
    notes: Vec<String>,
}

impl Fleet {
    async fn backend(&mut self, api: Api) -> anyhow::Result<Backend> {
        let Some(exe) = &self.exe else {
            return Ok(match api {
                Api::V1 => v1_backend(),
                Api::V2 => v2_backend(),
            });
        };
        let (name, version) = (api.name(), api.version());
        let slot = match api {
            Api::V1 => &mut self.v1,
            Api::V2 => &mut self.v2,
        };
        if slot.is_none() {
            let args = ["serve", "--backend", name, "--addr", "127.0.0.1:0"];
            let child = ChildServer::testbed(exe, &args).await?;
            self.notes
                .push(format!("{name} process listening on {}", child.addr));
            *slot = Some(child);
        }
        let addr = slot
            .as_ref()
            .map(|c| c.addr)
            .context("backend process vanished")?;
        let spec = UpstreamSpec {
            name: name.to_string(),
            version,
            addr: addr.to_string(),
            also_serving: Vec::new(),
        };
        Ok(spec.backend()?)
    }

    async fn stop_v1(&mut self, kill: bool) -> anyhow::Result<()> {
        let Some(child) = self.v1.take() else {
            return Ok(());
        };
        if kill {
            child.kill().await?;
            self.notes
                .push("v1 process killed (SIGKILL) without draining".to_string());
        } else {
            let status = child.terminate().await?;
            self.notes.push(format!(
                "v1 process stopped by SIGTERM after draining: {status}"
            ));
        }
        Ok(())
    }
}

/// Runs the rollout on a router on 127.0.0.1. With `options.processes`, the backends are
/// `testbed_exe serve --backend` processes. `progress` is told the phase and the requests
/// completed so far, every 50 ms.
pub async fn run(
    options: &RolloutOptions,
    testbed_exe: &Path,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> anyhow::Result<RolloutReport> {
    let mut fleet = Fleet {
        exe: options.processes.then(|| testbed_exe.to_path_buf()),
        v1: None,
        v2: None,
        notes: Vec::new(),
    };
    let table = RouteTable::new(catalog()?, vec![fleet.backend(Api::V1).await?])?;
    let server = server::start_layout(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        Layout::Routed(table),
        "rollout router",
    )
    .await?;
    let router = server
        .router
        .clone()
        .context("a routed layout has a router")?;
    let phase_name = Arc::new(Mutex::new("v1 only".to_string()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut watchers = Vec::new();
    for service in Api::ALL.map(Api::service) {
        watchers.push(tokio::spawn(watch_health(
            server.addr,
            service,
            phase_name.clone(),
            events.clone(),
        )));
    }
    let load_options = LoadOptions {
        v1_clients: options.v1_clients,
        v2_clients: options.v2_clients,
        requests_per_client: None,
        rate_per_client: options.rate_per_client,
        open_loop: options.open_loop,
        v1_requirement: None,
        v2_requirement: Some("^2".parse()?),
        v2_waits_for_health: true,
    };
    let mut load = Load::start(server.addr, &load_options, "v1 only").await?;
    let mut phases = Phases {
        load: &mut load,
        name: &phase_name,
        progress,
        length: options.phase,
    };
    phases.hold().await;

    phases.begin("v2 added");
    router.add(fleet.backend(Api::V2).await?).await?;
    phases.hold().await;

    let retire = |backend: Backend| backend.also_serving("increment.v1");
    if options.kill_v1 && options.processes {
        phases.begin("v1 killed");
        fleet.stop_v1(true).await?;
        // The port's probe notices within a second; one check now makes the health log show
        // the crash in this phase whatever its length.
        router.check_upstreams(Duration::from_secs(1)).await;
        phases.hold().await;

        phases.begin("v1 retired");
        router
            .replace(retire(fleet.backend(Api::V2).await?))
            .await?;
        router.remove("v1").await?;
        phases.hold().await;
    } else {
        phases.begin("v1 retired");
        router
            .replace(retire(fleet.backend(Api::V2).await?))
            .await?;
        phases.hold().await;

        phases.begin("v1 removed");
        // Bounded, so that a client holding an idle stream open cannot stall the rollout; what
        // is still open then is noted and ends when v1 stops.
        if let Err(still_open) = router.drain_within("v1", DRAIN_LIMIT).await {
            fleet.notes.push(format!("drain: {still_open}"));
        }
        router.remove("v1").await?;
        fleet.stop_v1(false).await?;
        phases.hold().await;
    }

    let load = load.stop().await?;
    // Give the watchers a moment to deliver the last change, then stop them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for watcher in watchers {
        watcher.abort();
    }
    server.shutdown().await?;
    let health = events.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(RolloutReport {
        load,
        health,
        notes: fleet.notes,
    })
}

/// Moves the load through named phases of a fixed length.
struct Phases<'a> {
    load: &'a mut Load,
    name: &'a Mutex<String>,
    progress: &'a (dyn Fn(&str, u64) + Sync),
    length: Duration,
}

impl Phases<'_> {
    /// Starts phase `name`: requests from now on count under it.
    fn begin(&mut self, name: &str) {
        self.load.next_phase(name);
        (self.progress)(name, self.load.completed());
        name.clone_into(&mut self.name.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Lets the load run for one phase length.
    async fn hold(&self) {
        let deadline = tokio::time::Instant::now() + self.length;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50).min(self.length)).await;
            let phase = self.name.lock().unwrap_or_else(|e| e.into_inner()).clone();
            (self.progress)(&phase, self.load.completed());
        }
    }
}

async fn watch_health(
    addr: SocketAddr,
    service: &'static str,
    phase: Arc<Mutex<String>>,
    events: Arc<Mutex<Vec<HealthEvent>>>,
) -> anyhow::Result<()> {
    let mut health = HealthClient::new(client::connect(addr).await?);
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let mut updates = health.watch(request).await?.into_inner();
    while let Some(update) = updates.message().await? {
        let status = update.status().as_str_name().to_string();
        let phase = phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut events = events.lock().unwrap_or_else(|e| e.into_inner());
        // The health service repeats a status when it is set again; keep the transitions only.
        let last = events
            .iter()
            .rev()
            .find(|e: &&HealthEvent| e.service == service);
        if last.is_none_or(|e| e.status != status) {
            events.push(HealthEvent {
                phase,
                service: service.to_string(),
                status,
            });
        }
    }
    Ok(())
}
