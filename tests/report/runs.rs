//! The report's sections that run outside programs and drills: the proxies (matrix columns and
//! rollouts), the latency runs' hops, the canary drills and the shop example's traffic, each
//! checked in the JSON and on the page.

use super::{load, series_adds_up, td_text};
use serde_json::Value;

/// The proxy section: every installed proxy's three matrix columns as expected, its rollout's
/// four phases with a time series that adds up to the requests counted and no wrong reply, and
/// the page's grid cell for a proxy column showing what the JSON holds.
#[test]
fn the_report_runs_every_installed_proxy_and_draws_it() {
    let (json, html) = load();
    let proxies = &json["proxies"];
    let run = proxies["proxies"].as_array().unwrap();
    let skipped = proxies["skipped"].as_array().unwrap();
    assert_eq!(run.len() + skipped.len(), 3, "{proxies:#}");
    if std::env::var("CI").as_deref() == Ok("true") {
        assert!(skipped.is_empty(), "{skipped:?}");
    }
    let cells = proxies["matrix"]["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 8 * 3 * run.len());
    assert!(
        proxies["matrix"]["mismatches"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let rollouts = proxies["rollouts"].as_array().unwrap();
    assert_eq!(rollouts.len(), run.len());
    for rollout in rollouts {
        let load = &rollout["load"];
        assert_eq!(load["phases"].as_array().unwrap().len(), 4, "{rollout:#}");
        assert_eq!(rollout["changes"].as_array().unwrap().len(), 2);
        series_adds_up(load, rollout["proxy"].as_str().unwrap());
        for version in ["v1", "v2"] {
            assert_eq!(load["totals"][version]["wrong"], 0, "{}", rollout["proxy"]);
        }
    }
    if run.is_empty() {
        return;
    }
    assert!(html.contains("<section id=\"proxies\">"));
    // The pinned v1 client through the first proxy with v1 retired: the proxy's own refusal.
    let column = format!("{} v1-retired", run[0].as_str().unwrap());
    let shown = td_text(
        &html,
        &[
            format!("data-proxy-column=\"{column}\""),
            "data-client=\"rust-v1-pinned\"".to_string(),
        ],
    );
    assert_eq!(shown.as_deref(), Some("UNIMPLEMENTED"), "{column}");
    for rollout in rollouts {
        let id = format!(
            "id=\"proxy-rollout-{}\"",
            rollout["proxy"].as_str().unwrap()
        );
        assert!(html.contains(&id), "{id}");
    }
    fleet_rollout(&proxies["fleet"], &html, run.iter().any(|p| p == "envoy"));
}

/// The rollout through three Envoys steered over xDS: three changes, every phase through every
/// node with calls and none failed or wrong, v1 served by 2.0.0 at the end, and the page's rows
/// showing the JSON's counts.
fn fleet_rollout(fleet: &Value, html: &str, envoy: bool) {
    assert_eq!(fleet.is_null(), !envoy, "{fleet:#}");
    if !envoy {
        return;
    }
    let changes = fleet["changes"].as_array().unwrap();
    let phases: Vec<&str> = changes
        .iter()
        .map(|c| c["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["v2 added", "v1 retired onto v2", "v1 removed"]);
    let nodes = fleet["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{fleet:#}");
    for node in nodes {
        let id = node["node"].as_str().unwrap();
        for (api, phases) in [("v1", 4), ("v2", 3)] {
            let runs = node[api]["phases"].as_array().unwrap();
            assert_eq!(runs.len(), phases, "{id} {api}");
            for phase in runs {
                let tally = &phase[api];
                assert!(tally["requests"].as_u64().unwrap() > 0, "{id} {phase}");
                assert_eq!(tally["errors"], serde_json::json!({}), "{id} {phase}");
                assert_eq!(tally["wrong"], 0, "{id} {phase}");
            }
        }
        let v1 = node["v1"]["phases"].as_array().unwrap();
        let last = &v1[3]["v1"]["served_by"];
        assert_eq!(
            last,
            &serde_json::json!({"2.0.0": v1[3]["v1"]["requests"]}),
            "{id}"
        );
        let row = format!(
            "<tr data-fleet-node=\"{id}\" data-fleet-phase=\"v1 only\"><td>{id}</td><td>v1 only</td><td class=\"n\">{}</td>",
            v1[0]["v1"]["requests"]
        );
        assert!(html.contains(&row), "no {row}");
    }
}

#[test]
fn the_latency_runs_measure_each_hop_and_the_page_shows_them() {
    let (json, html) = load();
    let figures = &json["latency"][0]["report"]["proxies"];
    let paths = figures["paths"].as_array().expect("the proxies row ran");
    let skipped = figures["skipped"].as_array().unwrap();
    // Direct, the router as a proxy (plain, and selecting among replicas and a canary), an
    // Envoy it steers over xDS, and every proxy that is installed.
    assert_eq!(paths.len() + skipped.len(), 7, "{figures:#}");
    if std::env::var("CI").as_deref() == Ok("true") {
        assert!(skipped.is_empty(), "{skipped:?}");
    }
    let direct_p50 = paths[0]["p50_us"].as_f64().unwrap();
    assert_eq!(paths[0]["path"], "direct");
    for path in paths {
        let name = path["path"].as_str().unwrap();
        // Every chain ended where it must, and the ratio is the two p50s'.
        assert_eq!(path["final_value"], path["calls"], "{name}");
        let p50 = path["p50_us"].as_f64().unwrap();
        let ratio = path["p50_ratio_to_direct"].as_f64().unwrap();
        assert!((ratio - p50 / direct_p50).abs() < 1e-9, "{name}");
        let cpu: Vec<Option<f64>> = path["loads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|load| load["hop_cpu_s_per_10k"].as_f64())
            .collect();
        assert_eq!(cpu.len(), 2, "{name}");
        // A hop's CPU is measured; direct has none.
        assert_eq!(cpu.iter().all(Option::is_some), name != "direct", "{name}");
        let shown: f64 = td_text(
            &html,
            &[
                format!("data-proxy-path=\"{name}\""),
                "data-figure=\"p50\"".to_string(),
            ],
        )
        .unwrap_or_else(|| panic!("no p50 cell for {name}"))
        .parse()
        .unwrap();
        assert!(
            (shown - p50).abs() <= 0.05 + 1e-9,
            "{name}: shown {shown}, JSON {p50}"
        );
    }
}

#[test]
fn the_canary_drills_promote_the_good_build_roll_back_the_bad_and_the_page_shows_them() {
    let (json, html) = load();
    let drills = json["canary"]["drills"].as_array().expect("drills ran");
    assert_eq!(drills.len(), 2, "{:#}", json["canary"]);
    let (good, bad) = (&drills[0], &drills[1]);
    assert_eq!(good["exit_code"], 0);
    assert_eq!(
        good["events"].as_array().unwrap().last().unwrap()["event"],
        "promoted"
    );
    assert_eq!(bad["exit_code"], 100);
    let bad_events = bad["events"].as_array().unwrap();
    assert_eq!(bad_events.last().unwrap()["event"], "rolled back");
    // Every call the good drill's load made succeeded.
    for call in good["calls"].as_array().unwrap() {
        assert_eq!(call[1], "OK", "{call}");
    }
    // Each interval's figures are on the page as the JSON has them.
    for event in bad_events.iter().filter(|e| e["event"] == "interval") {
        let calls = event["canary"]["calls"].as_f64().unwrap();
        let rate = event["canary"]["error_rate"].as_f64().unwrap() * 100.0;
        let row = format!("<td class=\"n\">{calls:.0}</td>");
        assert!(html.contains(&row), "no {row}");
        assert!(
            html.contains(&format!("<td class=\"n\">{rate:.1}</td>")),
            "no rate {rate:.1}"
        );
    }
    assert!(html.contains("<section id=\"canary\">"));
    // Who called what: the usage table names both callers, counts every call the load made,
    // and shows both builds serving each caller; the page has its rows.
    for drill in drills {
        let usage = drill["usage"].as_array().expect("a usage table");
        let made: u64 = drill["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[2].as_u64().unwrap())
            .sum();
        let counted: u64 = usage.iter().map(|r| r["calls"].as_u64().unwrap()).sum();
        assert_eq!(counted, made, "{drill:#}");
        for caller in ["storefront", "mobile-app"] {
            for version in ["2.0.0", "2.1.0"] {
                assert!(
                    usage
                        .iter()
                        .any(|r| r["caller"] == caller && r["version"] == version),
                    "{caller} at {version}: {usage:?}"
                );
            }
        }
        let row = &usage[0];
        let cell = format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>",
            row["caller"].as_str().unwrap(),
            row["method"].as_str().unwrap(),
            row["backend"].as_str().unwrap(),
            row["version"].as_str().unwrap(),
            row["calls"]
        );
        assert!(html.contains(&cell), "no {cell}");
    }
}

#[test]
fn the_shop_examples_replays_and_rollout_end_as_the_builds_promise_and_the_page_shows_them() {
    let (json, html) = load();
    let runs = json["traffic"]["runs"]
        .as_array()
        .expect("the traffic runs ran");
    assert_eq!(runs.len(), 3, "{:#}", json["traffic"]);
    let method = |report: &Value, name: &str| -> Value {
        report["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["method"] == format!("shop.v1.Shop/{name}"))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {report:#}"))
    };
    // The compatible build: every method ok, its random order ids noise (two of five calls
    // place an order).
    let compatible = &runs[0];
    assert_eq!(compatible["exit_code"], 0);
    assert!(
        compatible["command"]
            .as_str()
            .unwrap()
            .contains("--secondary OLD2")
    );
    let place = method(&compatible["report"], "PlaceOrder");
    assert_eq!(place["verdict"], "ok");
    assert_eq!(place["noise"][0]["path"], "order_id");
    assert_eq!(place["noise"][0]["calls"], 2);
    // The cheaper build: the one successful GetProduct (book-1) has another price.
    let cheaper = &runs[1];
    assert_eq!(cheaper["exit_code"], 100);
    let get = method(&cheaper["report"], "GetProduct");
    assert_eq!(get["verdict"], "degraded");
    assert_eq!(get["differences"][0]["path"], "price_cents");
    assert_eq!(get["differences"][0]["calls"], 1);
    assert_eq!(
        get["differences"][0]["examples"][0]["new"],
        (4299 * 90 / 100).to_string()
    );
    // The rollout: three phases, each ok.
    let rollout = &runs[2];
    assert_eq!(rollout["exit_code"], 0);
    let phases = rollout["report"]["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["old only", "new added", "old removed"]);
    assert!(phases.iter().all(|p| p["verdict"] == "ok"), "{phases:#?}");
    // OLD alone serves the first phase and NEW alone the last.
    let only = |phase: &Value| -> Vec<String> {
        let by = phase["served_by"].as_object().unwrap();
        let total: u64 = by.values().map(|n| n.as_u64().unwrap()).sum();
        assert_eq!(Some(total), phase["answered"].as_u64(), "{phase:#}");
        by.keys().cloned().collect()
    };
    assert_eq!(only(&phases[0]), ["1.0.0"]);
    assert_eq!(only(&phases[2]), ["1.1.0"]);
    assert!(html.contains("<section id=\"traffic\">"));
    for run in runs {
        let command = run["command"].as_str().unwrap().replace('>', "&gt;");
        assert!(html.contains(&command), "no {command} on the page");
    }
    // Each phase's calls per method are on the page as the JSON has them.
    for phase in phases {
        let m = &phase["methods"][0];
        let row = format!(
            "<tr><td>shop.v1.Shop/GetProduct</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            m["calls"], m["compared"]
        );
        assert!(html.contains(&row), "no {row}");
    }
}
