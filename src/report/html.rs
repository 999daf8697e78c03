//! The report as one self-contained HTML page, drawn from the report's JSON (what `report
//! --json` writes): inline styles, inline SVG charts, one small inline script that checks the
//! page once it has loaded (it writes `selfcheck:ok` into the page, or what went wrong), and no
//! other resource, so the file opens anywhere without a network and prints.
//!
//! Every figure on the page comes from the JSON; a figure the JSON does not hold is shown as
//! `–`, never made up.

mod proxies;

use serde_json::Value;
use std::fmt::Write as _;

/// Escapes text for HTML (element content and attribute values).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// A latency in µs with three significant digits (`–` when absent).
pub fn us(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => {
            let digits = if v >= 100.0 {
                0
            } else if v >= 10.0 {
                1
            } else if v >= 1.0 {
                2
            } else {
                3
            };
            format!("{v:.digits$}")
        }
        _ => "–".to_string(),
    }
}

fn num(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

const STYLE: &str = r#"
:root { --ok: #1a7f37; --okbg: #dafbe1; --refused: #9a6700; --refusedbg: #fff8c5;
  --wrong: #cf222e; --wrongbg: #ffebe9; --other: #57606a; --otherbg: #eaeef2; --v1: #0969da;
  --v2: #bf5700; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
  max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 16px; margin-top: 24px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.met { color: var(--ok); font-weight: 600; }
.notmet { color: var(--wrong); font-weight: 600; }
.grid td { text-align: center; white-space: nowrap; }
.grid td.correct { background: var(--okbg); color: var(--ok); }
.grid td.refused { background: var(--refusedbg); color: var(--refused); }
.grid td.wrong { background: var(--wrongbg); color: var(--wrong); font-weight: 700; }
.grid td.other { background: var(--otherbg); color: var(--other); }
.grid td.mismatch { outline: 3px solid var(--wrong); }
.legend span { display: inline-block; padding: 2px 8px; margin-right: 8px; border-radius: 3px; }
.muted { color: #57606a; font-size: 13px; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 12px system-ui, sans-serif; fill: #1f2328; }
@media print { body { max-width: none; padding: 0; font-size: 11px; }
  h2 { break-before: auto; } svg, table { break-inside: avoid; } }
"#;

/// A script run once the page has loaded: it checks that every section and chart is there and
/// drawn, that no resource was fetched, and writes `selfcheck:ok` (or the problems) into the
/// page, where a headless browser's `--dump-dom` shows it.
const SELF_CHECK: &str = r#"
(function () {
  var problems = [];
  window.addEventListener('error', function (e) { problems.push('error: ' + e.message); });
  window.addEventListener('load', function () {
    ['summary', 'machine', 'matrix', 'rollout', 'latency', 'h2load'].forEach(function (id) {
      if (!document.getElementById(id)) problems.push('missing section ' + id);
    });
    var svgs = document.querySelectorAll('svg');
    if (svgs.length === 0) problems.push('no chart');
    svgs.forEach(function (svg, i) {
      var box = svg.getBoundingClientRect();
      if (!(box.width > 0 && box.height > 0)) problems.push('chart ' + i + ' not drawn');
    });
    if (performance.getEntriesByType('resource').length > 0) problems.push('a resource was fetched');
    var out = document.getElementById('selfcheck');
    out.textContent = problems.length ? 'selfcheck:failed ' + problems.join('; ') : 'selfcheck:ok';
  });
})();
"#;

/// The page for the report's JSON.
pub fn render(report: &Value) -> String {
    let mut page = String::new();
    let meta = &report["metadata"];
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>gRPC testbed report {}</title><style>{STYLE}</style></head><body>\n\
         <h1>gRPC version-compatibility testbed report</h1>\n\
         <p class=\"muted\">{} · commit {} · {} run</p>\n",
        esc(text(&meta["date"])),
        esc(text(&meta["date"])),
        esc(text(&meta["commit"])),
        esc(text(&meta["mode"])),
    );
    summary(&mut page, report);
    machine(&mut page, meta);
    matrix(&mut page, &report["matrix"]);
    rollout(&mut page, &report["rollout"]);
    proxies::section(&mut page, &report["proxies"], &report["latency"]);
    latency(&mut page, report);
    h2load(&mut page, report);
    api(&mut page, &report["api"]);
    let _ = write!(
        page,
        "<p id=\"selfcheck\" class=\"muted\">selfcheck:pending</p>\n\
         <script>{SELF_CHECK}</script>\n</body></html>\n"
    );
    page
}

fn value_text(goal: &str, value: f64) -> String {
    if goal.contains('%') {
        format!("{:.1} %", value * 100.0)
    } else {
        format!("{value:.3} ×")
    }
}

fn summary(page: &mut String, report: &Value) {
    page.push_str(
        "<section id=\"summary\"><h2>Summary: the README's targets</h2>\n<table>\
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
            "<tr data-target=\"{}\"><td>{}<div class=\"muted\">{}</div></td><td>{}</td>\
             <td>{}</td><td class=\"{class}\">{}</td></tr>",
            esc(text(&t["name"])),
            esc(text(&t["name"])),
            esc(text(&t["measure"])),
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

fn machine(page: &mut String, meta: &Value) {
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

fn joined(values: &Value) -> String {
    items(values)
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A matrix cell: its class, its text and its detail.
fn outcome(o: &Value) -> (&'static str, String, String) {
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

fn expectation(e: &Value) -> String {
    match text(&e["expect"]) {
        "served" => format!("correct, served by {}", text(&e["version"])),
        "unlabelled" => "correct, no version named".to_string(),
        "fails" => format!("refused with {}", text(&e["code"])),
        "wrong" => "silently wrong (what the router prevents)".to_string(),
        other => other.to_string(),
    }
}

fn matrix(page: &mut String, matrix: &Value) {
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

/// Ticks 1, 2 and 5 times each power of ten in `[lo, hi]`.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi * 1.000_001 {
        // Over more than three decades, 2 and 5 would crowd the labels: powers of ten only.
        let steps: &[f64] = if hi / lo > 1_000.0 {
            &[1.0]
        } else {
            &[1.0, 2.0, 5.0]
        };
        for &m in steps {
            let t = decade * m;
            if t >= lo * 0.999_999 && t <= hi * 1.000_001 {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

fn tick_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// The log axis covering `[min, max]`, from a power of ten to the next.
/// Powers of ten around the positive `values`, for a log axis (`None` when there are none).
fn log_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (min, max) =
        values
            .into_iter()
            .filter(|v| *v > 0.0)
            .fold(None, |range: Option<(f64, f64)>, v| match range {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            })?;
    let lo = 10f64.powf(min.max(1e-3).log10().floor());
    let hi = 10f64.powf(max.max(lo * 10.0).log10().ceil());
    Some((lo, hi))
}

fn rollout(page: &mut String, rollout: &Value) {
    page.push_str(
        "<section id=\"rollout\"><h2>Zero-downtime v1 → v2 rollout</h2>\n<p>v1 only → v2 \
         added → v1 retired (v2 also serves increment.v1) → v1 drained and removed, under \
         mixed-version load, every reply verified. Open loop: each client sends on a fixed \
         schedule and a latency counts from the request's intended send time (as wrk2), so a \
         stall shows in every request behind it. Closed loop: each client sends its next request \
         when the previous reply arrives.</p>\n",
    );
    for (key, title) in [("open_loop", "Open loop"), ("closed_loop", "Closed loop")] {
        let r = &rollout[key];
        let load = &r["load"];
        let settings = &load["settings"];
        let how = match num(&settings["rate_per_client"]) {
            Some(rate) => format!("{rate} requests/s per client"),
            None => "back to back".to_string(),
        };
        let _ = writeln!(
            page,
            "<h3 id=\"rollout-{key}\">{title}: {} v1 + {} v2 clients, {how}</h3>",
            settings["v1_clients"], settings["v2_clients"]
        );
        timeline(page, load);
        rollout_table(page, load);
        let health: Vec<String> = items(&r["health"])
            .iter()
            .map(|e| {
                format!(
                    "[{}] {} → {}",
                    text(&e["phase"]),
                    text(&e["service"]),
                    text(&e["status"])
                )
            })
            .collect();
        if !health.is_empty() {
            let _ = writeln!(
                page,
                "<p class=\"muted\">Health Watch saw: {}</p>",
                esc(&health.join("; "))
            );
        }
    }
    page.push_str("</section>\n");
}

fn rollout_table(page: &mut String, load: &Value) {
    page.push_str(
        "<table><tr><th>phase</th><th>clients</th><th>requests</th><th>failed</th><th>wrong</th>\
         <th>p50 µs</th><th>p99 µs</th><th>max µs</th><th>served by</th></tr>\n",
    );
    let mut rows: Vec<(String, &Value)> = items(&load["phases"])
        .iter()
        .map(|p| (text(&p["name"]).to_string(), p))
        .collect();
    rows.push(("all".to_string(), &load["totals"]));
    for (name, phase) in rows {
        for version in ["v1", "v2"] {
            let t = &phase[version];
            let failed: u64 = t["errors"]
                .as_object()
                .map_or(0, |e| e.values().filter_map(|v| v[0].as_u64()).sum());
            let served: Vec<String> = t["served_by"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}: {v}")).collect())
                .unwrap_or_default();
            let _ = writeln!(
                page,
                "<tr data-phase=\"{}\" data-version=\"{version}\"><td>{}</td><td>{version}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{failed}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(&name),
                esc(&name),
                t["requests"],
                t["wrong"],
                us(num(&t["p50_us"])),
                us(num(&t["p99_us"])),
                us(num(&t["max_us"])),
                esc(&served.join(", ")),
            );
        }
    }
    page.push_str("</table>\n");
}

/// Requests and failures per 100 ms, and p99 per 100 ms, per client version, over time, with
/// each phase change marked.
fn timeline(page: &mut String, load: &Value) {
    let series = &load["series"];
    let bucket_s = num(&series["bucket_ms"]).unwrap_or(100.0) / 1e3;
    let (v1, v2) = (items(&series["v1"]), items(&series["v2"]));
    let buckets = v1.len().max(v2.len());
    if buckets == 0 {
        page.push_str("<p class=\"muted\">No time series recorded.</p>\n");
        return;
    }
    let (w, left, right) = (1000.0, 70.0, 20.0);
    let (panel, gap, top) = (150.0, 50.0, 30.0);
    let height = top + 2.0 * panel + gap + 40.0;
    let span = buckets as f64 * bucket_s;
    let x = |t: f64| left + (w - left - right) * t / span;
    let requests = |p: &Value| num(&p["requests"]).unwrap_or(0.0);
    let max_req = v1.iter().chain(v2).map(requests).fold(1.0, f64::max);
    let p99s: Vec<f64> = v1
        .iter()
        .chain(v2)
        .filter_map(|p| num(&p["p99_us"]))
        .collect();
    let _ = write!(
        page,
        "<svg class=\"timeline\" viewBox=\"0 0 {w} {height}\" width=\"{w}\" height=\"{height}\" \
         role=\"img\" aria-label=\"rollout timeline\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    // Panel 1: requests per bucket.
    let y1 = |v: f64| top + panel - panel * v / max_req;
    let _ = write!(
        page,
        "<text x=\"{left}\" y=\"{}\">requests per {:.0} ms (failures in red)</text>",
        top - 10.0,
        bucket_s * 1e3
    );
    for i in 0..=4 {
        let v = max_req * f64::from(i) / 4.0;
        let _ = write!(
            page,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eaeef2\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            w - right,
            left - 6.0,
            y1(v) + 4.0,
            y = y1(v)
        );
    }
    let bottom2 = top + 2.0 * panel + gap;
    let lines = |page: &mut String,
                 points: &[Value],
                 color: &str,
                 f: &dyn Fn(&Value) -> Option<f64>| {
        let mut segment: Vec<String> = Vec::new();
        let flush = |page: &mut String, segment: &mut Vec<String>| {
            if !segment.is_empty() {
                let _ = write!(
                    page,
                    "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
                    segment.join(" ")
                );
                segment.clear();
            }
        };
        for (i, p) in points.iter().enumerate() {
            match f(p) {
                Some(y) => segment.push(format!("{:.1},{y:.1}", x((i as f64 + 0.5) * bucket_s))),
                None => flush(page, &mut segment),
            }
        }
        flush(page, &mut segment);
    };
    lines(page, v1, "var(--v1)", &|p| Some(y1(requests(p))));
    lines(page, v2, "var(--v2)", &|p| Some(y1(requests(p))));
    for (i, (a, b)) in (0..buckets).map(|i| (v1.get(i), v2.get(i))).enumerate() {
        let failed = a.and_then(|p| num(&p["failed"])).unwrap_or(0.0)
            + b.and_then(|p| num(&p["failed"])).unwrap_or(0.0);
        if failed > 0.0 {
            let _ = write!(
                page,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"var(--wrong)\">\
                 <title>{failed} failed</title></rect>",
                x(i as f64 * bucket_s),
                y1(failed),
                (x(bucket_s) - x(0.0)).max(1.0),
                top + panel - y1(failed)
            );
        }
    }
    // Panel 2: p99 per bucket, log scale.
    let top2 = top + panel + gap;
    let _ = write!(
        page,
        "<text x=\"{left}\" y=\"{}\">p99 µs per {:.0} ms (log scale)</text>",
        top2 - 10.0,
        bucket_s * 1e3
    );
    if let Some((lo, hi)) = log_range(p99s.iter().copied()) {
        let y2 = |v: f64| top2 + panel - panel * (v / lo).log10() / (hi / lo).log10();
        for t in log_ticks(lo, hi) {
            let _ = write!(
                page,
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eaeef2\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                w - right,
                left - 6.0,
                y2(t) + 4.0,
                tick_label(t),
                y = y2(t)
            );
        }
        lines(page, v1, "var(--v1)", &|p| num(&p["p99_us"]).map(&y2));
        lines(page, v2, "var(--v2)", &|p| num(&p["p99_us"]).map(&y2));
    }
    // Time axis and phase changes.
    let mut t = 0.0;
    let step = if span > 20.0 { 5.0 } else { 1.0 };
    while t <= span + 1e-9 {
        let _ = write!(
            page,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t:.0} s</text>",
            x(t),
            bottom2 + 16.0
        );
        t += step;
    }
    let names = items(&load["phases"]);
    for (i, start) in items(&series["phase_starts_s"]).iter().enumerate() {
        let Some(start) = num(start) else { continue };
        let name = names.get(i).map_or("", |p| text(&p["name"]));
        let _ = write!(
            page,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{bottom2}\" stroke=\"#57606a\" \
             stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"600\">{}</text>",
            top - 4.0,
            x(start) + 4.0,
            top + panel + 18.0,
            esc(name),
            x = x(start)
        );
    }
    let _ = writeln!(
        page,
        "<text x=\"{}\" y=\"{:.1}\" style=\"fill:var(--v1)\">— v1 clients</text>\
         <text x=\"{}\" y=\"{:.1}\" style=\"fill:var(--v2)\">— v2 clients</text></svg>",
        w - right - 220.0,
        top - 10.0,
        w - right - 110.0,
        top - 10.0
    );
}

fn latency(page: &mut String, report: &Value) {
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

fn h2load(page: &mut String, report: &Value) {
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

/// The API's versions (services, methods, messages, with the protos' comments) and the
/// changelog from v1 to v2 with its verdict.
fn api(page: &mut String, api: &Value) {
    page.push_str("<section id=\"api\"><h2>The API</h2>\n");
    let changelog = &api["changelog"];
    let verdict = text(&changelog["verdict"]);
    let _ = writeln!(
        page,
        "<h3>Changelog v1 → v2: {} (testbed check)</h3><table><tr><th>element</th><th>rule</th>\
         <th>bump</th><th>what changed</th></tr>",
        esc(if verdict.is_empty() {
            "no change"
        } else {
            verdict
        })
    );
    for finding in items(&changelog["findings"]) {
        let _ = writeln!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(text(&finding["element"])),
            esc(text(&finding["rule"])),
            esc(text(&finding["semver"])),
            esc(text(&finding["message"])),
        );
    }
    page.push_str("</table>\n");
    for version in items(&api["versions"]) {
        let _ = writeln!(
            page,
            "<h3><code>{}</code></h3>",
            esc(text(&version["package"]))
        );
        for service in items(&version["services"]) {
            let _ = writeln!(
                page,
                "<p><b>service <code>{}</code></b> {}</p><ul>",
                esc(text(&service["name"])),
                esc(text(&service["comment"]))
            );
            for method in items(&service["methods"]) {
                let _ = writeln!(
                    page,
                    "<li><code>{}</code> {}</li>",
                    esc(text(&method["signature"])),
                    esc(text(&method["comment"]))
                );
            }
            page.push_str("</ul>\n");
        }
        for message in items(&version["messages"]) {
            let _ = writeln!(
                page,
                "<p><b>message <code>{}</code></b> {}</p><table><tr><th>field</th><th>number</th>\
                 <th>type</th><th>comment</th></tr>",
                esc(text(&message["name"])),
                esc(text(&message["comment"]))
            );
            for field in items(&message["fields"]) {
                let _ = writeln!(
                    page,
                    "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td><code>{}</code></td>\
                     <td>{}</td></tr>",
                    esc(text(&field["name"])),
                    field["number"],
                    esc(text(&field["kind"])),
                    esc(text(&field["comment"]))
                );
            }
            page.push_str("</table>\n");
        }
    }
    page.push_str("</section>\n");
}
