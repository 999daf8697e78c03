//! `testbed probe` against running servers: the example shop API's Python servers (v1 and v2,
//! directly, against themselves, and through the testbed gateway) and the testbed's own
//! `serve --backend v1|v2`. Every cell of each table is checked against the expected table
//! written here, and the exit code (0: old clients unaffected, 100: affected).

use crate::common::shop::{gateway, shop, shop_python};
use port::child::ChildServer;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The samples the README's example gives: a product and an order that exist on both servers.
const SEEDS: [&str; 2] = [
    r#"Shop/GetProduct={"sku": "book-1"}"#,
    r#"Shop/PlaceOrder={"lines": [{"sku": "game-1", "quantity": 2}], "card_token": "t"}"#,
];

/// One expected row: method as the caller knows it, the path called, the target's and the own
/// server's status per call (`CODE (x-api-version)` when the reply named the version that served
/// it), unknown and defaulted fields, the verdict.
struct Row {
    method: String,
    called: String,
    status: Vec<String>,
    own: Vec<String>,
    unknown: Vec<String>,
    defaulted: Vec<String>,
    verdict: &'static str,
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A row whose target answered as the own server did, with `status` codes on both.
fn row(method: &str, called: &str, codes: &[&str], verdict: &'static str) -> Row {
    Row {
        method: method.to_string(),
        called: called.to_string(),
        status: owned(codes),
        own: owned(codes),
        unknown: Vec::new(),
        defaulted: Vec::new(),
        verdict,
    }
}

impl Row {
    fn unknown(mut self, fields: &[&str]) -> Row {
        self.unknown = owned(fields);
        self
    }

    fn defaulted(mut self, fields: &[&str]) -> Row {
        self.defaulted = owned(fields);
        self
    }

