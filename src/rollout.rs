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
//! With `processes`, the rollout runs across four processes: the router is a `testbed serve`
//! child process with its admin API on (a token made for the run), v1 and v2 are
//! `testbed serve --backend` child processes it reaches over tonic channels, and this process
//! drives every change (add v2, retire v1, drain, remove) through the router's admin API; step
//! 4 drains v1 and then SIGTERMs it. With
//! `kill_v1` as well, step 3 instead kills the v1 process without draining (as a crash would),
//! so its clients see `UNAVAILABLE` until step 4 retires v1 onto v2: every failure is counted
//! with its status, none is lost or answered wrongly.

use crate::load::{Load, LoadOptions, LoadReport, positive};
use anyhow::Context;
use port::admin::AdminClient;
use port::admin::pb::{AddRequest, DrainRequest, RemoveRequest, ReplaceRequest};
use port::child::ChildServer;
use port::deployment::{catalog, v1_backend, v2_backend};
use port::server::{self, Layout, RunningServer};
use router::{RouteTable, RouterHandle};
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
    /// Run the router, v1 and v2 as separate `testbed serve` processes, every route change
    /// made through the router's admin API from this process.
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

/// The v1 and v2 backend processes (with `processes`).
#[derive(Debug)]
struct Fleet {
    exe: PathBuf,
    v1: Option<ChildServer>,
    v2: Option<ChildServer>,
    notes: Vec<String>,
}

