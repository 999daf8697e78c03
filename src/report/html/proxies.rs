//! The page's proxy section, drawn from the report's `proxies` JSON: per proxy a grid of every
//! client in the three arrangements (unary and streaming outcome per cell, coloured as the
//! matrix), then each proxy's rollout as the router's is drawn (timeline and per-phase table),
//! with how each configuration change was applied.

use super::matrix::{expectation, outcome};
use super::rollout::{rollout_table, timeline};
use super::{esc, items, num, text};
use serde_json::Value;
use std::fmt::Write;

/// The section; nothing when the report has no `proxies` (an older JSON). `latency` is the
/// report's latency placements, whose `proxies` figures (the bench's row) end the section.
pub(super) fn section(page: &mut String, proxies: &Value, latency: &Value) {
    if proxies.is_null() {
        return;
    }
    page.push_str(
        "<section id=\"proxies\"><h2>Through real proxies (nginx, HAProxy, Envoy)</h2>\n<p>Every \
         client through each proxy: in front of the router (front-of-router), routing by path \
         itself to v1 and v2 processes (version-routing), and with v1 retired by a path rewrite \
         (v1-retired). Each cell shows the unary outcome, then the streaming one when it \
         differs. Then the v1 → v2 rollout done by each proxy, its configuration changed the \
         proxy's own way between phases.</p>\n",
    );
    for note in items(&proxies["skipped"]) {
        let _ = writeln!(page, "<p class=\"muted\">{}</p>", esc(text(note)));
    }
    let cells = items(&proxies["matrix"]["cells"]);
    for proxy in items(&proxies["proxies"]) {
        let proxy = text(proxy);
        grid(page, proxy, cells);
    }
    let mismatches = items(&proxies["matrix"]["mismatches"]);
    if !cells.is_empty() && mismatches.is_empty() {
        page.push_str("<p class=\"met\">Every cell through the proxies is as expected.</p>\n");
    }
    if !mismatches.is_empty() {
        page.push_str("<p class=\"notmet\">Cells that differ from what is expected:</p><ul>\n");
        for m in mismatches {
            let _ = writeln!(page, "<li>{}</li>", esc(text(m)));
        }
        page.push_str("</ul>\n");
    }
    for rollout in items(&proxies["rollouts"]) {
        let proxy = text(&rollout["proxy"]);
        let load = &rollout["load"];
        let settings = &load["settings"];
        let _ = writeln!(
            page,
            "<h3 id=\"proxy-rollout-{}\">The v1 → v2 rollout through {}: {} v1 + {} v2 clients, \
             back to back</h3>",
            esc(proxy),
            esc(proxy),
            settings["v1_clients"],
            settings["v2_clients"]
        );
        timeline(page, load);
        rollout_table(page, load);
        page.push_str("<ul>\n");
        for change in items(&rollout["changes"]) {
            let _ = writeln!(
                page,
                "<li>[{}] {} applied in {} ms by {}</li>",
                esc(text(&change["phase"])),
                esc(text(&change["arrangement"])),
                num(&change["applied_ms"]).map_or("–".to_string(), |ms| format!("{ms:.1}")),
                esc(text(&change["how"]))
            );
        }
        page.push_str("</ul>\n");
    }
    fleet(page, &proxies["fleet"]);
    for placement in items(latency) {
        costs(
            page,
            text(&placement["name"]),
            &placement["report"]["proxies"],
        );
    }
    page.push_str("</section>\n");
}

/// The bench's `proxies` row of one placement: latency, throughput and the hop's CPU per path.
fn costs(page: &mut String, placement: &str, figures: &Value) {
    if figures.is_null() {
        return;
    }
    let _ = writeln!(
        page,
        "<h3 id=\"proxy-costs\">What each hop costs ({}): the same v1 backend directly, through \
         the testbed's router as a proxy and through each proxy</h3>\n<p>Sequential unary calls \
         in alternation across the paths; h2load with {} requests per run; hop CPU is the \
         proxy's processes' user + system time per 10,000 requests.</p>\n<table><tr><th>path</th>\
         <th>p50 µs</th><th>p99 µs</th><th>p50 / direct</th><th>h2load</th><th>req/s</th>\
         <th>share of direct</th><th>failed</th><th>hop CPU s / 10k</th></tr>",
        esc(placement),
        figures["h2load_requests"]
    );
    let fixed = |value: &Value, digits: usize| {
        num(value).map_or("–".to_string(), |v| format!("{v:.digits$}"))
    };
    for path in items(&figures["paths"]) {
        let loads = items(&path["loads"]);
        for (i, load) in loads.iter().enumerate() {
            page.push_str("<tr>");
            if i == 0 {
                let _ = write!(
                    page,
                    "<td rowspan=\"{n}\">{path}</td>\
                     <td rowspan=\"{n}\" data-proxy-path=\"{path}\" data-figure=\"p50\">{}</td>\
                     <td rowspan=\"{n}\">{}</td><td rowspan=\"{n}\">{}</td>",
                    fixed(&path["p50_us"], 1),
                    fixed(&path["p99_us"], 1),
                    fixed(&path["p50_ratio_to_direct"], 2),
                    n = loads.len(),
                    path = esc(text(&path["path"])),
                );
            }
            let _ = writeln!(
                page,
                "<td>-c {} -m {}</td><td>{}</td><td>{} %</td><td>{}</td><td>{}</td></tr>",
                load["connections"],
                load["streams"],
                fixed(&load["requests_per_s"], 0),
                num(&load["share_of_direct"])
                    .map_or("–".to_string(), |s| format!("{:.0}", s * 100.0)),
                load["failed"],
                fixed(&load["hop_cpu_s_per_10k"], 2)
            );
        }
    }
    page.push_str("</table>\n");
    for skipped in items(&figures["skipped"]) {
        let _ = writeln!(
            page,
            "<p class=\"muted\">skipped: {}</p>",
            esc(text(skipped))
        );
    }
}

