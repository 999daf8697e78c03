//! Active reachability checks of remote backends, so health follows whether they answer.
//!
//! Without checks, a router whose only upstream has no listener would report SERVING while
//! every call fails `UNAVAILABLE`. See [`UpstreamProbe`] for what counts as reachable.

use crate::RouterHandle;
use http::Request;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tonic::body::Body;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower::ServiceExt;

/// How often and how patiently an [`UpstreamProbe`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Time between rounds of checks; the first round starts at once. Default 100 ms.
    pub interval: Duration,
    /// How long one check may take before the backend counts as unreachable. Default 100 ms:
    /// a health check over an open connection answers in about a millisecond within a data
    /// centre, and 100 ms + 100 ms keeps health within the 200 ms the chaos run targets; raise
    /// it above the round trip to backends that are farther away.
    /// A backend that stopped answering without closing its connection (SIGSTOP, a partition)
    /// is seen only this way, within `interval + timeout`; a short timeout finds it sooner and
    /// risks taking a slow moment of a busy machine for an outage.
    pub timeout: Duration,
    /// Time between checks of the backends marked unreachable, and between looks at what failed
    /// calls marked (health follows those within this time). Default 50 ms.
    pub recheck: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_PROBE_INTERVAL,
            timeout: DEFAULT_PROBE_TIMEOUT,
            recheck: Duration::from_millis(50),
        }
    }
}

/// [`ProbeConfig::interval`]'s default.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// [`ProbeConfig::timeout`]'s default.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(100);

/// Checks a router's remote backends periodically, keeping each backend's reachability
/// ([`BackendInfo::reachable`](crate::BackendInfo::reachable)) and the router's health statuses
/// up to date: a package is SERVING only while some active, reachable backend serves it.
///
/// Each round asks every remote backend, over the backend's own channel, the standard
/// `grpc.health.v1.Health/Check` for each service of the package it implements. The backend
/// counts as reachable when:
///
/// - it answers `SERVING` (or `UNKNOWN`), or
/// - it answers with any gRPC reply that is not a health status: `UNIMPLEMENTED` from an
///   upstream without the health service, `NOT_FOUND` from one that does not know the service.
///   It is connected and speaking gRPC, which is all the router can ask of it.
///
/// It counts as unreachable when the check fails in transport (no connection, reset), gets no
/// answer within [`ProbeConfig::timeout`], or the upstream reports `NOT_SERVING` itself (it is
/// shutting down, say). In-process backends are always reachable and never checked. The checks
/// go over a connection of the backend's own that carries no calls, so a saturated backend
/// that answers stays reachable.
///
/// A call that fails in transport marks its backend unreachable at once (passive checks, as
/// Envoy's outlier detection); the probe publishes that within [`ProbeConfig::recheck`] and
/// checks unreachable backends that often, so a recovery is seen soon too. Selection skips an
/// unreachable backend when a reachable one satisfies the request, and routes to it as before
/// when none does (the caller then gets the `UNAVAILABLE` naming it).
///
/// The checks run in a task on the Tokio runtime the probe was started on, until the probe is
/// dropped or [stopped](Self::stop).
#[derive(Debug)]
pub struct UpstreamProbe {
    task: tokio::task::JoinHandle<()>,
}

impl UpstreamProbe {
    /// Starts checking the remote backends of `handle`'s table (whatever the table holds at each
    /// round) with `config`. Must be called within a Tokio runtime.
    pub fn start(handle: &RouterHandle, config: ProbeConfig) -> Self {
        let handle = handle.clone();
        let task = tokio::spawn(async move {
            let interval = config.interval.max(Duration::from_millis(1));
            let mut ticks =
                tokio::time::interval(config.recheck.clamp(Duration::from_millis(1), interval));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut next_round = tokio::time::Instant::now();
            loop {
                ticks.tick().await;
                if tokio::time::Instant::now() >= next_round {
                    next_round = tokio::time::Instant::now() + interval;
                    handle.check_upstreams(config.timeout).await;
                } else {
                    handle.check_unreachable(config.timeout).await;
                }
            }
        });
        Self { task }
    }

