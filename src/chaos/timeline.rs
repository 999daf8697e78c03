//! What `testbed chaos` makes of its records: when calls of each API version were failing
//! (outages, from the [`CallLog`](crate::load::CallLog)), what the gateway's health said
//! meanwhile, and where the two disagreed.

use crate::load::{CallLog, CallOutcome, CallRecord};
use serde::Serialize;
use services::Api;
use std::time::Duration;

/// Outages of one API version closer than this are one outage: a client sends its next call
/// at once after a failure, so the microseconds between two failed calls are not a success.
const SAME_OUTAGE: Duration = Duration::from_millis(50);

/// A span of the run, since the load started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Start.
    pub from: Duration,
    /// End.
    pub to: Duration,
}

impl Span {
    /// Whether the two spans share a moment.
    pub fn overlaps(&self, other: &Span) -> bool {
        self.from <= other.to && other.from <= self.to
    }

    /// Its length in milliseconds.
    pub fn ms(&self) -> f64 {
        ms(self.to.saturating_sub(self.from))
    }
}

/// A duration in milliseconds.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The span of a noted call, from sending to its end.
pub fn span(record: &CallRecord) -> Span {
    Span {
        from: record.sent,
        to: record.done(),
    }
}

/// When calls of `api` were not succeeding: the union of the spans of its noted calls (failed,
/// wrong or slow), less every [`CallLog::TICK`] in which a call of `api` was verified
/// (`verified`: counts per tick), since the API was up for those calls; sorted.
pub fn outages(records: &[CallRecord], api: Api, verified: &[u32]) -> Vec<Span> {
    let mut spans: Vec<Span> = records.iter().filter(|r| r.api == api).map(span).collect();
    spans.sort_by_key(|s| s.from);
    let mut merged: Vec<Span> = Vec::new();
    for next in spans {
        match merged.last_mut() {
            Some(last) if next.from <= last.to + SAME_OUTAGE => last.to = last.to.max(next.to),
            _ => merged.push(next),
        }
    }
    let tick = CallLog::TICK;
    let up = |index: usize| verified.get(index).is_some_and(|&n| n > 0);
    let mut down: Vec<Span> = Vec::new();
    for outage in merged {
        let first = (outage.from.as_nanos() / tick.as_nanos()) as usize;
        let last = (outage.to.as_nanos() / tick.as_nanos()) as usize;
        for index in (first..=last).filter(|&i| !up(i)) {
            let from = outage.from.max(tick * index as u32);
            let to = outage.to.min(tick * (index as u32 + 1));
            match down.last_mut() {
                Some(previous) if previous.to == from => previous.to = to,
                _ => down.push(Span { from, to }),
            }
        }
    }
    down
}

/// One status the gateway's health reported for a service, and when it arrived.
#[derive(Debug, Clone, Serialize)]
pub struct HealthEvent {
    /// Since the load started.
    #[serde(serialize_with = "as_seconds")]
    pub at: Duration,
    /// SERVING, NOT_SERVING, ...
    pub status: String,
}

impl HealthEvent {
    /// Whether it says the service is serving.
    pub fn serving(&self) -> bool {
        self.status == "SERVING"
    }
}

fn as_seconds<S: serde::Serializer>(at: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(at.as_secs_f64())
}

/// Which way health and calls disagreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// Health said SERVING while calls failed or hung.
    ServingWhileFailing,
    /// Health said NOT_SERVING while calls succeeded.
    NotServingWhileOk,
}

/// A span in which health and calls of one API version disagreed.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    /// The API version.
    pub api: String,
    /// Which way.
    pub kind: Kind,
    /// Start, seconds since the load started.
    pub from_s: f64,
    /// Its length, ms.
    pub ms: f64,
    #[serde(skip)]
    pub(crate) span: Span,
}

