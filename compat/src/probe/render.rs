//! The probe's report as text: one table per direction (with the methods skipped under it),
//! then the one-line verdict.

use super::Header;
use super::report::{Caller, Ending, ProbeReport, Verdict};
use super::values::Change;
use std::collections::BTreeSet;

/// Writes the report as tables, one per direction, then the one-line verdict.
pub fn render_text(report: &ProbeReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    for d in &report.directions {
        let (who, whose) = match d.caller {
            Caller::Old => ("old clients", "old"),
            Caller::New => ("new clients", "new"),
        };
        let metadata = if d.headers.is_empty() {
            String::new()
        } else {
            let all: Vec<String> = d.headers.iter().map(Header::to_string).collect();
            format!(", every call with metadata {}", all.join(", "))
        };
        writeln!(
            out,
            "{who} ({whose} descriptors) → {} (compared with their own server {}){metadata}",
            d.target_label, d.own
        )?;
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .force_no_tty()
            .set_header([
                "method",
                "calls",
                "status",
                "own server",
                "unknown to caller",
                "defaulted",
                "changed (own → target)",
                "verdict",
            ]);
        for m in &d.methods {
            let method = if m.called == m.method {
                m.method.clone()
            } else {
                format!("{}\n→ {}", m.method, m.called)
            };
            let verdict = if m.reason.is_empty() {
                m.verdict.to_string()
            } else {
                format!("{}: {}", m.verdict, m.reason)
            };
            let list = |v: &[String]| {
                if v.is_empty() {
                    "–".to_string()
                } else {
                    v.join(", ")
                }
            };
            table.add_row([
                method,
                m.calls.len().to_string(),
                endings(m.calls.iter().map(|c| &c.target)),
                endings(m.calls.iter().map(|c| &c.own)),
                list(&m.unknown),
                list(&m.defaulted),
                changes(&m.changed),
                verdict,
            ]);
        }
        writeln!(out, "{table}")?;
        for s in &d.skipped {
            writeln!(out, "skipped: {} ({})", s.method, s.reason)?;
        }
    }
    let old = &report.directions[0];
    let count = |v: Verdict| old.methods.iter().filter(|m| m.verdict == v).count();
    // The verdict holds for the paths called: say so when they are not the old clients' own.
    let package = |path: &str| -> Option<String> {
        let service = path.rsplit_once('/')?.0;
        Some(service.rsplit_once('.')?.0.to_string())
    };
    let readdressed: BTreeSet<String> = old
        .methods
        .iter()
        .filter(|m| m.called != m.method)
        .filter_map(|m| Some(format!("{} → {}", package(&m.method)?, package(&m.called)?)))
        .collect();
    let how = if readdressed.is_empty() {
        String::new()
    } else {
        let pairs: Vec<String> = readdressed.into_iter().collect();
        format!(
            "; their calls were re-addressed {} (--no-auto-map sends them unchanged)",
            pairs.join(", ")
        )
    };
    let tally: Vec<String> = [
        Verdict::Broken,
        Verdict::Degraded,
        Verdict::Changed,
        Verdict::Inconclusive,
        Verdict::Ok,
    ]
    .into_iter()
    .filter(|v| count(*v) > 0)
    .map(|v| format!("{} {v}", count(v)))
    .collect();
    let skipped = match old.skipped.len() {
        0 => String::new(),
        n => format!(", {n} skipped"),
    };
    let of = format!("{} methods", old.methods.len());
    let inconclusive: Vec<&str> = old
        .methods
        .iter()
        .filter(|m| m.verdict == Verdict::Inconclusive)
        .map(|m| m.method.as_str())
        .collect();
    if !report.old_clients_unaffected {
        writeln!(
            out,
            "verdict: old clients are affected ({} of {of}{skipped}){how}",
            tally.join(", ")
        )
    } else if inconclusive.is_empty() {
        writeln!(
            out,
            "verdict: old clients are unaffected ({} of {of} ok{skipped}){how}",
            count(Verdict::Ok)
        )
    } else if report.allow_inconclusive {
        writeln!(
            out,
            "verdict: old clients are unaffected as far as the probe could tell ({} of {of}{skipped}; inconclusive accepted with --allow-inconclusive){how}",
            tally.join(", ")
        )
    } else {
        writeln!(
            out,
            "verdict: inconclusive for old clients ({} of {of}{skipped}): no call of {} succeeded on its own server; give requests that do (--request), leave them out (--skip), or accept with --allow-inconclusive{how}",
            tally.join(", "),
            inconclusive.join(", ")
        )
    }
}

/// Changed values as `path: own → target`, the first three, then how many more.
fn changes(all: &[Change]) -> String {
    if all.is_empty() {
        return "–".to_string();
    }
    let mut shown: Vec<String> = all.iter().take(3).map(Change::to_string).collect();
    if all.len() > 3 {
        shown.push(format!("+{} more", all.len() - 3));
    }
    shown.join("\n")
}

/// The calls' statuses in order, repeats counted: `2× NOT_FOUND, OK (1.0.0)`.
pub(super) fn endings<'a>(all: impl Iterator<Item = &'a Ending>) -> String {
    let mut runs: Vec<(String, usize)> = Vec::new();
    for e in all {
        let code = match e.capped {
            Some(_) => format!("{} (capped)", e.code),
            None => e.code.clone(),
        };
        let text = match &e.served_by {
            Some(v) => format!("{code} ({v})"),
            None => code,
        };
        match runs.last_mut() {
            Some((last, n)) if *last == text => *n += 1,
            _ => runs.push((text, 1)),
        }
    }
    runs.into_iter()
        .map(|(t, n)| if n == 1 { t } else { format!("{n}× {t}") })
        .collect::<Vec<_>>()
        .join(", ")
}
