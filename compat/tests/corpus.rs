//! Expectations per corpus case: rules fire where they should, verdicts, wire confirmations.

use crate::common::{cases, check_case};
use compat::{Bump, Category, Outcome, RULES};
use std::collections::BTreeSet;

const ALL: [Category; 5] = [
    Category::Wire,
    Category::WireJson,
    Category::Package,
    Category::File,
    Category::Grpc,
];

#[test]
fn corpus_has_at_least_forty_cases() {
    assert!(cases().len() >= 40, "{} cases", cases().len());
}

#[test]
fn every_implemented_rule_fires_in_some_case_and_not_in_others() {
    let mut fired = BTreeSet::new();
    let mut silent_somewhere = BTreeSet::new();
    for case in cases() {
        let report = check_case(&case, &ALL);
        let here: BTreeSet<String> = report.breaking().map(|f| f.rule.clone()).collect();
        for r in RULES {
            if !here.contains(r.id) {
                silent_somewhere.insert(r.id.to_string());
            }
        }
        fired.extend(here);
    }
    let missing: Vec<&str> = RULES
        .iter()
        .filter(|r| r.not_implemented.is_none() && !fired.contains(r.id))
        .map(|r| r.id)
        .collect();
    assert!(
        missing.is_empty(),
        "implemented rules without a firing case: {missing:?}"
    );
    assert!(RULES.iter().all(|r| silent_somewhere.contains(r.id)));
    let not_implemented: Vec<&str> = RULES
        .iter()
        .filter(|r| r.not_implemented.is_some())
        .map(|r| r.id)
        .collect();
    assert_eq!(not_implemented, ["FIELD_SAME_CPP_STRING_TYPE"]);
    assert_eq!(
        RULES.iter().filter(|r| !r.id.starts_with("GRPC_")).count(),
        64,
        "buf has 64 rules"
    );
}

#[test]
fn identical_versions_have_no_findings() {
    for case in ["identical", "file_options_unchanged"] {
        let report = check_case(case, &ALL);
        assert!(report.findings.is_empty(), "{case}: {:?}", report.findings);
        assert_eq!(report.verdict, None);
        assert_eq!(report.exit_code(), 0);
    }
}

#[test]
fn semver_verdicts_under_the_default_categories() {
    let expect = [
        ("identical", None),
        ("comment_only", Some(Bump::Patch)),
        ("field_added", Some(Bump::Minor)),
        ("enum_value_added", Some(Bump::Minor)),
        ("rpc_added", Some(Bump::Minor)),
        ("service_added", Some(Bump::Minor)),
        ("message_reserved_extended", Some(Bump::Patch)),
        // A rename deletes one name (not breaking on the wire: identical) and adds another.
        ("rpc_request_type_renamed_identical", Some(Bump::Minor)),
        ("rpc_response_type_renamed_identical", Some(Bump::Minor)),
        ("field_jstype_changed", Some(Bump::Patch)),
        ("field_uint32_to_uint64_widening", Some(Bump::Major)), // 32- vs 64-bit differ in JSON
        ("broken_increment", Some(Bump::Major)),
        ("enum_values_swapped", Some(Bump::Major)),
        ("rpc_deleted", Some(Bump::Major)),
    ];
    for (case, verdict) in expect {
        let report = check_case(case, &compat::DEFAULT_CATEGORIES);
        assert_eq!(report.verdict, verdict, "{case}: {:#?}", report.findings);
        assert_eq!(
            report.exit_code(),
            if verdict == Some(Bump::Major) { 100 } else { 0 },
            "{case}"
        );
    }
    // Under WIRE alone, widening uint32 to uint64 is safe.
    assert!(
        !check_case(
            "field_uint32_to_uint64_widening",
            &[Category::Wire, Category::Grpc]
        )
        .is_breaking()
    );
}

fn effect(case: &str, cats: &[Category], rule: &str) -> (Outcome, String) {
    let report = check_case(case, cats);
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == rule)
        .unwrap_or_else(|| panic!("{case}: no {rule} in {:#?}", report.findings));
    let c = f
        .confirmation
        .clone()
        .unwrap_or_else(|| panic!("{case}/{rule} not confirmed"));
    (c.outcome, c.effect)
}

#[test]
fn grpc_category_catches_what_wire_passes() {
    // buf's WIRE accepts int64 → int32; the GRPC rule reports it and the bytes show the truncation.
    assert!(!check_case("field_type_int64_to_int32", &[Category::Wire]).is_breaking());
    let (o, e) = effect(
        "field_type_int64_to_int32",
        &[Category::Grpc],
        "GRPC_FIELD_SAME_VALUE_RANGE",
    );
    assert_eq!(o, Outcome::Confirmed);
    assert!(e.contains("1099511627783 read as 7"), "{e}");
    let (o, e) = effect(
        "field_type_int32_to_uint32",
        &[Category::Grpc],
        "GRPC_FIELD_SAME_VALUE_RANGE",
    );
    assert_eq!(o, Outcome::Confirmed);
    assert!(e.contains("-5 read as 4294967291"), "{e}");
    let (o, e) = effect(
        "field_type_uint64_to_int64",
        &[Category::Grpc],
        "GRPC_FIELD_SAME_VALUE_RANGE",
    );
    assert_eq!(o, Outcome::Confirmed);
    assert!(e.contains("18446744073709551615 read as -1"), "{e}");
    // Deleting an RPC passes WIRE; old clients get UNIMPLEMENTED.
    assert!(!check_case("rpc_deleted", &[Category::Wire]).is_breaking());
    let (o, e) = effect("rpc_deleted", &[Category::Grpc], "GRPC_RPC_NO_DELETE");
    assert_eq!(o, Outcome::Confirmed);
    assert!(e.contains("UNIMPLEMENTED"), "{e}");
    let (o, _) = effect(
        "service_deleted",
        &[Category::Grpc],
        "GRPC_SERVICE_NO_DELETE",
    );
    assert_eq!(o, Outcome::Confirmed);
    // A widening is not reported.
    assert!(
        !check_case(
            "field_type_int32_to_int64",
            &[Category::Wire, Category::Grpc]
        )
        .is_breaking()
    );
}

