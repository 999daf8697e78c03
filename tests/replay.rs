//! `testbed replay` against the example shop API's Python servers: the scenario in
//! examples/shop/scenario.jsonl sent to an old server, a second old one (or the old one again)
//! and a candidate. A compatible build comes out ok with its random order ids counted as noise;
//! a build that sells 10 % cheaper (same schema, another rule) is found field by field; a build
//! without a method is broken; traffic that does not fit the old version is refused before any
//! call. Every expected figure is computed here from the shop's price list, not read back.

mod ledger;
mod load;
mod matrix;
mod recorded;
mod shadow;

use crate::common::shop::{shop, shop_python};
use port::child::ChildServer;
use serde_json::Value;

/// examples/shop/scenario.jsonl.
const SCENARIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop/scenario.jsonl");

/// The shop's prices (examples/shop/server.py), in cents.
const BOOK: i64 = 4299;
const GAME: i64 = 2500;

/// Runs `testbed replay ARGS --json FILE`; the exit code, the text (stdout and stderr) and the
/// JSON (`Null` when the run failed before writing it).
async fn replay(args: &[String]) -> (i32, String, Value) {
    let (code, stdout, stderr, report) = crate::common::testbed_json("replay", args).await;
    (code, stdout + &stderr, report.unwrap_or(Value::Null))
}

fn servers(old: &ChildServer, new: &ChildServer, secondary: Option<&ChildServer>) -> Vec<String> {
    let mut all = vec![
        "--old".to_string(),
        format!("grpc://{}", old.addr),
        "--new".to_string(),
        format!("grpc://{}", new.addr),
    ];
    if let Some(second) = secondary {
        all.extend(["--secondary".to_string(), format!("grpc://{}", second.addr)]);
    }
    all
}

fn with_file(file: &str, mut args: Vec<String>) -> Vec<String> {
    args.insert(0, file.to_string());
    args
}

/// The report's method `name` (`Shop/GetProduct`).
fn method<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .find(|m| m["method"] == format!("shop.v1.{name}"))
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

/// `path ×calls` for each entry of `list` (differences, noise, ignored).
fn paths(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|d| format!("{} ×{}", d["path"].as_str().expect("a path"), d["calls"]))
        .collect()
}

