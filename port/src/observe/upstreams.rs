//! The route table's backends as gauges, read at each scrape: whether each answers, its
//! connections, the calls in flight on it, whether its pool is saturated, whether it is taken
//! out of selection.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use router::{BackendInfo, RouterHandle};

/// Reads `router`'s table when scraped.
#[derive(Debug)]
pub(crate) struct Upstreams {
    router: RouterHandle,
}

impl Upstreams {
    pub(crate) fn new(router: RouterHandle) -> Self {
        Self { router }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
    version: String,
    api: String,
}

type Gauge = (&'static str, &'static str, fn(&BackendInfo) -> i64);

/// Each gauge: name, help, value.
const GAUGES: [Gauge; 5] = [
    (
        "testbed_upstream_healthy",
        "1 when the backend answered its last reachability check and no call to it failed in transport since",
        |b| i64::from(b.reachable),
    ),
    (
        "testbed_upstream_connections",
        "Connections the backend's pool has open for calls (0 for in-process backends)",
        |b| b.connections as i64,
    ),
    (
        "testbed_upstream_in_flight",
        "Calls and streams in flight on the backend",
        |b| b.in_flight as i64,
    ),
    (
        "testbed_upstream_saturated",
        "1 when every connection the backend's pool may open carries all the streams it may",
        |b| i64::from(b.saturated),
    ),
    (
        "testbed_upstream_ejected",
        "1 when the backend gets no new calls: draining (admin Drain), or unreachable",
        |b| i64::from(b.draining || !b.reachable),
    ),
];

impl Collector for Upstreams {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let backends = self.router.table().backends();
        for (name, help, value) in GAUGES {
            let gauge = ConstGauge::new(0i64);
            let mut metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            for backend in &backends {
                let labels = BackendLabels {
                    backend: backend.name.clone(),
                    version: backend.version.to_string(),
                    api: backend.api.clone(),
                };
                ConstGauge::new(value(backend)).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
