//! What the port tells about its calls: Prometheus metrics on a listener of their own
//! (`--metrics-addr`) and an access log (`--access-log FILE|-`), both off by default and both
//! fed from one observation of each call ([`CallRecord`], made by the [`ObserveLayer`]).
//!
//! - [`record`]: the call record and the gRPC framing counted as bytes pass.
//! - [`layer`]: the tower layer that makes the records, outermost on the port.
//! - [`methods`]: method labels, for known methods only (`unknown` otherwise).
//! - [`metrics`]: go-grpc-prometheus's series with `backend` and `version`, the series cap.
//! - [`upstreams`]: the route table's backends as gauges, read at each scrape.
//! - [`access_log`]: JSON lines through a bounded queue to a writer thread.
//! - [`http`]: the HTTP/1.1 listener serving `/metrics` (Prometheus text or OpenMetrics).

mod access_log;
mod deprecated;
mod http;
mod layer;
mod message_json;
mod methods;
mod metrics;
mod record;
mod recorder;
mod rotating;
mod upstreams;
mod usage;
mod writer;

pub use access_log::{DEFAULT_QUEUE, Destination};
pub use http::{CONNECTION_LIFETIME, HEADER_TIMEOUT, MAX_CONNECTIONS};
pub use layer::{Observe, ObserveLayer};
pub use metrics::{DEFAULT_MAX_SERIES, Metrics};
pub use record::{CallRecord, code_name};
pub use recorder::RecordOptions;
pub use usage::{DEFAULT_MAX_ENTRIES, DEFAULT_SAMPLE_EVERY, FieldKey, Usage, UsageCount, UsageKey};

pub(crate) use message_json::{decompress, encoding};
pub(crate) use methods::Method;
pub(crate) use record::Capture;
pub(crate) use recorder::{Ended, parse_rate};

use crate::shadow::{Shadow, ShadowOptions, Shadowing};
use access_log::AccessLog;
use methods::KnownMethods;
use recorder::{Recorder, Recording};
use router::RouterHandle;
use std::net::SocketAddr;
use std::sync::Arc;

/// The flags of `testbed serve` for metrics and the access log.
#[derive(Debug, Clone, clap::Args)]
pub struct ObserveOptions {
    /// Serve Prometheus metrics over HTTP/1.1 at http://ADDR/metrics, a listener of its own
    /// (Prometheus text, or OpenMetrics when asked for in Accept). Off by default.
    #[arg(long, value_name = "ADDR", value_parser = crate::server::parse_addr)]
    pub metrics_addr: Option<SocketAddr>,
    /// Label sets of grpc_server_handled_total at most; calls that would make more are counted
    /// under grpc_method="other" (and in testbed_metrics_series_overflow_total).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SERIES, value_parser = crate::server::at_least_one)]
    pub metrics_max_series: usize,
    /// Write one JSON line per call to FILE (appended to), or to standard output with `-`.
    /// Off by default.
    #[arg(long, value_name = "FILE|-")]
    pub access_log: Option<Destination>,
    /// Access-log lines waiting for the writer at most; a line that finds the queue full is
    /// dropped, counted (testbed_access_log_dropped_total) and warned about.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_QUEUE, value_parser = crate::server::at_least_one)]
    pub access_log_queue: usize,
    /// Rows of the usage table (caller, method, backend, version) kept at most; calls that
    /// would make more are counted as overflowed, not kept. The table is kept whenever the
    /// admin API is on (`testbed route usage` reads it).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ENTRIES, value_parser = crate::server::at_least_one)]
    pub usage_max_entries: usize,
    /// The request header that names a caller in the usage table (e.g. x-client-id), beside
    /// its address and user agent. Over mutual TLS (--tls-client-ca) the client certificate
    /// names the caller instead (subject CN, else `dns:` its first DNS name): it is verified.
    #[arg(long, value_name = "NAME", value_parser = header_name)]
    pub usage_identity_header: Option<::http::HeaderName>,
    /// One call in N has its first message decoded for the deprecated fields it sets (shown
    /// by `testbed route usage`); 0: none.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SAMPLE_EVERY)]
    pub usage_sample_every: u64,
    /// Whether the usage table is kept (set when the admin API is on).
    #[arg(skip)]
    pub track_usage: bool,
    /// Traffic recording for `testbed replay`.
    #[command(flatten)]
    pub record: RecordOptions,
    /// Shadow traffic to a candidate backend.
    #[command(flatten)]
    pub shadow: ShadowOptions,
}

/// A request header name, in the lower case HTTP/2 sends (a flag's value parser).
pub fn header_name(text: &str) -> Result<::http::HeaderName, String> {
    ::http::HeaderName::from_bytes(text.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("{text:?} is not a header name"))
}

impl Default for ObserveOptions {
    fn default() -> Self {
        Self {
            metrics_addr: None,
            metrics_max_series: DEFAULT_MAX_SERIES,
            access_log: None,
            access_log_queue: DEFAULT_QUEUE,
            usage_max_entries: DEFAULT_MAX_ENTRIES,
            usage_identity_header: None,
            usage_sample_every: DEFAULT_SAMPLE_EVERY,
            track_usage: false,
            record: RecordOptions::default(),
            shadow: ShadowOptions::default(),
        }
    }
}

impl ObserveOptions {
    /// Whether anything is observed at all (else the port has no observing layer).
    pub fn enabled(&self) -> bool {
        self.metrics_addr.is_some()
            || self.access_log.is_some()
            || self.track_usage
            || self.record.record.is_some()
            || self.shadow.shadow.is_some()
    }
}

