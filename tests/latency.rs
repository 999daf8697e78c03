//! Smoke test of the latency runs: every row runs with a small count, its chain ends at the
//! request count, and it produced numbers that agree with each other. Timings are never
//! asserted, only figures against an independent computation of the same thing.

use bench::{BenchOptions, CpuList, Flavor, Row, RowResult};
use std::path::PathBuf;
use std::process::Command;

/// `a` within a factor `1.5` of `b`: two computations of one figure, with room for medians
/// over rounds and a busy machine, but none for counting warm-up calls as measured ones.
fn agree(what: &str, a: f64, b: f64) {
    assert!(
        a / b < 1.5 && b / a < 1.5,
        "{what}: {a} and {b} disagree by more than a factor 1.5"
    );
}

/// calls/s is the count of measured calls over their wall time.
fn calls_per_s_is_count_over_total(result: &RowResult) {
    agree(
        &format!("{}: calls/s against calls / total", result.label),
        result.calls_per_s,
        result.calls as f64 / (result.total_ms / 1e3),
    );
}

fn options(flavor: Flavor) -> BenchOptions {
    BenchOptions {
        requests: 200,
        warmup: 10,
        repeat: 2,
        concurrency: 2,
        flavor,
        cpus: None,
        server_cpus: None,
        halt_poll_ns: None,
        rows: Vec::new(),
        progress: None,
        testbed_exe: PathBuf::from(env!("CARGO_BIN_EXE_testbed")),
    }
}

#[test]
fn every_row_runs_and_ends_at_the_request_count() {
    let options = options(Flavor::MultiThread);
    let report = bench::run(&options).unwrap();
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if in_ci {
        assert!(
            report.skipped.is_empty(),
            "CI skipped rows: {:?}",
            report.skipped
        );
    }
    for row in Row::ALL.into_iter().filter(|r| !r.runs_apart()) {
        let Some(result) = report.rows.iter().find(|r| r.row == row) else {
            let (_, reason) = report.skipped.iter().find(|(r, _)| *r == row).unwrap();
            eprintln!("skipped {}: {reason}", row.label());
            continue;
        };
        assert_eq!(result.final_value, 200, "{}", row.label());
        // --concurrency 2: every network row with a chain of calls (Python rows too) ran two.
        let chains = match row {
            Row::Harness | Row::InProcess | Row::StreamPipelined => 1,
            _ => 2,
        };
        assert_eq!(result.calls, 200 * chains, "{}", row.label());
        assert!(
            result.mean_us > 0.0 && result.calls_per_s > 0.0,
            "{}",
            row.label()
        );
        calls_per_s_is_count_over_total(result);
        // A TLS row is compared with the same client over plaintext, measured beside it.
        assert_eq!(
            result.ratio_to_plaintext.is_some(),
            row.plaintext_partner().is_some(),
            "{}",
            row.label()
        );
        if row != Row::StreamPipelined {
            assert!(
                result.p50_us.is_some() && result.max_us.is_some(),
                "{}",
                row.label()
            );
        }
    }
    let unary = report.rows.iter().find(|r| r.row == Row::UnaryV1).unwrap();
    assert_eq!(unary.ratio_to_unary, Some(1.0));
    if in_ci || report.skipped.iter().all(|(row, _)| *row != Row::H2load) {
        // Direct over TLS, direct and through the router, at -c 1 -m 1 and -c 10 -m 10.
        assert_eq!(report.h2load.len(), 6);
        let tls_runs = report.h2load.iter().filter(|r| r.target == "direct-tls");
        assert_eq!(tls_runs.count(), 2, "{:?}", report.h2load);
        assert!(report.h2load_tls_share.is_some_and(|share| share > 0.0));
        for run in &report.h2load {
            // -c 1 -m 1 sends the request count; -c 10 -m 10 ten times as many.
            let sent = if run.connections == 1 { 200 } else { 2000 };
            assert_eq!(run.succeeded, sent, "{run:?}");
            assert!(run.requests_per_s > 0.0, "{run:?}");
        }
    }
    // New connections: each transport's chain of fresh connections ended at its count.
    let handshake = report.handshake.as_ref().expect("new connections measured");
    assert_eq!(handshake.final_value, handshake.connections as i64);
    for figures in [&handshake.plaintext, &handshake.tls] {
        assert!(
            figures.p50_us > 0.0 && figures.p90_us >= figures.p50_us,
            "{handshake:?}"
        );
    }
    assert!(handshake.p50_ratio > 0.0, "{handshake:?}");
    let rendered = report.render();
    for text in [
        "raw TCP ping-pong",
        "gRPC unary v1, direct, TLS ",
        "gRPC unary v1, direct, TLS / plaintext, measured in alternation: p50 ",
        "gRPC bidi stream ping-pong, TLS / plaintext, measured in alternation: p50 ",
        "new connection + first call, TLS / plaintext, measured in alternation: p50 ",
    ] {
        assert!(rendered.contains(text), "no {text:?} in\n{rendered}");
    }
    let json = serde_json::to_value(&report).unwrap();
    let rows: Vec<&str> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row["row"].as_str())
        .collect();
    for row in ["unary-tls", "stream-ping-pong-tls"] {
        assert!(rows.contains(&row), "no {row} in {rows:?}");
    }
    assert_eq!(
        json["handshake"]["final_value"],
        json["handshake"]["connections"]
    );
}

