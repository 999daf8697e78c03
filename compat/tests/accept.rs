//! Accepted breaks (`--accept`, `--write-accepted`), comment ignores and the SARIF output:
//! an accepted finding is listed but does not break, an expired or stale entry is warned
//! about, and the SARIF log validates against the published SARIF 2.1.0 schema.

use crate::common::{corpus_dir, repo_root};
use crate::project::args;
use std::path::Path;

/// broken_increment's two sides copied to `tmp/old` and `tmp/new`, so tests can edit them.
fn pair(tmp: &Path) {
    for side in ["old", "new"] {
        let src = corpus_dir().join("broken_increment").join(side);
        std::fs::create_dir_all(tmp.join(side)).unwrap();
        std::fs::copy(
            src.join("increment.proto"),
            tmp.join(side).join("increment.proto"),
        )
        .unwrap();
    }
}

/// `testbed check tmp/old tmp/new EXTRA`: exit code (or the error) and the output.
async fn check(tmp: &Path, extra: &[&str]) -> (Result<i32, String>, String) {
    let (old, new) = (tmp.join("old"), tmp.join("new"));
    let mut list = vec![old.to_str().unwrap(), new.to_str().unwrap()];
    list.extend(extra);
    let mut out = Vec::new();
    let code = compat::cli::run(&args(&list), &mut out)
        .await
        .map_err(|e| format!("{e:#}"));
    (code, String::from_utf8(out).unwrap())
}

const ONE_ENTRY: &str = "accepted:
  - rule: GRPC_RPC_NO_DELETE
    element: increment.v1.Incrementer.IncrementStream
    reason: nobody calls the stream since 2025
";

/// The broken pair with every break but the deleted stream put back.
fn only_the_deleted_stream(tmp: &Path) {
    let old = std::fs::read_to_string(tmp.join("old/increment.proto")).unwrap();
    let new = old.replace(
        "  rpc IncrementStream(stream IncrementRequest) returns (stream IncrementReply);\n",
        "",
    );
    assert_ne!(old, new, "the old side declares IncrementStream");
    std::fs::write(tmp.join("new/increment.proto"), new).unwrap();
}

#[tokio::test]
async fn an_accepted_break_does_not_break_and_is_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    pair(t);
    only_the_deleted_stream(t);
    let (code, text) = check(t, &[]).await;
    assert_eq!(code, Ok(100), "{text}");
    let accept = t.join("accepted.yaml");
    std::fs::write(&accept, ONE_ENTRY).unwrap();
    let a = accept.to_str().unwrap();
    let (code, text) = check(t, &["--accept", a]).await;
    assert_eq!(code, Ok(0), "{text}");
    assert!(text.contains("1 accepted break(s)"), "{text}");
    assert!(
        text.contains("✓ GRPC_RPC_NO_DELETE (GRPC, accepted)"),
        "{text}"
    );
    assert!(
        text.contains("accepted (nobody calls the stream since 2025)"),
        "{text}"
    );
    // JSON: the finding carries "accepted"; GitHub: a notice, not an error.
    let (code, json) = check(t, &["--accept", a, "--format", "json"]).await;
    assert_eq!(code, Ok(0), "{json}");
    let accepted: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("accepted").is_some_and(|a| a.is_object()))
        .collect();
    assert_eq!(accepted.len(), 1, "{json}");
    assert_eq!(accepted[0]["breaking"], false);
    assert_eq!(
        accepted[0]["accepted"]["reason"],
        "nobody calls the stream since 2025"
    );
    let (code, gh) = check(t, &["--accept", a, "--error-format", "github-actions"]).await;
    assert_eq!(code, Ok(0), "{gh}");
    assert!(!gh.contains("::error"), "{gh}");
    assert!(
        gh.contains("title=GRPC_RPC_NO_DELETE (GRPC) accepted::accepted (nobody calls"),
        "{gh}"
    );
}

