//! `testbed mixed --traffic` and `testbed rollout --traffic` on the example shop's Python
//! servers: the scenario's calls from several clients through a gateway, every reply compared
//! with the old server's. A compatible build behind the gateway comes out ok, one that sells
//! 10 % cheaper is found at exactly the calls that carry a price, a gateway that lacks a method
//! is refused before any load, and a rollout from the old build to a new one counts each phase
//! and who served it. Every count is computed here from the traffic sent.

use super::{BOOK, GAME, SCENARIO, paths};
use crate::common::shop::{gateway, shop, shop_python};
use port::child::ChildServer;
use serde_json::Value;

/// Runs `testbed COMMAND ARGS --json FILE`: the exit code, all it printed, the JSON.
async fn run(command: &str, args: &[String]) -> (i32, String, Value) {
    let (code, stdout, stderr, report) = crate::common::testbed_json(command, args).await;
    (code, stdout + &stderr, report.unwrap_or(Value::Null))
}

/// `testbed serve --upstream UPSTREAM`.
async fn gateway_over(upstream: String) -> ChildServer {
    gateway(&["--upstream".to_string(), upstream]).await
}

/// Phase `index`'s method `name` (`Shop/GetProduct`).
fn method<'a>(report: &'a Value, index: usize, name: &str) -> &'a Value {
    report["phases"][index]["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .find(|m| m["method"] == format!("shop.v1.{name}"))
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

/// Each method's calls and statuses in phase `index`, as `Shop/Method: OLD → NEW ×N, ...`.
fn statuses(report: &Value, index: usize) -> Vec<String> {
    report["phases"][index]["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .map(|m| {
            let list: Vec<String> = m["statuses"]
                .as_array()
                .expect("statuses")
                .iter()
                .map(|s| format!("{} → {} ×{}", s["old"], s["new"], s["calls"]).replace('"', ""))
                .collect();
            format!(
                "{}: {}",
                m["method"].as_str().expect("a name"),
                list.join(", ")
            )
        })
        .collect()
}