#[test]
fn current_thread_runtime_pinned_to_one_cpu_runs_too_and_writes_json_and_plot() {
    let mut options = options(Flavor::CurrentThread);
    options.rows = vec![
        Row::Tcp,
        Row::UnaryV1,
        Row::UnaryH2,
        Row::UnaryRouter,
        Row::UnaryTls,
    ];
    options.repeat = 1;
    // One chain per row, after twice as many warm-up calls as measured ones: calls/s must be
    // one over the mean call, which it is not if the warm-up counts in the wall time.
    options.concurrency = 1;
    options.warmup = 400;
    let one_cpu = CpuList::first_allowed().unwrap();
    options.cpus = Some(one_cpu.clone());
    let report = bench::run(&options).unwrap();
    assert_eq!(report.rows.len(), 5);
    for result in &report.rows {
        assert_eq!(result.calls, 200, "{}", result.label);
        calls_per_s_is_count_over_total(result);
        agree(
            &format!("{}: calls/s against 1 / mean", result.label),
            result.calls_per_s,
            1e6 / result.mean_us,
        );
    }
    assert!(
        report
            .render()
            .contains(&format!("pinned to CPU {one_cpu}")),
        "{}",
        report.render()
    );
    let dir = crate::common::temp_dir("bench");
    let path = dir.path().join("bench.json");
    report.write_json(&path).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(json["runtime"], "current-thread");
    assert_eq!(json["cpus"], one_cpu.to_string());
    assert_eq!(json["warmup"], 400);
    assert_eq!(
        json["requested_rows"],
        serde_json::json!(["tcp", "unary-v1", "unary-h2", "unary-router", "unary-tls"])
    );
    assert_eq!(json["rows"][1]["final_value"], 200);
    report.plot(&dir.path().join("bench.svg")).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("bench.svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("gRPC unary v1"),
        "{svg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `testbed bench ARGS` with `env` set and `CI` unset (so that a missing tool skips, as it does
/// on a developer's machine): whether it succeeded, and its stderr.
fn testbed_bench(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_testbed"));
    command
        .arg("bench")
        .args(args)
        .arg("--quiet")
        .env_remove("CI");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_row_asked_for_by_name_that_cannot_run_fails_the_run_outside_ci_too() {
    let no_venv = std::env::temp_dir().join(format!("testbed-no-venv-{}", std::process::id()));
    let no_venv = no_venv.display().to_string();
    let (ok, stderr) = testbed_bench(
        &["--row", "python-to-rust", "--requests", "10"],
        &[("TESTBED_VENV", &no_venv)],
    );
    assert!(!ok, "a --row that could not run passed:\n{stderr}");
    assert!(stderr.contains("python-to-rust"), "{stderr}");
    assert!(stderr.contains("scripts/setup"), "{stderr}");
}

#[test]
fn a_plot_path_that_is_not_svg_is_refused_before_the_run() {
    let dir = crate::common::temp_dir("bench-png");
    let (png, json) = (dir.path().join("bench.png"), dir.path().join("bench.json"));
    let (png_arg, json_arg) = (png.display().to_string(), json.display().to_string());
    let args = ["--row", "harness", "--requests", "10", "--warmup", "0"];
    let outputs = ["--plot", &png_arg, "--json", &json_arg];
    let (ok, stderr) = testbed_bench(&[&args[..], &outputs].concat(), &[]);
    assert!(!ok, "--plot {png_arg} passed:\n{stderr}");
    assert!(
        stderr.contains("--plot writes SVG; give a path ending in .svg"),
        "{stderr}"
    );
    assert!(!png.exists(), "an SVG written under a .png name");
    // Refused before the run: the run would have written its JSON before drawing.
    assert!(
        !json.exists(),
        "the run went ahead before the plot path was refused"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
