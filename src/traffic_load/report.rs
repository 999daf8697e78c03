//! What a traffic load saw: per phase the calls, the target's latency, the versions that served
//! it and the replay's per-method comparison with OLD; as JSON and as text.

use super::PhaseFigures;
use compat::replay::{Ignore, MethodReplay, Verdict, render_methods};
use serde::Serialize;
use std::collections::BTreeMap;

/// One phase of a traffic load.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficPhase {
    /// Its name (`mixed`, `old only`, `new added`, `old removed`).
    pub name: String,
    /// Calls made in it (sent or not).
    pub calls: u64,
    /// Calls sent to every server.
    pub sent: u64,
    /// Of those, the calls the target answered (or left unanswered as OLD did): the latencies
    /// and `served_by` count these.
    pub answered: u64,
    /// The traffic's methods no call of which was made in this phase.
    pub not_sent: Vec<String>,
    /// The target's median latency, µs (`None` when nothing was answered).
    pub p50_us: Option<f64>,
    /// Its 99th percentile, µs.
    pub p99_us: Option<f64>,
    /// Replies per version that served them (the target's `x-api-version`).
    pub served_by: BTreeMap<String, u64>,
    /// Per method, the comparison with OLD.
    pub methods: Vec<MethodReplay>,
    /// The phase's worst method verdict.
    pub verdict: Verdict,
}

impl TrafficPhase {
    pub(super) fn of(figures: PhaseFigures, ignores: &[Ignore]) -> Self {
        let answered = figures.latency.len();
        let us = |q: f64| (answered > 0).then(|| figures.latency.value_at_quantile(q) as f64 / 1e3);
        let (methods, not_sent): (Vec<MethodReplay>, Vec<MethodReplay>) = figures
            .methods
            .iter()
            .map(|t| t.report(ignores))
            .partition(|m| m.calls + m.unsent_calls > 0);
        Self {
            name: figures.name,
            calls: figures.calls,
            sent: figures.sent,
            answered,
            not_sent: not_sent.into_iter().map(|m| m.method).collect(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            served_by: figures.served_by,
            verdict: Verdict::worst(&methods),
            methods,
        }
    }
}

/// What a traffic load saw.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficLoadReport {
    /// The traffic files.
    pub files: Vec<String>,
    /// What was loaded (the user's gateway, or the one a rollout ran).
    pub target: String,
    /// The old server whose replies are the baseline.
    pub old: String,
    /// The second old server, when given; otherwise OLD is asked twice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
    /// Clients.
    pub clients: u16,
    /// Wall time of the load, s.
    pub seconds: f64,
    /// The phases, in order.
    pub phases: Vec<TrafficPhase>,
    /// What happened besides the calls (route changes, drains).
    pub notes: Vec<String>,
    /// The `--ignore` rules.
    pub ignore: Vec<String>,
    /// Inconclusive methods do not set the exit code.
    pub allow_inconclusive: bool,
}

impl TrafficLoadReport {
    /// The report of a load of `args`' traffic against `target`, compared as `options` say.
    pub fn new(
        args: &super::TrafficArgs,
        options: &compat::replay::ReplayOptions,
        target: &str,
        pace: super::Pace,
        seconds: f64,
        phases: Vec<TrafficPhase>,
        notes: Vec<String>,
    ) -> Self {
        Self {
            files: args.names(),
            target: target.to_string(),
            old: options.old.clone(),
            secondary: options.secondary.clone(),
            clients: pace.clients,
            seconds,
            phases,
            notes,
            ignore: options.ignore.iter().map(ToString::to_string).collect(),
            allow_inconclusive: options.allow_inconclusive,
        }
    }

    /// The worst verdict of any method in any phase.
    pub fn verdict(&self) -> Verdict {
        self.phases
            .iter()
            .map(|p| p.verdict)
            .max()
            .unwrap_or(Verdict::Inconclusive)
    }

    /// 0 when the target answered every call as OLD did; 100 when a method is broken or
    /// degraded in some phase; 3 when none is but some are inconclusive.
    pub fn exit_code(&self) -> i32 {
        self.verdict().exit_code(self.allow_inconclusive)
    }

    /// The report as text: a line per phase with its figures, the replay's table, the verdict.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn write(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let noise_from = match &self.secondary {
            Some(second) => format!("second OLD {second}"),
            None => "OLD asked twice".to_string(),
        };
        writeln!(
            out,
            "traffic from {}: {} clients for {:.1} s against {}, every reply compared with OLD {} (noise from {noise_from})",
            self.files.join(", "),
            self.clients,
            self.seconds,
            self.target,
            self.old
        )?;
        for phase in &self.phases {
            let latency = match (phase.p50_us, phase.p99_us) {
                (Some(p50), Some(p99)) => format!("p50 {p50:.0} µs, p99 {p99:.0} µs"),
                _ => "no call sent".to_string(),
            };
            let served: Vec<String> = phase
                .served_by
                .iter()
                .map(|(by, n)| format!("{by} ×{n}"))
                .collect();
            writeln!(
                out,
                "\n{}: {} calls ({} sent, {} answered), {latency}; served by {}; {}",
                phase.name,
                phase.calls,
                phase.sent,
                phase.answered,
                if served.is_empty() {
                    "–".to_string()
                } else {
                    served.join(", ")
                },
                phase.verdict
            )?;
            render_methods(&phase.methods, out)?;
            if !phase.not_sent.is_empty() {
                writeln!(
                    out,
                    "not called in this phase (the load ended before a pass reached them): {}",
                    phase.not_sent.join(", ")
                )?;
            }
        }
        for note in &self.notes {
            writeln!(out, "note: {note}")?;
        }
        let line = match self.verdict() {
            Verdict::Ok => "the target answered every call sent as OLD does".to_string(),
            Verdict::Inconclusive => {
                "no difference found, but some methods are inconclusive (no reply compared): the traffic verified nothing there".to_string()
            }
            Verdict::Degraded | Verdict::Broken => {
                let bad: Vec<String> = self
                    .phases
                    .iter()
                    .filter(|p| p.verdict >= Verdict::Degraded)
                    .map(|p| format!("{} ({})", p.name, p.verdict))
                    .collect();
                format!(
                    "the target answered the traffic differently from OLD in {}",
                    bad.join(", ")
                )
            }
        };
        writeln!(out, "{line}")
    }
}