/// Both sinks, fed by the [`ObserveLayer`].
#[derive(Debug)]
pub struct Observer {
    methods: KnownMethods,
    metrics: Option<Arc<Metrics>>,
    log: Option<AccessLog>,
    usage: Option<Arc<Usage>>,
    recorder: Option<Recorder>,
    shadow: Option<Arc<Shadow>>,
}

impl Observer {
    /// The sinks `options` asks for, over the methods of `descriptor_sets` and `router`'s
    /// catalog; `None` when it asks for none.
    pub(crate) fn new(
        options: &ObserveOptions,
        descriptor_sets: &[&[u8]],
        router: Option<RouterHandle>,
    ) -> anyhow::Result<Option<Self>> {
        if !options.enabled() {
            return Ok(None);
        }
        let log = match &options.access_log {
            Some(destination) => Some(AccessLog::start(destination, options.access_log_queue)?),
            None => None,
        };
        let usage = options.track_usage.then(|| {
            Arc::new(Usage::new(
                options.usage_max_entries,
                options.usage_identity_header.clone(),
                options.usage_sample_every,
            ))
        });
        // Kept whenever the admin API is on (it starts shadowing at runtime) or a candidate is
        // named; only a routing gateway has backends to copy calls to.
        let shadow = router
            .as_ref()
            .filter(|_| options.shadow.shadow.is_some() || options.track_usage)
            .map(|router| Shadow::start(&options.shadow, router.clone()))
            .transpose()?;
        let metrics = options.metrics_addr.map(|_| {
            Arc::new(Metrics::new(
                router.clone(),
                options.metrics_max_series,
                shadow.clone(),
            ))
        });
        Ok(Some(Self {
            methods: KnownMethods::new(descriptor_sets, router)?,
            shadow,
            metrics,
            log,
            usage,
            recorder: Recorder::start(&options.record)?,
        }))
    }

    /// The metrics, when they are served.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The usage table, when it is kept.
    pub fn usage(&self) -> Option<&Arc<Usage>> {
        self.usage.as_ref()
    }

    /// Shadowing, when the gateway can shadow (it routes, and the admin API is on or
    /// `--shadow` names a candidate).
    pub fn shadow(&self) -> Option<&Arc<Shadow>> {
        self.shadow.as_ref()
    }

    /// Whether calls are logged.
    fn logs(&self) -> bool {
        self.log.is_some()
    }

    /// A call to `path` arrived: its method.
    fn started(&self, path: &str) -> Method {
        let method = self.methods.labels(path);
        if let Some(metrics) = &self.metrics {
            metrics.started(&method.labels);
        }
        method
    }

    /// Whether the call of `method` arriving now keeps its first message for the usage
    /// table's deprecated fields.
    fn samples(&self, method: &Method) -> bool {
        method.descriptor.is_some() && self.usage.as_ref().is_some_and(|usage| usage.sampled())
    }

    /// The recorder, when calls are recorded.
    fn recorder(&self) -> Option<&Recorder> {
        self.recorder.as_ref()
    }

    /// A call ended; `sample` is its request's messages, when they were kept (the call was
    /// sampled for the usage table, recorded or shadowed), and `kept` the rest of a recorded
    /// or shadowed call.
    fn finish(
        &self,
        method: &Method,
        call: CallRecord,
        sample: Option<Capture>,
        kept: Option<Kept>,
    ) {
        if let Some(metrics) = &self.metrics {
            metrics.handled(&method.labels, &call);
        }
        if let Some(usage) = &self.usage {
            let key = usage.key(
                call.peer.map(|peer| peer.ip()),
                call.user_agent.as_ref(),
                call.identity.as_ref(),
                &method.labels.grpc_service,
                &method.labels.grpc_method,
                call.routed.as_ref(),
            );
            usage.record(&key, method.deprecated, call.start);
            if let (Some(sample), Some(descriptor)) = (&sample, &method.descriptor) {
                let fields = sample
                    .first()
                    .and_then(|payload| deprecated::set_in(&descriptor.input(), payload));
                usage.record_fields(&key, fields, call.start);
            }
        }
        if let Some(Kept {
            recording,
            shadowing,
            mut ended,
        }) = kept
        {
            ended.request = sample;
            if let (Some(shadow), Some(shadowing)) = (&self.shadow, shadowing) {
                shadow.finish(shadowing, &ended);
            }
            if let (Some(recorder), Some(recording)) = (&self.recorder, recording) {
                recorder.finish(recording, ended);
            }
        }
        if let Some(log) = &self.log
            && !log.log(call)
            && let Some(metrics) = &self.metrics
        {
            metrics.log_dropped();
        }
    }
}

/// A recorded or shadowed call that ended: what the recorder and the shadow take.
#[derive(Debug)]
struct Kept {
    recording: Option<Recording>,
    shadowing: Option<Shadowing>,
    ended: Ended,
}

/// Starts the metrics listener for `observer`, if it serves metrics: its address and a guard
/// that stops it when dropped.
pub(crate) async fn serve(
    addr: Option<SocketAddr>,
    observer: Option<&Observer>,
) -> anyhow::Result<Option<MetricsListener>> {
    let (Some(addr), Some(metrics)) = (addr, observer.and_then(Observer::metrics)) else {
        return Ok(None);
    };
    let server = http::serve(addr, metrics.clone()).await?;
    tracing::info!(addr = %server.addr, "serving metrics at /metrics");
    Ok(Some(MetricsListener(server)))
}

/// The running metrics listener; stops when dropped.
#[derive(Debug)]
pub struct MetricsListener(http::MetricsServer);

impl MetricsListener {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }
}
