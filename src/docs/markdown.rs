//! The API's documentation as Markdown (GitHub's dialect: tables, fenced names in code spans).

use super::{ApiDocs, Changelog};
use compat::Finding;
use std::fmt::Write as _;

/// A table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// ` (deprecated)` when it is.
fn deprecated(yes: bool) -> &'static str {
    if yes { " **(deprecated)**" } else { "" }
}

/// The whole document.
pub(super) fn page(docs: &ApiDocs) -> String {
    let mut out = format!("# API: {}\n\n", docs.input);
    if let Some(log) = &docs.changelog {
        changelog(&mut out, log);
    }
    for version in &docs.versions {
        let _ = writeln!(
            out,
            "## Package `{}`\n\nFiles: {}\n",
            version.package,
            version
                .files
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for service in &version.services {
            let _ = writeln!(
                out,
                "### Service `{}`{}\n",
                service.name,
                deprecated(service.deprecated)
            );
            if !service.comment.is_empty() {
                let _ = writeln!(out, "{}\n", service.comment);
            }
            out.push_str("| method | shape | HTTP | description |\n|---|---|---|---|\n");
            for m in &service.methods {
                let _ = writeln!(
                    out,
                    "| `{}`{} | {} | {} | {} |",
                    cell(&m.signature),
                    deprecated(m.deprecated),
                    m.shape,
                    cell(&m.http.join(", ")),
                    cell(&m.comment)
                );
            }
            out.push('\n');
        }
        for message in &version.messages {
            let _ = writeln!(
                out,
                "### Message `{}`{}\n",
                message.name,
                deprecated(message.deprecated)
            );
            if !message.comment.is_empty() {
                let _ = writeln!(out, "{}\n", message.comment);
            }
            if message.fields.is_empty() {
                out.push_str("No fields.\n\n");
                continue;
            }
            out.push_str("| # | field | type | description |\n|---|---|---|---|\n");
            for f in &message.fields {
                let oneof = f
                    .oneof
                    .as_ref()
                    .map_or(String::new(), |o| format!(" (oneof `{o}`)"));
                let _ = writeln!(
                    out,
                    "| {} | `{}`{} | `{}`{oneof} | {} |",
                    f.number,
                    f.name,
                    deprecated(f.deprecated),
                    cell(&f.kind),
                    cell(&f.comment)
                );
            }
            out.push('\n');
        }
        for e in &version.enums {
            let _ = writeln!(out, "### Enum `{}`{}\n", e.name, deprecated(e.deprecated));
            if !e.comment.is_empty() {
                let _ = writeln!(out, "{}\n", e.comment);
            }
            out.push_str("| value | number | description |\n|---|---|---|\n");
            for (name, number, comment, dep) in &e.values {
                let _ = writeln!(
                    out,
                    "| `{name}`{} | {number} | {} |",
                    deprecated(*dep),
                    cell(comment)
                );
            }
            out.push('\n');
        }
    }
    out
}

fn changelog(out: &mut String, log: &Changelog) {
    let verdict = log.verdict.map_or("no change", |b| b.as_str());
    let _ = writeln!(
        out,
        "## Changelog from `{}`: {verdict}\n\nFrom `testbed check`'s findings.\n",
        log.against
    );
    for (title, findings) in [
        ("Breaking", &log.breaking),
        ("Added", &log.added),
        ("Patch", &log.patch),
    ] {
        let _ = writeln!(out, "### {title} ({})\n", findings.len());
        for f in findings {
            let _ = writeln!(out, "{}", finding_line(f));
        }
        out.push('\n');
    }
}

/// `- **RULE** `element`: message` (accepted breaks say so).
fn finding_line(f: &Finding) -> String {
    let accepted = if f.accepted.is_some() {
        " (accepted)"
    } else {
        ""
    };
    format!(
        "- **{}** `{}`: {}{accepted}",
        f.rule,
        f.element,
        f.message.replace('\n', " ")
    )
}
