//! The page's opening sections: the testbed's targets with their verdicts, and the machine
//! the run was measured on.

use super::{esc, items, num, text};
use serde_json::Value;
use std::fmt::Write as _;

fn value_text(goal: &str, value: f64) -> String {
    if goal.contains('%') {
        format!("{:.1} %", value * 100.0)
    } else {
        format!("{value:.3} ×")
    }
}

pub(super) fn summary(page: &mut String, report: &Value) {
    page.push_str(
        "<section id=\"summary\"><h2>Summary: the testbed's targets</h2>\n<table>\
         <tr><th>target</th><th>goal</th><th>measured</th><th>verdict</th></tr>\n",
    );
    for t in items(&report["summary"]) {
        let goal = text(&t["goal"]);
        let measured: Vec<String> = items(&t["measured"])
            .iter()
            .map(|m| {
                format!(
                    "<span class=\"{}\">{}</span> <span class=\"muted\">{}</span>",
                    if m["met"].as_bool() == Some(true) {
                        "met"
                    } else {
                        "notmet"
                    },
                    esc(&num(&m["value"]).map_or("–".into(), |v| value_text(goal, v))),
                    esc(text(&m["placement"]))
                )
            })
            .collect();
        let class = match t["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "notmet",
            None => "muted",
        };
        let _ = writeln!(
            page,
            "<tr data-target=\"{}\"><td>{}<div class=\"muted\">{}; against {}; defined in {}</div></td>\
             <td>{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            esc(text(&t["name"])),
            esc(text(&t["name"])),
            esc(text(&t["measure"])),
            esc(text(&t["anchor"])),
            esc(text(&t["defined_in"])),
            esc(goal),
            if measured.is_empty() {
                "–".to_string()
            } else {
                measured.join("<br>")
            },
            esc(text(&t["verdict"])),
        );
    }
    page.push_str("</table>\n");
    for note in items(&report["notes"]) {
        let _ = writeln!(page, "<p class=\"muted\">{}</p>", esc(text(note)));
    }
    page.push_str("</section>\n");
}

pub(super) fn machine(page: &mut String, meta: &Value) {
    let list = |v: &Value| {
        items(v)
            .iter()
            .map(|s| esc(text(s)))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    let halt = match meta["halt_polling_changed_ns"].as_u64() {
        Some(ns) => format!("set to {ns} ns for one run, then put back"),
        None => "not changed".to_string(),
    };
    let _ = writeln!(
        page,
        "<section id=\"machine\"><h2>The run and the machine</h2><dl class=\"meta\">\
         <dt>commit</dt><dd>{}</dd><dt>date</dt><dd>{}</dd><dt>CPU</dt><dd>{}</dd>\
         <dt>cores</dt><dd>{}</dd><dt>kernel</dt><dd>{}</dd>\
         <dt>latency runs</dt><dd>{} ({} round(s), {} calls per row)</dd>\
         <dt>runtime flavours</dt><dd>{}</dd><dt>placements</dt><dd>{}</dd>\
         <dt>guest halt polling</dt><dd>{}</dd></dl></section>",
        esc(text(&meta["commit"])),
        esc(text(&meta["date"])),
        esc(text(&meta["cpu_model"])),
        meta["cores"],
        esc(text(&meta["kernel"])),
        esc(text(&meta["mode"])),
        meta["rounds"],
        meta["requests"],
        list(&meta["runtime_flavours"]),
        list(&meta["placements"]),
        esc(&halt),
    );
}