#[tokio::test]
async fn an_expired_entry_breaks_again_and_a_stale_one_is_warned() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    pair(t);
    only_the_deleted_stream(t);
    let accept = t.join("accepted.yaml");
    let a = accept.to_str().unwrap();
    std::fs::write(&accept, format!("{ONE_ENTRY}    expires: 2000-01-31\n")).unwrap();
    let (code, text) = check(t, &["--accept", a]).await;
    assert_eq!(code, Ok(100), "{text}");
    assert!(
        text.contains(
            "GRPC_RPC_NO_DELETE increment.v1.Incrementer.IncrementStream expired on 2000-01-31"
        ),
        "{text}"
    );
    assert!(text.contains("✗ GRPC_RPC_NO_DELETE"), "{text}");
    // Not yet expired: accepted, and the text says until when.
    std::fs::write(&accept, format!("{ONE_ENTRY}    expires: 2999-12-31\n")).unwrap();
    let (code, text) = check(t, &["--accept", a]).await;
    assert_eq!(code, Ok(0), "{text}");
    assert!(text.contains("until 2999-12-31"), "{text}");
    // An entry for a finding that no longer exists is stale.
    let stale = format!(
        "{ONE_ENTRY}  - rule: FIELD_SAME_TYPE\n    element: increment.v1.Gone.field\n    reason: old\n"
    );
    std::fs::write(&accept, stale).unwrap();
    let (code, text) = check(t, &["--accept", a, "--format", "github"]).await;
    assert_eq!(code, Ok(0), "{text}");
    assert!(
        text.contains("::warning title=testbed check::")
            && text.contains(
                "FIELD_SAME_TYPE increment.v1.Gone.field matches no breaking finding (stale"
            ),
        "{text}"
    );
    // A bad file is an error naming the entry.
    std::fs::write(
        &accept,
        ONE_ENTRY.replace("nobody calls the stream since 2025", "''"),
    )
    .unwrap();
    let (code, _) = check(t, &["--accept", a]).await;
    let e = code.unwrap_err();
    assert!(
        e.contains("entry 1") && e.contains("reason is empty"),
        "{e}"
    );
    std::fs::write(
        &accept,
        ONE_ENTRY.replace("GRPC_RPC_NO_DELETE", "RPC_NO_DELTE"),
    )
    .unwrap();
    let e = check(t, &["--accept", a]).await.0.unwrap_err();
    assert!(e.contains("unknown rule \"RPC_NO_DELTE\""), "{e}");
    std::fs::write(&accept, format!("{ONE_ENTRY}    expires: next week\n")).unwrap();
    let e = check(t, &["--accept", a]).await.0.unwrap_err();
    assert!(e.contains("expires") && e.contains("YYYY-MM-DD"), "{e}");
}

#[tokio::test]
async fn a_comment_ignore_accepts_and_one_without_a_reason_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    pair(t);
    let new = t.join("new/increment.proto");
    let text = std::fs::read_to_string(&new).unwrap();
    let ignored = text.replace(
        "message IncrementRequest {",
        "// testbed:breaking:ignore GRPC_FIELD_SAME_VALUE_RANGE clients send values below 2^31\nmessage IncrementRequest {",
    );
    std::fs::write(&new, &ignored).unwrap();
    let (code, out) = check(t, &["--format", "json"]).await;
    assert_eq!(code, Ok(100), "{out}");
    let range: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["rule"] == "GRPC_FIELD_SAME_VALUE_RANGE")
        .collect();
    assert_eq!(range.len(), 1, "{out}");
    assert_eq!(range[0]["breaking"], false, "{out}");
    assert_eq!(
        range[0]["accepted"]["reason"],
        "clients send values below 2^31"
    );
    let source = range[0]["accepted"]["source"].as_str().unwrap();
    assert!(
        source.starts_with("comment at ") && source.ends_with("new/increment.proto:12"),
        "{source}"
    );
    // A deleted element has no comment of its own: the one on its parent accepts it.
    std::fs::write(
        &new,
        ignored.replace(
            "service Incrementer {",
            "// testbed:breaking:ignore GRPC_RPC_NO_DELETE the stream moved to Streamer\nservice Incrementer {",
        ),
    )
    .unwrap();
    let (code, report) = check(t, &[]).await;
    assert_eq!(code, Ok(100), "{report}");
    assert!(
        report.contains("✓ GRPC_RPC_NO_DELETE (GRPC, accepted)"),
        "{report}"
    );
    assert!(report.contains("2 accepted break(s)"), "{report}");
    // The other findings on the same field still break.
    assert!(out.contains("\"rule\":\"FIELD_WIRE_JSON_COMPATIBLE_TYPE\",\"category\":\"WIRE_JSON\",\"element\":\"increment.v1.IncrementRequest.value\""), "{out}");
    std::fs::write(
        &new,
        text.replace(
            "  int32 value = 1;",
            "  int32 value = 1; // testbed:breaking:ignore FIELD_WIRE_JSON_COMPATIBLE_TYPE",
        ),
    )
    .unwrap();
    let e = check(t, &[]).await.0.unwrap_err();
    assert!(
        e.contains("increment.proto:12") && e.contains("needs a rule id and a reason"),
        "{e}"
    );
}

