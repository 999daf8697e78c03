//! Protobuf editions inputs: a descriptor set built by protoc (which prost-reflect 0.16 panics
//! on) is read with its features, and a `.proto` file in editions goes through protoc.

use compat::source::Source;
use compat::{Category, CheckOptions};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn options(categories: &[Category]) -> CheckOptions {
    CheckOptions {
        categories: categories.to_vec(),
        map: Vec::new(),
        auto_pair: false,
        confirm: true,
    }
}

#[tokio::test]
async fn an_editions_descriptor_set_is_read_with_its_features() {
    let api = Source::parse(&data("editions2024.binpb").display().to_string())
        .load(&[])
        .await
        .expect("an editions set loads");
    assert_eq!(
        api.editions.files.get("ed.proto"),
        Some(&compat::editions::EDITION_2024)
    );
    let text = api
        .editions
        .get("ed.v1.Ping.text")
        .expect("the field's features");
    // 2024 defaults: explicit presence, UTF-8 verified, C++ string_view.
    assert_eq!(text.field_presence, Some(1));
    assert_eq!(text.utf8_validation, Some(2));
    assert_eq!(text.cpp.and_then(|c| c.string_type), Some(1));
    let report = compat::check(&api, &api, &options(&[Category::File]));
    assert_eq!(report.breaking().count(), 0);
}

#[tokio::test]
async fn an_editions_proto_file_against_its_proto3_original() {
    if !crate::common::has_protoc("skipping") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.proto");
    let new = dir.path().join("new.proto");
    std::fs::write(
        &old,
        "syntax = \"proto3\";\npackage ed.v1;\nmessage Ping { string text = 1; int64 n = 2; }\n",
    )
    .unwrap();
    // The same meaning in edition 2023 but `n`'s presence made explicit.
    std::fs::write(
        &new,
        "edition = \"2023\";\npackage ed.v1;\noption features.field_presence = IMPLICIT;\nmessage Ping { string text = 1; int64 n = 2 [features.field_presence = EXPLICIT]; }\n",
    )
    .unwrap();
    let o = Source::parse(&old.display().to_string())
        .load(&[])
        .await
        .unwrap();
    let n = Source::parse(&new.display().to_string())
        .load(&[])
        .await
        .unwrap();
    assert!(n.editions.files.contains_key("new.proto"));
    let report = compat::check(&o, &n, &options(&[Category::WireJson]));
    assert_eq!(report.breaking().count(), 0, "{report:?}");
    let report = compat::check(&o, &n, &options(&[Category::File]));
    let rules: Vec<&str> = report.breaking().map(|f| f.rule.as_str()).collect();
    assert!(rules.contains(&"FIELD_SAME_CARDINALITY"), "{rules:?}");
    assert!(!rules.contains(&"FIELD_SAME_UTF8_VALIDATION"), "{rules:?}");
}
