//! `testbed serve`'s flags for the connection pool of each upstream (see [`router::UpstreamPool`]):
//! how many streams one connection carries, how many connections one upstream gets, how many
//! calls may wait for a stream, how long a call waits for an upstream's answer, and how often
//! and how patiently the upstreams' health is checked.
//!
//! The limits are set once, when `testbed serve` starts ([`set_limits`]), and read by every
//! upstream made afterwards, at start or through the admin API ([`limits`]), so that the code
//! building upstreams needs no new parameter.

use router::{PoolLimits, ProbeConfig};
use std::sync::RwLock;
use std::time::Duration;

/// The pool limits of every upstream (`testbed serve` flags).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct PoolOptions {
    /// Streams (calls) one connection to an upstream carries at once; when every connection is
    /// full, another is opened. Keep it at or below the upstream's MAX_CONCURRENT_STREAMS.
    #[arg(long, default_value_t = router::DEFAULT_STREAMS_PER_CONNECTION, value_parser = at_least_one)]
    pub upstream_streams_per_connection: usize,
    /// Connections one upstream gets at most (beside one for health checks).
    #[arg(long, default_value_t = router::DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one)]
    pub upstream_max_connections: usize,
    /// Calls that may wait for a free stream once an upstream's connections are all full; past
    /// it calls get RESOURCE_EXHAUSTED at once.
    #[arg(long, default_value_t = router::DEFAULT_MAX_PENDING)]
    pub upstream_max_pending: usize,
    /// Milliseconds a call waits for a stream and for the upstream's response headers; past it
    /// the call ends with DEADLINE_EXCEEDED (a client's own deadline may be shorter).
    #[arg(long = "upstream-timeout-ms", default_value_t = router::DEFAULT_UPSTREAM_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub upstream_timeout_ms: u64,
    /// Milliseconds between health checks of every remote backend (backends marked unreachable
    /// are checked every 50 ms until they answer).
    #[arg(long = "probe-interval-ms", default_value_t = router::DEFAULT_PROBE_INTERVAL.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub probe_interval_ms: u64,
    /// Milliseconds one health check may take before its backend counts as unreachable: how
    /// soon a backend that stopped answering without closing its connection (SIGSTOP, a
    /// partition) is seen, together with --probe-interval-ms.
    #[arg(long = "probe-timeout-ms", default_value_t = router::DEFAULT_PROBE_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub probe_timeout_ms: u64,
}

impl Default for PoolOptions {
    fn default() -> Self {
        let limits = PoolLimits::default();
        Self {
            upstream_streams_per_connection: limits.streams_per_connection,
            upstream_max_connections: limits.max_connections,
            upstream_max_pending: limits.max_pending,
            upstream_timeout_ms: limits.timeout.as_millis() as u64,
            probe_interval_ms: router::DEFAULT_PROBE_INTERVAL.as_millis() as u64,
            probe_timeout_ms: router::DEFAULT_PROBE_TIMEOUT.as_millis() as u64,
        }
    }
}

impl PoolOptions {
    /// The health checks these flags set.
    pub fn probe(&self) -> ProbeConfig {
        ProbeConfig {
            interval: Duration::from_millis(self.probe_interval_ms),
            timeout: Duration::from_millis(self.probe_timeout_ms),
            ..ProbeConfig::default()
        }
    }

    /// The limits these flags set.
    pub fn limits(&self) -> PoolLimits {
        PoolLimits {
            streams_per_connection: self.upstream_streams_per_connection,
            max_connections: self.upstream_max_connections,
            max_pending: self.upstream_max_pending,
            timeout: Duration::from_millis(self.upstream_timeout_ms),
        }
    }
}

static LIMITS: RwLock<Option<PoolLimits>> = RwLock::new(None);

/// Sets the limits of the upstreams made from now on in this process.
pub fn set_limits(limits: PoolLimits) {
    *LIMITS.write().unwrap_or_else(|e| e.into_inner()) = Some(limits);
}

/// The limits of a new upstream: as last [set](set_limits), else the defaults.
pub fn limits() -> PoolLimits {
    LIMITS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_default()
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(err) => Err(err.to_string()),
    }
}
