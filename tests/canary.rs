//! `testbed canary` against a gateway in front of two builds of the shop's v2 (Python grpcio,
//! `examples/shop/server.py`) under unpinned load: a good build is promoted step by step and
//! the load sees no failed call; a build that fails 20 % of its calls is rolled back after its
//! first interval, judged from the gateway's `/metrics` or from a real Prometheus; and the
//! Flagger and Argo Rollouts templates' PromQL counts the same calls in that Prometheus.

use crate::common::credentials::token_file;
use crate::common::prometheus::{Prometheus, tool};
use crate::common::shop::shop_python;
use port::child::ChildServer;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use testbed::canary::drill::{ShopLoad, Stage};

const TOKEN: &str = "canary-test-token";

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_testbed"))
}

async fn stage(python: &Path, canary_fail_percent: u32) -> Stage {
    Stage::start(python, exe(), canary_fail_percent)
        .await
        .expect("two shop builds behind a gateway start")
}

/// `testbed canary` against the stage with `judged_by` (`--metrics ADDR` or `--prometheus
/// URL`) and `extra` flags: exit code and standard output.
fn canary(stage: &Stage, judged_by: &[String], extra: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(exe())
        .args(["canary", "--from", "v2a", "--to", "v2b", "--admin"])
        .arg(stage.admin.to_string())
        .arg("--token-file")
        .arg(&stage.tokens)
        .args(judged_by)
        .args(extra)
        .output()
        .expect("testbed canary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

/// `testbed canary` with `flags` while unpinned calls run: its exit code and output, and the
/// calls' counts.
async fn canary_under_load(
    stage: &Stage,
    judged_by: &[String],
    flags: &[&str],
) -> (i32, String, BTreeMap<(String, String), u64>) {
    let load = ShopLoad::start(stage.gateway.addr)
        .await
        .expect("the load starts");
    let (code, out) = tokio::task::block_in_place(|| canary(stage, judged_by, flags));
    (code, out, load.stop().await.expect("the load stops"))
}

/// `--metrics ADDR` of the stage's gateway.
fn its_metrics(stage: &Stage) -> Vec<String> {
    vec!["--metrics".to_string(), stage.metrics.to_string()]
}

/// Which versions unpinned calls reach after the canary, over 300 ms of calls.
async fn served_after(addr: SocketAddr) -> BTreeMap<(String, String), u64> {
    let load = ShopLoad::start(addr).await.expect("the load starts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    load.stop().await.expect("the load stops")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_build_is_promoted_step_by_step_and_the_load_fails_nothing() {
    let Some(python) = shop_python() else {
        return;
    };
    let stage = stage(&python, 0).await;
    // Both builds are the same server: their p99s differ by noise alone, which a test must not
    // judge (the p99 gate is tested in src/canary/judge.rs).
    let flags = [
        "--steps",
        "10,50,100",
        "--interval",
        "1s",
        "--min-calls",
        "20",
    ];
    let no_p99 = ["--max-p99-ratio", "1000"];
    let all: Vec<&str> = flags.iter().chain(&no_p99).copied().collect();
    let (code, out, counts) = canary_under_load(&stage, &its_metrics(&stage), &all).await;
    assert_eq!(code, 0, "{out}");
    for step in [" 10 %", " 50 %", "100 %"] {
        assert!(
            out.contains(&format!("{step}  v2b:")) && out.contains("| pass"),
            "{out}"
        );
    }
    assert!(out.contains("promoted: v2b has no weight"), "{out}");
    let failed: u64 = counts
        .iter()
        .filter(|((_, code), _)| code != "OK")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failed, 0, "the canary's own steps failed calls: {counts:?}");
    assert!(
        counts.contains_key(&("2.1.0".into(), "OK".into())),
        "{counts:?}"
    );
    let after = served_after(stage.gateway.addr).await;
    assert!(
        after.keys().all(|(version, _)| version == "2.1.0"),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_failing_a_fifth_of_its_calls_is_rolled_back_after_one_interval() {
    let Some(python) = shop_python() else {
        return;
    };
    let stage = stage(&python, 20).await;
    let flags = [
        "--steps",
        "25,100",
        "--interval",
        "1s",
        "--min-calls",
        "20",
        "--json",
    ];
    let (code, out, counts) = canary_under_load(&stage, &its_metrics(&stage), &flags).await;
    assert_eq!(code, 100, "{out}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let intervals: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "interval").collect();
    assert_eq!(intervals.len(), 1, "{out}");
    assert_eq!(intervals[0]["step"], 25);
    assert_eq!(intervals[0]["verdict"], "fail");
    // The gateway's figures against the shop's own rule: every fifth call fails.
    let rate = intervals[0]["canary"]["error_rate"].as_f64().unwrap();
    assert!((0.15..=0.25).contains(&rate), "{out}");
    assert_eq!(intervals[0]["old"]["errors"], 0.0, "{out}");
    let last = events.last().unwrap();
    assert_eq!(
        (&last["event"], &last["weight"]),
        (&"rolled back".into(), &0.into()),
        "{out}"
    );
    // Only the bad build failed calls, and only as it was told to.
    for ((version, code), n) in &counts {
        if code != "OK" {
            assert_eq!(version, "2.1.0", "{counts:?}");
            assert!(code.contains("failed on purpose"), "{n} x {code}");
        }
    }
    let after = served_after(stage.gateway.addr).await;
    assert!(
        after
            .keys()
            .all(|(version, code)| version == "2.0.0" && code == "OK"),
        "{after:?}"
    );
}

/// The PromQL of a template file (Flagger's `spec.query`, Argo's first metric's), read as YAML.
fn template_query(file: &str) -> String {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: serde_json::Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file} is not YAML: {e}"));
    let query = match doc["kind"].as_str() {
        Some("MetricTemplate") => &doc["spec"]["query"],
        Some("AnalysisTemplate") => &doc["spec"]["metrics"][0]["provider"]["prometheus"]["query"],
        other => panic!("{file}: an unexpected kind {other:?}"),
    };
    query
        .as_str()
        .unwrap_or_else(|| panic!("{file}: no query"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_judges_the_same_bad_build_and_the_templates_count_its_calls() {
    let Some(python) = shop_python() else {
        return;
    };
    let Some(binary) = crate::common::tool(tool("prometheus")) else {
        return;
    };
    let stage = stage(&python, 20).await;
    let prometheus = Prometheus::start(&binary, stage.metrics);
    let load = ShopLoad::start(stage.gateway.addr)
        .await
        .expect("the load starts");
    // A first interval for Prometheus' scrapes to hold both backends' series.
    let url = vec![
        "--prometheus".to_string(),
        format!("http://{}", prometheus.addr()),
    ];
    let flags = [
        "--steps",
        "50,100",
        "--interval",
        "6s",
        "--min-calls",
        "20",
        "--max-holds",
        "4",
    ];
    let (code, out) = tokio::task::block_in_place(|| canary(&stage, &url, &flags));
    assert_eq!(code, 100, "{out}");
    assert!(
        out.contains("50 %  v2b:") && out.contains("| fail: error rate"),
        "{out}"
    );
    assert!(out.contains("rolled back: v2b is at weight 0"), "{out}");

    // The templates' success rate of v2b over the last minute: the shop fails every fifth call.
    for file in [
        "examples/canary/flagger-metric-template.yaml",
        "examples/canary/argo-analysis-template.yaml",
    ] {
        let query = template_query(file)
            .replace("{{ interval }}", "1m")
            .replace("{{ variables.backend }}", "v2b")
            .replace("{{args.backend}}", "v2b");
        assert!(
            !query.contains("{{"),
            "{file}: a template variable left in {query}"
        );
        let result = prometheus
            .query(&query)
            .await
            .expect("the template's query answers");
        let [(_, rate)] = result.as_slice() else {
            panic!("{file}: {query} answered {result:?}");
        };
        assert!((0.75..=0.85).contains(rate), "{file}: {query} = {rate}");
    }
    load.stop().await.expect("the load stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_between_packages_or_of_an_unknown_backend_is_refused_before_any_step() {
    let dir = crate::common::temp_dir("canary-refused");
    let tokens = token_file(dir.path(), &format!("ops {TOKEN}\n"));
    let tokens_arg = tokens.display().to_string();
    let args = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token-file",
        &tokens_arg,
    ];
    let mut gateway = ChildServer::testbed(exe(), &args)
        .await
        .expect("serve starts");
    let admin = crate::common::admin_address(&mut gateway).await;
    let run = |from: &str, to: &str| {
        let out = std::process::Command::new(exe())
            .args(["canary", "--from", from, "--to", to, "--admin", &admin])
            .args(["--token-file", &tokens_arg, "--metrics", "127.0.0.1:9"])
            .output()
            .expect("testbed canary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = tokio::task::block_in_place(|| run("v1", "v2"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("a canary splits the calls of one package"),
        "{err}"
    );
    let (code, err) = tokio::task::block_in_place(|| run("v1", "v9"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no backend \"v9\" in the table (v1, v2)"),
        "{err}"
    );
    let (_, err) = tokio::task::block_in_place(|| {
        let out = std::process::Command::new(exe())
            .args(["canary", "--from", "v1", "--to", "v2", "--steps", "50,20"])
            .args(["--metrics", "127.0.0.1:9"])
            .output()
            .expect("testbed canary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    });
    assert!(err.contains("--steps must rise"), "{err}");
}
