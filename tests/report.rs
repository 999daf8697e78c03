//! The main job's report: `testbed report --json --html` on a small run (100 calls per latency
//! row, 0.3 s rollout phases), the page's figures checked against the JSON's, and the page
//! opened in headless Chromium (a missing browser skips outside CI and fails under `CI=true`).
//! No timing is asserted.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod runs;

/// The report's JSON and HTML files, made once for every test here.
fn report() -> &'static (PathBuf, PathBuf) {
    static REPORT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    REPORT.get_or_init(|| {
        // Cargo's folder for integration tests' files (under target/), since a static keeps
        // these for the whole run and would never remove a temporary folder.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
        std::fs::create_dir_all(&dir).unwrap();
        let (json, html) = (dir.join("report.json"), dir.join("report.html"));
        let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
            .args([
                "report",
                "--requests",
                "100",
                "--rollout-phase-seconds",
                "0.3",
            ])
            .arg("--json")
            .arg(&json)
            .arg("--html")
            .arg(&html)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Outside CI a missing client (Python, grpcurl) makes matrix cells differ, which fails
        // the command after it wrote both files; anything else is a failure.
        let tolerated =
            std::env::var("CI").as_deref() != Ok("true") && stderr.contains("matrix probes differ");
        assert!(
            out.status.success() || tolerated,
            "report failed:\n{stderr}"
        );
        assert!(stderr.contains("HTML report: "), "{stderr}");
        (json, html)
    })
}

fn load() -> (Value, String) {
    let (json, html) = report();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (json, std::fs::read_to_string(html).unwrap())
}

/// Undoes the page's HTML escaping.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text of the first `<td>` whose opening tag contains every one of `attributes`.
fn td_text(html: &str, attributes: &[String]) -> Option<String> {
    html.split("<td ").skip(1).find_map(|rest| {
        let (tag, body) = rest.split_once('>')?;
        attributes
            .iter()
            .all(|a| tag.contains(a.as_str()))
            .then(|| unescape(body.split("</td>").next().unwrap_or("")))
    })
}

fn joined(values: &Value) -> String {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A rollout's time series holds, per client version, exactly the requests its totals count.
fn series_adds_up(load: &Value, what: &str) {
    for version in ["v1", "v2"] {
        let in_series: u64 = load["series"][version]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["requests"].as_u64().unwrap())
            .sum();
        let counted = load["totals"][version]["requests"].as_u64().unwrap();
        assert_eq!(in_series, counted, "{what} {version}");
    }
}

#[test]
fn the_json_holds_the_summary_the_machine_and_every_section() {
    let (json, _) = load();
    let targets = json["summary"].as_array().unwrap();
    assert_eq!(targets.len(), 8, "{:#}", json["summary"]);
    for target in targets {
        let verdict = target["verdict"].as_str().unwrap();
        match target["met"].as_bool() {
            Some(true) => assert_eq!(verdict, "met"),
            Some(false) => assert!(verdict.contains("not met") || verdict.contains(" of ")),
            None => assert!(verdict.starts_with("not measured"), "{verdict}"),
        }
        assert!(!target["anchor"].as_str().unwrap().is_empty(), "{target}");
    }
    // The quick run is unpinned: a target defined with placement held fixed is not judged
    // there, and says where it is defined.
    let floor = targets
        .iter()
        .find(|t| t["name"] == "best unary against the floor")
        .unwrap();
    assert_eq!(floor["measured"].as_array().unwrap().len(), 0, "{floor}");
    assert!(
        floor["verdict"]
            .as_str()
            .unwrap()
            .contains("defined client and servers apart, with halt polling"),
        "{floor}"
    );
    // The gateway's hop is judged against HAProxy's, from the proxies row's own figures.
    let hop = targets
        .iter()
        .find(|t| t["name"] == "gateway hop against HAProxy, latency")
        .unwrap();
    let paths = json["latency"][0]["report"]["proxies"]["paths"]
        .as_array()
        .unwrap();
    let added = |name: &str| {
        paths
            .iter()
            .find(|p| p["path"] == name)
            .map(|p| p["p50_us"].as_f64().unwrap() - paths[0]["p50_us"].as_f64().unwrap())
    };
    if let (Some(gateway), Some(haproxy)) =
        (added("testbed router (serve --upstream)"), added("haproxy"))
    {
        let value = hop["measured"][0]["value"].as_f64().unwrap();
        assert!((value - gateway / haproxy).abs() < 1e-6, "{hop}");
    }
    let meta = &json["metadata"];
    for key in ["commit", "date", "cpu_model", "kernel"] {
        assert!(!meta[key].as_str().unwrap().is_empty(), "{key}: {meta}");
    }
    assert_eq!(meta["mode"], "quick");
    assert_eq!(meta["rounds"], 1);
    assert_eq!(
        json["latency"].as_array().unwrap().len(),
        1,
        "quick: one placement"
    );
    assert_eq!(json["matrix"]["cells"].as_array().unwrap().len(), 8 * 6);
    // Both rollouts, with a time series whose buckets add up to the requests counted.
    for key in ["closed_loop", "open_loop"] {
        let load = &json["rollout"][key]["load"];
        assert_eq!(load["settings"]["open_loop"], key == "open_loop");
        assert_eq!(load["phases"].as_array().unwrap().len(), 4);
        assert_eq!(
            load["series"]["phase_starts_s"].as_array().unwrap().len(),
            4
        );
        series_adds_up(load, key);
    }
}

