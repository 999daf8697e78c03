//! A second API the testbed did not write, of another domain than the shop's: the example
//! ledger (`examples/ledger/server.py`, Python grpcio: accounts, deposits, currency quotes with
//! timestamps). A build that keeps the schema but rounds conversions half to even is found by
//! replay and by shadow traffic at exactly the amounts that end in a half; a compatible build
//! with random account ids comes out ok with its ids noise and its timestamps ignored; a build
//! without a method is broken there. The expected amounts are computed here from the rates.

use super::paths;
use super::shadow::{TOKEN, report_after};
use crate::common::shop::{gateway_with_admin, shop_python};
use port::child::ChildServer;
use serde_json::Value;
use std::path::Path;

/// examples/ledger/scenario.jsonl.
const SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/ledger/scenario.jsonl"
);

/// `examples/ledger/server.py EXTRA` on a free port.
async fn ledger(python: &Path, extra: &[&str]) -> ChildServer {
    let mut command = tokio::process::Command::new(python);
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/ledger/server.py"
        ))
        .args(["--addr", "127.0.0.1:0"])
        .args(extra);
    ChildServer::spawn(command, "ledger server")
        .await
        .expect("the Python ledger server starts")
}

/// `amount × rate` (rate in tenths) rounded half up and half to even.
fn rounded(amount: i64, tenths: i64) -> (i64, i64) {
    let (whole, rest) = ((amount * tenths) / 10, (amount * tenths) % 10);
    let up = whole + i64::from(rest >= 5);
    let even = match rest {
        5 => whole + whole % 2,
        r => whole + i64::from(r > 5),
    };
    (up, even)
}

async fn replay(args: &[String]) -> (i32, String, Value) {
    let (code, stdout, stderr, report) = crate::common::testbed_json("replay", args).await;
    (code, stdout + &stderr, report.unwrap_or(Value::Null))
}

fn args(old: &ChildServer, new: &ChildServer, extra: &[&str]) -> Vec<String> {
    let mut all = vec![
        SCENARIO.to_string(),
        "--old".into(),
        format!("grpc://{}", old.addr),
        "--new".into(),
        format!("grpc://{}", new.addr),
    ];
    all.extend(extra.iter().map(|s| s.to_string()));
    all
}

fn method<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .find(|m| m["method"] == format!("ledger.v1.Ledger/{name}"))
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_finds_another_rounding_rule_and_passes_a_compatible_build() {
    let Some(python) = shop_python() else {
        return;
    };
    let old = ledger(&python, &[]).await;
    let random = ledger(&python, &["--ids", "random"]).await;
    let even = ledger(&python, &["--rounding", "half-even"]).await;
    let lacking = ledger(&python, &["--without", "ListEntries"]).await;
    let timestamps = ["--ignore", "*_at"];

    let (code, text, report) = replay(&args(&old, &random, &timestamps)).await;
    assert_eq!(code, 0, "{text}");
    for name in [
        "Convert",
        "OpenAccount",
        "Deposit",
        "GetAccount",
        "ListEntries",
    ] {
        assert_eq!(method(&report, name)["verdict"], "ok", "{name}: {report:#}");
    }
    // OLD asked twice numbers its accounts on: the ids are noise.
    assert_eq!(
        paths(&method(&report, "OpenAccount")["noise"])
            .iter()
            .filter(|p| p.starts_with("account_id"))
            .count(),
        1,
        "{report:#}"
    );

    let (code, text, report) = replay(&args(&old, &even, &timestamps)).await;
    assert_eq!(code, 100, "{text}");
    // 125 USD cents at 0.9 is 112.5 EUR cents; 1000 EUR cents at 1.1 is exactly 1100.
    let (up, half_even) = rounded(125, 9);
    assert_ne!(up, half_even);
    assert_eq!(rounded(1000, 11).0, rounded(1000, 11).1);
    let convert = method(&report, "Convert");
    assert_eq!(convert["verdict"], "degraded");
    assert_eq!(paths(&convert["differences"]), ["amount_minor ×1"]);
    let example = &convert["differences"][0]["examples"][0];
    assert_eq!(
        (example["old"].as_str(), example["new"].as_str()),
        (
            Some(up.to_string().as_str()),
            Some(half_even.to_string().as_str())
        )
    );
    // The deposit of 365 USD cents is 328.5 EUR cents: the balance differs from then on.
    let (up, half_even) = rounded(365, 9);
    for name in ["Deposit", "GetAccount"] {
        let m = method(&report, name);
        assert_eq!(paths(&m["differences"]), ["balance_minor ×1"], "{name}");
        assert_eq!(
            m["differences"][0]["examples"][0]["new"],
            half_even.to_string()
        );
        assert_eq!(m["differences"][0]["examples"][0]["old"], up.to_string());
    }
    assert_eq!(
        paths(&method(&report, "ListEntries")["differences"]),
        ["[].amount_minor ×1", "[].balance_minor ×1"]
    );
    assert_eq!(method(&report, "OpenAccount")["verdict"], "ok");

    let (code, text, report) = replay(&args(&old, &lacking, &timestamps)).await;
    assert_eq!(code, 100, "{text}");
    assert_eq!(method(&report, "ListEntries")["verdict"], "broken");
    for name in ["Convert", "OpenAccount", "Deposit", "GetAccount"] {
        assert_eq!(method(&report, name)["verdict"], "ok", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_traffic_finds_the_rounding_rule_in_live_quotes() {
    let Some(python) = shop_python() else {
        return;
    };
    let dir = crate::common::temp_dir("ledger-shadow");
    let primary = ledger(&python, &[]).await;
    let even = ledger(&python, &["--rounding", "half-even"]).await;
    let upstreams = [
        format!("ledger=1.0.0@{}", primary.addr),
        format!("even=1.1.0@{};weight=0", even.addr),
    ];
    let flags = [
        "--shadow",
        "even",
        "--shadow-rate",
        "1",
        "--shadow-ignore",
        "*_at",
    ];
    let (gw, admin) = gateway_with_admin(&upstreams, &flags, dir.path(), "ops", TOKEN).await;
    // Quotes only (Convert is NO_SIDE_EFFECTS): 125 (a half), 1000 (exact), then an unknown
    // currency, each sent three times by a replay through the gateway.
    let quotes = dir.path().join("quotes.jsonl");
    let lines: String = std::fs::read_to_string(SCENARIO)
        .expect("the scenario")
        .lines()
        .filter(|l| l.contains("Ledger/Convert"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&quotes, lines).expect("the quotes are written");
    let through = vec![
        quotes.display().to_string(),
        "--old".into(),
        gw.addr.to_string(),
        "--new".into(),
        gw.addr.to_string(),
        "--ignore".into(),
        "*_at".into(),
    ];
    let (code, text, _) = replay(&through).await;
    assert_eq!(code, 0, "the callers got the primary's quotes: {text}");
    let (code, report) = report_after(admin, 6).await;
    assert_eq!(code, 100, "{report:#}");
    let convert = method(&report, "Convert");
    assert_eq!(convert["verdict"], "degraded", "{convert:#}");
    assert_eq!(convert["compared"], 6);
    assert_eq!(paths(&convert["differences"]), ["amount_minor ×3"]);
    let (up, half_even) = rounded(125, 9);
    let example = &convert["differences"][0]["examples"][0];
    assert_eq!(example["old"], up.to_string());
    assert_eq!(example["new"], half_even.to_string());
    drop(gw);
}
