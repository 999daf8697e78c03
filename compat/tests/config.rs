//! buf's breaking configuration (`buf.yaml` v1/v2 at the NEW directory's root, or `--config`):
//! `use`, `except`, `ignore`, `ignore_only` and `ignore_unstable_packages`, each judged by
//! running `buf breaking` with the same configuration on the same pair.

use crate::buf::{buf_breaking, buf_or_skip};
use crate::common::corpus_dir;
use crate::project::args;
use std::collections::BTreeSet;
use std::path::Path;

/// broken_increment's two sides in `tmp/old` and `tmp/new`, package renamed to `package`.
fn pair(tmp: &Path, package: &str) {
    for side in ["old", "new"] {
        let text = std::fs::read_to_string(
            corpus_dir()
                .join("broken_increment")
                .join(side)
                .join("increment.proto"),
        )
        .unwrap()
        .replace("package increment.v1;", &format!("package {package};"));
        std::fs::create_dir_all(tmp.join(side)).unwrap();
        std::fs::write(tmp.join(side).join("increment.proto"), text).unwrap();
    }
}

/// The breaking rule ids `testbed check old new EXTRA` reports, and its exit code.
async fn ours(tmp: &Path, extra: &[&str]) -> (i32, BTreeSet<String>) {
    let (old, new) = (tmp.join("old"), tmp.join("new"));
    let mut list = vec![
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--format",
        "json",
    ];
    list.extend(extra);
    let mut out = Vec::new();
    let code = compat::cli::run(&args(&list), &mut out).await.unwrap();
    let rules = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["breaking"] == true)
        .filter_map(|v| v["rule"].as_str().map(str::to_string))
        .collect();
    (code, rules)
}

/// The same from `buf breaking new --against old EXTRA` (it reads new/buf.yaml itself).
fn bufs(buf: &Path, tmp: &Path, extra: &[&str]) -> (i32, BTreeSet<String>) {
    let args = [&["new", "--against", "old"][..], extra].concat();
    let (code, rules) = buf_breaking(buf, tmp, &args);
    (code.unwrap_or(-1), rules)
}

#[tokio::test]
async fn buf_yaml_and_config_apply_as_buf_applies_them() {
    let Some(buf) = buf_or_skip("skipping the buf.yaml comparison") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    pair(t, "increment.v1");
    // No configuration: buf's default FILE against ours with --category FILE.
    let (code, all) = ours(t, &["--category", "FILE"]).await;
    assert_eq!((code, &all), (bufs(&buf, t, &[]).0, &bufs(&buf, t, &[]).1));
    assert!(
        all.contains("FIELD_SAME_TYPE") && all.contains("RPC_NO_DELETE"),
        "{all:?}"
    );
    // v1 at the NEW root (default use: FILE): one rule excepted, then one ignored for the file.
    for section in [
        "  except:\n    - FIELD_SAME_TYPE\n",
        "  ignore_only:\n    FIELD_SAME_TYPE:\n      - increment.proto\n",
    ] {
        std::fs::write(
            t.join("new/buf.yaml"),
            format!("version: v1\nbreaking:\n{section}"),
        )
        .unwrap();
        let (code, rules) = ours(t, &[]).await;
        assert_eq!(
            (code, &rules),
            (bufs(&buf, t, &[]).0, &bufs(&buf, t, &[]).1)
        );
        assert_eq!(
            rules,
            BTreeSet::from(["RPC_NO_DELETE".to_string()]),
            "{section}"
        );
    }
    std::fs::remove_file(t.join("new/buf.yaml")).unwrap();
    // v2 at the NEW root: WIRE, and the whole file ignored.
    for section in [
        "  use: [WIRE]\n",
        "  use: [WIRE]\n  ignore: [increment.proto]\n",
    ] {
        std::fs::write(
            t.join("new/buf.yaml"),
            format!("version: v2\nbreaking:\n{section}"),
        )
        .unwrap();
        let (code, rules) = ours(t, &[]).await;
        assert_eq!((code, rules), bufs(&buf, t, &[]), "{section}");
    }
    std::fs::remove_file(t.join("new/buf.yaml")).unwrap();
    // --config inline (v1, as buf applies a --config to the input module): one rule in use.
    for config in [
        r#"{"version":"v1","breaking":{"use":["WIRE"]}}"#,
        r#"{"version":"v1","breaking":{"use":["FIELD_WIRE_COMPATIBLE_TYPE"]}}"#,
    ] {
        let (code, rules) = ours(t, &["--config", config]).await;
        assert_eq!(
            (code, rules),
            bufs(&buf, t, &["--config", config]),
            "{config}"
        );
    }
}

#[tokio::test]
async fn unstable_packages_are_ignored_when_asked_as_buf_does() {
    let Some(buf) = buf_or_skip("skipping the buf.yaml comparison") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    pair(t, "increment.v1alpha1");
    let config =
        r#"{"version":"v1","breaking":{"use":["WIRE_JSON"],"ignore_unstable_packages":true}}"#;
    let (code, rules) = ours(t, &["--config", config]).await;
    assert_eq!((code, &rules), (0, &BTreeSet::new()));
    assert_eq!((code, rules), bufs(&buf, t, &["--config", config]));
    // Without the option the same pair breaks.
    let config = r#"{"version":"v1","breaking":{"use":["WIRE_JSON"]}}"#;
    let (code, rules) = ours(t, &["--config", config]).await;
    assert_eq!(code, 100);
    assert_eq!((code, rules), bufs(&buf, t, &["--config", config]));
}

#[tokio::test]
async fn bad_configuration_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    pair(t, "increment.v1");
    std::fs::write(
        t.join("new/buf.yaml"),
        "version: v1\nbreaking:\n  use: [WIRES]\n",
    )
    .unwrap();
    let (old, new) = (t.join("old"), t.join("new"));
    let list = [old.to_str().unwrap(), new.to_str().unwrap()];
    let mut out = Vec::new();
    let e = compat::cli::run(&args(&list), &mut out).await.unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("buf.yaml") && e.contains("unknown rule or category \"WIRES\""),
        "{e}"
    );
}