#[test]
fn confirmations_show_the_effect() {
    let wire = [Category::Wire];
    let json = [Category::WireJson];
    let (o, e) = effect(
        "field_type_string_to_int64",
        &wire,
        "FIELD_WIRE_COMPATIBLE_TYPE",
    );
    assert_eq!(o, Outcome::Confirmed);
    assert!(
        e.contains("decode error") && e.contains("invalid wire type"),
        "{e}"
    );
    let (o, e) = effect(
        "field_type_bytes_to_string",
        &wire,
        "FIELD_WIRE_COMPATIBLE_TYPE",
    );
    assert_eq!(o, Outcome::Confirmed);
    assert!(e.contains("decode error"), "non-UTF-8 bytes: {e}");
    let (o, e) = effect(
        "field_deleted",
        &json,
        "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
    );
    assert_eq!(o, Outcome::Confirmed);
    assert!(e.contains("field 3 kept as unknown"), "{e}");
    let (o, e) = effect(
        "field_singular_to_repeated_string",
        &wire,
        "FIELD_WIRE_COMPATIBLE_CARDINALITY",
    );
    assert_eq!(o, Outcome::Confirmed, "{e}");
    let (o, e) = effect(
        "field_repeated_to_singular_message",
        &wire,
        "FIELD_WIRE_COMPATIBLE_CARDINALITY",
    );
    assert_eq!(o, Outcome::Confirmed, "several elements become one: {e}");
    let (o, e) = effect("field_renamed", &json, "FIELD_SAME_NAME");
    assert_eq!(o, Outcome::JsonOnly, "{e}");
    let (o, e) = effect("proto2_default_changed", &wire, "FIELD_SAME_DEFAULT");
    assert_eq!(o, Outcome::Confirmed);
    assert!(e.contains("10 (unset) read as 20 (unset)"), "{e}");
    let (o, e) = effect("rpc_request_type_changed", &wire, "RPC_SAME_REQUEST_TYPE");
    assert_eq!(o, Outcome::Confirmed, "{e}");
    let (o, e) = effect(
        "map_to_repeated_entry",
        &[Category::File],
        "FIELD_SAME_TYPE",
    );
    assert_eq!(
        o,
        Outcome::Confirmed,
        "duplicate keys collapse in a map: {e}"
    );
    // A type renamed to an identical one: buf's WIRE reports it, the bytes say otherwise.
    let (o, e) = effect(
        "rpc_request_type_renamed_identical",
        &[Category::File],
        "RPC_SAME_REQUEST_TYPE",
    );
    assert_eq!(o, Outcome::Refuted, "{e}");
    let (o, _) = effect(
        "rpc_response_type_renamed_identical",
        &[Category::File],
        "RPC_SAME_RESPONSE_TYPE",
    );
    assert_eq!(o, Outcome::Refuted);
}

#[test]
fn broken_example_is_major_with_confirmed_effects() {
    let report = check_case("broken_increment", &compat::DEFAULT_CATEGORIES);
    assert_eq!(report.verdict, Some(Bump::Major));
    let effects: Vec<String> = report
        .breaking()
        .map(|f| {
            let c = f.confirmation.as_ref().unwrap();
            assert_eq!(c.outcome, Outcome::Confirmed, "{f:?}");
            c.effect.clone()
        })
        .collect();
    let all = effects.join("\n");
    assert!(all.contains("1099511627783 read as 7"), "{all}");
    assert!(all.contains("invalid wire type"), "{all}");
    assert!(all.contains("UNIMPLEMENTED"), "{all}");
}

/// Prints how the corpus's breaking findings (all categories) fared on the wire.
#[test]
fn confirmation_counts_over_the_corpus() {
    let (mut confirmed, mut json_only, mut refuted, mut total) = (0, 0, 0, 0);
    for case in cases() {
        for f in check_case(&case, &ALL).breaking() {
            total += 1;
            match f.confirmation.as_ref().unwrap().outcome {
                Outcome::Confirmed => confirmed += 1,
                Outcome::JsonOnly => json_only += 1,
                Outcome::Refuted => refuted += 1,
            }
        }
    }
    eprintln!(
        "breaking findings over the corpus: {total}; confirmed {confirmed}, JSON only {json_only}, refuted {refuted}"
    );
    assert_eq!(total, confirmed + json_only + refuted);
    assert!(confirmed > 0 && refuted > 0 && json_only > 0);
}