/// The `served_by` counts of phase `index` and their sum, which must be the calls answered.
fn served(report: &Value, index: usize) -> Vec<String> {
    let phase = &report["phases"][index];
    let by = phase["served_by"].as_object().expect("served_by");
    let total: u64 = by.values().map(|n| n.as_u64().expect("a count")).sum();
    assert_eq!(Some(total), phase["answered"].as_u64(), "{phase:#}");
    by.iter().map(|(v, n)| format!("{v} ×{n}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_traffic_compares_every_reply_through_the_gateway_with_the_old_servers() {
    let Some(python) = shop_python() else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let compatible = shop(&python, "v1", &["--build", "minor"]).await;
    let cheaper = shop(&python, "v1", &["--discount", "10"]).await;
    let gw = gateway_over(format!("next=1.1.0@{}", compatible.addr)).await;
    // Two clients of 25 calls each: ten passes of the scenario's five calls.
    let flags = |gw: &ChildServer| {
        vec![
            "--traffic".to_string(),
            SCENARIO.to_string(),
            "--addr".into(),
            gw.addr.to_string(),
            "--old".into(),
            format!("grpc://{}", old.addr),
            "--traffic-clients".into(),
            "2".into(),
            "--requests".into(),
            "25".into(),
        ]
    };
    let (code, text, report) = run("mixed", &flags(&gw)).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["phases"][0]["calls"], 50, "{report:#}");
    assert_eq!(served(&report, 0), ["1.1.0 ×50"]);
    assert_eq!(
        statuses(&report, 0),
        [
            "shop.v1.Shop/GetProduct: NOT_FOUND → NOT_FOUND ×10, OK → OK ×10",
            "shop.v1.Shop/PlaceOrder: OK → OK ×20",
            "shop.v1.Shop/WatchOrder: OK → OK ×10",
        ]
    );
    for name in ["Shop/GetProduct", "Shop/PlaceOrder", "Shop/WatchOrder"] {
        assert_eq!(method(&report, 0, name)["verdict"], "ok", "{report:#}");
    }
    // OLD asked twice numbers its orders on: the ids are noise, not differences.
    assert_eq!(
        paths(&method(&report, 0, "Shop/PlaceOrder")["noise"]),
        ["order_id ×20"]
    );
    assert!(
        text.contains("the target answered every call sent as OLD does"),
        "{text}"
    );

    let gw = gateway_over(format!("next=1.1.0@{}", cheaper.addr)).await;
    let (code, text, report) = run("mixed", &flags(&gw)).await;
    assert_eq!(code, 100, "{text}");
    let get = method(&report, 0, "Shop/GetProduct");
    assert_eq!(get["verdict"], "degraded");
    assert_eq!(paths(&get["differences"]), ["price_cents ×10"]);
    let example = &get["differences"][0]["examples"][0];
    assert_eq!(example["old"], BOOK.to_string());
    assert_eq!(example["new"], (BOOK * 90 / 100).to_string());
    // The card order (two games) costs less; the voucher order is free on both.
    let place = method(&report, 0, "Shop/PlaceOrder");
    assert_eq!(paths(&place["differences"]), ["total_cents ×10"]);
    assert_eq!(
        place["differences"][0]["examples"][0]["new"],
        (2 * (GAME * 90 / 100)).to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_does_not_serve_the_traffic_is_refused_before_any_load() {
    let Some(python) = shop_python() else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let lacking = shop(&python, "v1", &["--without", "WatchOrder"]).await;
    let gw = gateway_over(format!("shop=1.0.0@{}", lacking.addr)).await;
    let old_url = format!("grpc://{}", old.addr);
    let args = |extra: &[&str]| -> Vec<String> {
        let mut all = vec!["--traffic".to_string(), SCENARIO.to_string()];
        all.extend(extra.iter().map(|s| s.to_string()));
        all
    };
    let gw_addr = gw.addr.to_string();
    let (code, text, report) = run("mixed", &args(&["--addr", &gw_addr, "--old", &old_url])).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "the target {gw_addr} does not serve 1 of the traffic's 3 methods, which OLD serves: shop.v1.Shop/WatchOrder (UNIMPLEMENTED: Method not found!); nothing was loaded"
        )),
        "{text}"
    );
    assert!(report.is_null(), "no report of a load that did not run");
    let (code, text, _) = run("mixed", &args(&["--addr", &gw_addr])).await;
    assert_eq!(code, 1);
    assert!(text.contains("--traffic needs --old"), "{text}");
    let (code, text, _) = run("mixed", &args(&["--old", &old_url])).await;
    assert_eq!(code, 1);
    assert!(text.contains("--traffic needs --addr"), "{text}");
    // Without --traffic, mixed loads the Incrementer example: refused at once here too.
    let (code, text, report) = run("mixed", &["--addr".to_string(), gw_addr.clone()]).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "{gw_addr} does not serve the Incrementer example's increment.v1 (UNIMPLEMENTED"
        )) && text.contains("nothing was loaded"),
        "{text}"
    );
    assert!(report.is_null());
    // Traffic flags are the Incrementer load's alternative, not an addition to it.
    let (code, text, _) = run("mixed", &args(&["--old", &old_url, "--v1-clients", "2"])).await;
    assert_eq!(code, 2, "{text}");
    // And a comparison flag without the traffic it would compare is refused, not ignored.
    let ignore = ["--addr", gw_addr.as_str(), "--ignore", "price_cents"].map(String::from);
    let (code, text, _) = run("mixed", &ignore).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--traffic"), "{text}");
    // A gateway whose backend died answers UNAVAILABLE: the check stops at the first call
    // (line 3, under the file's two comment lines).
    let doomed = shop(&python, "v1", &[]).await;
    let orphan = gateway_over(format!("shop=1.0.0@{}", doomed.addr)).await;
    doomed.kill().await.expect("the backend is killed");
    let orphan_addr = orphan.addr.to_string();
    let (code, text, report) =
        run("mixed", &args(&["--addr", &orphan_addr, "--old", &old_url])).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "the target {orphan_addr} did not answer {SCENARIO}:3 (Unavailable"
        )) && text.contains("where OLD answered Ok; nothing was loaded"),
        "{text}"
    );
    assert!(report.is_null());
    // The rollout checks NEW itself before it starts a gateway.
    let (code, text, _) = run(
        "rollout",
        &args(&[
            "--old",
            &old_url,
            "--new",
            &format!("grpc://{}", lacking.addr),
        ]),
    )
    .await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "NEW {} does not serve 1 of the traffic's 3 methods",
            lacking.addr
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_of_the_users_api_counts_each_phase_and_finds_a_changed_rule() {
    let Some(python) = shop_python() else {
        return;
    };
    let dir = crate::common::temp_dir("traffic-rollout");
    // Reads only: a session that places an order on OLD and watches it on NEW would (truly)
    // find it missing there, whenever a phase began between the two calls.
    let reads = dir.path().join("reads.jsonl");
    let lines: String = ["book-1", "game-1", "no-such-sku"]
        .iter()
        .map(|sku| {
            format!("{{\"method\": \"shop.v1.Shop/GetProduct\", \"requests\": [{{\"sku\": \"{sku}\"}}]}}\n")
        })
        .collect();
    std::fs::write(&reads, lines).expect("the traffic is written");
    let old = shop(&python, "v1", &[]).await;
    let compatible = shop(&python, "v1", &["--build", "minor"]).await;
    let cheaper = shop(&python, "v1", &["--discount", "10"]).await;
    let rollout = |new: &ChildServer| {
        vec![
            "--traffic".to_string(),
            reads.display().to_string(),
            "--old".into(),
            format!("grpc://{}", old.addr),
            "--new".into(),
            format!("grpc://{}", new.addr),
            "--phase-seconds".into(),
            "1".into(),
            "--traffic-clients".into(),
            "2".into(),
        ]
    };
    let (code, text, report) = run("rollout", &rollout(&compatible)).await;
    assert_eq!(code, 0, "{text}");
    let names: Vec<&str> = report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| p["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["old only", "new added", "old removed"]);
    for phase in 0..3 {
        assert!(
            report["phases"][phase]["sent"].as_u64() > Some(0),
            "{report:#}"
        );
        assert_eq!(report["phases"][phase]["verdict"], "ok", "{report:#}");
    }
    // Each phase begins just before its change: nothing in the first is NEW's, nothing in
    // the last OLD's.
    assert_eq!(served(&report, 0).len(), 1);
    assert!(served(&report, 0)[0].starts_with("1.0.0 ×"), "{report:#}");
    assert_eq!(served(&report, 2).len(), 1);
    assert!(served(&report, 2)[0].starts_with("1.1.0 ×"), "{report:#}");
    served(&report, 1);
    assert!(text.contains("drain of OLD"), "{text}");

    let (code, text, report) = run("rollout", &rollout(&cheaper)).await;
    assert_eq!(code, 100, "{text}");
    assert_eq!(report["phases"][0]["verdict"], "ok", "{report:#}");
    assert_eq!(report["phases"][2]["verdict"], "degraded", "{report:#}");
    // Once OLD is gone every successful read is NEW's: a price in each, two thirds of them.
    let get = method(&report, 2, "Shop/GetProduct");
    let calls = get["calls"].as_u64().expect("calls");
    let priced = paths(&get["differences"]);
    assert_eq!(priced.len(), 1, "{get:#}");
    let differing: u64 = priced[0]
        .strip_prefix("price_cents ×")
        .and_then(|n| n.parse().ok())
        .expect("price_cents differs");
    assert_eq!(differing, get["succeeded"].as_u64().expect("succeeded"));
    // Each client's stretch of the phase may cut a pass short by a call or two either end.
    assert!((differing * 3).abs_diff(2 * calls) <= 6, "{get:#}");
}
