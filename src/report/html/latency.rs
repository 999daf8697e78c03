//! The page's latency sections: the bench's table, its bar chart and percentile plot per
//! placement, and the h2load runs.

use super::scale::{log_range, log_ticks, tick_label};
use super::{esc, items, num, text, us};
use serde_json::Value;
use std::fmt::Write as _;

pub(super) fn latency(page: &mut String, report: &Value) {
    page.push_str(
        "<section id=\"latency\"><h2>Latency runs</h2>\n<p>Sequential dependent increments per \
         row (each sent after the previous reply). Bars end at the median call (p50; the mean \
         where calls do not wait for each other), the whisker spans p90 to p99, log axis; the \
         ratio to the raw TCP floor of the same run is written on the bar.</p>\n",
    );
    for (index, placement) in items(&report["latency"]).iter().enumerate() {
        let r = &placement["report"];
        let _ = writeln!(
            page,
            "<h3>{}</h3><p class=\"muted\">{} calls per row after {} unmeasured, {} round(s) \
             (medians), runtime {}.</p>",
            esc(text(&placement["name"])),
            r["requests"],
            r["warmup"],
            r["repeat"],
            esc(text(&r["runtime"]))
        );
        bars(page, r);
        percentiles(page, r, index);
        let _ = writeln!(
            page,
            "<table class=\"latency\" data-placement=\"{index}\"><tr><th>row</th><th>p50 µs</th>\
             <th>p90 µs</th><th>p99 µs</th><th>max µs</th><th>mean µs</th><th>× TCP</th>\
             <th>calls/s</th></tr>"
        );
        for row in items(&r["rows"]) {
            let _ = writeln!(
                page,
                "<tr data-row=\"{}\"><td>{}</td><td class=\"n p50\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(text(&row["row"])),
                esc(text(&row["label"])),
                us(num(&row["p50_us"])),
                us(num(&row["p90_us"])),
                us(num(&row["p99_us"])),
                us(num(&row["max_us"])),
                us(num(&row["mean_us"])),
                num(&row["ratio_to_tcp"]).map_or("–".into(), |v| format!("{v:.2}")),
                num(&row["calls_per_s"]).map_or("–".into(), |v| format!("{v:.0}")),
            );
        }
        page.push_str("</table>\n");
        for skipped in items(&r["skipped"]) {
            let _ = writeln!(
                page,
                "<p class=\"muted\">Skipped {}: {}</p>",
                esc(text(&skipped[0])),
                esc(text(&skipped[1]))
            );
        }
    }
    page.push_str("</section>\n");
}

/// Horizontal bars: p50 (or mean) with a p90–p99 whisker and the ratio to TCP.
fn bars(page: &mut String, r: &Value) {
    let rows: Vec<&Value> = items(&r["rows"])
        .iter()
        .filter(|row| text(&row["row"]) != "harness")
        .collect();
    let typical = |row: &Value| num(&row["p50_us"]).or_else(|| num(&row["mean_us"]));
    let values = rows
        .iter()
        .flat_map(|row| [typical(row), num(&row["p99_us"])])
        .flatten();
    let Some((lo, hi)) = log_range(values) else {
        return;
    };
    let (w, label_w, right, band, top) = (1000.0, 290.0, 170.0, 24.0, 30.0);
    let height = top + band * rows.len() as f64 + 20.0;
    let x = |v: f64| label_w + (w - label_w - right) * (v.max(lo) / lo).log10() / (hi / lo).log10();
    let _ = write!(
        page,
        "<svg class=\"bars\" viewBox=\"0 0 {w} {height}\" width=\"{w}\" height=\"{height}\" \
         role=\"img\" aria-label=\"latency per row\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"{label_w}\" y=\"12\">µs per call (log scale)</text>"
    );
    for t in log_ticks(lo, hi) {
        let _ = write!(
            page,
            "<line x1=\"{xt:.1}\" x2=\"{xt:.1}\" y1=\"{}\" y2=\"{:.1}\" stroke=\"#eaeef2\"/>\
             <text x=\"{xt:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            top - 4.0,
            height - 16.0,
            top - 8.0,
            tick_label(t),
            xt = x(t)
        );
    }
    let tcp = rows
        .iter()
        .find(|row| text(&row["row"]) == "tcp")
        .and_then(|row| num(&row["p50_us"]));
    for (i, row) in rows.iter().enumerate() {
        let y = top + band * i as f64 + band / 2.0;
        let _ = write!(
            page,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            label_w - 8.0,
            y + 4.0,
            esc(text(&row["label"]))
        );
        let Some(v) = typical(row) else { continue };
        let is_mean = num(&row["p50_us"]).is_none();
        let _ = write!(
            page,
            "<rect x=\"{label_w}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\">\
             <title>{}: p50 {} µs</title></rect>",
            y - band * 0.35,
            (x(v) - label_w).max(1.0),
            band * 0.7,
            if is_mean { "#b6c2cf" } else { "#54aeff" },
            esc(text(&row["label"])),
            us(Some(v))
        );
        let mut end = x(v);
        if let (Some(p90), Some(p99)) = (num(&row["p90_us"]), num(&row["p99_us"])) {
            let _ = write!(
                page,
                "<polyline fill=\"none\" stroke=\"#1f2328\" stroke-width=\"2\" \
                 points=\"{:.1},{y:.1} {:.1},{y:.1}\"/>",
                x(p90),
                x(p99)
            );
            end = end.max(x(p99));
        }
        let ratio = match (num(&row["ratio_to_tcp"]), tcp, text(&row["row"])) {
            (_, _, "tcp") => "TCP floor".to_string(),
            (Some(ratio), _, _) => format!("{ratio:.2}× TCP"),
            _ => String::new(),
        };
        let _ = write!(
            page,
            "<text x=\"{:.1}\" y=\"{:.1}\">{} µs{} {}</text>",
            end + 6.0,
            y + 4.0,
            us(Some(v)),
            if is_mean { " mean" } else { "" },
            if ratio.is_empty() {
                String::new()
            } else {
                format!("· {ratio}")
            }
        );
    }
    page.push_str("</svg>\n");
}