    /// Stops the checks. Reachability stays as last found.
    pub fn stop(self) {
        // Dropping aborts the task.
    }
}

impl Drop for UpstreamProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the upstream behind `channel` is reachable, checking each of `services` (or the
/// server as a whole, `""`, when there are none) within `timeout` each.
pub(crate) async fn answers(channel: Channel, services: Vec<String>, timeout: Duration) -> bool {
    let services = if services.is_empty() {
        vec![String::new()]
    } else {
        services
    };
    for service in services {
        if !answers_for(channel.clone(), service, timeout).await {
            return false;
        }
    }
    true
}

async fn answers_for(channel: Channel, service: String, timeout: Duration) -> bool {
    // Whether the upstream sent response headers: a gRPC error the client reports then came
    // from the upstream, not from the transport.
    let answered = Arc::new(AtomicBool::new(false));
    let recorder = tower::service_fn({
        let answered = answered.clone();
        move |request: Request<Body>| {
            let (channel, answered) = (channel.clone(), answered.clone());
            async move {
                let response = channel.oneshot(request).await;
                if response.is_ok() {
                    answered.store(true, Ordering::SeqCst);
                }
                response
            }
        }
    });
    let mut client = HealthClient::new(recorder);
    let check = client.check(HealthCheckRequest { service });
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(reply)) => reply.into_inner().status() != ServingStatus::NotServing,
        Ok(Err(_status)) => answered.load(Ordering::SeqCst),
        Err(_elapsed) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;
    use crate::testing::{V1, V2, backend, dead_port, info, remote, table};
    use std::net::SocketAddr;
    use tonic::transport::Server;
    use tonic_health::pb::health_server::Health;
    use tonic_health::server::{HealthReporter, HealthService};
    use tonic_health::{ServingStatus as Status, server::health_reporter};

    /// Serves `routes` on `addr` until the returned sender is dropped.
    fn serve(addr: SocketAddr, routes: tonic::service::Routes) -> tokio::sync::oneshot::Sender<()> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            Server::builder()
                .add_routes(routes)
                .serve_with_shutdown(addr, stopped)
                .await
                .unwrap();
        });
        stop
    }

    async fn status_of(health: &HealthService, service: &str) -> Status {
        let reply = health
            .check(tonic::Request::new(HealthCheckRequest {
                service: service.into(),
            }))
            .await
            .unwrap()
            .into_inner();
        match reply.status() {
            ServingStatus::Serving => Status::Serving,
            ServingStatus::NotServing => Status::NotServing,
            _ => Status::Unknown,
        }
    }

    /// Waits up to 5 s for `service`'s health to become `wanted`.
    async fn wait_for(health: &HealthService, service: &str, wanted: Status) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let now = status_of(health, service).await;
            if now == wanted {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service} is still {now:?} after 5 s, not {wanted:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn router_with_health(backends: Vec<Backend>) -> (RouterHandle, HealthService) {
        let reporter = HealthReporter::new();
        let health = HealthService::from_health_reporter(reporter.clone());
        (
            RouterHandle::new(table(backends), Some(reporter)).await,
            health,
        )
    }

    #[tokio::test]
    async fn health_follows_a_remote_backends_reachability() {
        let addr = dead_port();
        let (handle, health) =
            router_with_health(vec![remote("r", V1, addr), backend("v2", "2.0.0", V2)]).await;
        let _probe = UpstreamProbe::start(
            &handle,
            ProbeConfig {
                interval: Duration::from_millis(100),
                timeout: Duration::from_secs(1),
                recheck: Duration::from_millis(50),
            },
        );

        wait_for(&health, "demo.v1.Counter", Status::NotServing).await;
        assert!(!info(&handle, "r").reachable);
        // In-process backends are always reachable.
        assert_eq!(status_of(&health, "demo.v2.Counter").await, Status::Serving);
        assert!(info(&handle, "v2").reachable);

        // An upstream with its own health service comes up on that port.
        let (upstream_health, upstream_health_service) = health_reporter();
        upstream_health
            .set_service_status("demo.v1.Counter", Status::Serving)
            .await;
        let server = serve(addr, tonic::service::Routes::new(upstream_health_service));
        wait_for(&health, "demo.v1.Counter", Status::Serving).await;
        assert!(info(&handle, "r").reachable);

        // The upstream says it is not serving (shutting down, say): so does the router.
        upstream_health
            .set_service_status("demo.v1.Counter", Status::NotServing)
            .await;
        wait_for(&health, "demo.v1.Counter", Status::NotServing).await;
        upstream_health
            .set_service_status("demo.v1.Counter", Status::Serving)
            .await;
        wait_for(&health, "demo.v1.Counter", Status::Serving).await;

        // It goes away again.
        drop(server);
        wait_for(&health, "demo.v1.Counter", Status::NotServing).await;
    }

    #[tokio::test]
    async fn an_upstream_that_answers_without_a_health_service_is_reachable() {
        let addr = dead_port();
        let (handle, health) = router_with_health(vec![remote("r", V1, addr)]).await;
        let timeout = Duration::from_secs(1);
        // Optimistic until checked.
        assert!(info(&handle, "r").reachable);
        assert_eq!(handle.check_upstreams(timeout).await, 1);
        assert!(!info(&handle, "r").reachable);
        assert_eq!(
            status_of(&health, "demo.v1.Counter").await,
            Status::NotServing
        );
        assert_eq!(handle.check_upstreams(timeout).await, 0, "no change");

        // Every call to this server is UNIMPLEMENTED, Health/Check included.
        let _server = serve(addr, tonic::service::Routes::default());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while handle.check_upstreams(timeout).await == 0 {
            assert!(tokio::time::Instant::now() < deadline, "still unreachable");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(info(&handle, "r").reachable);
        assert_eq!(status_of(&health, "demo.v1.Counter").await, Status::Serving);
    }

    #[tokio::test]
    async fn a_drained_remote_backend_serves_no_health_even_when_reachable() {
        let (handle, health) = router_with_health(vec![remote("r", V1, dead_port())]).await;
        assert_eq!(status_of(&health, "demo.v1.Counter").await, Status::Serving);
        handle.drain("r").await.unwrap();
        assert_eq!(
            status_of(&health, "demo.v1.Counter").await,
            Status::NotServing
        );
    }

    #[tokio::test]
    async fn a_failed_call_turns_health_not_serving_before_any_round_and_a_recheck_sees_recovery() {
        let addr = dead_port();
        let (upstream_health, upstream_health_service) = health_reporter();
        upstream_health
            .set_service_status("demo.v1.Counter", Status::Serving)
            .await;
        let server = serve(
            addr,
            tonic::service::Routes::new(upstream_health_service.clone()),
        );
        let (handle, health) = router_with_health(vec![remote("r", V1, addr)]).await;
        let router = tower::Layer::layer(&handle.layer(), crate::testing::inner());
        // The first round runs at once; the next only in an hour.
        let _probe = UpstreamProbe::start(
            &handle,
            ProbeConfig {
                interval: Duration::from_secs(3600),
                timeout: Duration::from_secs(1),
                recheck: Duration::from_millis(20),
            },
        );
        wait_for(&health, "demo.v1.Counter", Status::Serving).await;
        drop(server);
        // The server is gone; a call finds it out (it may need a try or two while the old
        // connection closes).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while info(&handle, "r").reachable {
            assert!(tokio::time::Instant::now() < deadline, "no call failed");
            let request = crate::testing::request("/demo.v1.Counter/Add", None);
            drop(crate::testing::send(&router, request).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        wait_for(&health, "demo.v1.Counter", Status::NotServing).await;
        // Back on the same port: the frequent recheck of an unreachable backend sees it.
        let _server = serve(addr, tonic::service::Routes::new(upstream_health_service));
        wait_for(&health, "demo.v1.Counter", Status::Serving).await;
        assert!(info(&handle, "r").reachable);
    }
}
