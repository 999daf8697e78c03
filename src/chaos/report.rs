//! `testbed chaos`'s report: each fault's window and what was seen in it, judged from the
//! load's [`CallLog`] and the health events.

use super::timeline::{self, Disagreement, HealthEvent, Kind, Span, ms};
use super::{ChaosArgs, Fault};
use crate::load::{CallLog, CallOutcome, CallRecord, LoadReport};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use services::Api;
use std::collections::BTreeMap;
use std::time::Duration;

/// One fault, as it was injected and what was seen during its window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// What was done.
    pub fault: Fault,
    /// To which backend.
    pub backend: String,
    /// The API version that backend serves.
    pub api: String,
    /// When it was injected, s since the load started.
    pub start_s: f64,
    /// When it was undone, s.
    pub undone_s: f64,
    /// When its window closed, s.
    pub end_s: f64,
    /// Calls that failed in the window (client version and code).
    pub failed: BTreeMap<String, u64>,
    /// Wrong replies in the window.
    pub wrong: u64,
    /// The health of the backend's service during the window: ms since the injection, status.
    pub health: Vec<(f64, String)>,
    /// From the injection to the first change of that health, ms.
    pub health_change_ms: Option<f64>,
    /// From the undoing to health saying SERVING again (0 if it never stopped), ms.
    pub health_back_ms: Option<f64>,
    /// Longest span health said SERVING while calls failed or hung, ms (any service).
    pub serving_while_failing_ms: f64,
    /// Longest span health said NOT_SERVING while calls succeeded, ms.
    pub not_serving_while_ok_ms: f64,
    /// Longest noted call of the backend's API in the window (calls under --slow-ms that did
    /// not fail are not noted), ms.
    pub longest_call_ms: f64,
    /// Calls of that API sent while the fault lasted that hung past --slow-ms or failed after
    /// it: calls still sent to an unusable backend.
    pub new_calls_hung: u64,
    #[serde(skip)]
    span: Span,
}

/// What `testbed chaos` saw.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// The flags it ran with (except --json and --gateway-arg).
    pub settings: BTreeMap<String, u64>,
    /// The --gateway-arg flags.
    pub gateway_args: Vec<String>,
    /// Each fault's window, in order.
    pub windows: Vec<Window>,
    /// Calls that failed outside every window.
    pub stray_failures: u64,
    /// The first few of them, described.
    pub stray_examples: Vec<String>,
    /// Every span where health and calls disagreed.
    pub disagreements: Vec<Disagreement>,
    /// The longest of them, ms (0 when health was always truthful).
    pub longest_disagreement_ms: f64,
    /// The load: per-version tallies and time series.
    pub load: LoadReport,
}

impl ChaosReport {
    /// Requests made, wrong replies.
    pub fn requests_and_wrong(&self) -> (u64, u64) {
        let [v1, v2] = self.load.totals();
        (v1.requests + v2.requests, v1.wrong + v2.wrong)
    }

    /// What makes the run fail against `target_ms`, one line each (none: it passed).
    pub fn problems(&self, target_ms: u64) -> Vec<String> {
        let mut problems = Vec::new();
        let (_, wrong) = self.requests_and_wrong();
        if wrong > 0 {
            problems.push(format!("{wrong} replies were wrong"));
        }
        if self.stray_failures > 0 {
            problems.push(format!(
                "{} calls failed outside every fault window",
                self.stray_failures
            ));
        }
        if self.longest_disagreement_ms > target_ms as f64 {
            problems.push(format!(
                "health disagreed with calls for {:.0} ms, over the target of {target_ms} ms",
                self.longest_disagreement_ms
            ));
        }
        problems
    }

    /// The windows as a table, and the totals.
    pub fn render(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_header([
            "fault",
            "backend",
            "failed",
            "wrong",
            "health change ms",
            "health back ms",
            "SERVING while failing ms",
            "NOT_SERVING while ok ms",
            "longest call ms",
            "new calls hung",
        ]);
        let opt = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.0}"));
        for w in &self.windows {
            let failed: Vec<String> = w.failed.iter().map(|(k, n)| format!("{n} {k}")).collect();
            table.add_row([
                w.fault.name().to_string(),
                w.backend.clone(),
                if failed.is_empty() {
                    "0".into()
                } else {
                    failed.join(", ")
                },
                w.wrong.to_string(),
                opt(w.health_change_ms),
                opt(w.health_back_ms),
                format!("{:.0}", w.serving_while_failing_ms),
                format!("{:.0}", w.not_serving_while_ok_ms),
                format!("{:.0}", w.longest_call_ms),
                w.new_calls_hung.to_string(),
            ]);
        }
        let (requests, wrong) = self.requests_and_wrong();
        format!(
            "{table}\n{requests} requests in {:.1} s, {wrong} wrong, {} failed outside the fault \
             windows; health disagreed with calls for {:.0} ms at the longest\n",
            self.load.seconds, self.stray_failures, self.longest_disagreement_ms
        )
    }
}

/// One injected fault: what, to whom (and its API), when injected, undone, window closed.
pub(crate) type Injected = (Fault, String, Api, Duration, Duration, Duration);

