//! The Prometheus sink: go-grpc-prometheus's series (`grpc_server_started_total`,
//! `grpc_server_handled_total`, `grpc_server_handling_seconds`, `grpc_server_msg_*_total`)
//! with the gateway's `backend` and `version` labels, the upstreams' state read at each
//! scrape, and the observer's own counters, encoded as Prometheus text or OpenMetrics.

use super::methods::MethodLabels;
use super::record::{CallRecord, code_name};
use super::upstreams::Upstreams;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use router::RouterHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Label sets of `grpc_server_handled_total` at most, by default (`--metrics-max-series`).
pub const DEFAULT_MAX_SERIES: usize = 2000;

/// go-grpc-prometheus's handling-time buckets (Prometheus' `DefBuckets`), in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of the per-backend series: the method's, and where the call went.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Served {
    #[prometheus(flatten)]
    method: MethodLabels,
    backend: Arc<str>,
    version: Arc<str>,
}

/// `Served` with the call's status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Handled {
    #[prometheus(flatten)]
    served: Served,
    grpc_code: &'static str,
}

/// What an admin change was and how it ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdminChange {
    action: &'static str,
    result: &'static str,
}

#[derive(Clone)]
struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(BUCKETS)
    }
}

/// The registry and the handles the observer updates.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    started: Family<MethodLabels, Counter>,
    handled: Family<Handled, Counter>,
    handling: Family<Served, Histogram, Buckets>,
    received: Family<Served, Counter>,
    sent: Family<Served, Counter>,
    overflowed: Counter,
    log_dropped: Counter,
    admin_changes: Family<AdminChange, Counter>,
    series: AtomicUsize,
    max_series: usize,
    /// The empty label value, shared.
    none: Arc<str>,
}

impl std::fmt::Debug for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Buckets")
    }
}

impl Metrics {
    /// Every series registered, `router`'s upstreams and the shadow's figures among them; at
    /// most `max_series` label
    /// sets of `grpc_server_handled_total`, calls past it counted under `other`.
    pub(crate) fn new(
        router: Option<RouterHandle>,
        max_series: usize,
        shadow: Option<Arc<crate::shadow::Shadow>>,
    ) -> Self {
        let mut registry = Registry::default();
        let started = Family::<MethodLabels, Counter>::default();
        registry.register(
            "grpc_server_started",
            "Total number of RPCs started on the server",
            started.clone(),
        );
        let handled = Family::<Handled, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            handled.clone(),
        );
        let handling = Family::new_with_constructor(Buckets);
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server",
            handling.clone(),
        );
        let received = Family::<Served, Counter>::default();
        registry.register(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server",
            received.clone(),
        );
        let sent = Family::<Served, Counter>::default();
        registry.register(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server",
            sent.clone(),
        );
        let overflowed = Counter::default();
        registry.register(
            "testbed_metrics_series_overflow",
            "Calls counted under grpc_method=\"other\" because --metrics-max-series label sets exist already",
            overflowed.clone(),
        );
        let log_dropped = Counter::default();
        registry.register(
            "testbed_access_log_dropped",
            "Access-log lines dropped because the writer's queue (--access-log-queue) was full",
            log_dropped.clone(),
        );
        let admin_changes = Family::<AdminChange, Counter>::default();
        registry.register(
            "testbed_admin_changes",
            "Route changes asked for through the admin API, by action and result",
            admin_changes.clone(),
        );
        if let Some(router) = router {
            registry.register_collector(Box::new(Upstreams::new(router)));
        }
        if let Some(shadow) = shadow {
            registry.register_collector(Box::new(crate::shadow::metrics::ShadowMetrics(shadow)));
        }
        Self {
            registry,
            started,
            handled,
            handling,
            received,
            sent,
            overflowed,
            log_dropped,
            admin_changes,
            series: AtomicUsize::new(0),
            max_series,
            none: Arc::from(""),
        }
    }

    /// Counts a call that just arrived.
    pub(crate) fn started(&self, method: &MethodLabels) {
        // Bounded by the known methods: the others are all `unknown`.
        self.started.get_or_create(method).inc();
    }

    /// Counts a call that ended.
    pub(crate) fn handled(&self, method: &MethodLabels, call: &CallRecord) {
        let (backend, version) = match &call.routed {
            Some(routed) => (routed.backend.clone(), routed.version.clone()),
            None => (self.none.clone(), self.none.clone()),
        };
        let mut handled = Handled {
            served: Served {
                method: method.clone(),
                backend,
                version,
            },
            grpc_code: code_name(call.code),
        };
        match self.handled.get(&handled) {
            Some(counter) => {
                counter.inc();
            }
            None => {
                if self.series.fetch_add(1, Ordering::Relaxed) >= self.max_series {
                    self.series.fetch_sub(1, Ordering::Relaxed);
                    self.overflowed.inc();
                    handled.served = Served {
                        method: MethodLabels {
                            grpc_type: "other",
                            grpc_service: "other".into(),
                            grpc_method: "other".into(),
                        },
                        backend: "other".into(),
                        version: "other".into(),
                    };
                }
                self.handled.get_or_create(&handled).inc();
            }
        }
        let served = &handled.served;
        self.handling
            .get_or_create(served)
            .observe(call.duration.as_secs_f64());
        self.received.get_or_create(served).inc_by(call.messages_in);
        self.sent.get_or_create(served).inc_by(call.messages_out);
    }

    /// Counts an access-log line dropped for want of room in the queue.
    pub(crate) fn log_dropped(&self) {
        self.log_dropped.inc();
    }

    /// Counts an admin change: `action` (add, replace, drain, remove) and its `result`: `done`,
    /// `refused`, or `not_applied` (made in the table, but the xDS fleet did not take it).
    pub fn admin_change(&self, action: &'static str, result: &'static str) {
        self.admin_changes
            .get_or_create(&AdminChange { action, result })
            .inc();
    }

    /// The exposition in Prometheus' text format (0.0.4), or in OpenMetrics' when `openmetrics`.
    pub(crate) fn encode(&self, openmetrics: bool) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        }
        Ok(text)
    }
}
