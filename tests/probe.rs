//! `testbed probe` against running servers: the example shop API's Python servers (v1 and v2,
//! directly, against themselves, and through the testbed gateway) and the testbed's own
//! `serve --backend v1|v2` (also over TLS and mutual TLS, and through a gateway with an
//! `x-api-version` pin sent as metadata). Every cell of each table is checked against the
//! expected table written here, and the exit code (0: old clients unaffected, 100: affected,
//! 3: inconclusive). [`verdicts`]: which methods are called, servers that refuse every call
//! alike, a new version answering with other values.

mod pinned;
mod tls;
mod verdicts;

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
    changed: Vec<String>,
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
        changed: Vec::new(),
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

    /// Values changed, as `path: own → target`.
    fn changed(mut self, changes: &[&str]) -> Row {
        self.changed = owned(changes);
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
    let (code, text, stderr, report) = crate::common::testbed_json("probe", args).await;
    assert!([0, 3, 100].contains(&code), "exit {code}: {text}{stderr}");
    (code, text, report.expect("the JSON is written"))
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
        let changed: Vec<String> = m["changed"]
            .as_array()
            .expect("changed")
            .iter()
            .map(|c| {
                let text = |k: &str| c[k].as_str().expect("a string").to_string();
                format!("{}: {} → {}", text("path"), text("own"), text("target"))
            })
            .collect();
        assert_eq!(changed, want.changed, "{what}");
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
            row(w1, w2, &WATCH, "inconclusive"),
        ],
    );
    check_direction(
        &report,
        "new",
        &[
            row(g2, g1, &GET, "degraded").defaulted(&["stock"]),
            row(p2, p1, &PLACE, "ok"),
            row(w2, w1, &WATCH, "inconclusive"),
        ],
    );
    // No order exists on both servers: WatchOrder ends NOT_FOUND everywhere, which proves
    // nothing, and the exit code says so.
    assert_eq!(code, 3, "{text}");
    assert_eq!(report["old_clients_unaffected"], true);
    assert!(
        text.contains(
            "verdict: inconclusive for old clients (1 inconclusive, 2 ok of 3 methods): no call of shop.v1.Shop/WatchOrder succeeded on its own server; give requests that do (--request), leave them out (--skip), or accept with --allow-inconclusive; their calls were re-addressed shop.v1 → shop.v2 (--no-auto-map sends them unchanged)"
        ),
        "{text}"
    );
    assert!(
        text.contains("inconclusive: no call succeeded on its own server (2× NOT_FOUND)"),
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

    // Left out, or accepted: exit 0.
    let (code, text, report) = probe(&args(&v1, &v2, &["--skip", "Shop/WatchOrder"])).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        report["directions"][0]["methods"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        report["directions"][0]["skipped"],
        serde_json::json!([{"method": w1, "reason": "--skip Shop/WatchOrder"}])
    );
    assert!(
        text.contains("verdict: old clients are unaffected (2 of 2 methods ok, 1 skipped)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("skipped: {w1} (--skip Shop/WatchOrder)")),
        "{text}"
    );
    let (code, text, _) = probe(&args(&v1, &v2, &["--allow-inconclusive"])).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("old clients are unaffected as far as the probe could tell (1 inconclusive, 2 ok of 3 methods; inconclusive accepted with --allow-inconclusive)"),
        "{text}"
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
        text.contains("verdict: old clients are affected (3 broken of 3 methods)"),
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
                row(w1, w1, &WATCH, "inconclusive"),
            ],
        );
    }
    assert_eq!(code, 3, "{text}");
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
            // No order exists on both servers: NOT_FOUND everywhere proves nothing.
            let verdict = if name == "WatchOrder" {
                "inconclusive"
            } else {
                "ok"
            };
            row(&method, &method, codes, verdict).status(served)
        });
        check_direction(&report, caller, &rows);
    }
    assert_eq!(code, 3, "{text}");
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
        let watch = m["method"] == "shop.v2.Shop/WatchOrder";
        assert_eq!(
            m["verdict"],
            if watch { "inconclusive" } else { "ok" },
            "{m:#}"
        );
    }
    assert_eq!(code, 100, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_testbeds_own_v1_and_v2_backends_probed_both_ways() {
    let v1 = backend("v1", &[]).await;
    let v2 = backend("v2", &[]).await;
    let mut all = args(&v1, &v2, &[]);
    // No seeds: the shop's name no Incrementer method.
    all.truncate(4);
    let (code, text, report) = probe(&all).await;
    check_own_backends(&report);
    assert_eq!(code, 0, "{text}");
}

const I1: &str = "increment.v1.Incrementer/Increment";
const S1: &str = "increment.v1.Incrementer/IncrementStream";
const I2: &str = "increment.v2.Incrementer/Increment";
const S2: &str = "increment.v2.Incrementer/IncrementStream";

/// Every cell of the probe of the testbed's own v1 (old) and v2 (new) backends, called
/// directly.
fn check_own_backends(report: &Value) {
    // One unary call per generated message; one bidi call carrying both.
    check_direction(
        report,
        "old",
        &[
            row(I1, I2, &["OK", "OK"], "ok").unknown(&["3 (served_by_version)"]),
            row(S1, S2, &["OK"], "ok").unknown(&["3 (served_by_version)"]),
        ],
    );
    // A v2 client served by v1 loses the request id and the version that served it, and
    // its step of 7 is ignored (v1 adds 1).
    let lost = ["request_id", "served_by_version"];
    check_direction(
        report,
        "new",
        &[
            row(I2, I1, &["OK", "OK"], "degraded")
                .defaulted(&lost)
                .changed(&["value: 14 → 8"]),
            row(S2, S1, &["OK"], "degraded")
                .defaulted(&lost)
                .changed(&["[1].value: 14 → 8"]),
        ],
    );
    let stream = &report["directions"][0]["methods"][1]["calls"][0];
    assert_eq!(stream["target"]["replies"], 2, "{stream:#}");
    assert_eq!(report["old_clients_unaffected"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_probe_input_is_refused_with_exit_1() {
    let v1 = backend("v1", &[]).await;
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
        (
            vec![
                "--new".to_string(),
                old.clone(),
                "--method".into(),
                "Nope/*".into(),
            ],
            "--method Nope/*: no method of OLD or NEW matches it",
        ),
        (
            vec![
                "--new".to_string(),
                old.clone(),
                "--skip".into(),
                "*/*".into(),
            ],
            "no method of OLD is left to probe (increment.v1.Incrementer/Increment: --skip */*",
        ),
        (
            vec!["--new".to_string(), old.clone(), "--samples-only".into()],
            "no --request for it (--samples-only)",
        ),
    ] {
        let args = [&["--old".to_string(), old.clone()][..], &extra].concat();
        let stderr = refused(&args, 1).await;
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    }
}

/// `testbed serve --backend API` on a free loopback port, plus `extra` flags (TLS).
async fn backend(api: &str, extra: &[&str]) -> ChildServer {
    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let mut args = vec!["serve", "--backend", api, "--addr", "127.0.0.1:0"];
    args.extend(extra);
    ChildServer::testbed(exe, &args)
        .await
        .expect("the backend starts")
}

/// Runs `testbed probe ARGS`, which must refuse with `exit` (1: an error, 2: bad flags): no
/// panic, no report on stdout. Returns stderr.
async fn refused(args: &[String], exit: i32) -> String {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("probe")
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("testbed probe ends")
        .expect("testbed probe runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(exit), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
    stderr
}

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_string()
}

/// `--old SCHEME://OLD --new SCHEME://NEW` plus `extra`.
fn servers(scheme: &str, old: &ChildServer, new: &ChildServer, extra: &[&str]) -> Vec<String> {
    let mut all = vec![
        "--old".to_string(),
        format!("{scheme}://{}", old.addr),
        "--new".to_string(),
        format!("{scheme}://{}", new.addr),
    ];
    all.extend(extra.iter().map(|s| s.to_string()));
    all
}