#[tokio::test]
async fn write_accepted_round_trips_and_does_not_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    pair(t);
    let accept = t.join("accepted.yaml");
    let a = accept.to_str().unwrap();
    let (code, _) = check(t, &["--write-accepted", a]).await;
    assert_eq!(code, Ok(100));
    let written = std::fs::read_to_string(&accept).unwrap();
    assert_eq!(
        written.matches("reason: 'TODO: say why'").count(),
        4,
        "{written}"
    );
    let (code, text) = check(t, &["--accept", a]).await;
    assert_eq!(code, Ok(0), "{text}");
    assert!(text.contains("4 accepted break(s)"), "{text}");
    assert!(text.contains("still says \"TODO: say why\""), "{text}");
    let e = check(t, &["--write-accepted", a]).await.0.unwrap_err();
    assert!(e.contains("exists; --force overwrites it"), "{e}");
    assert_eq!(std::fs::read_to_string(&accept).unwrap(), written);
    let (code, _) = check(t, &["--write-accepted", a, "--force"]).await;
    assert_eq!(code, Ok(100));
}

/// The project's Python (.venv) with PyPI `jsonschema`, or None (skip; a failure under CI).
fn python_with_jsonschema() -> Option<std::path::PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: .venv/bin/python with jsonschema is required (scripts/setup installs it)"
    );
    eprintln!("skipping the SARIF schema check: run scripts/setup for .venv with jsonschema");
    None
}

#[tokio::test]
async fn sarif_validates_against_the_schema_and_carries_suppressions() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    pair(t);
    let accept = t.join("accepted.yaml");
    std::fs::write(&accept, ONE_ENTRY).unwrap();
    let (code, sarif) = check(
        t,
        &["--accept", accept.to_str().unwrap(), "--format", "sarif"],
    )
    .await;
    assert_eq!(code, Ok(100), "{sarif}");
    let log: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let results = log["runs"][0]["results"].as_array().unwrap();
    let suppressed: Vec<&serde_json::Value> = results
        .iter()
        .filter(|r| r.get("suppressions").is_some())
        .collect();
    assert_eq!(suppressed.len(), 1, "{sarif}");
    assert_eq!(suppressed[0]["ruleId"], "GRPC_RPC_NO_DELETE");
    assert_eq!(suppressed[0]["suppressions"][0]["kind"], "external");
    assert_eq!(
        suppressed[0]["suppressions"][0]["justification"],
        "nobody calls the stream since 2025"
    );
    let errors = results.iter().filter(|r| r["level"] == "error").count();
    assert_eq!(errors, 4, "3 breaking + 1 accepted: {sarif}");
    let location = &results[0]["locations"][0]["physicalLocation"];
    assert!(
        location["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("new/increment.proto"),
        "{location}"
    );
    assert!(
        location["region"]["startLine"].as_u64().is_some(),
        "{location}"
    );
    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), compat::RULES.len());
    assert!(
        rules
            .iter()
            .any(|r| r["helpUri"] == "https://buf.build/docs/breaking/rules/#field_same_type")
    );
    // A closed stdout keeps the verdict in this format too.
    let mut closed = crate::common::Closed;
    let (old, new) = (t.join("old"), t.join("new"));
    let list = [
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--format",
        "sarif",
    ];
    assert_eq!(
        compat::cli::run(&args(&list), &mut closed).await.unwrap(),
        100
    );
    // The judge: PyPI jsonschema with the published schema.
    let Some(python) = python_with_jsonschema() else {
        return;
    };
    let file = t.join("check.sarif");
    std::fs::write(&file, &sarif).unwrap();
    let schema = repo_root().join("compat/tests/data/sarif-schema-2.1.0.json");
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             jsonschema.validate(json.load(open(sys.argv[2])), schema)\n\
             print('valid')",
        ])
        .arg(&schema)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator can fail: a result without a message is refused.
    let mut bad = log.clone();
    bad["runs"][0]["results"][0]
        .as_object_mut()
        .unwrap()
        .remove("message");
    std::fs::write(&file, bad.to_string()).unwrap();
    let python = repo_root().join(".venv/bin/python");
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, jsonschema\njsonschema.validate(json.load(open(sys.argv[2])), json.load(open(sys.argv[1])))",
        ])
        .arg(&schema)
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "an invalid log must fail the schema");
}
