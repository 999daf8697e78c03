//! What shadowing found, as data (the admin API sends it as JSON) and as text
//! (`testbed route shadow-report`), and the exit code it implies, as the replay's.

use super::{Session, ShadowOptions};
use compat::replay::{MethodReplay, Verdict, render_methods};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

/// Calls of one method, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodCount {
    /// `pkg.Service/Method`.
    pub method: String,
    /// How many calls.
    pub calls: u64,
}

/// The shadow report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShadowReport {
    /// Whether shadowing is on.
    pub active: bool,
    /// The candidate backend.
    pub candidate: Option<String>,
    /// The second old backend; without it the primary's backend is asked again.
    pub secondary: Option<String>,
    /// The share of eligible calls copied.
    pub rate: f64,
    /// When the target was set, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// Unpinned calls of methods the gateway knows, seen since.
    pub eligible: u64,
    /// Of those, calls not copied because their method may change state (by method).
    pub not_safe: Vec<MethodCount>,
    /// Calls the rate chose.
    pub sampled: u64,
    /// Chosen calls not copied: `--shadow-held` calls were held already.
    pub busy: u64,
    /// Chosen calls not copied: past `--shadow-max-call-bytes` or `--shadow-max-messages`
    /// (or compressed in a way the gateway does not decompress).
    pub too_large: u64,
    /// Chosen calls not copied: the gateway answered them itself (no backend did).
    pub not_served: u64,
    /// Chosen calls not copied: the candidate served them (it has a weight above 0).
    pub served_by_candidate: u64,
    /// Chosen calls not copied: the caller cancelled them.
    pub cancelled: u64,
    /// Chosen calls not copied: they carried binary (`-bin`) metadata, which copies cannot.
    pub binary_metadata: u64,
    /// Copies sent to the candidate and compared.
    pub compared: u64,
    /// Calls held now (being read, queued or compared).
    pub held: u64,
    /// Per method, in the order first copied.
    pub methods: Vec<MethodReplay>,
    /// The `--shadow-ignore` rules.
    pub ignore: Vec<String>,
}

impl ShadowReport {
    /// The worst method verdict (inconclusive when nothing was compared).
    pub fn verdict(&self) -> Verdict {
        Verdict::worst(&self.methods)
    }

    /// 0 when the candidate answered every copy as the primary did; 100 when a method is
    /// broken or degraded; 3 when none is but some method, or the whole report, compared
    /// nothing.
    pub fn exit_code(&self) -> i32 {
        self.verdict().exit_code(false)
    }
}

/// The report of `session` (none: shadowing is off).
pub(super) fn of(session: Option<&Session>, options: &ShadowOptions, held: usize) -> ShadowReport {
    let ignore = options
        .shadow_ignore
        .iter()
        .map(ToString::to_string)
        .collect();
    let Some(session) = session else {
        return ShadowReport {
            active: false,
            candidate: None,
            secondary: None,
            rate: options.shadow_rate,
            since_unix_ms: 0,
            eligible: 0,
            not_safe: Vec::new(),
            sampled: 0,
            busy: 0,
            too_large: 0,
            not_served: 0,
            served_by_candidate: 0,
            cancelled: 0,
            binary_metadata: 0,
            compared: 0,
            held: held as u64,
            methods: Vec::new(),
            ignore,
        };
    };
    let c = &session.counts;
    let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    let not_safe = session
        .not_safe
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(method, calls)| MethodCount {
            method: method.clone(),
            calls: *calls,
        })
        .collect();
    let methods = session
        .tallies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|t| t.report(&options.shadow_ignore))
        .collect();
    ShadowReport {
        active: true,
        candidate: Some(session.target.candidate.clone()),
        secondary: session.target.secondary.clone(),
        rate: session.target.rate,
        since_unix_ms: session
            .since
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        eligible: load(&c.eligible),
        not_safe,
        sampled: load(&c.sampled),
        busy: load(&c.busy),
        too_large: load(&c.too_large),
        not_served: load(&c.not_served),
        served_by_candidate: load(&c.served_by_candidate),
        cancelled: load(&c.cancelled),
        binary_metadata: load(&c.binary_metadata),
        compared: load(&c.compared),
        held: held as u64,
        methods,
        ignore,
    }
}

/// The report as text: what was copied, the methods' table, the verdict line.
pub fn render(report: &ShadowReport) -> String {
    let Some(candidate) = &report.candidate else {
        return "shadowing is off (testbed route shadow NAME, or serve --shadow NAME)\n"
            .to_string();
    };
    let noise_from = match &report.secondary {
        Some(second) => format!("backend {second}"),
        None => "the primary asked again".to_string(),
    };
    let mut out = format!(
        "shadowing to {candidate} (noise from {noise_from}), {} % of unpinned calls of methods safe to repeat: {} eligible, {} chosen, {} compared, {} held now\n",
        report.rate * 100.0,
        report.eligible,
        report.sampled,
        report.compared,
        report.held
    );
    let skipped = [
        (report.busy, "--shadow-held calls were held already"),
        (
            report.too_large,
            "past --shadow-max-call-bytes or --shadow-max-messages",
        ),
        (report.not_served, "the gateway answered them itself"),
        (report.served_by_candidate, "the candidate served them"),
        (report.cancelled, "the caller cancelled them"),
        (report.binary_metadata, "binary (-bin) metadata"),
    ];
    for (calls, why) in skipped.iter().filter(|(calls, _)| *calls > 0) {
        out += &format!("not copied: {calls} calls ({why})\n");
    }
    for m in &report.not_safe {
        out += &format!(
            "not copied: {} calls of {}, which may change state (serve --shadow-method to copy it)\n",
            m.calls, m.method
        );
    }
    let mut table = Vec::new();
    if !report.methods.is_empty() && render_methods(&report.methods, &mut table).is_ok() {
        out += &String::from_utf8_lossy(&table);
    }
    let count = |v: Verdict| report.methods.iter().filter(|m| m.verdict == v).count();
    let total = report.methods.len();
    out += &match report.verdict() {
        Verdict::Ok => format!(
            "{candidate} answers the copied calls as the primary does ({} of {total} methods ok, {} calls)\n",
            count(Verdict::Ok),
            report.compared
        ),
        Verdict::Inconclusive if total == 0 => {
            "nothing compared yet: no call was copied\n".to_string()
        }
        Verdict::Inconclusive => format!(
            "no difference found, but {} of {total} methods are inconclusive (no reply compared)\n",
            count(Verdict::Inconclusive)
        ),
        Verdict::Degraded | Verdict::Broken => format!(
            "{candidate} answers the copied calls differently: {} broken, {} degraded of {total} methods\n",
            count(Verdict::Broken),
            count(Verdict::Degraded)
        ),
    };
    out
}
