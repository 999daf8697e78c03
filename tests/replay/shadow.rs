//! Shadow traffic (`serve --shadow`, `route shadow`, `route shadow-report`) on the example
//! shop's Python servers: live calls through the gateway are copied to a candidate that sells
//! 10 % cheaper (found field by field, while callers keep the primary's prices), then to a
//! compatible build (ok), with a method that may change state never copied. A slow candidate
//! shows that the primary's replies do not wait for copies, that `--shadow-held` and
//! `--shadow-max-call-bytes` bound what is held, and that `--shadow-timeout-ms` ends a copy. Every count is computed here from the traffic sent.

use super::{BOOK, GAME, method, paths, replay, servers, statuses, with_file};
use crate::common::shop::{gateway_with_admin, shop, shop_python};
use port::child::ChildServer;
use serde_json::Value;
use std::net::SocketAddr;

pub(super) const TOKEN: &str = "shadow-admin-token-0123";

/// `testbed route ARGS --admin ADMIN --json`: the exit code, the JSON and what it printed.
pub(super) fn route(admin: SocketAddr, args: &[&str]) -> (i32, Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("route")
        .args(args)
        .args(["--admin", &admin.to_string(), "--json"])
        .env("TESTBED_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("testbed route runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, text)
}

/// The shadow report once `compared` copies have been compared (the worker runs apart from
/// the calls): its exit code and JSON.
pub(super) async fn report_after(admin: SocketAddr, compared: u64) -> (i32, Value) {
    for _ in 0..400 {
        let (code, report, text) = route(admin, &["shadow-report"]);
        assert!(report.is_object(), "{text}");
        if report["compared"].as_u64() >= Some(compared) {
            return (code, report);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the shadow never compared {compared} copies");
}

/// A traffic file in `dir`: `copies` rounds of GetProduct for both SKUs and an unknown one,
/// and one PlaceOrder.
fn traffic(dir: &std::path::Path, rounds: usize) -> String {
    let mut text = String::new();
    for _ in 0..rounds {
        for sku in ["book-1", "game-1", "no-such-sku"] {
            text += &format!(
                "{{\"method\": \"shop.v1.Shop/GetProduct\", \"requests\": [{{\"sku\": \"{sku}\"}}]}}\n"
            );
        }
    }
    text += "{\"method\": \"shop.v1.Shop/PlaceOrder\", \"requests\": [{\"lines\": [{\"sku\": \"book-1\", \"quantity\": 1}], \"card_token\": \"t\"}]}\n";
    let file = dir.join(format!("traffic-{rounds}.jsonl"));
    std::fs::write(&file, text).expect("the traffic file is written");
    file.display().to_string()
}

/// Sends `file` through `gw` (as both OLD and NEW of a replay: every line three times); the
/// replay must find the gateway's answers consistent, so the callers got the primary's.
async fn through(gw: &ChildServer, file: &str) -> Value {
    let (code, text, report) = replay(&with_file(file, servers(gw, gw, None))).await;
    assert_eq!(code, 0, "the callers' replies are the primary's: {text}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_calls_copied_to_a_candidate_find_its_other_prices_and_never_its_writes() {
    let Some(python) = shop_python() else {
        return;
    };
    let dir = crate::common::temp_dir("shadow");
    let primary = shop(&python, "v1", &[]).await;
    let cheaper = shop(&python, "v1", &["--discount", "10"]).await;
    let same = shop(&python, "v1", &["--build", "minor"]).await;
    let upstreams = [
        format!("shop=1.0.0@{}", primary.addr),
        format!("cheaper=1.1.0@{};weight=0", cheaper.addr),
        format!("same=1.2.0@{};weight=0", same.addr),
    ];
    let flags = [
        "--shadow",
        "cheaper",
        "--shadow-rate",
        "1",
        "--metrics-addr",
        "127.0.0.1:0",
    ];
    let (mut gw, admin) = gateway_with_admin(&upstreams, &flags, dir.path(), "ops", TOKEN).await;
    let said = gw.next_line().await.expect("the metrics address");
    let metrics: std::net::SocketAddr = said
        .strip_prefix("testbed metrics on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("not the metrics address: {said:?}"));
    let rounds = 2;
    let file = traffic(dir.path(), rounds);
    let sent = through(&gw, &file).await;
    // The callers got the primary's prices.
    let get = method(&sent, "Shop/GetProduct");
    assert_eq!(get["verdict"], "ok", "{get:#}");
    // Every line went through three times; GetProduct is NO_SIDE_EFFECTS, PlaceOrder is not.
    let gets = 3 * 3 * rounds as u64;
    let (code, report) = report_after(admin, gets).await;
    assert_eq!(code, 100, "{report:#}");
    assert_eq!(report["candidate"], "cheaper");
    assert_eq!(report["eligible"], gets + 3);
    assert_eq!(report["sampled"], gets);
    assert_eq!(report["compared"], gets);
    assert_eq!(
        report["not_safe"],
        serde_json::json!([{"method": "shop.v1.Shop/PlaceOrder", "calls": 3}])
    );
    let get = method(&report, "Shop/GetProduct");
    let found = 2 * 3 * rounds;
    assert_eq!(get["verdict"], "degraded", "{get:#}");
    assert_eq!(get["compared"], found);
    assert_eq!(
        paths(&get["differences"]),
        [format!("price_cents ×{found}")]
    );
    let mut prices: Vec<(String, String)> = get["differences"][0]["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .map(|e| {
            (
                e["old"].as_str().expect("old").into(),
                e["new"].as_str().expect("new").into(),
            )
        })
        .collect();
    prices.sort();
    prices.dedup();
    let off = |cents: i64| (cents.to_string(), (cents * 90 / 100).to_string());
    assert!(
        prices.iter().all(|p| *p == off(BOOK) || *p == off(GAME)),
        "{prices:?}"
    );
    assert_eq!(
        statuses(get),
        [
            format!("NOT_FOUND → NOT_FOUND ×{}", 3 * rounds),
            format!("OK → OK ×{found}")
        ]
    );
    // /metrics says what the report says, read at the scrape.
    let (_, text) = crate::common::prometheus::http_get(metrics, "/metrics", None).await;
    let calls = |outcome: &str| {
        let labels = [("candidate", "cheaper"), ("outcome", outcome)];
        crate::common::prometheus::sample(&text, "testbed_shadow_calls", &labels)
    };
    assert_eq!(calls("compared"), gets as f64, "{text}");
    assert_eq!(calls("eligible"), (gets + 3) as f64, "{text}");
    let degraded = [
        ("method", "shop.v1.Shop/GetProduct"),
        ("verdict", "degraded"),
    ];
    assert_eq!(
        crate::common::prometheus::sample(&text, "testbed_shadow_compared", &degraded),
        found as f64,
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["route", "shadow-report", "--admin", &admin.to_string()])
        .env("TESTBED_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("testbed route shadow-report runs");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert_eq!(out.status.code(), Some(100), "{text}");
    assert!(
        text.contains(&format!("price_cents ×{found}"))
            && text.contains("not copied: 3 calls of shop.v1.Shop/PlaceOrder"),
        "{text}"
    );

    // A compatible build, the primary named as the secondary: a new report, ok.
    let (code, _, text) = route(admin, &["shadow", "nobody"]);
    assert_eq!(code, 1, "an unknown candidate is refused: {text}");
    assert!(text.contains("no backend"), "{text}");
    let (code, _, text) = route(admin, &["shadow", "same", "--secondary", "shop"]);
    assert_eq!(code, 0, "{text}");
    let (code, report, _) = route(admin, &["shadow-report"]);
    assert_eq!(
        (code, &report["compared"]),
        (3, &Value::from(0)),
        "{report:#}"
    );
    through(&gw, &file).await;
    let (code, report) = report_after(admin, gets).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["secondary"], "shop");
    assert_eq!(method(&report, "Shop/GetProduct")["compared"], found);

    let (code, report, text) = route(admin, &["shadow", "--off"]);
    assert_eq!(
        (code, &report["active"]),
        (0, &Value::Bool(false)),
        "{text}"
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_candidate_delays_no_caller_and_holds_at_most_the_cap() {
    let Some(python) = shop_python() else {
        return;
    };
    let dir = crate::common::temp_dir("shadow-slow");
    let primary = shop(&python, "v1", &[]).await;
    let slow = shop(&python, "v1", &["--delay-ms", "20000"]).await;
    let upstreams = [
        format!("shop=1.0.0@{}", primary.addr),
        format!("slow=1.1.0@{};weight=0", slow.addr),
    ];
    let flags = [
        "--shadow",
        "slow",
        "--shadow-rate",
        "1",
        "--shadow-held",
        "2",
        "--shadow-timeout-ms",
        "30000",
    ];
    let (gw, admin) = gateway_with_admin(&upstreams, &flags, dir.path(), "ops", TOKEN).await;
    let rounds = 3;
    through(&gw, &traffic(dir.path(), rounds)).await;
    // Every call was answered while the two copies held still waited on the candidate.
    let (_, report, text) = route(admin, &["shadow-report"]);
    let sampled = 3 * 3 * rounds as u64;
    assert_eq!(report["sampled"], sampled, "{text}");
    assert_eq!(report["held"], 2, "{report:#}");
    assert_eq!(report["busy"], sampled - 2, "{report:#}");
    assert_eq!(report["compared"], 0, "{report:#}");
    drop(gw);

    // Replies past --shadow-max-call-bytes (a Product is 40 bytes or more): none copied.
    let flags = [
        "--shadow",
        "slow",
        "--shadow-rate",
        "1",
        "--shadow-max-call-bytes",
        "30",
    ];
    let (gw, admin) = gateway_with_admin(&upstreams, &flags, dir.path(), "ops", TOKEN).await;
    through(&gw, &traffic(dir.path(), 1)).await;
    let (_, report, text) = route(admin, &["shadow-report"]);
    // Only the NOT_FOUND calls (no reply message) fit.
    assert_eq!(report["too_large"], 3 * 2, "{text}");
    assert_eq!(
        report["held"], 3,
        "the NOT_FOUND copies wait on the candidate: {text}"
    );
    drop(gw);

    // Copies past --shadow-timeout-ms are cut there: the candidate is broken.
    // (A candidate of its own, with threads to spare: the one above is busy sleeping, and a
    // backend that answers no health check is marked unreachable.)
    let late = shop(&python, "v1", &["--delay-ms", "2000", "--workers", "32"]).await;
    let upstreams = [
        format!("shop=1.0.0@{}", primary.addr),
        format!("slow=1.1.0@{};weight=0", late.addr),
    ];
    let flags = [
        "--shadow",
        "slow",
        "--shadow-rate",
        "1",
        "--shadow-timeout-ms",
        "300",
    ];
    let (gw, admin) = gateway_with_admin(&upstreams, &flags, dir.path(), "ops", TOKEN).await;
    through(&gw, &traffic(dir.path(), 1)).await;
    let (code, report) = report_after(admin, 9).await;
    assert_eq!(code, 100, "{report:#}");
    let get = method(&report, "Shop/GetProduct");
    assert_eq!(get["verdict"], "broken", "{get:#}");
    // The channel enforces the copy's grpc-timeout: DEADLINE_EXCEEDED, and the candidate
    // stays reachable (a slow backend is not a dead one).
    assert_eq!(
        statuses(get),
        [
            "NOT_FOUND → DEADLINE_EXCEEDED ×3",
            "OK → DEADLINE_EXCEEDED ×6"
        ]
    );
    drop(gw);
}
