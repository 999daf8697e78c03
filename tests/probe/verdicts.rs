//! The probe without false comfort: which methods are called (`--method`, `--skip`,
//! `--read-only`, `--samples-only`), servers that refuse every call alike (inconclusive, exit 3,
//! not "ok"), and a new version answering with other values (changed, with the field's path).

use super::{GET, PLACE, WATCH, args, check_direction, probe, row};
use crate::common::shop::{shop, shop_python};
use serde_json::Value;

const G1: &str = "shop.v1.Shop/GetProduct";
const G2: &str = "shop.v2.Shop/GetProduct";
const P1: &str = "shop.v1.Shop/PlaceOrder";
const P2: &str = "shop.v2.Shop/PlaceOrder";
const W1: &str = "shop.v1.Shop/WatchOrder";
const W2: &str = "shop.v2.Shop/WatchOrder";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_methods_asked_for_are_called() {
    let Some(python) = shop_python() else {
        return;
    };
    let v1 = shop(&python, "v1", &[]).await;
    let v2 = shop(&python, "v2", &[]).await;
    let names = |report: &Value, d: usize, list: &str| -> Vec<String> {
        report["directions"][d][list]
            .as_array()
            .expect("a list")
            .iter()
            .map(|m| m["method"].as_str().expect("a method").to_string())
            .collect()
    };
    // GetProduct and WatchOrder declare idempotency_level NO_SIDE_EFFECTS; PlaceOrder nothing.
    let (_, text, report) = probe(&args(&v1, &v2, &["--read-only"])).await;
    for (d, v) in [(0, "v1"), (1, "v2")] {
        let called = [
            format!("shop.{v}.Shop/GetProduct"),
            format!("shop.{v}.Shop/WatchOrder"),
        ];
        assert_eq!(names(&report, d, "methods"), called, "{text}");
        assert_eq!(
            names(&report, d, "skipped"),
            [format!("shop.{v}.Shop/PlaceOrder")]
        );
    }
    assert!(
        text.contains(
            "skipped: shop.v1.Shop/PlaceOrder (may change state: idempotency_level IDEMPOTENCY_UNKNOWN (--read-only; name it with --method to call it))"
        ),
        "{text}"
    );
    // Named with --method, it is called after all; --skip wins over both.
    let opt_in = [
        "--read-only",
        "--method",
        "Shop/PlaceOrder",
        "--skip",
        "*/Watch*",
    ];
    let (code, text, report) = probe(&args(&v1, &v2, &opt_in)).await;
    assert_eq!(names(&report, 0, "methods"), [G1, P1]);
    assert_eq!(code, 0, "{text}");
    // --method alone: only those; --samples-only: only the samples, one call each.
    let (code, text, report) =
        probe(&args(&v1, &v2, &["--method", "shop.v1.Shop/GetProduct"])).await;
    assert_eq!(names(&report, 0, "methods"), [G1]);
    assert_eq!(names(&report, 1, "methods"), Vec::<String>::new());
    assert_eq!(code, 0, "{text}");
    let (code, text, report) = probe(&args(&v1, &v2, &["--samples-only"])).await;
    check_direction(
        &report,
        "old",
        &[
            row(G1, G2, &["OK"], "ok").unknown(&["6 (stock)"]),
            row(P1, P2, &["OK"], "ok"),
        ],
    );
    assert_eq!(code, 0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_refusing_every_call_alike_are_inconclusive() {
    let Some(python) = shop_python() else {
        return;
    };
    // Both want a token the probe does not send: every call UNAUTHENTICATED on both sides.
    let v1 = shop(&python, "v1", &["--token", "t"]).await;
    let v2 = shop(&python, "v2", &["--token", "t"]).await;
    let (code, text, report) = probe(&args(&v1, &v2, &[])).await;
    for m in report["directions"][0]["methods"]
        .as_array()
        .expect("methods")
    {
        assert_eq!(m["verdict"], "inconclusive", "{m:#}");
        let reason = m["reason"].as_str().expect("a reason");
        assert!(reason.contains("UNAUTHENTICATED"), "{reason}");
    }
    assert_eq!(code, 3, "{text}");
    assert_eq!(report["old_clients_inconclusive"], 3);
    assert!(
        text.contains("verdict: inconclusive for old clients (3 inconclusive of 3 methods)"),
        "{text}"
    );
    // With the token, the calls are judged (WatchOrder left out: no order exists on both).
    let with_token = ["-H", "authorization: Bearer t", "--skip", "Shop/WatchOrder"];
    let (code, text, _) = probe(&args(&v1, &v2, &with_token)).await;
    assert_eq!(code, 0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_answering_other_values_is_changed_with_the_fields_path() {
    let Some(python) = shop_python() else {
        return;
    };
    let v1 = shop(&python, "v1", &[]).await;
    // v2 sells at 10 % off: the same statuses and fields, other prices.
    let v2 = shop(&python, "v2", &["--discount", "10"]).await;
    let (code, text, report) = probe(&args(&v1, &v2, &[])).await;
    check_direction(
        &report,
        "old",
        &[
            row(G1, G2, &GET, "changed")
                .unknown(&["6 (stock)"])
                .changed(&["price_cents: 4299 → 3869"]),
            // Order ids differ between two orders on v1 too: noise, not compared.
            row(P1, P2, &PLACE, "changed").changed(&["total_cents: 5000 → 4500"]),
            row(W1, W2, &WATCH, "inconclusive"),
        ],
    );
    assert_eq!(code, 100, "{text}");
    assert!(
        text.contains("changed: price_cents is 3869 where its own server answers 4299"),
        "{text}"
    );
    assert!(
        text.contains("verdict: old clients are affected (2 changed, 1 inconclusive of 3 methods)"),
        "{text}"
    );
}