/// Where `health` (one service's events, in order) and `outages` (its API's) disagree between
/// the first health event and `end`.
pub fn disagreements(
    api: Api,
    health: &[HealthEvent],
    outages: &[Span],
    end: Duration,
) -> Vec<Disagreement> {
    let Some(first) = health.first() else {
        return Vec::new();
    };
    let mut points: Vec<Duration> = health.iter().map(|e| e.at).collect();
    points.extend(outages.iter().flat_map(|o| [o.from, o.to]));
    points.push(end);
    points.retain(|p| *p >= first.at && *p <= end);
    points.sort();
    points.dedup();
    let mut found: Vec<Disagreement> = Vec::new();
    for pair in points.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let serving = health
            .iter()
            .take_while(|e| e.at <= from)
            .last()
            .is_some_and(HealthEvent::serving);
        let failing = outages.iter().any(|o| o.from <= from && from < o.to);
        let kind = match (serving, failing) {
            (true, true) => Kind::ServingWhileFailing,
            (false, false) => Kind::NotServingWhileOk,
            _ => continue,
        };
        match found.last_mut() {
            Some(last) if last.kind == kind && last.span.to == from => last.span.to = to,
            _ => found.push(Disagreement {
                api: api.name().to_string(),
                kind,
                from_s: 0.0,
                ms: 0.0,
                span: Span { from, to },
            }),
        }
    }
    for disagreement in &mut found {
        disagreement.from_s = disagreement.span.from.as_secs_f64();
        disagreement.ms = disagreement.span.ms();
    }
    found
}

/// Whether a noted call failed (not merely slow or wrong).
pub fn failed(record: &CallRecord) -> Option<&str> {
    match &record.outcome {
        CallOutcome::Failed(code) => Some(code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn failure(sent: u64, took: u64) -> CallRecord {
        CallRecord {
            api: Api::V1,
            sent: at(sent),
            took: at(took),
            outcome: CallOutcome::Failed("UNAVAILABLE".into()),
        }
    }

    fn event(ms: u64, status: &str) -> HealthEvent {
        HealthEvent {
            at: at(ms),
            status: status.into(),
        }
    }

    #[test]
    fn failures_close_together_are_one_outage() {
        let records = [failure(100, 1), failure(102, 1), failure(400, 10)];
        let outages = outages(&records, Api::V1, &[]);
        assert_eq!(
            outages,
            [
                Span {
                    from: at(100),
                    to: at(103)
                },
                Span {
                    from: at(400),
                    to: at(410)
                }
            ]
        );
        assert!(super::outages(&records, Api::V2, &[]).is_empty());
    }

    #[test]
    fn calls_verified_meanwhile_cut_an_outage() {
        // A call hangs from 0 to 100 ms while other calls are verified from 30 to 50 ms.
        let hung = CallRecord {
            outcome: CallOutcome::Slow,
            ..failure(0, 100)
        };
        let verified = [0, 0, 0, 3, 4, 0, 0, 0, 0, 0];
        let spans = |outages: Vec<Span>| -> Vec<(u128, u128)> {
            outages
                .iter()
                .map(|s| (s.from.as_millis(), s.to.as_millis()))
                .collect()
        };
        assert_eq!(
            spans(outages(&[hung], Api::V1, &verified)),
            [(0, 30), (50, 100)]
        );
    }

    #[test]
    fn health_lagging_behind_calls_is_found_both_ways() {
        // Calls fail from 1.0 s to 2.0 s; health notices at 1.3 s and recovers at 2.5 s.
        let outages = [Span {
            from: at(1000),
            to: at(2000),
        }];
        let health = [
            event(0, "SERVING"),
            event(1300, "NOT_SERVING"),
            event(2500, "SERVING"),
        ];
        let found = disagreements(Api::V1, &health, &outages, at(3000));
        let seen: Vec<(Kind, f64)> = found.iter().map(|d| (d.kind, d.ms.round())).collect();
        assert_eq!(
            seen,
            [
                (Kind::ServingWhileFailing, 300.0),
                (Kind::NotServingWhileOk, 500.0)
            ]
        );
    }
}
