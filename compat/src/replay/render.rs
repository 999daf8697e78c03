//! The replay's report as text: a table of the methods, the differing fields with examples,
//! the noise, then the one-line verdict.

use super::report::{MethodReplay, ReplayReport, Verdict};

/// Writes the report: the servers, one row per method, the details, the verdict.
pub fn render_text(report: &ReplayReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let noise_from = match &report.secondary {
        Some(second) => format!("second OLD {second}"),
        None => "OLD asked twice".to_string(),
    };
    writeln!(
        out,
        "replay of {} calls from {}: OLD {}, NEW {}, noise from {noise_from}; replies read with OLD's descriptors",
        report.calls,
        report.files.join(", "),
        report.old,
        report.new
    )?;
    render_methods(&report.methods, out)?;
    let count = |v: Verdict| report.methods.iter().filter(|m| m.verdict == v).count();
    let total = report.methods.len();
    let line = match report.verdict() {
        Verdict::Ok => format!(
            "NEW answers the traffic as OLD does ({} of {total} methods ok, {} calls)",
            count(Verdict::Ok),
            report.sent
        ),
        Verdict::Inconclusive => format!(
            "no difference found, but {} of {total} methods are inconclusive (no reply compared): the traffic verified nothing there",
            count(Verdict::Inconclusive)
        ),
        Verdict::Degraded | Verdict::Broken => format!(
            "NEW answers the traffic differently: {} broken, {} degraded of {total} methods",
            count(Verdict::Broken),
            count(Verdict::Degraded)
        ),
    };
    writeln!(out, "{line}")
}

/// The methods' table (calls, statuses, differing fields, noise, verdict), then each
/// difference's examples, the ignored fields, NEW's other statuses and the calls not sent:
/// shared by the replay's and the gateway's shadow report.
pub fn render_methods(
    methods: &[MethodReplay],
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .force_no_tty()
        .set_header([
            "method",
            "calls",
            "OK on OLD",
            "compared",
            "statuses (OLD → NEW)",
            "fields differing",
            "noise",
            "verdict",
        ]);
    for m in methods {
        let method = if m.called == m.method {
            m.method.clone()
        } else {
            format!("{}\n→ {}", m.method, m.called)
        };
        let statuses: Vec<String> = m
            .statuses
            .iter()
            .map(|s| {
                let pair = if s.old == s.new {
                    s.old.clone()
                } else {
                    format!("{} → {}", s.old, s.new)
                };
                format!("{pair} ×{}", s.calls)
            })
            .collect();
        let list = |paths: Vec<String>| {
            if paths.is_empty() {
                "–".to_string()
            } else {
                paths.join(", ")
            }
        };
        let verdict = if m.reason.is_empty() {
            m.verdict.to_string()
        } else {
            format!("{}: {}", m.verdict, m.reason)
        };
        let calls = if m.unsent_calls > 0 {
            format!("{} ({} not sent)", m.calls, m.unsent_calls)
        } else {
            m.calls.to_string()
        };
        table.add_row([
            method,
            calls,
            m.succeeded.to_string(),
            m.compared.to_string(),
            list(statuses),
            list(
                m.differences
                    .iter()
                    .map(|d| format!("{} ×{}", d.path, d.calls))
                    .collect(),
            ),
            list(
                m.noise
                    .iter()
                    .map(|n| format!("{} ×{}", n.path, n.calls))
                    .collect(),
            ),
            verdict,
        ]);
    }
    writeln!(out, "{table}")?;
    for m in methods {
        for d in &m.differences {
            for e in &d.examples {
                writeln!(out, "{}: {}: {} → {}", m.method, e.at, e.old, e.new)?;
            }
        }
        for i in &m.ignored {
            writeln!(
                out,
                "{}: {} differs in {} calls (ignored by --ignore)",
                m.method, i.path, i.calls
            )?;
        }
        for s in m
            .statuses
            .iter()
            .filter(|s| s.old != s.new && !s.message.is_empty())
        {
            writeln!(out, "{}: NEW {} \"{}\"", m.method, s.new, s.message)?;
        }
        for e in &m.unsent {
            writeln!(out, "{}: {}: {}", m.method, e.at, e.old)?;
        }
    }
    Ok(())
}
