//! The report as one self-contained HTML page, drawn from the report's JSON (what `report
//! --json` writes): inline styles, inline SVG charts, one small inline script that checks the
//! page once it has loaded (it writes `selfcheck:ok` into the page, or what went wrong), and no
//! other resource, so the file opens anywhere without a network and prints.
//!
//! Every figure on the page comes from the JSON; a figure the JSON does not hold is shown as
//! `–`, never made up.

mod api;
mod canary;
mod latency;
mod matrix;
mod proxies;
mod rollout;
mod scale;
mod summary;
mod traffic;

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

pub(super) fn num(value: &Value) -> Option<f64> {
    value.as_f64()
}

pub(super) fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

pub(super) fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// Opens section `id` titled `title` with the intro `about`; for a section that did not run
/// (a `skipped` reason in its JSON) writes the reason, closes it and returns false.
pub(super) fn open_section(
    page: &mut String,
    id: &str,
    title: &str,
    json: &Value,
    about: &str,
) -> bool {
    let _ = writeln!(page, "<section id=\"{id}\"><h2>{title}</h2>");
    if let Some(why) = json["skipped"].as_str() {
        let _ = writeln!(
            page,
            "<p class=\"muted\">Not run: {}</p></section>",
            esc(why)
        );
        return false;
    }
    let _ = writeln!(page, "<p class=\"muted\">{about}</p>");
    true
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
    ['summary', 'machine', 'matrix', 'rollout', 'canary', 'traffic', 'latency', 'h2load'].forEach(function (id) {
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
    summary::summary(&mut page, report);
    summary::machine(&mut page, meta);
    matrix::matrix(&mut page, &report["matrix"]);
    rollout::rollout(&mut page, &report["rollout"]);
    proxies::section(&mut page, &report["proxies"], &report["latency"]);
    canary::section(&mut page, &report["canary"]);
    traffic::section(&mut page, &report["traffic"]);
    latency::latency(&mut page, report);
    latency::h2load(&mut page, report);
    api::api(&mut page, &report["api"]);
    let _ = write!(
        page,
        "<p id=\"selfcheck\" class=\"muted\">selfcheck:pending</p>\n\
         <script>{SELF_CHECK}</script>\n</body></html>\n"
    );
    page
}
