//! One backend's figures over an interval (calls, errors, p99), and how they are read off two
//! scrapes of the gateway's `/metrics`: the difference of its `grpc_server_handled_total`
//! counters and `grpc_server_handling_seconds` buckets between the scrapes, the p99
//! interpolated within its bucket as PromQL's `histogram_quantile` does.

use super::exposition;
use anyhow::{Context, bail};
use std::collections::{BTreeMap, BTreeSet};

/// What one backend did over an interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Figures {
    /// Calls that ended (any status).
    pub(super) calls: f64,
    /// Calls that ended with one of the codes counted as errors.
    pub(super) errors: f64,
    /// The 99th percentile of their handling time, in seconds; `None` without calls.
    pub(super) p99: Option<f64>,
}

impl Figures {
    /// Errors per call, 0 without calls.
    pub(super) fn error_rate(&self) -> f64 {
        if self.calls > 0.0 {
            self.errors / self.calls
        } else {
            0.0
        }
    }
}

/// One backend's counters in one scrape: calls by gRPC code, and the cumulative handling-time
/// buckets by upper bound (summed over its methods).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Counters {
    by_code: BTreeMap<String, f64>,
    buckets: Vec<(f64, f64)>,
}

/// Whether a series' `backend` label names `backend`: the upstream itself, or one of its
/// `NAME/PACKAGE` backends (as SetWeight sets all of them).
fn is_backend(label: &str, backend: &str) -> bool {
    label == backend
        || label
            .strip_prefix(backend)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl Counters {
    /// `backend`'s counters in a Prometheus text exposition (`serve --metrics-addr`).
    pub(super) fn read(text: &str, backend: &str) -> anyhow::Result<Self> {
        let mut counters = Self::default();
        // Keyed by the bound's bits: the same bound in every series.
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for sample in exposition::samples(text)? {
            if !sample
                .label("backend")
                .is_some_and(|label| is_backend(label, backend))
            {
                continue;
            }
            match sample.name.as_str() {
                "grpc_server_handled_total" => {
                    let code = sample.label("grpc_code").unwrap_or("").to_string();
                    *counters.by_code.entry(code).or_default() += sample.value;
                }
                "grpc_server_handling_seconds_bucket" => {
                    let bound = sample.label("le").context("a bucket without `le`")?;
                    let bound: f64 = match bound {
                        "+Inf" => f64::INFINITY,
                        other => other
                            .parse()
                            .with_context(|| format!("a bucket bound {other:?}"))?,
                    };
                    buckets.entry(bound.to_bits()).or_insert((bound, 0.0)).1 += sample.value;
                }
                _ => {}
            }
        }
        counters.buckets = buckets.into_values().collect();
        counters.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(counters)
    }

    /// What happened between `self` (the earlier scrape) and `later`; an error when a
    /// counter went down (the gateway restarted between them).
    pub(super) fn until(&self, later: &Self, errors: &BTreeSet<String>) -> anyhow::Result<Figures> {
        let went_down = self
            .by_code
            .iter()
            .any(|(code, before)| later.by_code.get(code).is_none_or(|after| after < before));
        if went_down {
            bail!("the gateway's call counters went down between two scrapes: it restarted");
        }
        let mut calls = 0.0;
        let mut failed = 0.0;
        for (code, &after) in &later.by_code {
            let before = self.by_code.get(code).copied().unwrap_or(0.0);
            calls += after - before;
            if errors.contains(code) {
                failed += after - before;
            }
        }
        let mut buckets = Vec::with_capacity(later.buckets.len());
        for &(bound, after) in &later.buckets {
            let before = self
                .buckets
                .iter()
                .find(|(earlier, _)| *earlier == bound)
                .map_or(0.0, |(_, count)| *count);
            buckets.push((bound, (after - before).max(0.0)));
        }
        Ok(Figures {
            calls,
            errors: failed,
            p99: quantile(0.99, &buckets),
        })
    }
}

/// The `q` quantile of cumulative `buckets` (upper bound, count; ascending, the last `+Inf`),
/// as PromQL's `histogram_quantile` computes it: linear within the bucket the rank falls in,
/// the lowest bucket starting at 0, and the highest finite bound when the rank falls in
/// `+Inf`. `None` without observations.
pub(super) fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let index = buckets.iter().position(|(_, count)| *count >= rank)?;
    let (upper, count) = buckets[index];
    if upper.is_infinite() {
        return Some(if index == 0 {
            0.0
        } else {
            buckets[index - 1].0
        });
    }
    let (lower, below) = if index == 0 {
        (0.0_f64.min(upper), 0.0)
    } else {
        buckets[index - 1]
    };
    let within = count - below;
    if within <= 0.0 {
        return Some(upper);
    }
    Some(lower + (upper - lower) * (rank - below) / within)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP grpc_server_handled_total Total number of RPCs completed on the server.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_type="unary",grpc_service="s.v2.S",grpc_method="A",backend="v2b",version="2.1.0",grpc_code="OK"} 90