    fn status(mut self, status: Vec<String>) -> Row {
        self.status = status;
        self
    }
}

const GET: [&str; 3] = ["NOT_FOUND", "NOT_FOUND", "OK"];
const PLACE: [&str; 4] = ["INVALID_ARGUMENT", "NOT_FOUND", "NOT_FOUND", "OK"];
const WATCH: [&str; 2] = ["NOT_FOUND", "NOT_FOUND"];

/// Runs `testbed probe ARGS --json FILE`; the exit code, the tables (stdout) and the JSON.
async fn probe(args: &[String]) -> (i32, String, Value) {
    let dir = crate::common::temp_dir("probe");
    let json = dir.path().join("probe.json");
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("probe")
        .args(args)
        .arg("--json")
        .arg(&json)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("testbed probe ends")
        .expect("testbed probe runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().expect("an exit code");
    assert!(
        code == 0 || code == 100,
        "exit {code}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("testbed probe {}\n{text}", args.join(" "));
    let report = serde_json::from_slice(&std::fs::read(&json).expect("the JSON is written"))
        .expect("the JSON parses");
    (code, text, report)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// `CODE` or `CODE (served by)` per call, as the expected rows write them.
fn endings(method: &Value, side: &str) -> Vec<String> {
    method["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            let e = &c[side];
            let code = e["code"].as_str().expect("a code");
            match e["served_by"].as_str() {
                Some(v) => format!("{code} ({v})"),
                None => code.to_string(),
            }
        })
        .collect()
}

/// Checks every cell of one direction against `rows`.
fn check_direction(report: &Value, caller: &str, rows: &[Row]) {
    let direction = report["directions"]
        .as_array()
        .expect("directions")
        .iter()
        .find(|d| d["caller"] == caller)
        .expect("the direction");
    let methods = direction["methods"].as_array().expect("methods");
    assert_eq!(methods.len(), rows.len(), "{caller}: {methods:#?}");
    for (m, want) in methods.iter().zip(rows) {
        let what = format!("{caller} {}: {m:#}", want.method);
        assert_eq!(m["method"], want.method, "{what}");
        assert_eq!(m["called"], want.called, "{what}");
        assert_eq!(endings(m, "target"), want.status, "{what}");
        assert_eq!(endings(m, "own"), want.own, "{what}");
        assert_eq!(strings(&m["unknown"]), want.unknown, "{what}");
        assert_eq!(strings(&m["defaulted"]), want.defaulted, "{what}");
        assert_eq!(m["verdict"], want.verdict, "{what}");
    }
}

fn args(old: &ChildServer, new: &ChildServer, extra: &[&str]) -> Vec<String> {
    let mut all = vec![
        "--old".to_string(),
        format!("grpc://{}", old.addr),
        "--new".to_string(),
        format!("grpc://{}", new.addr),
    ];
    for seed in SEEDS {
        all.extend(["--request".to_string(), seed.to_string()]);
    }
    all.extend(extra.iter().map(|s| s.to_string()));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_v1_and_v2_servers_probed_both_ways() {
    let Some(python) = shop_python() else {
        return;
    };
    let v1 = shop(&python, "v1", &[]).await;
    let v2 = shop(&python, "v2", &[]).await;
    // Old clients' calls re-addressed to shop.v2 (the packages pair by .vN, as in `check`).
    let (code, text, report) = probe(&args(&v1, &v2, &[])).await;
    let (g1, p1, w1) = (
        "shop.v1.Shop/GetProduct",
        "shop.v1.Shop/PlaceOrder",
        "shop.v1.Shop/WatchOrder",
    );
    let (g2, p2, w2) = (
        "shop.v2.Shop/GetProduct",
        "shop.v2.Shop/PlaceOrder",
        "shop.v2.Shop/WatchOrder",
    );
    check_direction(
        &report,
        "old",
        &[
            row(g1, g2, &GET, "ok").unknown(&["6 (stock)"]),
            row(p1, p2, &PLACE, "ok"),
            row(w1, w2, &WATCH, "ok"),
        ],
    );
    check_direction(
        &report,
        "new",
        &[
            row(g2, g1, &GET, "degraded").defaulted(&["stock"]),
            row(p2, p1, &PLACE, "ok"),
            row(w2, w1, &WATCH, "ok"),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["old_clients_unaffected"], true);
    assert!(
        text.contains(
            "verdict: old clients are unaffected (3 of 3 methods ok); their calls were re-addressed shop.v1 → shop.v2 (--no-auto-map sends them unchanged)"
        ),
        "{text}"
    );
    assert!(
        text.contains("degraded: stock came back at its default (its own server sets it)"),
        "{text}"
    );
    // What was sent: the empty message, every field set once per member of the oneof, the seed.
    let sent: Vec<Vec<String>> = report["directions"][0]["methods"][1]["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| strings(&c["requests"]))
        .collect();
    assert_eq!(
        sent,
        [
            ["empty"],
            ["every field set (payment=card_token)"],
            ["every field set (payment=voucher_code)"],
            ["--request"]
        ]
    );

    // Old clients pointed at the v2 server unchanged: v2 serves no shop.v1 method.
    let (code, text, report) = probe(&args(&v1, &v2, &["--no-auto-map"])).await;
    let unimplemented = |n: usize| vec!["UNIMPLEMENTED".to_string(); n];
    check_direction(
        &report,
        "old",
        &[
            row(g1, g1, &GET, "broken").status(unimplemented(3)),
            row(p1, p1, &PLACE, "broken").status(unimplemented(4)),
            row(w1, w1, &WATCH, "broken").status(unimplemented(2)),
        ],
    );
    assert_eq!(code, 100, "{text}");
    assert!(
        text.contains("verdict: old clients are affected (3 broken, 0 degraded of 3 methods)"),
        "{text}"
    );
    assert!(
        text.contains(
            "broken: UNIMPLEMENTED \"Method not found!\" where its own server answers NOT_FOUND"
        ),
        "{text}"
    );

    // A server probed against itself.
    let (code, text, report) = probe(&args(&v1, &v1, &[])).await;
    for caller in ["old", "new"] {
        check_direction(
            &report,
            caller,
            &[
                row(g1, g1, &GET, "ok"),
                row(p1, p1, &PLACE, "ok"),
                row(w1, w1, &WATCH, "ok"),
            ],
        );
    }
    assert_eq!(code, 0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_probed_through_the_gateway() {
    let Some(python) = shop_python() else {
        return;
    };
    let v1 = shop(&python, "v1", &[]).await;
    let v2 = shop(&python, "v2", &[]).await;
    // Side by side: each client's calls are routed to its own version.
    let gw = gateway(&[
        "--upstream".into(),
        format!("v1=1.0.0@{}", v1.addr),
        "--upstream".into(),
        format!("v2=2.0.0@{}", v2.addr),
    ])
    .await;
    let via = gw.addr.to_string();
    let (code, text, report) = probe(&args(&v1, &v2, &["--via", &via])).await;
    for (caller, major) in [("old", 1), ("new", 2)] {
        let rows = [
            ("GetProduct", &GET[..]),
            ("PlaceOrder", &PLACE[..]),
            ("WatchOrder", &WATCH[..]),
        ]
        .map(|(name, codes)| {
            let method = format!("shop.v{major}.Shop/{name}");
            let served = codes.iter().map(|c| format!("{c} ({major}.0.0)")).collect();
            row(&method, &method, codes, "ok").status(served)
        });
        check_direction(&report, caller, &rows);
    }
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("→ gateway {via}")), "{text}");
    drop(gw);

    // v2 alone behind the gateway (v1 gone, not retired onto v2): the gateway knows no shop.v1
    // and turns old clients away.
    let gw = gateway(&["--upstream".into(), format!("v2=2.0.0@{}", v2.addr)]).await;
    let via = gw.addr.to_string();
    let (code, text, report) = probe(&args(&v1, &v2, &["--via", &via])).await;
    let old = &report["directions"][0];
    for m in old["methods"].as_array().expect("methods") {
        assert_eq!(m["verdict"], "broken", "{m:#}");
        for c in m["calls"].as_array().expect("calls") {
            assert_eq!(c["target"]["code"], "UNIMPLEMENTED", "{c:#}");
            let message = c["target"]["message"].as_str().expect("a message");
            assert!(
                message.contains("no service here serves \"/shop.v1.Shop/"),
                "{message}"
            );
        }
    }
    for m in report["directions"][1]["methods"]
        .as_array()
        .expect("methods")
    {
        assert_eq!(m["verdict"], "ok", "{m:#}");
    }
    assert_eq!(code, 100, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_testbeds_own_v1_and_v2_backends_probed_both_ways() {
    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let start = |api: &'static str| async move {
        ChildServer::testbed(exe, &["serve", "--backend", api, "--addr", "127.0.0.1:0"])
            .await
            .expect("the backend starts")
    };
    let v1 = start("v1").await;
    let v2 = start("v2").await;
    let mut all = args(&v1, &v2, &[]);
    // No seeds: the shop's name no Incrementer method.
    all.truncate(4);
    let (code, text, report) = probe(&all).await;
    let (i1, s1) = (
        "increment.v1.Incrementer/Increment",
        "increment.v1.Incrementer/IncrementStream",
    );
    let (i2, s2) = (
        "increment.v2.Incrementer/Increment",
        "increment.v2.Incrementer/IncrementStream",
    );
    // One unary call per generated message; one bidi call carrying both.
    check_direction(
        &report,
        "old",
        &[
            row(i1, i2, &["OK", "OK"], "ok").unknown(&["3 (served_by_version)"]),
            row(s1, s2, &["OK"], "ok").unknown(&["3 (served_by_version)"]),
        ],
    );
    // A v2 client served by v1 loses the request id and the version that served it.
    let lost = ["request_id", "served_by_version"];
    check_direction(
        &report,
        "new",
        &[
            row(i2, i1, &["OK", "OK"], "degraded").defaulted(&lost),
            row(s2, s1, &["OK"], "degraded").defaulted(&lost),
        ],
    );
    let stream = &report["directions"][0]["methods"][1]["calls"][0];
    assert_eq!(stream["target"]["replies"], 2, "{stream:#}");
    assert_eq!(code, 0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_probe_input_is_refused_with_exit_1() {
    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let v1 = ChildServer::testbed(exe, &["serve", "--backend", "v1", "--addr", "127.0.0.1:0"])
        .await
        .expect("the backend starts");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let old = format!("grpc://{}", v1.addr);
    for (extra, says) in [
        (
            vec!["--new".to_string(), format!("grpc://{dead_addr}")],
            "cannot connect",
        ),
        (
            vec![
                "--new".to_string(),
                old.clone(),
                "--request".into(),
                "Nope/Nothing={}".into(),
            ],
            "no method of OLD or NEW is called Nope/Nothing",
        ),
        (
            vec![
                "--new".to_string(),
                old.clone(),
                "--request".into(),
                r#"Incrementer/Increment={"valu": 1}"#.into(),
            ],
            "is not protobuf JSON of increment.v1.IncrementRequest",
        ),
    ] {
        let out = tokio::process::Command::new(exe)
            .args(["probe", "--old", &old])
            .args(&extra)
            .kill_on_drop(true)
            .output()
            .await
            .expect("testbed probe runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{extra:?}");
    }
}