/// One proxy's cells: rows clients, columns its arrangements.
fn grid(page: &mut String, proxy: &str, cells: &[Value]) {
    let prefix = format!("{proxy} ");
    let mine: Vec<&Value> = cells
        .iter()
        .filter(|c| text(&c["deployment"]).starts_with(&prefix))
        .collect();
    let mut clients: Vec<&str> = Vec::new();
    let mut columns: Vec<&str> = Vec::new();
    for cell in &mine {
        let (client, column) = (text(&cell["client"]), text(&cell["deployment"]));
        if !clients.contains(&client) {
            clients.push(client);
        }
        if !columns.contains(&column) {
            columns.push(column);
        }
    }
    let _ = write!(
        page,
        "<table class=\"grid\"><tr><th>through {}</th>",
        esc(proxy)
    );
    for column in &columns {
        let _ = write!(page, "<th>{}</th>", esc(column.trim_start_matches(&prefix)));
    }
    page.push_str("</tr>\n");
    for client in &clients {
        let _ = write!(page, "<tr><th>{}</th>", esc(client));
        for column in &columns {
            let Some(cell) = mine
                .iter()
                .find(|c| text(&c["client"]) == *client && text(&c["deployment"]) == *column)
            else {
                page.push_str("<td class=\"other\">–</td>");
                continue;
            };
            let (class, unary, detail) = outcome(&cell["unary"]);
            let (stream_class, stream, stream_detail) = outcome(&cell["stream"]);
            // The worse of the two colours the cell.
            let class = if class == "correct" {
                stream_class
            } else {
                class
            };
            let shown = if stream_detail == detail && stream_class == class {
                unary
            } else {
                format!("{unary} / {stream}")
            };
            let title = format!(
                "{client} through {column}: unary {detail}; stream {stream_detail}; expected: {}",
                expectation(&cell["expected"])
            );
            let _ = write!(
                page,
                "<td class=\"{class}\" data-proxy-column=\"{}\" data-client=\"{}\" title=\"{}\">{}</td>",
                esc(column),
                esc(client),
                esc(&title),
                esc(&shown)
            );
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
}

/// The rollout through the fleet of Envoys steered over xDS: each change's time until every
/// Envoy acknowledged it, then per node and phase the v1 and v2 clients' calls.
fn fleet(page: &mut String, fleet: &Value) {
    if fleet.is_null() {
        return;
    }
    let nodes = items(&fleet["nodes"]);
    let _ = writeln!(
        page,
        "<h3 id=\"fleet-rollout\">A v1 → v2 rollout through {} Envoys steered over xDS \
         (serve --xds-addr)</h3>\n<p>Each change is one <code>testbed route</code> command, \
         answered once every Envoy acknowledged it:</p><ul>",
        nodes.len()
    );
    for change in items(&fleet["changes"]) {
        let _ = writeln!(
            page,
            "<li>[{}] <code>{}</code>: <span data-fleet-change=\"{}\">{}</span> ms</li>",
            esc(text(&change["phase"])),
            esc(text(&change["command"])),
            esc(text(&change["phase"])),
            num(&change["took_ms"]).map_or("–".to_string(), |ms| format!("{ms:.0}"))
        );
    }
    page.push_str(
        "</ul><table class=\"fleet\"><tr><th>node</th><th>phase</th><th>v1 calls</th>\
         <th>v1 failed</th><th>v1 wrong</th><th>v2 calls</th><th>v2 failed</th><th>v2 wrong</th>\
         </tr>\n",
    );
    for node in nodes {
        let id = text(&node["node"]);
        let v2_phases = items(&node["v2"]["phases"]);
        for phase in items(&node["v1"]["phases"]) {
            let name = text(&phase["name"]);
            let v2 = v2_phases.iter().find(|p| text(&p["name"]) == name);
            let figures = |tally: Option<&Value>| match tally {
                Some(t) => {
                    let failed: u64 = t["errors"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter_map(|(_, e)| e[0].as_u64())
                        .sum();
                    format!(
                        "<td class=\"n\">{}</td><td class=\"n\">{failed}</td><td class=\"n\">{}</td>",
                        t["requests"], t["wrong"]
                    )
                }
                None => "<td colspan=\"3\" class=\"muted\">not started</td>".to_string(),
            };
            let _ = writeln!(
                page,
                "<tr data-fleet-node=\"{}\" data-fleet-phase=\"{}\"><td>{}</td><td>{}</td>{}{}</tr>",
                esc(id),
                esc(name),
                esc(id),
                esc(name),
                figures(Some(&phase["v1"])),
                figures(v2.map(|p| &p["v2"]))
            );
        }
    }
    page.push_str("</table>\n");
}
