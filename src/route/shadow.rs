//! `testbed route shadow` and `testbed route shadow-report`: start, change or stop the
//! gateway's shadow traffic, and read what it found (see `port::shadow`).

use super::Target;
use anyhow::Context;
use port::admin::AdminClient;
use port::admin::pb::{ShadowReply, ShadowReportRequest, ShadowRequest};
use port::shadow::ShadowReport;
use serde_json::Value;

/// `route shadow`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ShadowArgs {
    /// The candidate backend: an upstream's name (add it with `;weight=0` so that it takes no
    /// live calls itself).
    #[arg(required_unless_present = "off", conflicts_with = "off")]
    pub candidate: Option<String>,
    /// A second backend of the primary's version, for the noise; else the primary is asked
    /// again.
    #[arg(long, value_name = "NAME", conflicts_with = "off")]
    pub secondary: Option<String>,
    /// The share of eligible calls copied, above 0 and at most 1 (default: the gateway's
    /// `--shadow-rate`).
    #[arg(long, value_name = "SHARE", conflicts_with = "off")]
    pub rate: Option<f64>,
    /// Stop shadowing (the report stays readable until a new target is set).
    #[arg(long)]
    pub off: bool,
}

/// The report in a reply.
fn report(reply: &ShadowReply) -> anyhow::Result<(ShadowReport, Value)> {
    let value: Value = serde_json::from_str(&reply.report_json)
        .context("the admin API sent a shadow report that is not JSON")?;
    let report = serde_json::from_value(value.clone())
        .context("the admin API sent a shadow report of another shape")?;
    Ok((report, value))
}

/// Sets the target (or stops): the text and JSON to print.
pub(super) async fn set(
    client: &mut AdminClient,
    target: &Target,
    args: &ShadowArgs,
) -> anyhow::Result<(String, Value)> {
    let reply = client
        .shadow(ShadowRequest {
            candidate: args.candidate.clone().unwrap_or_default(),
            secondary: args.secondary.clone().unwrap_or_default(),
            rate: args.rate,
        })
        .await
        .map_err(|status| target.refused(status))?
        .into_inner();
    let (report, value) = report(&reply)?;
    let text = match &report.candidate {
        Some(candidate) => format!(
            "shadowing to {candidate} (noise from {}), {} % of eligible calls\n",
            report
                .secondary
                .as_deref()
                .map_or("the primary asked again".to_string(), |s| format!(
                    "backend {s}"
                )),
            report.rate * 100.0
        ),
        None => "shadowing is off\n".to_string(),
    };
    Ok((escaped(&text), value))
}

/// Reads the report: the text, the JSON and the exit code (0 ok, 100 broken or degraded, 3
/// nothing compared for some method).
pub(super) async fn read(
    client: &mut AdminClient,
    target: &Target,
) -> anyhow::Result<(String, Value, i32)> {
    let reply = client
        .shadow_report(ShadowReportRequest {})
        .await
        .map_err(|status| target.refused(status))?
        .into_inner();
    let (report, value) = report(&reply)?;
    let text = escaped(&port::shadow::render(&report));
    Ok((text, value, report.exit_code()))
}

/// `text` with the control characters of each line escaped (field values come from the
/// backends' replies), its line breaks kept.
fn escaped(text: &str) -> String {
    text.lines()
        .map(|line| port::route_checks::escape_controls(line) + "\n")
        .collect()
}
