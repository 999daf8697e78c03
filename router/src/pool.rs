//! A pool of HTTP/2 connections to one remote backend, with circuit-breaker limits.
//!
//! One HTTP/2 connection carries at most the peer's `MAX_CONCURRENT_STREAMS` streams at once
//! (200 for a hyper or tonic server); past it the client's streams queue without bound. tonic's
//! `Channel` does not expose the peer's setting, so the pool counts the streams it has open on
//! each connection against [`PoolLimits::streams_per_connection`] (below the usual peer limit),
//! opens another connection when every open one is full, up to
//! [`PoolLimits::max_connections`], and lets at most [`PoolLimits::max_pending`] calls wait for a
//! free stream; a call past that fails at once with `RESOURCE_EXHAUSTED` (Envoy's circuit
//! breakers `max_requests` and `max_pending_requests`).
//!
//! The pool also keeps the backend's reachability, set by the active probe and, at once, by
//! failed calls (passive checks), and a connection of its own for the probe, so that health
//! checks never wait behind saturated connections.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

/// Streams one pooled connection carries at once by default: half of the 200 that hyper and
/// tonic servers advertise, so a peer with a lower limit is rarely hit.
pub const DEFAULT_STREAMS_PER_CONNECTION: usize = 100;
/// Connections per upstream by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8;
/// Calls that may wait for a free stream, per upstream, by default.
pub const DEFAULT_MAX_PENDING: usize = 64;
/// How long a call may wait for an upstream's response headers by default.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds of one upstream's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Streams open at once on one connection (`--upstream-streams-per-connection`).
    pub streams_per_connection: usize,
    /// Connections open at once to the upstream (`--upstream-max-connections`).
    pub max_connections: usize,
    /// Calls waiting for a free stream when every connection is full
    /// (`--upstream-max-pending`).
    pub max_pending: usize,
    /// How long a call waits for a stream and the upstream's response headers before it ends
    /// with `DEADLINE_EXCEEDED` (`--upstream-timeout-ms`); a client's own deadline may be
    /// shorter.
    pub timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            streams_per_connection: DEFAULT_STREAMS_PER_CONNECTION,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending: DEFAULT_MAX_PENDING,
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
        }
    }
}

/// The connections to one upstream. Cloning shares them.
#[derive(Clone)]
pub struct UpstreamPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    endpoint: Endpoint,
    limits: PoolLimits,
    connections: Mutex<Vec<Arc<Connection>>>,
    pending: AtomicUsize,
    /// Woken when a stream ends, for a call waiting for one.
    freed: Notify,
    /// The probe's own connection.
    probe: Channel,
    unreachable: AtomicBool,
    /// How many times it became reachable again after being unreachable (a restart, say).
    recoveries: AtomicU64,
    /// Set when a failed call changed reachability, until the router republishes health.
    changed_passively: AtomicBool,
}