/// Puts the records together into the report.
pub(crate) fn judge(
    args: &ChaosArgs,
    load: LoadReport,
    log: &CallLog,
    health: &[Vec<HealthEvent>; 2],
    injected: &[Injected],
    end: Duration,
) -> ChaosReport {
    let records = &log.calls();
    let verified = Api::ALL.map(|api| log.verified_per_tick(api));
    let mut disagreements: Vec<Disagreement> = Api::ALL
        .iter()
        .flat_map(|&api| {
            let outages = timeline::outages(records, api, &verified[api as usize]);
            timeline::disagreements(api, &health[api as usize], &outages, end)
        })
        .collect();
    disagreements.sort_by(|a, b| a.from_s.total_cmp(&b.from_s));
    let evidence = Evidence {
        records,
        health,
        disagreements: &disagreements,
        slow: Duration::from_millis(args.slow_ms),
    };
    let windows: Vec<Window> = injected
        .iter()
        .map(|&(fault, ref backend, api, from, undone, to)| {
            evidence.window(fault, backend, api, Span { from, to }, undone)
        })
        .collect();
    let stray: Vec<&CallRecord> = records
        .iter()
        .filter(|r| r.outcome != CallOutcome::Slow)
        .filter(|r| !windows.iter().any(|w| w.span.overlaps(&timeline::span(r))))
        .collect();
    let settings = [
        ("v1_clients", args.v1_clients as u64),
        ("v2_clients", args.v2_clients as u64),
        ("requests", args.requests.unwrap_or(0)),
        ("cycles", u64::from(args.cycles)),
        ("fault_ms", args.fault_ms),
        ("settle_ms", args.settle_ms),
        ("steady_ms", args.steady_ms),
        ("health_target_ms", args.health_target_ms),
        ("slow_ms", args.slow_ms),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ChaosReport {
        settings,
        gateway_args: args.gateway_args.clone(),
        stray_failures: stray.len() as u64,
        stray_examples: stray
            .iter()
            .take(10)
            .map(|r| {
                format!(
                    "{} call sent at {:.3} s: {:?} after {:.0} ms",
                    r.api,
                    r.sent.as_secs_f64(),
                    r.outcome,
                    ms(r.took)
                )
            })
            .collect(),
        longest_disagreement_ms: disagreements.iter().map(|d| d.ms).fold(0.0, f64::max),
        disagreements,
        windows,
        load,
    }
}

/// Everything recorded during the run.
struct Evidence<'a> {
    records: &'a [CallRecord],
    health: &'a [Vec<HealthEvent>; 2],
    disagreements: &'a [Disagreement],
    slow: Duration,
}

impl Evidence<'_> {
    /// The figures of one fault's window `span`, undone at `undone`.
    fn window(
        &self,
        fault: Fault,
        backend: &str,
        api: Api,
        span: Span,
        undone: Duration,
    ) -> Window {
        let Evidence {
            records,
            health,
            disagreements,
            slow,
        } = *self;
        let inside: Vec<&CallRecord> = records
            .iter()
            .filter(|r| span.overlaps(&timeline::span(r)))
            .collect();
        let mut failed = BTreeMap::new();
        for record in &inside {
            if let Some(code) = timeline::failed(record) {
                *failed.entry(format!("{} {code}", record.api)).or_insert(0) += 1;
            }
        }
        let events = &health[api as usize];
        let during: Vec<&HealthEvent> = events
            .iter()
            .filter(|e| e.at >= span.from && e.at <= span.to)
            .collect();
        let longest = |kind: Kind| {
            disagreements
                .iter()
                .filter(|d| d.kind == kind && d.span.overlaps(&span))
                .map(|d| d.ms)
                .fold(0.0, f64::max)
        };
        let serving_at_undo = events
            .iter()
            .take_while(|e| e.at <= undone)
            .last()
            .is_some_and(HealthEvent::serving);
        let health_back_ms = if serving_at_undo && !during.iter().any(|e| !e.serving()) {
            Some(0.0)
        } else {
            during
                .iter()
                .find(|e| e.at >= undone && e.serving())
                .map(|e| ms(e.at.saturating_sub(undone)))
        };
        let of_api = || inside.iter().filter(|r| r.api == api);
        Window {
            fault,
            backend: backend.to_string(),
            api: api.name().to_string(),
            start_s: span.from.as_secs_f64(),
            undone_s: undone.as_secs_f64(),
            end_s: span.to.as_secs_f64(),
            failed,
            wrong: inside
                .iter()
                .filter(|r| r.outcome == CallOutcome::Wrong)
                .count() as u64,
            health: during
                .iter()
                .map(|e| (ms(e.at.saturating_sub(span.from)), e.status.clone()))
                .collect(),
            health_change_ms: during.first().map(|e| ms(e.at.saturating_sub(span.from))),
            health_back_ms,
            serving_while_failing_ms: longest(Kind::ServingWhileFailing),
            not_serving_while_ok_ms: longest(Kind::NotServingWhileOk),
            longest_call_ms: of_api().map(|r| ms(r.took)).fold(0.0, f64::max),
            new_calls_hung: of_api()
                .filter(|r| r.sent >= span.from && r.sent < undone && r.took >= slow)
                .count() as u64,
            span,
        }
    }
}