#[test]
fn the_page_shows_the_jsons_matrix_rollout_and_latency_figures() {
    let (json, html) = load();
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "no remote resource"
    );
    assert!(
        !html.contains("<link") && !html.contains(" src="),
        "self-contained"
    );
    // Every matrix cell, both probes: the values (or the status) the JSON recorded.
    let mut checked = 0;
    for cell in json["matrix"]["cells"].as_array().unwrap() {
        let (client, deployment) = (
            cell["client"].as_str().unwrap(),
            cell["deployment"].as_str().unwrap(),
        );
        for mode in ["unary", "stream"] {
            let o = &cell[mode];
            let shown = td_text(
                &html,
                &[
                    format!("data-client=\"{client}\""),
                    format!("data-deployment=\"{deployment}\""),
                    format!("data-mode=\"{mode}\""),
                ],
            )
            .unwrap_or_else(|| panic!("no cell for {client} on {deployment} ({mode})"));
            let want = match o["outcome"].as_str().unwrap() {
                "correct" => match o["served_by"].as_str() {
                    Some(v) => format!("✓ {} ({v})", joined(&o["values"])),
                    None => format!("✓ {}", joined(&o["values"])),
                },
                "wrong" => format!("✗ {} (want {})", joined(&o["got"]), joined(&o["want"])),
                "status" => o["code"].as_str().unwrap().to_string(),
                "skipped" => "skipped".to_string(),
                _ => "client failed".to_string(),
            };
            assert_eq!(shown, want, "{client} on {deployment} ({mode})");
            checked += 1;
        }
    }
    assert_eq!(checked, 96);
    // The open-loop rollout's totals.
    let totals = &json["rollout"]["open_loop"]["load"]["totals"];
    let section = html.split("id=\"rollout-open_loop\"").nth(1).unwrap();
    for version in ["v1", "v2"] {
        let row = section
            .split(&format!(
                "<tr data-phase=\"all\" data-version=\"{version}\">"
            ))
            .nth(1)
            .unwrap();
        let requests = row
            .split("<td class=\"n\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap();
        assert_eq!(
            requests,
            totals[version]["requests"].to_string(),
            "{version}"
        );
    }
    // A latency figure: the TCP row's p50, to the three digits shown.
    let tcp = json["latency"][0]["report"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["row"] == "tcp")
        .unwrap();
    let p50 = tcp["p50_us"].as_f64().unwrap();
    let row = html.split("<tr data-row=\"tcp\">").nth(1).unwrap();
    let shown: f64 = row
        .split("<td class=\"n p50\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (shown - p50).abs() <= 0.005 * p50 + 0.0005,
        "shown {shown}, JSON {p50}"
    );
    // The summary's verdicts.
    for target in json["summary"].as_array().unwrap() {
        let name = target["name"].as_str().unwrap();
        let row = html
            .split(&format!("<tr data-target=\"{name}\">"))
            .nth(1)
            .unwrap_or_else(|| panic!("no summary row for {name}"));
        let row = row.split("</tr>").next().unwrap();
        assert!(
            unescape(row).contains(target["verdict"].as_str().unwrap()),
            "{row}"
        );
    }
}

