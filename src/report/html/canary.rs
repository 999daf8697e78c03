//! The page's canary section: each drill's intervals (the new build's weight, calls, error
//! rate and p99 against the old build's, the decision) and how it ended, and who called which
//! version by the gateway's usage table, from the JSON.

use super::{esc, items, open_section, text};
use crate::report::canary::{figure, interval_figures};
use serde_json::Value;
use std::fmt::Write as _;

/// Each drill as a table, a row per interval, the decision marked.
pub(super) fn section(page: &mut String, canary: &Value) {
    if !open_section(
        page,
        "canary",
        "A canary that reads gRPC",
        canary,
        "testbed canary on two builds of the shop example's v2 behind the \
         gateway, under unpinned load: each step's figures from the gateway's metrics.",
    ) {
        return;
    }
    for drill in items(&canary["drills"]) {
        let _ = writeln!(
            page,
            "<h3>{}</h3><table class=\"canary\"><tr><th>step</th><th>v2b calls</th>\
             <th>v2b errors</th><th>v2b error rate %</th><th>v2b p99 ms</th><th>v2a calls</th>\
             <th>v2a errors</th><th>decision</th></tr>",
            esc(text(&drill["name"]))
        );
        for event in items(&drill["events"])
            .iter()
            .filter(|e| e["event"] == "interval")
        {
            let verdict = text(&event["verdict"]);
            let class = if verdict == "pass" { "met" } else { "notmet" };
            let [step, calls, errors, rate, p99, old_calls, old_errors] = interval_figures(event);
            let _ = writeln!(
                page,
                "<tr><td class=\"n\">{step} %</td><td class=\"n\">{calls}</td>\
                 <td class=\"n\">{errors}</td><td class=\"n\">{rate}</td><td class=\"n\">{p99}</td>\
                 <td class=\"n\">{old_calls}</td><td class=\"n\">{old_errors}</td>\
                 <td class=\"{class}\">{}</td></tr>",
                esc(verdict),
            );
        }
        page.push_str("</table>\n");
        if let Some(last) = items(&drill["events"]).last() {
            let _ = writeln!(
                page,
                "<p><strong>{}</strong> (exit {}){}</p>",
                esc(text(&last["event"])),
                figure(&drill["exit_code"], 1.0, 0),
                esc(&last["why"]
                    .as_str()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default()),
            );
        }
        usage(page, &drill["usage"]);
    }
    page.push_str("</section>\n");
}

/// The gateway's usage table after a drill: a row per caller, method and version.
fn usage(page: &mut String, rows: &Value) {
    let rows = items(rows);
    if rows.is_empty() {
        return;
    }
    page.push_str(
        "<p>Who called what, by the gateway's usage table (<code>testbed route usage</code>; \
         each row equals the callers' own count):</p><table class=\"usage\"><tr><th>caller</th>\
         <th>method</th><th>backend</th><th>version</th><th>calls</th><th>last seen, s before \
         the table was read</th></tr>\n",
    );
    for row in rows {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            esc(text(&row["caller"])),
            esc(text(&row["method"])),
            esc(text(&row["backend"])),
            esc(text(&row["version"])),
            figure(&row["calls"], 1.0, 0),
            figure(&row["last_seen_ms_before"], 0.001, 1),
        );
    }
    page.push_str("</table>\n");
}
