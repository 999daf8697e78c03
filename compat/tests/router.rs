//! `compat::wire_compatible`, the router's "may NEW serve OLD requests" question: enums,
//! recursion, and the project's own packages.

use compat::{Category, CheckOptions, Outcome};
use prost_reflect::DescriptorPool;

/// Compiles `files` (name, text) into one pool.
fn pool(files: &[(&str, &str)]) -> DescriptorPool {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    compat::source::compile_dir(dir.path(), &[]).unwrap().0
}

const OPS_V1: &str = "syntax = \"proto3\";\npackage ops.v1;\nenum Op {\n  ADD = 0;\n  SUBTRACT = 1;\n}\nmessage Req {\n  Op op = 1;\n  int64 value = 2;\n}\nservice Calc {\n  rpc Run(Req) returns (Req);\n}\n";
const OPS_V2: &str = "syntax = \"proto3\";\npackage ops.v2;\nenum Op {\n  SUBTRACT = 0;\n  ADD = 1;\n}\nmessage Req {\n  Op op = 1;\n  int64 value = 2;\n}\nservice Calc {\n  rpc Run(Req) returns (Req);\n}\n";

#[test]
fn swapped_enum_numbers_are_refused() {
    let pool = pool(&[("ops/v1/ops.proto", OPS_V1), ("ops/v2/ops.proto", OPS_V2)]);
    let refusal = compat::wire_compatible(&pool, "ops.v1", "ops.v2").expect_err("must refuse");
    let f = refusal
        .iter()
        .find(|f| f.rule == "GRPC_ENUM_VALUE_SAME_NUMBER")
        .expect("enum finding");
    let c = f.confirmation.as_ref().unwrap();
    assert_eq!(c.outcome, Outcome::Confirmed);
    assert!(
        c.effect.contains("ADD read as SUBTRACT") || c.effect.contains("SUBTRACT read as ADD"),
        "{}",
        c.effect
    );
    // Also a breaking finding for the checker: buf's ENUM_VALUE_SAME_NAME under WIRE_JSON.
    let old = compat::Api::package_view(&pool, "ops.v1");
    let new = compat::Api::package_view(&pool, "ops.v2");
    let report = compat::check(
        &old,
        &new,
        &CheckOptions {
            categories: vec![Category::WireJson],
            ..Default::default()
        },
    );
    assert!(
        report.breaking().any(|f| f.rule == "ENUM_VALUE_SAME_NAME"),
        "{:#?}",
        report.findings
    );
    // The same enum on both sides is fine.
    let same = OPS_V1.replace("ops.v1", "ops.v3");
    let pool = pool_with(&[("ops/v1/ops.proto", OPS_V1), ("ops/v3/ops.proto", &same)]);
    assert!(compat::wire_compatible(&pool, "ops.v1", "ops.v3").is_ok());
}

fn pool_with(files: &[(&str, &str)]) -> DescriptorPool {
    pool(files)
}

const NODE: &str = "syntax = \"proto3\";\npackage tree.VERSION;\nmessage Node {\n  Node child = 1;\n  int64 value = 2;\n}\nmessage Tree {\n  repeated Branch branches = 1;\n}\nmessage Branch {\n  Tree subtree = 1;\n  Node node = 2;\n}\nservice Trees {\n  rpc Walk(Tree) returns (Node);\n}\n";

#[test]
fn recursive_messages_terminate() {
    let v1 = NODE.replace("VERSION", "v1");
    let v2 = NODE
        .replace("VERSION", "v2")
        .replace("int64 value = 2;", "int64 value = 2;\n  string label = 3;");
    let pool = pool(&[("tree/v1/t.proto", &v1), ("tree/v2/t.proto", &v2)]);
    assert!(compat::wire_compatible(&pool, "tree.v1", "tree.v2").is_ok());
    // A narrowing deep inside the recursion is found and confirmed.
    let v3 = NODE
        .replace("VERSION", "v3")
        .replace("int64 value = 2;", "int32 value = 2;");
    let pool = pool_with(&[("tree/v1/t.proto", &v1), ("tree/v3/t.proto", &v3)]);
    let refusal = compat::wire_compatible(&pool, "tree.v1", "tree.v3").expect_err("narrowing");
    assert!(
        refusal
            .iter()
            .any(|f| f.rule == "GRPC_FIELD_SAME_VALUE_RANGE"
                && f.confirmation.as_ref().unwrap().outcome == Outcome::Confirmed)
    );
    // Recursive request types renamed but identical: the structural comparison terminates.
    let v4 = NODE.replace("VERSION", "v4").replace("Node", "Knot");
    let pool = pool_with(&[("tree/v1/t.proto", &v1), ("tree/v4/t.proto", &v4)]);
    let old = compat::Api::package_view(&pool, "tree.v1");
    let new = compat::Api::package_view(&pool, "tree.v4");
    let report = compat::check(
        &old,
        &new,
        &CheckOptions {
            categories: vec![Category::Wire, Category::Grpc],
            ..Default::default()
        },
    );
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "RPC_SAME_RESPONSE_TYPE")
        .expect("rename noted");
    assert!(!f.breaking);
    assert_eq!(f.confirmation.as_ref().unwrap().outcome, Outcome::Refuted);
}

#[test]
fn project_v2_may_serve_v1_but_not_the_reverse() {
    let root = crate::common::repo_root().join("proto");
    let v1 = std::fs::read_to_string(root.join("v1/increment.proto")).unwrap();
    let v2 = std::fs::read_to_string(root.join("v2/increment.proto")).unwrap();
    let pool = pool(&[
        ("increment/v1/increment.proto", &v1),
        ("increment/v2/increment.proto", &v2),
    ]);
    assert!(compat::wire_compatible(&pool, "increment.v1", "increment.v2").is_ok());
    let refusal = compat::wire_compatible(&pool, "increment.v2", "increment.v1")
        .expect_err("v1 lacks v2's fields");
    assert!(
        refusal
            .iter()
            .any(|f| f.rule == "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED"
                && f.element == "increment.v2.IncrementRequest.step"),
        "{refusal:#?}"
    );
    for f in &refusal {
        assert!(f.confirmation.is_some(), "{f:?}");
    }
    // The encoded-set entry point gives the same answer.
    let bytes = pool.encode_to_vec();
    assert!(
        compat::wire_compatible_encoded(&bytes, "increment.v1", "increment.v2")
            .unwrap()
            .is_ok()
    );
}
