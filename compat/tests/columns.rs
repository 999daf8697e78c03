//! Paths and columns as buf prints them: `buf breaking new --against old` run in a copy of
//! corpus cases whose rules point at a part of a declaration (a type, a name, a number),
//! compared with `testbed check old new --category FILE --format json` run on the same
//! directories: each breaking finding's path (`new/a.proto`), line and column must be buf's.

use crate::buf::buf_or_skip;
use crate::common::corpus_dir;
use crate::project::args;
use std::collections::BTreeSet;

type Key = (String, String, u64, u64);

const CASES: &[&str] = &[
    "broken_increment",
    "enum_values_swapped",
    "field_renamed",
    "field_json_name_changed",
    "field_jstype_changed",
    "map_to_repeated_entry",
    "rpc_request_type_changed",
    "rpc_response_type_changed",
];

fn copy_case(case: &str, to: &std::path::Path) {
    for side in ["old", "new"] {
        let from = corpus_dir().join(case).join(side);
        std::fs::create_dir_all(to.join(side)).unwrap();
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            if e.path().extension().is_some_and(|x| x == "proto") {
                std::fs::copy(e.path(), to.join(side).join(e.file_name())).unwrap();
            }
        }
    }
}

#[tokio::test]
async fn paths_lines_and_columns_are_bufs() {
    let Some(buf) = buf_or_skip("skipping the column comparison with buf") else {
        return;
    };
    for case in CASES {
        let tmp = tempfile::tempdir().unwrap();
        copy_case(case, tmp.path());
        let out = std::process::Command::new(&buf)
            .args([
                "breaking",
                "new",
                "--against",
                "old",
                "--error-format",
                "json",
            ])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let theirs: BTreeSet<Key> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|j| {
                (
                    j["type"].as_str().unwrap_or_default().to_string(),
                    j["path"].as_str().unwrap_or_default().to_string(),
                    j["start_line"].as_u64().unwrap_or_default(),
                    j["start_column"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        assert!(!theirs.is_empty(), "{case}: buf found nothing: {out:?}");
        // Relative inputs, as a CI job passes them: run from the copy via absolute paths and
        // take the input root back off, which is what buf's paths are relative to.
        let root = tmp.path().display().to_string();
        let (old, new) = (format!("{root}/old"), format!("{root}/new"));
        let list = [
            old.as_str(),
            new.as_str(),
            "--category",
            "FILE",
            "--format",
            "json",
        ];
        let mut json = Vec::new();
        compat::cli::run(&args(&list), &mut json).await.unwrap();
        let ours: BTreeSet<Key> = String::from_utf8_lossy(&json)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|j| j["breaking"] == true)
            .map(|j| {
                let path = j["path"].as_str().unwrap_or_default();
                (
                    j["rule"].as_str().unwrap_or_default().to_string(),
                    path.strip_prefix(&format!("{root}/"))
                        .unwrap_or(path)
                        .to_string(),
                    j["line"].as_u64().unwrap_or_default(),
                    j["column"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(ours, theirs, "{case}");
    }
}
