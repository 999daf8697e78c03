//! One client version's figures in one phase of a load run: requests, verified and wrong
//! replies, errors by code, serving versions and latency percentiles.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// One client version's figures in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Tally {
    /// Requests sent.
    pub requests: u64,
    /// Replies that verified.
    pub ok: u64,
    /// Failed calls by status code name, with one message each.
    pub errors: BTreeMap<String, (u64, String)>,
    /// Replies that did not verify.
    pub wrong: u64,
    /// The first few wrong replies, described.
    pub wrong_examples: Vec<String>,
    /// Replies per serving version.
    pub served_by: BTreeMap<String, u64>,
    /// Median latency of verified replies, µs (`None` when nothing was answered correctly).
    pub p50_us: Option<f64>,
    /// 99th percentile, µs.
    pub p99_us: Option<f64>,
    /// Slowest, µs.
    pub max_us: Option<f64>,
    #[serde(skip)]
    pub(super) histogram: Histogram<u64>,
}

impl Tally {
    pub(super) fn new() -> Self {
        Self {
            requests: 0,
            ok: 0,
            errors: BTreeMap::new(),
            wrong: 0,
            wrong_examples: Vec::new(),
            served_by: BTreeMap::new(),
            p50_us: None,
            p99_us: None,
            max_us: None,
            histogram: Histogram::new_with_bounds(1, 600_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    pub(super) fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.wrong += other.wrong;
        for (code, (count, message)) in &other.errors {
            let entry = self
                .errors
                .entry(code.clone())
                .or_insert((0, message.clone()));
            entry.0 += count;
        }
        let room = 5usize.saturating_sub(self.wrong_examples.len());
        self.wrong_examples
            .extend(other.wrong_examples.iter().take(room).cloned());
        for (version, count) in &other.served_by {
            *self.served_by.entry(version.clone()).or_default() += count;
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        let measured = !self.histogram.is_empty();
        let us = |ns: u64| Some(ns as f64 / 1e3).filter(|_| measured);
        self.p50_us = us(self.histogram.value_at_quantile(0.5));
        self.p99_us = us(self.histogram.value_at_quantile(0.99));
        self.max_us = us(self.histogram.max());
    }

    /// Failed calls, all codes together.
    pub fn failed(&self) -> u64 {
        self.errors.values().map(|(count, _)| count).sum()
    }
}
