//! The page's rollout section: v1 → v2 under mixed load, as a per-phase table and a timeline
//! of calls and p99 latency (shared with each proxy's rollout).

use super::scale::{log_range, log_ticks, tick_label};
use super::{esc, items, num, text, us};
use serde_json::Value;
use std::fmt::Write as _;

pub(super) fn rollout(page: &mut String, rollout: &Value) {
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

pub(super) fn rollout_table(page: &mut String, load: &Value) {
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
pub(super) fn timeline(page: &mut String, load: &Value) {
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
