//! The page's compatibility matrix: every client against every deployment, each cell's
//! outcome coloured against what was expected of it.

use super::{esc, items, text};
use serde_json::Value;
use std::fmt::Write as _;

fn joined(values: &Value) -> String {
    items(values)
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A matrix cell: its class, its text and its detail.
pub(super) fn outcome(o: &Value) -> (&'static str, String, String) {
    match text(&o["outcome"]) {
        "correct" => {
            let by = o["served_by"]
                .as_str()
                .map_or(String::new(), |v| format!(" ({v})"));
            (
                "correct",
                format!("✓ {}{by}", joined(&o["values"])),
                "correct values".to_string(),
            )
        }
        "wrong" => (
            "wrong",
            format!("✗ {} (want {})", joined(&o["got"]), joined(&o["want"])),
            "answered successfully and wrongly".to_string(),
        ),
        "status" => (
            "refused",
            text(&o["code"]).to_string(),
            format!("{}: {}", text(&o["code"]), text(&o["message"])),
        ),
        "skipped" => ("other", "skipped".into(), text(&o["reason"]).to_string()),
        _ => (
            "other",
            "client failed".into(),
            text(&o["reason"]).to_string(),
        ),
    }
}

pub(super) fn expectation(e: &Value) -> String {
    match text(&e["expect"]) {
        "served" => format!("correct, served by {}", text(&e["version"])),
        "unlabelled" => "correct, no version named".to_string(),
        "fails" => format!("refused with {}", text(&e["code"])),
        "wrong" => "silently wrong (what the router prevents)".to_string(),
        other => other.to_string(),
    }
}

pub(super) fn matrix(page: &mut String, matrix: &Value) {
    let cells = items(&matrix["cells"]);
    let mut clients: Vec<&str> = Vec::new();
    let mut deployments: Vec<&str> = Vec::new();
    for cell in cells {
        let (c, d) = (text(&cell["client"]), text(&cell["deployment"]));
        if !clients.contains(&c) {
            clients.push(c);
        }
        if !deployments.contains(&d) {
            deployments.push(d);
        }
    }
    page.push_str(
        "<section id=\"matrix\"><h2>Compatibility matrix</h2>\n<p>Rows are clients, columns \
         deployments. Unary probe: 41 → 42 for v1, 41 + step 5 → 46 for v2; stream: 10, 20, 30. \
         The version in brackets served the call. Hover a cell for its detail.</p>\n\
         <p class=\"legend\"><span class=\"grid\" style=\"background:var(--okbg);color:var(--ok)\">\
         ✓ correct</span><span style=\"background:var(--refusedbg);color:var(--refused)\">\
         refused with a status</span><span style=\"background:var(--wrongbg);color:var(--wrong)\">\
         ✗ silently wrong</span><span style=\"background:var(--otherbg);color:var(--other)\">\
         skipped / client failed</span></p>\n",
    );
    let mut details: Vec<String> = Vec::new();
    for (mode, title) in [
        ("unary", "unary Increment"),
        ("stream", "streaming IncrementStream"),
    ] {
        let _ = write!(page, "<table class=\"grid\"><tr><th>{title}</th>");
        for d in &deployments {
            let _ = write!(page, "<th>{}</th>", esc(d));
        }
        page.push_str("</tr>\n");
        for client in &clients {
            let _ = write!(page, "<tr><th>{}</th>", esc(client));
            for deployment in &deployments {
                let Some(cell) = cells.iter().find(|c| {
                    text(&c["client"]) == *client && text(&c["deployment"]) == *deployment
                }) else {
                    page.push_str("<td class=\"other\">–</td>");
                    continue;
                };
                let (class, shown, detail) = outcome(&cell[mode]);
                let expected = expectation(&cell["expected"]);
                let title =
                    format!("{client} on {deployment} ({mode}): {detail}; expected: {expected}");
                if class != "correct" && !details.contains(&detail) {
                    details.push(detail.clone());
                }
                let _ = write!(
                    page,
                    "<td class=\"{class}\" data-client=\"{}\" data-deployment=\"{}\" \
                     data-mode=\"{mode}\" title=\"{}\">{}</td>",
                    esc(client),
                    esc(deployment),
                    esc(&title),
                    esc(&shown)
                );
            }
            page.push_str("</tr>\n");
        }
        page.push_str("</table>\n");
    }
    if !details.is_empty() {
        page.push_str("<h3>What the refusals and wrong answers said</h3><ul>\n");
        for detail in details {
            let _ = writeln!(page, "<li>{}</li>", esc(&detail));
        }
        page.push_str("</ul>\n");
    }
    let mismatches = items(&matrix["mismatches"]);
    if mismatches.is_empty() {
        page.push_str("<p class=\"met\">Every cell is what the API promises.</p>\n");
    } else {
        page.push_str(
            "<p class=\"notmet\">Cells that differ from what the API promises:</p><ul>\n",
        );
        for m in mismatches {
            let _ = writeln!(page, "<li>{}</li>", esc(text(m)));
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</section>\n");
}