fn statuses(m: &Value) -> Vec<String> {
    m["statuses"]
        .as_array()
        .expect("statuses")
        .iter()
        .map(|s| {
            format!(
                "{} → {} ×{}",
                s["old"].as_str().expect("old"),
                s["new"].as_str().expect("new"),
                s["calls"]
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compatible_build_comes_out_ok_with_its_random_ids_counted_as_noise() {
    let Some(python) = shop_python() else {
        return;
    };
    let random = ["--order-ids", "random"];
    let old = shop(&python, "v1", &random).await;
    let second = shop(&python, "v1", &random).await;
    // A wire-compatible superset (Product.description added): old descriptors skip the field.
    let new = shop(
        &python,
        "v1",
        &["--build", "minor", "--order-ids", "random"],
    )
    .await;
    let (code, text, report) =
        replay(&with_file(SCENARIO, servers(&old, &new, Some(&second)))).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["calls"], 5);
    assert_eq!(report["sent"], 5);
    let get = method(&report, "Shop/GetProduct");
    assert_eq!(statuses(get), ["NOT_FOUND → NOT_FOUND ×1", "OK → OK ×1"]);
    assert_eq!(get["verdict"], "ok", "{get:#}");
    assert_eq!(paths(&get["differences"]), Vec::<String>::new());
    let place = method(&report, "Shop/PlaceOrder");
    assert_eq!(place["verdict"], "ok", "{place:#}");
    assert_eq!(paths(&place["noise"]), ["order_id ×2"]);
    // WatchOrder asked each server about its own order (the reference resolved per server).
    let watch = method(&report, "Shop/WatchOrder");
    assert_eq!(statuses(watch), ["OK → OK ×1"], "{watch:#}");
    assert_eq!(paths(&watch["noise"]), ["[].order_id ×1"]);
    assert_eq!(watch["verdict"], "ok");
    assert!(
        text.contains("NEW answers the traffic as OLD does (3 of 3 methods ok, 5 calls)"),
        "{text}"
    );
    // Without a secondary the old server is asked twice: its random ids are still noise.
    let (code, text, report) = replay(&with_file(SCENARIO, servers(&old, &new, None))).await;
    assert_eq!(code, 0, "{text}");
    assert!(report.get("secondary").is_none());
    assert_eq!(
        paths(&method(&report, "Shop/PlaceOrder")["noise"]),
        ["order_id ×2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_with_another_pricing_rule_is_found_field_by_field() {
    let Some(python) = shop_python() else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let second = shop(&python, "v1", &[]).await;
    let new = shop(&python, "v1", &["--discount", "10"]).await;
    let (code, text, report) =
        replay(&with_file(SCENARIO, servers(&old, &new, Some(&second)))).await;
    assert_eq!(code, 100, "{text}");
    let get = method(&report, "Shop/GetProduct");
    assert_eq!(get["verdict"], "degraded");
    assert_eq!(paths(&get["differences"]), ["price_cents ×1"]);
    let example = &get["differences"][0]["examples"][0];
    assert_eq!(example["old"], BOOK.to_string());
    assert_eq!(example["new"], (BOOK * 90 / 100).to_string());
    assert!(
        example["at"]
            .as_str()
            .expect("at")
            .ends_with("scenario.jsonl:3 price_cents"),
        "{example}"
    );
    // Two games by card; the voucher order is free on both, so one call of two differs.
    let place = method(&report, "Shop/PlaceOrder");
    assert_eq!(paths(&place["differences"]), ["total_cents ×1"]);
    let example = &place["differences"][0]["examples"][0];
    assert_eq!(example["old"], (2 * GAME).to_string());
    assert_eq!(example["new"], (2 * (GAME * 90 / 100)).to_string());
    assert_eq!(
        paths(&place["noise"]),
        Vec::<String>::new(),
        "counter ids agree between the two old servers"
    );
    assert_eq!(method(&report, "Shop/WatchOrder")["verdict"], "ok");
    assert!(
        text.contains("NEW answers the traffic differently: 0 broken, 2 degraded of 3 methods"),
        "{text}"
    );
    // Ignoring the prices (one rule for every method, one for PlaceOrder only) leaves nothing.
    let mut args = with_file(SCENARIO, servers(&old, &new, Some(&second)));
    args.extend(
        [
            "--ignore",
            "price_cents",
            "--ignore",
            "Shop/PlaceOrder:total_*",
        ]
        .map(String::from),
    );
    let (code, text, report) = replay(&args).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        paths(&method(&report, "Shop/GetProduct")["ignored"]),
        ["price_cents ×1"]
    );
    assert_eq!(
        paths(&method(&report, "Shop/PlaceOrder")["ignored"]),
        ["total_cents ×1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_without_a_method_is_broken_and_the_rest_ok() {
    let Some(python) = shop_python() else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let new = shop(&python, "v1", &["--without", "WatchOrder"]).await;
    let (code, text, report) = replay(&with_file(SCENARIO, servers(&old, &new, None))).await;
    assert_eq!(code, 100, "{text}");
    let watch = method(&report, "Shop/WatchOrder");
    assert_eq!(watch["verdict"], "broken");
    assert_eq!(statuses(watch), ["OK → UNIMPLEMENTED ×1"]);
    let reason = watch["reason"].as_str().expect("a reason");
    assert!(
        reason
            .contains("scenario.jsonl:6: UNIMPLEMENTED \"Method not found!\" where OLD answers OK"),
        "{reason}"
    );
    for other in ["Shop/GetProduct", "Shop/PlaceOrder"] {
        assert_eq!(method(&report, other)["verdict"], "ok", "{other}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_that_verifies_nothing_or_does_not_fit_says_so() {
    let Some(python) = shop_python() else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let new = shop(&python, "v1", &[]).await;
    let dir = crate::common::temp_dir("replay-input");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("written");
        path.display().to_string()
    };
    // Every call fails alike on both: nothing was compared, and the exit code says so.
    let missing = write(
        "missing.jsonl",
        "{\"name\": \"place\", \"method\": \"shop.v1.Shop/PlaceOrder\", \"requests\": [{\"lines\": [{\"sku\": \"nope\", \"quantity\": 1}], \"card_token\": \"t\"}]}\n\
         {\"method\": \"shop.v1.Shop/WatchOrder\", \"requests\": [{\"order_id\": \"${place.order_id}\"}]}\n",
    );
    let (code, text, report) = replay(&with_file(&missing, servers(&old, &new, None))).await;
    assert_eq!(code, 3, "{text}");
    let place = method(&report, "Shop/PlaceOrder");
    assert_eq!(place["verdict"], "inconclusive");
    assert!(
        place["reason"]
            .as_str()
            .expect("why")
            .contains("no call succeeded on OLD (NOT_FOUND ×1)"),
        "{place:#}"
    );
    // The order was never placed, so the call that needs its id was not sent, and says why.
    let watch = method(&report, "Shop/WatchOrder");
    assert_eq!(
        (watch["calls"].as_i64(), watch["unsent_calls"].as_i64()),
        (Some(0), Some(1))
    );
    let why = watch["unsent"][0]["old"].as_str().expect("why");
    assert!(
        why.contains("${place.order_id}: call \"place\" ended NOT_FOUND"),
        "{why}"
    );
    let mut allowed = with_file(&missing, servers(&old, &new, None));
    allowed.push("--allow-inconclusive".into());
    assert_eq!(replay(&allowed).await.0, 0);
    // Lines that do not fit OLD's descriptors are refused before any call, naming the line.
    let refused = [
        (
            "{\"method\": \"shop.v1.Shop/Refund\", \"requests\": [{}]}\n",
            "missing.jsonl",
            "declares no method shop.v1.Shop/Refund",
        ),
        (
            "{\"method\": \"shop.v1.Shop/GetProduct\", \"requests\": [{\"skew\": 1}]}\n",
            "",
            "is not protobuf JSON of shop.v1.GetProductRequest",
        ),
        (
            "{\"method\": \"shop.v1.Shop/GetProduct\", \"requests\": [{}, {}]}\n",
            "",
            "takes one request message, the line has 2",
        ),
        (
            "{\"method\": \"shop.v1.Shop/GetProduct\", \"metadata\": {\"grpc-timeout\": \"1S\"}, \"requests\": [{}]}\n",
            "",
            "reserved by gRPC",
        ),
        (
            "{\"method\": \"GetProduct\"}\n",
            "",
            "expected pkg.Service/Method",
        ),
    ];
    for (i, (line, _, says)) in refused.iter().enumerate() {
        let file = write(
            &format!("bad-{i}.jsonl"),
            &format!(
                "{{\"method\": \"shop.v1.Shop/GetProduct\", \"requests\": [{{\"sku\": \"book-1\"}}]}}\n{line}"
            ),
        );
        let (code, text, _) = replay(&with_file(&file, servers(&old, &new, None))).await;
        assert_eq!(code, 1, "{line}: {text}");
        assert!(
            text.contains(&format!("bad-{i}.jsonl:2")) && text.contains(says),
            "{line}: {text}"
        );
    }
}