struct Connection {
    channel: Channel,
    streams: AtomicUsize,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("uri", self.inner.endpoint.uri())
            .field("limits", &self.inner.limits)
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

/// One stream slot on a pooled connection, held until the call's response ends.
pub(crate) struct Slot {
    connection: Arc<Connection>,
    pool: Arc<PoolInner>,
}

impl Slot {
    /// The connection the call goes on.
    pub(crate) fn channel(&self) -> Channel {
        self.connection.channel.clone()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connection.streams.fetch_sub(1, Ordering::SeqCst);
        self.pool.freed.notify_one();
    }
}

/// Counts one waiting call until dropped.
struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl UpstreamPool {
    /// A pool of lazy connections to `endpoint` (each made on first use) within `limits`.
    pub fn new(endpoint: Endpoint, limits: PoolLimits) -> Self {
        let probe = endpoint.connect_lazy();
        Self {
            inner: Arc::new(PoolInner {
                endpoint,
                limits,
                connections: Mutex::default(),
                pending: AtomicUsize::new(0),
                freed: Notify::new(),
                probe,
                unreachable: AtomicBool::new(false),
                recoveries: AtomicU64::new(0),
                changed_passively: AtomicBool::new(false),
            }),
        }
    }

    /// The endpoint it connects to, as a URI.
    pub fn uri(&self) -> String {
        self.inner.endpoint.uri().to_string()
    }

    /// The pool's limits.
    pub fn limits(&self) -> PoolLimits {
        self.inner.limits
    }

    /// Connections opened so far.
    pub fn connections(&self) -> usize {
        self.lock().len()
    }

    /// Streams in use on its connections, and calls waiting for one: how loaded it is, for the
    /// choice among replicas.
    pub(crate) fn load(&self) -> usize {
        let in_use: usize = self
            .lock()
            .iter()
            .map(|c| c.streams.load(Ordering::SeqCst))
            .sum();
        in_use + self.inner.pending.load(Ordering::SeqCst)
    }

    /// Whether every connection the pool may open carries all the streams it may (new calls
    /// wait, or fail once the pending queue is full too).
    pub fn is_saturated(&self) -> bool {
        let connections = self.lock();
        connections.len() >= self.inner.limits.max_connections
            && connections.iter().all(|c| {
                c.streams.load(Ordering::SeqCst) >= self.inner.limits.streams_per_connection
            })
    }

    /// The connection the reachability probe uses, carrying no calls.
    pub(crate) fn probe_channel(&self) -> Channel {
        self.inner.probe.clone()
    }

    /// Whether the upstream answered its last check and no call failed in transport since.
    pub(crate) fn is_reachable(&self) -> bool {
        !self.inner.unreachable.load(Ordering::SeqCst)
    }

    /// Records a probe's finding; returns whether it changed.
    pub(crate) fn set_reachable(&self, reachable: bool) -> bool {
        let changed = self.inner.unreachable.swap(!reachable, Ordering::SeqCst) == reachable;
        if changed && reachable {
            self.inner.recoveries.fetch_add(1, Ordering::SeqCst);
        }
        changed
    }

    /// How many times the upstream became reachable again after it was unreachable: a change
    /// tells whoever polls it of a recovery (a restart) however briefly it was down.
    pub fn recoveries(&self) -> u64 {
        self.inner.recoveries.load(Ordering::SeqCst)
    }

    /// Marks the upstream unreachable after a call failed in transport (refused connection,
    /// reset), without waiting for the probe.
    pub(crate) fn failed(&self) {
        if self.set_reachable(false) {
            self.inner.changed_passively.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a failed call changed reachability since the last time this was asked.
    pub(crate) fn take_passive_change(&self) -> bool {
        self.inner.changed_passively.swap(false, Ordering::SeqCst)
    }

    /// A stream slot: on an open connection with room, else on a new connection while under the
    /// cap, else after waiting for one (while fewer than `max_pending` calls wait). Past that,
    /// `RESOURCE_EXHAUSTED` at once, naming `label` and the limits.
    pub(crate) async fn slot(&self, label: &str) -> Result<Slot, Status> {
        if let Some(slot) = self.try_slot() {
            return Ok(slot);
        }
        let limits = self.inner.limits;
        if self.inner.pending.fetch_add(1, Ordering::SeqCst) >= limits.max_pending {
            self.inner.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::resource_exhausted(format!(
                "{label} is saturated: {} connection(s) (--upstream-max-connections) carry {} \
                 stream(s) each (--upstream-streams-per-connection) and {} call(s) already wait \
                 for one (--upstream-max-pending)",
                limits.max_connections, limits.streams_per_connection, limits.max_pending
            )));
        }
        let _pending = Pending(&self.inner.pending);
        loop {
            let freed = self.inner.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a stream ending in between still wakes this call.
            freed.as_mut().enable();
            if let Some(slot) = self.try_slot() {
                return Ok(slot);
            }
            freed.await;
        }
    }

    fn try_slot(&self) -> Option<Slot> {
        let limits = self.inner.limits;
        let mut connections = self.lock();
        let connection = match connections
            .iter()
            .find(|c| c.streams.load(Ordering::SeqCst) < limits.streams_per_connection)
        {
            Some(connection) => connection.clone(),
            None if connections.len() < limits.max_connections => {
                let connection = Arc::new(Connection {
                    channel: self.inner.endpoint.connect_lazy(),
                    streams: AtomicUsize::new(0),
                });
                connections.push(connection.clone());
                connection
            }
            None => return None,
        };
        // Under the lock, so two calls cannot both take a connection's last stream.
        connection.streams.fetch_add(1, Ordering::SeqCst);
        Some(Slot {
            connection,
            pool: self.inner.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Connection>>> {
        // The vector stays consistent whatever panicked while it was held.
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(limits: PoolLimits) -> UpstreamPool {
        UpstreamPool::new(Endpoint::from_static("http://127.0.0.1:1"), limits)
    }

    #[tokio::test]
    async fn opens_connections_up_to_the_cap_then_queues_then_refuses() {
        let pool = pool(PoolLimits {
            streams_per_connection: 2,
            max_connections: 2,
            max_pending: 1,
            ..PoolLimits::default()
        });
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(pool.slot("backend b").await.unwrap());
        }
        assert_eq!(pool.connections(), 2);
        assert!(pool.is_saturated());
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.slot("backend b").await.map(drop) }
        });
        while pool.inner.pending.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.slot("backend b").await.err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        for flag in ["--upstream-max-connections", "--upstream-max-pending"] {
            assert!(refused.message().contains(flag), "{refused:?}");
        }
        held.pop();
        waiting.await.unwrap().unwrap();
        assert!(!pool.is_saturated());
    }

    #[tokio::test]
    async fn selection_skips_a_backend_a_failed_call_marked_unreachable() {
        use crate::Backend;
        use crate::testing::{V1, dead_port, grpc_status, request, router, send};
        let remote = |name: &str, version: &str| {
            let endpoint = Endpoint::try_from(format!("http://{}", dead_port())).unwrap();
            let pool = UpstreamPool::new(endpoint, PoolLimits::default());
            Backend::remote(name, version.parse().unwrap(), V1, pool)
        };
        let (handle, router) = router(vec![remote("high", "2.0.0"), remote("low", "1.0.0")]).await;
        let failed_on = |response: &http::Response<tonic::body::Body>| {
            let status = grpc_status(response).expect("an UNAVAILABLE reply");
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            status.message().split(' ').nth(1).unwrap().to_string()
        };
        // No probe runs: only the failed calls mark the backends.
        let first = send(&router, request("/demo.v1.Counter/Add", None)).await;
        assert_eq!(failed_on(&first), "high");
        assert!(!crate::testing::info(&handle, "high").reachable);
        let second = send(&router, request("/demo.v1.Counter/Add", None)).await;
        assert_eq!(failed_on(&second), "low", "the reachable 1.0.0 is chosen");
        // None is reachable: chosen as before, the highest.
        let third = send(&router, request("/demo.v1.Counter/Add", None)).await;
        assert_eq!(failed_on(&third), "high");
        // A requirement only the unreachable one satisfies still goes to it.
        let pinned = send(&router, request("/demo.v1.Counter/Add", Some("^1"))).await;
        assert_eq!(failed_on(&pinned), "low");
    }
}
