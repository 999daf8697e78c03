//! The page's section on the shop example's traffic: each replay and the traffic rollout as a
//! table per phase (method, calls, compared, fields differing, noise, verdict), from the JSON.

use super::{esc, items, open_section, text};
use crate::report::traffic::{path_list, tables};
use serde_json::Value;
use std::fmt::Write as _;

/// Each run as its command, its exit code and its tables.
pub(super) fn section(page: &mut String, traffic: &Value) {
    if !open_section(
        page,
        "traffic",
        "Your API's traffic: replay and rollout",
        traffic,
        "The shop example (Python grpcio): every reply of a new build \
         compared field by field with the old build's, noise (what two old answers differ in) \
         left out.",
    ) {
        return;
    }
    for run in items(&traffic["runs"]) {
        let _ = writeln!(
            page,
            "<h3>{}</h3><p><code>{}</code>: exit {}</p>",
            esc(text(&run["name"])),
            esc(text(&run["command"])),
            run["exit_code"]
        );
        for (title, methods) in tables(&run["report"]) {
            let _ = writeln!(
                page,
                "<p>{}</p><table class=\"traffic\"><tr><th>method</th><th>calls</th>\
                 <th>compared</th><th>fields differing</th><th>noise</th><th>verdict</th></tr>",
                esc(&title)
            );
            for m in methods {
                let verdict = text(&m["verdict"]);
                let class = if verdict == "ok" { "met" } else { "notmet" };
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td>\
                     <td>{}</td><td class=\"{class}\">{}</td></tr>",
                    esc(text(&m["method"])),
                    m["calls"],
                    m["compared"],
                    esc(&path_list(&m["differences"])),
                    esc(&path_list(&m["noise"])),
                    esc(verdict)
                );
            }
            page.push_str("</table>\n");
        }
    }
    page.push_str("</section>\n");
}
