//! Shadowing in `/metrics` (`--metrics-addr`): what the shadow did with the calls it saw and,
//! per method, what the candidate's answers compared as, read from its report at each scrape.
//! The figures count from when the current target was set (a new target starts them again),
//! so they are gauges, not counters.

use super::Shadow;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::Arc;

/// Reads the shadow's report when scraped.
#[derive(Debug)]
pub(crate) struct ShadowMetrics(pub(crate) Arc<Shadow>);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    candidate: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Candidate {
    candidate: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    candidate: String,
    method: String,
    verdict: String,
}

impl Collector for ShadowMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let report = self.0.report();
        // No target, no figures: what an earlier target found is its report's, not a series.
        let Some(candidate) = report.candidate.clone().filter(|_| report.active) else {
            return Ok(());
        };
        let outcomes = [
            ("eligible", report.eligible),
            ("sampled", report.sampled),
            ("compared", report.compared),
            ("dropped_busy", report.busy),
            ("dropped_too_large", report.too_large),
            ("not_served", report.not_served),
            ("served_by_candidate", report.served_by_candidate),
            ("cancelled", report.cancelled),
            ("binary_metadata", report.binary_metadata),
        ];
        let mut metric = encoder.encode_descriptor(
            "testbed_shadow_calls",
            "Calls shadowing saw since its target was set, by what became of them",
            None,
            ConstGauge::new(0u64).metric_type(),
        )?;
        for (outcome, n) in outcomes {
            let labels = Outcome {
                candidate: candidate.clone(),
                outcome,
            };
            ConstGauge::new(n).encode(metric.encode_family(&labels)?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "testbed_shadow_held",
            "Calls held for comparison now (--shadow-held bounds them)",
            None,
            ConstGauge::new(0u64).metric_type(),
        )?;
        ConstGauge::new(report.held).encode(metric.encode_family(&Candidate {
            candidate: candidate.clone(),
        })?)?;
        let mut metric = encoder.encode_descriptor(
            "testbed_shadow_compared",
            "Copies compared with the primary's answer, per method, labelled with the method's verdict so far",
            None,
            ConstGauge::new(0u64).metric_type(),
        )?;
        for m in &report.methods {
            let labels = MethodLabels {
                candidate: candidate.clone(),
                method: m.method.clone(),
                verdict: m.verdict.to_string(),
            };
            ConstGauge::new(m.compared as u64).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