/// The percentile plot of the main rows, from each row's percentile ladder in the JSON, drawn by
/// the bench's one chart function (as `testbed bench --plot` draws it). A report written before
/// rows carried their ladder gets no plot.
fn percentiles(page: &mut String, r: &Value, index: usize) {
    let lines: Vec<bench::PercentileLine> = bench::MAIN_ROWS
        .iter()
        .filter_map(|row| {
            let name = serde_json::to_value(row).ok()?;
            let found = items(&r["rows"]).iter().find(|x| x["row"] == name)?;
            let points = items(&found["percentiles"])
                .iter()
                .map(|p| {
                    Some(bench::Percentile {
                        percentile: num(&p["percentile"])?,
                        us: num(&p["us"])?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            (!points.is_empty()).then(|| bench::PercentileLine {
                label: text(&found["label"]).to_string(),
                points,
            })
        })
        .collect();
    if lines.is_empty() {
        return;
    }
    let caption = "per-call latency by percentile, main rows";
    match bench::percentile_svg(&lines, caption, (1000, 420)) {
        Ok(svg) => {
            let _ = writeln!(
                page,
                "<figure class=\"percentiles\" data-placement=\"{index}\">{svg}\
                 <figcaption class=\"muted\">µs per call at each percentile the run records \
                 (dots), both axes log scales; the slowest call of each row is in the table \
                 below.</figcaption></figure>"
            );
        }
        Err(err) => {
            let _ = writeln!(
                page,
                "<p class=\"notmet\">The percentile plot could not be drawn: {}</p>",
                esc(&format!("{err:#}"))
            );
        }
    }
}

pub(super) fn h2load(page: &mut String, report: &Value) {
    page.push_str("<section id=\"h2load\"><h2>h2load (nghttp2) → the Rust server</h2>\n");
    let mut any = false;
    for placement in items(&report["latency"]) {
        let r = &placement["report"];
        let runs = items(&r["h2load"]);
        if runs.is_empty() {
            continue;
        }
        any = true;
        let _ = writeln!(
            page,
            "<h3>{}</h3><table><tr><th>target</th><th>-c</th><th>-m</th><th>requests/s</th>\
             <th>mean µs per request</th></tr>",
            esc(text(&placement["name"]))
        );
        for run in runs {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(text(&run["target"])),
                run["connections"],
                run["streams"],
                num(&run["requests_per_s"]).map_or("–".into(), |v| format!("{v:.0}")),
                us(num(&run["mean_request_us"])),
            );
        }
        page.push_str("</table>\n");
        if let Some(share) = num(&r["h2load_router_share"]) {
            let _ = writeln!(
                page,
                "<p>-c 10 -m 10: the router reaches {:.1} % of direct requests/s.</p>",
                share * 100.0
            );
        }
    }
    if !any {
        page.push_str("<p class=\"muted\">h2load did not run (not installed: bash scripts/setup installs it as root).</p>\n");
    }
    page.push_str("</section>\n");
}