/// Headless Chromium, or why there is none (`None` when the test should be skipped).
#[test]
fn the_page_documents_both_versions_and_the_changelog_from_the_json() {
    let (json, html) = load();
    let api = &json["api"];
    // Independent of the report: the protos say v2 adds `step` to the request.
    let proto = include_str!("../proto/v2/increment.proto");
    assert!(proto.contains("optional int64 step = 2;"));
    let verdict = api["changelog"]["verdict"].as_str().unwrap();
    assert_eq!(verdict, "minor");
    assert!(
        html.contains(&format!("Changelog v1 → v2: {verdict}")),
        "the page shows the JSON's verdict"
    );
    for finding in api["changelog"]["findings"].as_array().unwrap() {
        let element = finding["element"].as_str().unwrap();
        assert!(
            html.contains(&format!("<code>{element}</code>")),
            "{element}"
        );
    }
    for version in api["versions"].as_array().unwrap() {
        for message in version["messages"].as_array().unwrap() {
            for field in message["fields"].as_array().unwrap() {
                let name = field["name"].as_str().unwrap();
                assert!(html.contains(&format!("<code>{name}</code>")), "{name}");
            }
        }
    }
}

pub(crate) fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    let fix = "install it: apt-get install -y chromium (bash scripts/setup does, as root)";
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "no Chromium under CI=true: {fix}"
    );
    eprintln!("skipped: no Chromium; {fix}");
    None
}

pub(crate) fn headless(browser: &Path, profile: &Path) -> Command {
    let mut command = Command::new(browser);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command
}

