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

use crate::deployment::{Deployment, v2_backend};
use crate::load::{Load, LoadOptions, LoadReport};
use crate::server;
use anyhow::Context;
use indicatif::ProgressBar;
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How to run the rollout.
#[derive(Debug, Clone)]
pub struct RolloutOptions {
    /// v1 clients.
    pub v1_clients: usize,
    /// v2 clients.
    pub v2_clients: usize,
    /// How long each phase lasts.
    pub phase: Duration,
    /// Pace each client to this many requests per second (else back to back).
    pub rate_per_client: Option<f64>,
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
        out
    }
}

const PHASES: [&str; 4] = ["v1 only", "v2 added", "v1 retired", "v1 removed"];

/// Runs the rollout on an in-process router on 127.0.0.1, with `progress` ticking requests.
pub async fn run(
    options: &RolloutOptions,
    progress: &ProgressBar,
) -> anyhow::Result<RolloutReport> {
    let server = server::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        Deployment::V1Only,
    )
    .await?;
    let router = server
        .router
        .clone()
        .context("the v1-only deployment has a router")?;
    let phase_name = Arc::new(Mutex::new(PHASES[0].to_string()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut watchers = Vec::new();
    for service in [services::V1_SERVICE, services::V2_SERVICE] {
        watchers.push(tokio::spawn(watch_health(
            server.addr,
            service,
            phase_name.clone(),
            events.clone(),
        )));
    }
    let load_options = LoadOptions {
        addr: server.addr,
        v1_clients: options.v1_clients,
        v2_clients: options.v2_clients,
        requests_per_client: None,
        rate_per_client: options.rate_per_client,
        v1_requirement: None,
        v2_requirement: Some("^2".parse()?),
        v2_waits_for_health: true,
    };
    let mut load = Load::start(&load_options, PHASES[0]).await?;
    let mut step = 0;
    loop {
        let deadline = tokio::time::Instant::now() + options.phase;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50).min(options.phase)).await;
            progress.set_position(load.completed());
        }
        step += 1;
        let Some(&name) = PHASES.get(step) else { break };
        progress.set_message(name);
        load.next_phase(name);
        name.clone_into(&mut phase_name.lock().unwrap_or_else(|e| e.into_inner()));
        match step {
            1 => router.add(v2_backend()).await?,
            2 => {
                router
                    .replace(v2_backend().also_serving("increment.v1"))
                    .await?
            }
            _ => {
                router.drain("v1").await?;
                router.remove("v1").await?;
            }
        }
    }
    let load = load.stop().await?;
    // Give the watchers a moment to deliver the last change, then stop them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for watcher in watchers {
        watcher.abort();
    }
    server.shutdown().await?;
    let health = events.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(RolloutReport { load, health })
}

async fn watch_health(
    addr: SocketAddr,
    service: &'static str,
    phase: Arc<Mutex<String>>,
    events: Arc<Mutex<Vec<HealthEvent>>>,
) -> anyhow::Result<()> {
    let mut health = HealthClient::new(crate::clients::connect(addr).await?);
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
