//! Traffic recorded by the gateway (`serve --record`) and replayed: the scenario sent through
//! a gateway in front of a shop server, the file checked line by line against what was sent
//! (methods, metadata with the secret left out, messages, statuses, the version served), then
//! replayed against a build with another pricing rule and against a compatible one. The
//! recorder's rate, method filter and message cap are checked by counting lines.

use super::{SCENARIO, method, paths, replay, servers, with_file};
use crate::common::shop::{gateway, shop, shop_python};
use serde_json::Value;

/// The lines of a traffic file, parsed.
fn lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("the recording exists");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Waits until `path` holds `n` lines (the recorder writes every 10 ms).
async fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        if std::fs::read_to_string(path).is_ok_and(|t| t.lines().count() >= n) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    lines(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_recorded_through_the_gateway_replays_against_new_builds() {
    let Some(python) = shop_python() else {
        return;
    };
    let dir = crate::common::temp_dir("record");
    let file = dir.path().join("traffic.jsonl");
    let upstream = shop(&python, "v1", &["--compression", "gzip"]).await;
    let gw = gateway(&[
        "--upstream".into(),
        format!("shop=1.0.0@{}", upstream.addr),
        "--record".into(),
        file.display().to_string(),
    ])
    .await;
    let direct = shop(&python, "v1", &[]).await;
    // The scenario through the gateway (as NEW): the gateway records what it forwards.
    let mut args = with_file(SCENARIO, servers(&direct, &gw, None));
    args.extend(["-H", "authorization: Bearer s3cret", "-H", "x-tenant: t1"].map(String::from));
    let (code, text, _) = replay(&args).await;
    assert_eq!(code, 0, "{text}");
    let recorded = wait_for_lines(&file, 5).await;
    let scenario: Vec<Value> = std::fs::read_to_string(SCENARIO)
        .expect("the scenario")
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(recorded.len(), scenario.len(), "{recorded:#?}");
    let raw = std::fs::read_to_string(&file).expect("the recording");
    assert!(
        !raw.contains("s3cret"),
        "the credential is not recorded: {raw}"
    );
    let want_codes = ["OK", "NOT_FOUND", "OK", "OK", "OK"];
    for ((got, sent), want_code) in recorded.iter().zip(&scenario).zip(want_codes) {
        assert_eq!(got["method"], sent["method"], "{got}");
        assert_eq!(
            got["metadata"],
            serde_json::json!({"x-tenant": "t1"}),
            "{got}"
        );
        assert_eq!(
            got["redacted"],
            serde_json::json!(["authorization"]),
            "{got}"
        );
        assert_eq!(got["code"], want_code, "{got}");
        assert_eq!(
            (&got["version"], &got["backend"]),
            (&"1.0.0".into(), &"shop".into())
        );
        assert!(
            got["duration_ms"].as_f64().is_some_and(|d| d > 0.0),
            "{got}"
        );
    }
    // Requests as sent (the reference resolved to the order the upstream made), replies
    // decompressed (the upstream gzips them) and decoded.
    assert_eq!(
        recorded[0]["requests"],
        serde_json::json!([{"sku": "book-1"}])
    );
    assert_eq!(recorded[0]["responses"][0]["price_cents"], "4299");
    assert_eq!(recorded[1]["message"], "no product 'no-such-sku'");
    let order = recorded[2]["responses"][0]["order_id"]
        .as_str()
        .expect("an order id");
    assert_eq!(recorded[3]["requests"][0]["order_id"], order);
    let statuses: Vec<&str> = recorded[3]["responses"]
        .as_array()
        .expect("updates")
        .iter()
        .map(|u| u["status"].as_str().expect("a status"))
        .collect();
    assert_eq!(
        statuses,
        [
            "ORDER_STATUS_PLACED",
            "ORDER_STATUS_SHIPPED",
            "ORDER_STATUS_DELIVERED"
        ]
    );
    // The recording replayed: a build selling 10 % cheaper is found, a compatible one is ok.
    let old = shop(&python, "v1", &[]).await;
    let cheaper = shop(&python, "v1", &["--discount", "10"]).await;
    let recording = file.display().to_string();
    let (code, text, report) = replay(&with_file(&recording, servers(&old, &cheaper, None))).await;
    assert_eq!(code, 100, "{text}");
    assert_eq!(
        paths(&method(&report, "Shop/GetProduct")["differences"]),
        ["price_cents ×1"]
    );
    let same = shop(&python, "v1", &["--build", "minor"]).await;
    let (code, text, _) = replay(&with_file(&recording, servers(&old, &same, None))).await;
    assert_eq!(code, 0, "{text}");
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_keeps_its_rate_its_method_filter_and_its_caps() {
    let Some(python) = shop_python() else {
        return;
    };
    let dir = crate::common::temp_dir("record-caps");
    let file = dir.path().join("traffic.jsonl");
    let upstream = shop(&python, "v1", &[]).await;
    let gw = gateway(&[
        "--upstream".into(),
        format!("shop=1.0.0@{}", upstream.addr),
        "--record".into(),
        file.display().to_string(),
        "--record-rate".into(),
        "0.5".into(),
        "--record-skip".into(),
        "Shop/PlaceOrder".into(),
        "--record-max-messages".into(),
        "2".into(),
    ])
    .await;
    // 8 GetProduct, 2 PlaceOrder (never recorded), 2 WatchOrder (3 replies: past the cap).
    let mut calls = String::new();
    for i in 0..8 {
        let sku = if i % 2 == 0 { "book-1" } else { "game-1" };
        calls += &format!(
            "{{\"method\": \"shop.v1.Shop/GetProduct\", \"requests\": [{{\"sku\": \"{sku}\"}}]}}\n"
        );
    }
    for i in 0..2 {
        calls += &format!(
            "{{\"name\": \"p{i}\", \"method\": \"shop.v1.Shop/PlaceOrder\", \"requests\": [{{\"lines\": [{{\"sku\": \"book-1\", \"quantity\": 1}}], \"card_token\": \"t\"}}]}}\n"
        );
        calls += &format!(
            "{{\"method\": \"shop.v1.Shop/WatchOrder\", \"requests\": [{{\"order_id\": \"${{p{i}.order_id}}\"}}]}}\n"
        );
    }
    let traffic = dir.path().join("calls.jsonl");
    std::fs::write(&traffic, calls).expect("written");
    let direct = shop(&python, "v1", &[]).await;
    let (code, text, _) = replay(&with_file(
        &traffic.display().to_string(),
        servers(&direct, &gw, None),
    ))
    .await;
    assert_eq!(code, 0, "{text}");
    // Rate 0.5 over the 10 recordable calls (8 GetProduct, 2 WatchOrder; PlaceOrder skipped
    // before the rate): every second one, so 4 GetProduct and 1 WatchOrder.
    let recorded = wait_for_lines(&file, 5).await;
    let count = |name: &str| {
        recorded
            .iter()
            .filter(|l| l["method"] == format!("shop.v1.Shop/{name}"))
            .count()
    };
    assert_eq!(
        (
            count("GetProduct"),
            count("PlaceOrder"),
            count("WatchOrder")
        ),
        (4, 0, 1),
        "{recorded:#?}"
    );
    let watch = recorded
        .iter()
        .find(|l| l["method"] == "shop.v1.Shop/WatchOrder")
        .expect("a WatchOrder");
    assert_eq!(watch["truncated"], "reply: more than 2 messages", "{watch}");
    assert_eq!(watch["responses"].as_array().map(Vec::len), Some(2));
    // The truncated call is not replayed, and the replay says why.
    let (code, text, report) = replay(&with_file(
        &file.display().to_string(),
        servers(&direct, &upstream, None),
    ))
    .await;
    assert_eq!(code, 3, "WatchOrder had nothing sent: {text}");
    let w = method(&report, "Shop/WatchOrder");
    assert_eq!(
        (w["calls"].as_i64(), w["unsent_calls"].as_i64()),
        (Some(0), Some(1))
    );
    assert!(
        w["unsent"][0]["old"]
            .as_str()
            .expect("why")
            .contains("recorded truncated")
    );
    drop(gw);
}