impl Fleet {
    /// `NAME=VERSION@ADDR` of `api`'s process, started now unless it runs already.
    async fn upstream(&mut self, api: Api) -> anyhow::Result<String> {
        let (name, version) = (api.name(), api.version());
        let slot = match api {
            Api::V1 => &mut self.v1,
            Api::V2 => &mut self.v2,
        };
        if slot.is_none() {
            let args = ["serve", "--backend", name, "--addr", "127.0.0.1:0"];
            let child = ChildServer::testbed(&self.exe, &args).await?;
            self.notes
                .push(format!("{name} process listening on {}", child.addr));
            *slot = Some(child);
        }
        let addr = slot
            .as_ref()
            .map(|c| c.addr)
            .context("backend process vanished")?;
        Ok(format!("{name}={version}@{addr}"))
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

/// The router the rollout changes: in this process, changed through its handle; or a
/// `testbed serve` child process with the admin API on, changed through that API from this
/// process (with `processes`: four processes in all).
#[derive(Debug)]
enum Router {
    InProcess(RunningServer),
    Process {
        child: ChildServer,
        // Boxed: the client is much larger than the in-process variant.
        admin: Box<AdminClient>,
    },
}

/// An admin call that failed, as an error naming the call.
fn refused(call: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
    move |status| {
        anyhow::anyhow!(
            "the router's admin API refused {call}: {:?}: {}",
            status.code(),
            status.message()
        )
    }
}

impl Router {
    /// A router in this process with v1 in its table.
    async fn in_process() -> anyhow::Result<Self> {
        let table = RouteTable::new(catalog()?, vec![v1_backend()])?;
        let server = server::start_layout(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            Layout::Routed(table),
            "rollout router",
        )
        .await?;
        Ok(Router::InProcess(server))
    }

    /// `testbed serve --upstream v1=... --admin-addr 127.0.0.1:0` in a child process, with a
    /// token made for this rollout, and a client of its admin API.
    async fn process(fleet: &mut Fleet) -> anyhow::Result<Self> {
        let v1 = fleet.upstream(Api::V1).await?;
        let (child, admin, admin_addr) = gateway_process(&fleet.exe, &[v1], &[]).await?;
        fleet.notes.push(format!(
            "router process listening on {}, admin API on {admin_addr}: every route change \
             went through that API from this process",
            child.addr
        ));
        Ok(Router::Process {
            child,
            admin: Box::new(admin),
        })
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Router::InProcess(server) => server.addr,
            Router::Process { child, .. } => child.addr,
        }
    }

    fn handle(server: &RunningServer) -> anyhow::Result<&RouterHandle> {
        server
            .router
            .as_ref()
            .context("a routed layout has a router")
    }

    /// v2 joins for `increment.v2`.
    async fn add_v2(&mut self, fleet: &mut Fleet) -> anyhow::Result<()> {
        match self {
            Router::InProcess(server) => Self::handle(server)?.add(v2_backend()).await?,
            Router::Process { admin, .. } => {
                let upstream = fleet.upstream(Api::V2).await?;
                admin
                    .add(AddRequest {
                        upstream,
                        ..Default::default()
                    })
                    .await
                    .map_err(refused("adding v2"))?;
            }
        }
        Ok(())
    }

    /// v2 is also routed `increment.v1`.
    async fn retire_v1(&mut self, fleet: &mut Fleet) -> anyhow::Result<()> {
        match self {
            Router::InProcess(server) => {
                Self::handle(server)?
                    .replace(v2_backend().also_serving("increment.v1"))
                    .await?
            }
            Router::Process { admin, .. } => {
                let upstream = fleet.upstream(Api::V2).await? + "+increment.v1";
                admin
                    .replace(ReplaceRequest {
                        upstream,
                        ..Default::default()
                    })
                    .await
                    .map_err(refused("retiring v1 onto v2"))?;
            }
        }
        Ok(())
    }

    /// Drains v1, bounded, so that a client holding an idle stream open cannot stall the
    /// rollout; what is still open then is noted and ends when v1 stops.
    async fn drain_v1(&mut self, notes: &mut Vec<String>) -> anyhow::Result<()> {
        match self {
            Router::InProcess(server) => {
                if let Err(still_open) = Self::handle(server)?.drain_within("v1", DRAIN_LIMIT).await
                {
                    notes.push(format!("drain: {still_open}"));
                }
            }
            Router::Process { admin, .. } => {
                let reply = admin
                    .drain(DrainRequest {
                        name: "v1".to_string(),
                        timeout_ms: u32::try_from(DRAIN_LIMIT.as_millis()).unwrap_or(u32::MAX),
                        force: false,
                    })
                    .await
                    .map_err(refused("draining v1"))?
                    .into_inner();
                notes.push(format!(
                    "drain of v1: {} request(s) or stream(s) in flight when it began, {} \
                     finished, {} still open after {} ms",
                    reply.open_at_start, reply.finished, reply.still_open, reply.waited_ms
                ));
            }
        }
        Ok(())
    }

    async fn remove_v1(&mut self) -> anyhow::Result<()> {
        match self {
            Router::InProcess(server) => Self::handle(server)?.remove("v1").await?,
            Router::Process { admin, .. } => {
                admin
                    .remove(RemoveRequest {
                        name: "v1".to_string(),
                        force: false,
                    })
                    .await
                    .map_err(refused("removing v1"))?;
            }
        }
        Ok(())
    }

    async fn shutdown(self, notes: &mut Vec<String>) -> anyhow::Result<()> {
        match self {
            Router::InProcess(server) => server.shutdown().await,
            Router::Process { child, .. } => {
                let status = child.terminate().await?;
                notes.push(format!("router process stopped: {status}"));
                Ok(())
            }
        }
    }
}

/// `testbed serve --upstream U... --admin-addr 127.0.0.1:0 EXTRA...` (`testbed_exe`) in a
/// child process, with an admin token made for it, and a client of its admin API; also the
/// admin API's address.
pub async fn gateway_process(
    testbed_exe: &Path,
    upstreams: &[String],
    extra: &[String],
) -> anyhow::Result<(ChildServer, AdminClient, SocketAddr)> {
    let token = port::admin::generate_token()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let path = std::env::temp_dir().join(format!(
        "testbed-gateway-{}-{nanos}.tokens",
        std::process::id()
    ));
    write_private(&path, &format!("testbed {token}\n"))?;
    let file = path.display().to_string();
    let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
    for upstream in upstreams {
        args.extend(["--upstream", upstream.as_str()]);
    }
    args.extend(["--admin-addr", "127.0.0.1:0", "--admin-token-file", &file]);
    args.extend(extra.iter().map(String::as_str));
    let started = ChildServer::testbed(testbed_exe, &args).await;
    // The gateway read its tokens at start; the file is not needed any longer.
    let removed = std::fs::remove_file(&path);
    let mut child = started?;
    removed.with_context(|| format!("cannot remove {file}"))?;
    let line = child.next_line().await?;
    let admin_addr: SocketAddr = line
        .split_whitespace()
        .last()
        .and_then(|word| word.parse().ok())
        .with_context(|| format!("the gateway printed {line:?}, not its admin address"))?;
    let admin = port::admin::connect(admin_addr, &token).await?;
    Ok((child, admin, admin_addr))
}

/// Writes `text` to a new file at `path` that only this user may read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Waits, for at most `patience`, until a health watcher has seen `service` report `status`;
/// whether it did.
async fn health_reported(
    events: &Mutex<Vec<HealthEvent>>,
    service: &str,
    status: &str,
    patience: Duration,
) -> bool {
    let seen = || {
        events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .find(|e| e.service == service)
            .is_some_and(|e| e.status == status)
    };
    tokio::time::timeout(patience, async {
        while !seen() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .is_ok()
}

/// Runs the rollout on a router on 127.0.0.1. With `options.processes`, the router and the
/// backends are `testbed_exe serve` processes and every route change goes through the router's
/// admin API. `progress` is told the phase and the requests completed so far, every 50 ms.
pub async fn run(
    options: &RolloutOptions,
    testbed_exe: &Path,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> anyhow::Result<RolloutReport> {
    let mut fleet = Fleet {
        exe: testbed_exe.to_path_buf(),
        v1: None,
        v2: None,
        notes: Vec::new(),
    };
    let mut router = match options.processes {
        true => Router::process(&mut fleet).await?,
        false => Router::in_process().await?,
    };
    let addr = router.addr();
    let phase_name = Arc::new(Mutex::new("v1 only".to_string()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut watchers = Vec::new();
    for service in Api::ALL.map(Api::service) {
        watchers.push(tokio::spawn(watch_health(
            addr,
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
        call_log: None,
    };
    let mut load = Load::start(addr, &load_options, "v1 only").await?;
    let mut phases = Phases {
        load: &mut load,
        name: &phase_name,
        progress,
        length: options.phase,
    };
    phases.hold().await;

    phases.begin("v2 added");
    router.add_v2(&mut fleet).await?;
    phases.hold().await;

    if options.kill_v1 && options.processes {
        phases.begin("v1 killed");
        fleet.stop_v1(true).await?;
        // The router's probe notices within about a second; waiting for the health change it
        // publishes makes the health log show the crash in this phase whatever its length.
        let v1 = Api::V1.service();
        if !health_reported(&events, v1, "NOT_SERVING", Duration::from_secs(5)).await {
            fleet
                .notes
                .push(format!("{v1} was not reported NOT_SERVING within 5 s"));
        }
        phases.hold().await;

        // The phase begins once v2 has taken v1's requests: until the router has it (an admin
        // call, tens of milliseconds), v1's clients still fail on the dead v1, as in the phase
        // before.
        router.retire_v1(&mut fleet).await?;
        phases.begin("v1 retired");
        router.remove_v1().await?;
        phases.hold().await;
    } else {
        phases.begin("v1 retired");
        router.retire_v1(&mut fleet).await?;
        phases.hold().await;

        phases.begin("v1 removed");
        router.drain_v1(&mut fleet.notes).await?;
        router.remove_v1().await?;
        fleet.stop_v1(false).await?;
        phases.hold().await;
    }

    let load = load.stop().await?;
    // Give the watchers a moment to deliver the last change, then stop them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for watcher in watchers {
        watcher.abort();
    }
    router.shutdown(&mut fleet.notes).await?;
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

/// The statuses `grpc.health.v1.Health/Watch` of `service` at `addr` reports, by name
/// (SERVING, NOT_SERVING, ...), as they come.
pub async fn health_statuses(addr: SocketAddr, service: &str) -> anyhow::Result<HealthStatuses> {
    let mut health = HealthClient::new(client::connect(addr).await?);
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    Ok(HealthStatuses(health.watch(request).await?.into_inner()))
}

/// A health watch ([`health_statuses`]).
#[derive(Debug)]
pub struct HealthStatuses(tonic::Streaming<tonic_health::pb::HealthCheckResponse>);

impl HealthStatuses {
    /// The next status reported (`None`: the watch ended).
    pub async fn next(&mut self) -> anyhow::Result<Option<String>> {
        let update = self.0.message().await?;
        Ok(update.map(|u| u.status().as_str_name().to_string()))
    }
}

async fn watch_health(
    addr: SocketAddr,
    service: &'static str,
    phase: Arc<Mutex<String>>,
    events: Arc<Mutex<Vec<HealthEvent>>>,
) -> anyhow::Result<()> {
    let mut updates = health_statuses(addr, service).await?;
    while let Some(status) = updates.next().await? {
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
