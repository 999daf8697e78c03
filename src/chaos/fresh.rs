//! Fresh callers for `testbed chaos`: a new call of each API version every [`EVERY`], each
//! with its own deadline, recorded in the run's [`CallLog`] beside the load's calls. Health
//! answers "would a call made now succeed?"; the load alone cannot tell once each of its
//! closed-loop clients is stuck in a call to a stopped backend (calls without a deadline wait
//! for as long as the backend is stopped), so without these callers such a wait would count
//! as an outage of the whole API while new calls were in fact served by another backend.

use crate::load::{CallLog, CallOutcome};
use crate::matrix::code_name;
use client::IncrementerClient;
use services::Api;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often each API version gets a fresh call.
pub const EVERY: Duration = Duration::from_millis(20);

/// The callers, one task per API version; each call is a task of its own, so a hung one does
/// not delay the next. At most `deadline / EVERY` calls per version are in flight.
#[derive(Debug)]
pub struct FreshCallers {
    tasks: Vec<JoinHandle<()>>,
}

impl FreshCallers {
    /// Starts calling the gateway at `addr`: v1 unpinned, v2 with `v2_requirement`. A call
    /// not answered within `deadline` is cancelled and noted as slow; `origin` is when the
    /// load started (the log's clock).
    pub async fn start(
        addr: SocketAddr,
        v2_requirement: &semver::VersionReq,
        deadline: Duration,
        origin: Instant,
        log: CallLog,
    ) -> anyhow::Result<Self> {
        let mut tasks = Vec::new();
        for api in Api::ALL {
            let client = IncrementerClient::connect(api, addr).await?;
            let client = match api {
                Api::V1 => client,
                Api::V2 => client.with_requirement(v2_requirement),
            };
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(EVERY);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                for value in 0.. {
                    ticks.tick().await;
                    tokio::spawn(call(client.clone(), value, deadline, origin, log.clone()));
                }
            }));
        }
        Ok(Self { tasks })
    }

    /// Stops making calls (those in flight end at their deadline).
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// One fresh call: `value` incremented by one, the reply verified.
async fn call(
    client: IncrementerClient,
    value: i64,
    deadline: Duration,
    origin: Instant,
    log: CallLog,
) {
    let started = Instant::now();
    let sent = started.saturating_duration_since(origin);
    let failed = match tokio::time::timeout(deadline, client.increment(value, None, 0)).await {
        Ok(Ok(reply)) if reply.value == value + 1 => None,
        Ok(Ok(_)) => Some(CallOutcome::Wrong),
        Ok(Err(status)) => Some(CallOutcome::Failed(code_name(status.code()))),
        // Past the deadline the call is dropped (and so cancelled): it hung.
        Err(_) => Some(CallOutcome::Slow),
    };
    log.record(client.api(), sent, started.elapsed(), failed);
}
