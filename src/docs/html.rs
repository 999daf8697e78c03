//! The API's documentation as one self-contained HTML page: inline CSS, no script, no network;
//! a table of contents, then the changelog (with `--against`) and each package.

use super::{ApiDocs, Changelog};
use crate::report::html::esc;
use std::fmt::Write as _;

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;max-width:72rem;margin:2rem auto;\
padding:0 1rem;color:#222}code{font:13px ui-monospace,monospace;background:#f3f3f3;\
padding:0 .2em}table{border-collapse:collapse;margin:.4rem 0 1.2rem}td,th{border:1px solid #ccc;\
padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#f6f6f6}\
.deprecated{color:#a33;font-weight:600}.breaking{color:#a33}.muted{color:#666}";

/// ` deprecated` marker, when it is.
fn deprecated(yes: bool) -> &'static str {
    if yes {
        " <span class=\"deprecated\">deprecated</span>"
    } else {
        ""
    }
}

/// An anchor id for a full name: the name itself (protobuf names are letters, digits, `_` and
/// `.`, all valid in an HTML id, so two names never share one); the empty package's is
/// `no-package`, which no protobuf name can be.
fn anchor(name: &str) -> String {
    if name.is_empty() {
        "no-package".to_string()
    } else {
        esc(name)
    }
}

/// A package's name as a heading shows it.
fn package_name(package: &str) -> String {
    if package.is_empty() {
        "(no package)".to_string()
    } else {
        format!("<code>{}</code>", esc(package))
    }
}

/// The whole page.
pub(super) fn page(docs: &ApiDocs) -> String {
    let mut page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>API: {0}</title><style>{STYLE}</style></head><body>\n<h1>API: <code>{0}</code></h1>\n",
        esc(&docs.input)
    );
    page.push_str("<nav><ul>");
    if docs.changelog.is_some() {
        page.push_str("<li><a href=\"#changelog\">Changelog</a></li>");
    }
    for v in &docs.versions {
        let _ = write!(
            page,
            "<li><a href=\"#{}\">{}</a></li>",
            anchor(&v.package),
            package_name(&v.package)
        );
    }
    page.push_str("</ul></nav>\n");
    if let Some(log) = &docs.changelog {
        changelog(&mut page, log);
    }
    for v in &docs.versions {
        let files: Vec<String> = v
            .files
            .iter()
            .map(|f| format!("<code>{}</code>", esc(f)))
            .collect();
        let _ = writeln!(
            page,
            "<section id=\"{}\"><h2>Package {}</h2><p class=\"muted\">{}</p>",
            anchor(&v.package),
            package_name(&v.package),
            files.join(", ")
        );
        for s in &v.services {
            let _ = writeln!(
                page,
                "<h3 id=\"{}\">Service <code>{}</code>{}</h3><p>{}</p><table><tr><th>method</th>\
                 <th>shape</th><th>HTTP</th><th>description</th></tr>",
                anchor(&s.name),
                esc(&s.name),
                deprecated(s.deprecated),
                esc(&s.comment)
            );
            for m in &s.methods {
                let _ = writeln!(
                    page,
                    "<tr data-method=\"{}\"><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&m.name),
                    esc(&m.signature),
                    deprecated(m.deprecated),
                    m.shape,
                    esc(&m.http.join(", ")),
                    esc(&m.comment)
                );
            }
            page.push_str("</table>\n");
        }
        for m in &v.messages {
            let _ = writeln!(
                page,
                "<h3 id=\"{}\">Message <code>{}</code>{}</h3><p>{}</p><table><tr><th>#</th>\
                 <th>field</th><th>type</th><th>description</th></tr>",
                anchor(&m.name),
                esc(&m.name),
                deprecated(m.deprecated),
                esc(&m.comment)
            );
            for f in &m.fields {
                let oneof = f.oneof.as_ref().map_or(String::new(), |o| {
                    format!(" <span class=\"muted\">oneof {}</span>", esc(o))
                });
                let _ = writeln!(
                    page,
                    "<tr data-field=\"{}.{}\"><td>{}</td><td><code>{}</code>{}</td><td><code>{}</code>{oneof}</td><td>{}</td></tr>",
                    esc(&m.name),
                    esc(&f.name),
                    f.number,
                    esc(&f.name),
                    deprecated(f.deprecated),
                    esc(&f.kind),
                    esc(&f.comment)
                );
            }
            page.push_str("</table>\n");
        }
        for e in &v.enums {
            let _ = writeln!(
                page,
                "<h3 id=\"{}\">Enum <code>{}</code>{}</h3><p>{}</p><table><tr><th>value</th>\
                 <th>number</th><th>description</th></tr>",
                anchor(&e.name),
                esc(&e.name),
                deprecated(e.deprecated),
                esc(&e.comment)
            );
            for (name, number, comment, dep) in &e.values {
                let _ = writeln!(
                    page,
                    "<tr><td><code>{}</code>{}</td><td>{number}</td><td>{}</td></tr>",
                    esc(name),
                    deprecated(*dep),
                    esc(comment)
                );
            }
            page.push_str("</table>\n");
        }
        if !v.extensions.is_empty() {
            page.push_str(
                "<h3>Extensions</h3><table><tr><th>extends</th><th>#</th><th>name</th>\
                 <th>type</th><th>description</th></tr>\n",
            );
            for x in &v.extensions {
                let _ = writeln!(
                    page,
                    "<tr data-extension=\"{}\"><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                    esc(&x.name),
                    esc(&x.extends),
                    x.number,
                    esc(&x.name),
                    esc(&x.kind),
                    esc(&x.comment)
                );
            }
            page.push_str("</table>\n");
        }
        page.push_str("</section>\n");
    }
    page.push_str("</body></html>\n");
    page
}

fn changelog(page: &mut String, log: &Changelog) {
    let _ = writeln!(
        page,
        "<section id=\"changelog\"><h2>Changelog from <code>{}</code>: <span data-verdict>{}</span></h2>\
         <p class=\"muted\">From <code>testbed check</code>'s findings.</p>",
        esc(&log.against),
        log.verdict.map_or("no change", |b| b.as_str())
    );
    for (title, class, findings) in [
        ("Breaking", "breaking", &log.breaking),
        ("Added", "added", &log.added),
        ("Patch", "patch", &log.patch),
    ] {
        let _ = writeln!(
            page,
            "<h3>{title} ({})</h3><ul class=\"{class}\">",
            findings.len()
        );
        for f in findings {
            let accepted = if f.accepted.is_some() {
                " (accepted)"
            } else {
                ""
            };
            let _ = writeln!(
                page,
                "<li data-rule=\"{}\"><b>{}</b> <code>{}</code>: {}{accepted}</li>",
                esc(&f.rule),
                esc(&f.rule),
                esc(&f.element),
                esc(&f.message)
            );
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</section>\n");
}