#[test]
fn the_page_loads_in_headless_chromium_without_errors() {
    let Some(browser) = chromium() else { return };
    let (_, html) = report();
    let url = format!("file://{}", html.display());
    let dir = html.parent().unwrap();
    // The page's own check, read back from the DOM after load.
    let profile = dir.join("profile-dom");
    let out = headless(&browser, &profile)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed:\n{stderr}");
    for bad in ["Uncaught", "ERROR:CONSOLE", "net::ERR_"] {
        assert!(
            !stderr.contains(bad),
            "{bad} in the browser's log:\n{stderr}"
        );
    }
    let marker = dom
        .split("id=\"selfcheck\"")
        .nth(1)
        .and_then(|rest| rest.split_once('>'))
        .map(|(_, text)| text.split('<').next().unwrap_or(""))
        .unwrap_or("no marker");
    assert_eq!(marker, "selfcheck:ok", "the page's self-check");
    // A screenshot, as a person would see the page.
    let png = dir.join("report.png");
    let out = headless(&browser, &dir.join("profile-shot"))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,4000")
        .arg(&url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed:\n{stderr}");
    assert!(
        !stderr.contains("Uncaught") && !stderr.contains("ERROR:CONSOLE"),
        "{stderr}"
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
}

/// The attributes of each `<tag ...>` in `svg` with the text after it.
fn svg_elements(svg: &str, tag: &str) -> Vec<(Vec<(String, String)>, String)> {
    svg.split(&format!("<{tag} "))
        .skip(1)
        .map(|rest| {
            let (head, body) = rest.split_once('>').unwrap();
            let attributes = head
                .trim_end_matches('/')
                .split("\" ")
                .filter_map(|pair| pair.split_once("=\""))
                .map(|(k, v)| (k.trim().to_string(), v.trim_end_matches('"').to_string()))
                .collect();
            let text = body.split('<').next().unwrap_or("").trim().to_string();
            (attributes, text)
        })
        .collect()
}

fn attribute(attributes: &[(String, String)], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

#[test]
fn the_percentile_plot_draws_each_main_rows_distribution_from_the_json() {
    let (json, html) = load();
    let rows = json["latency"][0]["report"]["rows"].as_array().unwrap();
    // The rows plotted: the main rows that recorded percentiles, in order.
    let plotted: Vec<&Value> = bench::MAIN_ROWS
        .iter()
        .filter_map(|row| rows.iter().find(|r| r["row"] == serde_json::json!(row)))
        .filter(|r| r["percentiles"].as_array().is_some_and(|p| !p.is_empty()))
        .collect();
    assert!(plotted.len() >= 3, "tcp, rest and unary-v1 always run");
    let figure = html
        .split("<figure class=\"percentiles\" data-placement=\"0\">")
        .nth(1)
        .expect("the percentile plot")
        .split("</figure>")
        .next()
        .unwrap();
    let texts = svg_elements(figure, "text");
    let number =
        |a: &[(String, String)], key: &str| -> f64 { attribute(a, key).unwrap().parse().unwrap() };
    // The axes as their own tick labels place them.
    let x_tick = |label: &str| {
        let (a, _) = texts.iter().find(|(_, t)| t == label).unwrap();
        number(a, "x")
    };
    let y_ticks: Vec<(f64, f64)> = texts
        .iter()
        .filter(|(a, _)| attribute(a, "dy").as_deref() == Some("0.5ex"))
        .filter_map(|(a, t)| Some((t.parse::<f64>().ok()?, number(a, "y"))))
        .collect();
    let ((v1, y1), (v2, y2)) = (y_ticks[0], y_ticks[y_ticks.len() - 1]);
    let y_of = |us: f64| y1 + (y2 - y1) * (us / v1).log10() / (v2 / v1).log10();
    let circles = svg_elements(figure, "circle");
    for (i, row) in plotted.iter().enumerate() {
        let label = row["label"].as_str().unwrap();
        assert!(
            texts.iter().any(|(_, t)| unescape(t) == label),
            "{label} in the legend"
        );
        let ladder: Vec<(f64, f64)> = row["percentiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["percentile"].as_f64().unwrap(), p["us"].as_f64().unwrap()))
            .collect();
        // The ladder holds the row's own figures, and rises.
        let at = |p: f64| ladder.iter().find(|(q, _)| *q == p).map(|(_, us)| *us);
        for (p, key) in [
            (50.0, "p50_us"),
            (90.0, "p90_us"),
            (99.0, "p99_us"),
            (100.0, "max_us"),
        ] {
            assert_eq!(at(p), row[key].as_f64(), "{label} {key}");
        }
        assert!(
            ladder.windows(2).all(|w| w[0].1 <= w[1].1),
            "{label}: {ladder:?}"
        );
        // Its dots, in the line's colour: every percentile but the slowest call.
        let (r, g, b) = bench::PERCENTILE_COLORS[i];
        let fill = format!("#{r:02X}{g:02X}{b:02X}");
        let dots: Vec<(f64, f64)> = circles
            .iter()
            .filter(|(a, _)| attribute(a, "fill").as_deref() == Some(fill.as_str()))
            .map(|(a, _)| (number(a, "cx"), number(a, "cy")))
            .collect();
        assert_eq!(dots.len(), ladder.len() - 1, "{label}");
        // The plotted p99: on the 99% tick, at the height of the row's p99 from the JSON.
        let p99 = ladder.iter().position(|(p, _)| *p == 99.0).unwrap();
        let (x, y) = dots[p99];
        assert_eq!(x, x_tick("99%"), "{label}");
        let want = y_of(row["p99_us"].as_f64().unwrap());
        assert!(
            (y - want).abs() <= 1.5,
            "{label}: p99 drawn at y {y}, JSON says {want}"
        );
        for ((_, us), (_, y)) in ladder.iter().zip(&dots) {
            assert!(
                (y - y_of(*us)).abs() <= 1.5,
                "{label}: {us} µs drawn at y {y}"
            );
        }
    }
}
