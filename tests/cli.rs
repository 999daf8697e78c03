//! The `testbed` binary as a user and CI meet it: exit codes, and bad input refused before any
//! work starts (each case returns within seconds, not after a run).

use std::process::{Command, Output};

fn testbed(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "error")
        .output()
        .expect("the testbed binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn matrix_exits_zero_when_every_cell_holds() {
    let output = testbed(
        &[
            "matrix",
            "--client",
            "rust-v1",
            "--deployment",
            "v1-retired",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("✓ 42 (2.0.0)"), "{stdout}");
}

#[test]
fn matrix_exits_non_zero_when_a_client_could_not_run() {
    let output = testbed(
        &["matrix", "--client", "python-v1", "--deployment", "direct"],
        &[("TESTBED_VENV", "/nonexistent-venv")],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("differ from what the API promises"), "{err}");
    assert!(!err.contains("Stack backtrace"), "{err}");
    // The missing venv is reported once, not once per probe.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches("not found").count(), 1, "{stdout}");
}

#[test]
fn bad_input_is_refused_before_any_work() {
    for (args, says) in [
        (
            vec!["mixed", "--v1-clients", "0", "--v2-clients", "0"],
            "no clients",
        ),
        (
            vec![
                "mixed",
                "--seconds",
                "1",
                "--json",
                "/nonexistent-dir/x.json",
            ],
            "/nonexistent-dir/x.json",
        ),
        (
            vec!["bench", "--row", "tcp", "--plot", "/tmp/x.png"],
            ".svg",
        ),
        (vec!["report", "--requests", "0"], "--requests"),
        (vec!["bench", "--requests", "0"], "0"),
        (
            vec!["serve", "--addr", "no-such-host.invalid:1"],
            "no-such-host.invalid",
        ),
        (vec!["rollout", "--phase-seconds", "0"], "positive"),
    ] {
        let output = testbed(&args, &[]);
        assert!(!output.status.success(), "{args:?} succeeded");
        let err = stderr(&output);
        // The message names what was wrong (the old behaviour ran first and then failed with
        // another error, or succeeded).
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn host_names_are_accepted_where_addresses_are() {
    let output = testbed(
        &[
            "mixed",
            "--addr",
            "localhost:1",
            "--requests",
            "1",
            "--v2-clients",
            "0",
        ],
        &[],
    );
    // Nothing listens on port 1: the point is that the name was accepted and looked up.
    let err = stderr(&output);
    assert!(!err.contains("invalid value"), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn matrix_json_goes_to_stdout_alone_and_names_expected_refusals() {
    let output = testbed(
        &[
            "matrix",
            "--client",
            "rust-v2",
            "--deployment",
            "v1-only",
            "--json",
            "-",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is only the JSON");
    let cell = &json["cells"][0];
    assert_eq!(cell["expected"]["expect"], "fails");
    assert_eq!(cell["expected"]["code"], "UNIMPLEMENTED");
    assert_eq!(cell["unary"]["code"], "UNIMPLEMENTED");
    assert_eq!(json["mismatches"].as_array().map(Vec::len), Some(0));
}

#[test]
fn serve_help_says_it_is_the_gateway_and_every_upstream_command_shows_one_grammar() {
    let top = String::from_utf8_lossy(&testbed(&["--help"], &[]).stdout).into_owned();
    let serve_line = top
        .lines()
        .find(|line| line.trim_start().starts_with("serve "))
        .unwrap_or_default();
    assert!(serve_line.contains("gateway"), "{top}");
    for args in [
        &["serve", "--help"][..],
        &["route", "add", "--help"],
        &["route", "replace", "--help"],
    ] {
        let help = String::from_utf8_lossy(&testbed(args, &[]).stdout).into_owned();
        assert!(
            help.contains(port::upstream::UPSTREAM_SPEC_HELP),
            "{args:?}: {help}"
        );
    }
}
