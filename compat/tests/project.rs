//! The project's own API through the CLI entry point: proto/v1 → proto/v2 is a compatible
//! minor superset.

use crate::common::repo_root;
use clap::Parser;
use compat::cli::{CheckArgs, run};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: CheckArgs,
}

pub(crate) fn args(list: &[&str]) -> CheckArgs {
    let mut v = vec!["check".to_string()];
    v.extend(list.iter().map(|s| s.to_string()));
    Cli::try_parse_from(v).unwrap().args
}

async fn output(list: &[&str]) -> (i32, String) {
    let mut out = Vec::new();
    let code = run(&args(list), &mut out).await.unwrap();
    (code, String::from_utf8(out).unwrap())
}

fn proto(v: &str) -> String {
    repo_root().join("proto").join(v).display().to_string()
}

#[tokio::test]
async fn v2_is_a_minor_superset_of_v1() {
    let (v1, v2) = (proto("v1"), proto("v2"));
    let (code, text) = output(&[&v1, &v2, "--current-version", "1.4.0"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("Verdict: minor"), "{text}");
    assert!(text.contains("next version after 1.4.0: 1.5.0"), "{text}");
    assert!(
        text.contains("paired packages: increment.v1 → increment.v2"),
        "{text}"
    );
    assert!(!text.contains('✗'), "{text}");
    // The same with an explicit --map, and in every category.
    for cat in ["WIRE", "WIRE_JSON", "PACKAGE", "GRPC"] {
        let (code, text) = output(&[
            &v1,
            &v2,
            "--map",
            "increment.v1=increment.v2",
            "--no-auto-map",
            "--category",
            cat,
        ])
        .await;
        assert_eq!(code, 0, "{cat}: {text}");
    }
    // Without pairing, v1's package is gone.
    let (code, _) = output(&[&v1, &v2, "--no-auto-map", "--category", "PACKAGE"]).await;
    assert_eq!(code, 100);
}

#[tokio::test]
async fn json_and_github_formats() {
    let dir = crate::common::corpus_dir().join("broken_increment");
    let (old, new) = (
        dir.join("old").display().to_string(),
        dir.join("new").display().to_string(),
    );
    let (code, text) =
        output(&[&old, &new, "--format", "json", "--current-version", "1.4.0"]).await;
    assert_eq!(code, 100);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary, findings) = lines.split_last().unwrap();
    assert_eq!(summary["verdict"], "major");
    assert_eq!(summary["next_version"], "2.0.0");
    let f = findings
        .iter()
        .find(|f| f["rule"] == "GRPC_FIELD_SAME_VALUE_RANGE")
        .unwrap();
    for key in [
        "rule",
        "category",
        "element",
        "path",
        "line",
        "message",
        "semver",
        "confirmation",
    ] {
        assert!(!f[key].is_null(), "{key} in {f}");
    }
    assert_eq!(f["category"], "GRPC");
    assert_eq!(f["semver"], "major");
    assert_eq!(f["confirmation"]["outcome"], "confirmed");
    let (_, gh) = output(&[&old, &new, "--format", "github"]).await;
    let want = format!(
        "::error file={new}/increment.proto,line=12,col=3,title=GRPC_FIELD_SAME_VALUE_RANGE (GRPC)::"
    );
    assert!(gh.lines().any(|l| l.starts_with(&want)), "{gh}");
    assert!(
        gh.contains("::notice title=compat verdict::Verdict: MAJOR"),
        "{gh}"
    );
}