grpc_server_handled_total{grpc_type="unary",grpc_service="s.v2.S",grpc_method="B",backend="v2b",version="2.1.0",grpc_code="OK"} 5
grpc_server_handled_total{grpc_type="unary",grpc_service="s.v2.S",grpc_method="A",backend="v2b",version="2.1.0",grpc_code="Unavailable"} 5
grpc_server_handled_total{grpc_type="unary",grpc_service="s.v2.S",grpc_method="A",backend="v2bb",version="2.2.0",grpc_code="OK"} 1000
grpc_server_handled_total{grpc_type="unary",grpc_service="s.v2.S",grpc_method="A",backend="v2a",version="2.0.0",grpc_code="OK"} 7
# HELP grpc_server_handling_seconds Histogram of response latency.
# TYPE grpc_server_handling_seconds histogram
grpc_server_handling_seconds_sum{grpc_type="unary",grpc_service="s.v2.S",grpc_method="A",backend="v2b",version="2.1.0"} 1.5
grpc_server_handling_seconds_count{grpc_type="unary",grpc_service="s.v2.S",grpc_method="A",backend="v2b",version="2.1.0"} 100
grpc_server_handling_seconds_bucket{le="0.005",grpc_type="unary",grpc_service="s.v2.S",grpc_method="A",backend="v2b",version="2.1.0"} 50
grpc_server_handling_seconds_bucket{le="0.01",grpc_type="unary",grpc_service="s.v2.S",grpc_method="A",backend="v2b",version="2.1.0"} 90
grpc_server_handling_seconds_bucket{le="+Inf",grpc_type="unary",grpc_service="s.v2.S",grpc_method="A",backend="v2b",version="2.1.0"} 100
"#;

    fn errors() -> BTreeSet<String> {
        ["Unavailable".to_string()].into()
    }

    #[test]
    fn a_backends_calls_and_errors_are_summed_over_its_methods_and_no_other_backend() {
        let before = Counters::default();
        let after = Counters::read(SCRAPE, "v2b").unwrap();
        let figures = before.until(&after, &errors()).unwrap();
        assert_eq!(figures.calls, 100.0);
        assert_eq!(figures.errors, 5.0);
        assert_eq!(figures.error_rate(), 0.05);
        // Rank 99 of 100 falls in (0.01, +Inf]: the highest finite bound.
        assert_eq!(figures.p99, Some(0.01));
        let baseline = before.until(&Counters::read(SCRAPE, "v2a").unwrap(), &errors());
        assert_eq!(baseline.unwrap().calls, 7.0);
        let upstream = Counters::read(SCRAPE.replace("\"v2b\"", "\"v2b/s.v2\"").as_str(), "v2b");
        assert_eq!(
            before.until(&upstream.unwrap(), &errors()).unwrap().calls,
            100.0
        );
    }

    #[test]
    fn the_interval_is_the_difference_and_a_restart_is_an_error() {
        let after = Counters::read(SCRAPE, "v2b").unwrap();
        let same = after.until(&after, &errors()).unwrap();
        assert_eq!((same.calls, same.errors, same.p99), (0.0, 0.0, None));
        let err = after.until(&Counters::default(), &errors());
        assert!(err.is_err());
        let fewer = Counters::read(&SCRAPE.replace("} 90\n", "} 80\n"), "v2b").unwrap();
        assert!(
            after
                .until(&fewer, &errors())
                .unwrap_err()
                .to_string()
                .contains("restarted")
        );
    }

    #[test]
    fn the_quantile_interpolates_as_histogram_quantile_does() {
        // Worked by hand from PromQL's rules: rank 0.5 * 100 = 50 falls in the first bucket
        // (0, 0.005] at its top; rank 0.9 * 100 = 90 at the top of (0.005, 0.01]; rank
        // 0.7 * 100 = 70 half-way through it.
        let buckets = [(0.005, 50.0), (0.01, 90.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(0.5, &buckets), Some(0.005));
        assert_eq!(quantile(0.9, &buckets), Some(0.01));
        assert!((quantile(0.7, &buckets).unwrap() - 0.0075).abs() < 1e-12);
        assert!((quantile(0.2, &buckets).unwrap() - 0.002).abs() < 1e-12);
        assert_eq!(quantile(0.99, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(quantile(0.99, &[]), None);
    }
}
