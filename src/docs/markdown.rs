//! The API's documentation as Markdown (GitHub's dialect: tables, fenced names in code spans).

use super::{ApiDocs, Changelog};
use compat::Finding;
use std::fmt::Write as _;

/// Text from a `.proto` as Markdown shows it: HTML's special characters as entities (so a
/// comment's `<b>` is text, not markup), each line trimmed (protoc keeps the space after `//`,
/// and four of them would make a code block).
fn text(raw: &str) -> String {
    raw.lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A table cell: [`text`] on one line, pipes as entities (a backslash before a pipe is not an
/// escape GitHub's tables agree on).
fn cell(raw: &str) -> String {
    text(raw).replace('\n', " ").replace('|', "&#124;")
}

/// A package's name as a heading shows it.
fn package_name(package: &str) -> String {
    if package.is_empty() {
        "(no package)".to_string()
    } else {
        format!("`{package}`")
    }
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
            "## Package {}\n\nFiles: {}\n",
            package_name(&version.package),
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
                let _ = writeln!(out, "{}\n", text(&service.comment));
            }
            out.push_str("| method | shape | HTTP | description |\n|---|---|---|---|\n");
            for m in &service.methods {
                let _ = writeln!(
                    out,
                    "| `{}`{} | {} | {} | {} |",
                    m.signature,
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
                let _ = writeln!(out, "{}\n", text(&message.comment));
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
                    f.kind,
                    cell(&f.comment)
                );
            }
            out.push('\n');
        }
        for e in &version.enums {
            let _ = writeln!(out, "### Enum `{}`{}\n", e.name, deprecated(e.deprecated));
            if !e.comment.is_empty() {
                let _ = writeln!(out, "{}\n", text(&e.comment));
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
        if !version.extensions.is_empty() {
            out.push_str("### Extensions\n\n| extends | # | name | type | description |\n|---|---|---|---|---|\n");
            for x in &version.extensions {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | `{}` | `{}` | {} |",
                    x.extends,
                    x.number,
                    x.name,
                    x.kind,
                    cell(&x.comment)
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
        text(&f.message).replace('\n', " ")
    )
}
