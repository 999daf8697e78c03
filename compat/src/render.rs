//! Output: readable text grouped by element with the verdict first, JSON lines (one object per
//! finding, then one summary object), GitHub workflow annotations and SARIF 2.1.0. Accepted
//! findings are listed in every format, marked as accepted; warnings (expired or stale accept
//! entries) too.

use crate::model::{Bump, Finding, Report};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Readable text grouped by element, verdict first.
    Text,
    /// One JSON object per line per finding, then a summary object (`"verdict"`).
    Json,
    /// GitHub workflow annotations (`::error file=...,line=...::message`).
    #[value(alias = "github-actions")]
    Github,
    /// SARIF 2.1.0, for code scanning (GitHub's upload-sarif, GitLab).
    Sarif,
}

fn next(report: &Report, current: Option<&semver::Version>) -> Option<String> {
    let cur = current?;
    Some(match report.verdict {
        Some(b) => b.next_version(cur).to_string(),
        None => cur.to_string(),
    })
}

fn verdict_line(report: &Report, current: Option<&semver::Version>) -> String {
    let breaking = report.breaking().count();
    let mut s = match report.verdict {
        None => "Verdict: no change".to_string(),
        Some(Bump::Major) => format!("Verdict: MAJOR — {breaking} breaking finding(s)"),
        Some(Bump::Minor) => "Verdict: minor — compatible additions, nothing breaks".to_string(),
        Some(Bump::Patch) => {
            "Verdict: patch — nothing a client can observe on the selected categories changed"
                .to_string()
        }
    };
    let accepted = accepted(report);
    if accepted > 0 {
        s.push_str(&format!("; {accepted} accepted break(s)"));
    }
    if let (Some(cur), Some(n)) = (current, next(report, current)) {
        s.push_str(&format!("; next version after {cur}: {n}"));
    }
    s
}

fn accepted(report: &Report) -> usize {
    report
        .findings
        .iter()
        .filter(|f| f.accepted.is_some())
        .count()
}

/// `path` under the input root `prefix` (the NEW directory), as the repository names it.
pub(crate) fn under_root(prefix: &str, path: &str) -> String {
    if prefix.is_empty() || prefix == "." {
        path.to_string()
    } else {
        format!("{}/{}", prefix.trim_end_matches('/'), path)
    }
}

/// Writes `report` in `format`. `path_prefix` is prepended to file paths in GitHub
/// annotations (the NEW directory, so the paths are relative to the repository).
pub fn render(
    report: &Report,
    format: Format,
    current: Option<&semver::Version>,
    path_prefix: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        Format::Text => text(report, current, out),
        Format::Json => json(report, current, out),
        Format::Github => github(report, current, path_prefix, out),
        Format::Sarif => crate::sarif::write(report, path_prefix, out),
    }
}

fn text(
    report: &Report,
    current: Option<&semver::Version>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(out, "{}", verdict_line(report, current))?;
    for w in &report.warnings {
        writeln!(out, "warning: {w}")?;
    }
    for (a, b) in &report.pairs {
        writeln!(out, "paired packages: {a} → {b}")?;
    }
    let broken: std::collections::BTreeSet<&str> = report
        .findings
        .iter()
        .filter(|f| f.breaking || f.accepted.is_some())
        .map(|f| f.element.as_str())
        .collect();
    let mut groups: BTreeMap<(bool, &str), Vec<&Finding>> = BTreeMap::new();
    // Non-breaking echoes of an element that already breaks stay in the JSON output only.
    for f in report
        .findings
        .iter()
        .filter(|f| f.breaking || f.accepted.is_some() || !broken.contains(f.element.as_str()))
    {
        groups
            .entry((!f.breaking, f.element.as_str()))
            .or_default()
            .push(f);
    }
    for ((_, element), findings) in groups {
        writeln!(out)?;
        let worst = findings
            .iter()
            .map(|f| f.semver)
            .max()
            .unwrap_or(Bump::Patch);
        writeln!(out, "{element}  [{worst}]")?;
        for f in findings {
            let (mark, level) = match (&f.accepted, f.breaking) {
                (Some(_), _) => ("✓", "accepted".to_string()),
                (None, true) => ("✗", f.semver.to_string()),
                (None, false) => ("·", f.semver.to_string()),
            };
            let at = match (f.line, f.column) {
                (Some(l), Some(c)) if !f.path.is_empty() => format!(" {}:{l}:{c}", f.path),
                (Some(l), None) if !f.path.is_empty() => format!(" {}:{l}", f.path),
                _ if !f.path.is_empty() => format!(" {}", f.path),
                _ => String::new(),
            };
            writeln!(out, "  {mark} {} ({}, {level}){at}", f.rule, f.category)?;
            writeln!(out, "      {}", f.message)?;
            if let Some(a) = &f.accepted {
                let until = a
                    .expires
                    .as_ref()
                    .map(|d| format!(" until {d}"))
                    .unwrap_or_default();
                writeln!(out, "      accepted ({}) — {}{until}", a.reason, a.source)?;
            }
            if let Some(c) = &f.confirmation {
                writeln!(
                    out,
                    "      {} [{}]: {}",
                    c.outcome.as_str(),
                    c.runtime,
                    c.effect
                )?;
            }
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct Summary<'a> {
    verdict: Option<Bump>,
    breaking: usize,
    accepted: usize,
    findings: usize,
    next_version: Option<String>,
    pairs: &'a [(String, String)],
    warnings: &'a [String],
}

fn json(
    report: &Report,
    current: Option<&semver::Version>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    for f in &report.findings {
        serde_json::to_writer(&mut *out, f)?;
        writeln!(out)?;
    }
    let summary = Summary {
        verdict: report.verdict,
        breaking: report.breaking().count(),
        accepted: accepted(report),
        findings: report.findings.len(),
        next_version: next(report, current),
        pairs: &report.pairs,
        warnings: &report.warnings,
    };
    serde_json::to_writer(&mut *out, &summary)?;
    writeln!(out)
}

fn escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_prop(s: &str) -> String {
    escape(s).replace(':', "%3A").replace(',', "%2C")
}

fn github(
    report: &Report,
    current: Option<&semver::Version>,
    prefix: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    for w in &report.warnings {
        writeln!(out, "::warning title=testbed check::{}", escape(w))?;
    }
    for f in &report.findings {
        let level = if f.breaking {
            "error"
        } else if f.accepted.is_some() || f.semver == Bump::Minor {
            "notice"
        } else {
            continue;
        };
        let mut props = Vec::new();
        if !f.path.is_empty() {
            let p = under_root(prefix, &f.path);
            props.push(format!("file={}", escape_prop(&p)));
            if let Some(l) = f.line {
                props.push(format!("line={l}"));
            }
            if let Some(c) = f.column {
                props.push(format!("col={c}"));
            }
        }
        let accepted = if f.accepted.is_some() {
            " accepted"
        } else {
            ""
        };
        props.push(format!(
            "title={}",
            escape_prop(&format!("{} ({}){accepted}", f.rule, f.category))
        ));
        let mut msg = match &f.accepted {
            Some(a) => format!("accepted ({}): {}", a.reason, f.message),
            None => f.message.clone(),
        };
        if let Some(c) = &f.confirmation {
            msg.push_str(&format!(" — {}: {}", c.outcome.as_str(), c.effect));
        }
        writeln!(out, "::{level} {}::{}", props.join(","), escape(&msg))?;
    }
    writeln!(
        out,
        "::notice title=compat verdict::{}",
        escape(&verdict_line(report, current))
    )
}
