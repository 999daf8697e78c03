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
    assert_eq!(
        not_implemented,
        Vec::<&str>::new(),
        "all of buf's rules are implemented"
    );
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
    for (case, shown) in [
        ("field_type_int64_to_int32", "1099511627783 read as 7"),
        ("field_type_int32_to_uint32", "-5 read as 4294967291"),
        (
            "field_type_uint64_to_int64",
            "18446744073709551615 read as -1",
        ),
    ] {
        let (o, e) = effect(case, &[Category::Grpc], "GRPC_FIELD_SAME_VALUE_RANGE");
        assert_eq!(o, Outcome::Confirmed);
        assert!(e.contains(shown), "{e}");
    }
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
    const WIRE: &[Category] = &[Category::Wire];
    const JSON: &[Category] = &[Category::WireJson];
    const FILE: &[Category] = &[Category::File];
    // Case, categories, rule, the outcome on the wire, and what the effect shows.
    type Expected = (
        &'static str,
        &'static [Category],
        &'static str,
        Outcome,
        &'static [&'static str],
    );
    let expected: [Expected; 11] = [
        (
            "field_type_string_to_int64",
            WIRE,
            "FIELD_WIRE_COMPATIBLE_TYPE",
            Outcome::Confirmed,
            &["decode error", "invalid wire type"],
        ),
        // Non-UTF-8 bytes.
        (
            "field_type_bytes_to_string",
            WIRE,
            "FIELD_WIRE_COMPATIBLE_TYPE",
            Outcome::Confirmed,
            &["decode error"],
        ),
        (
            "field_deleted",
            JSON,
            "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
            Outcome::Confirmed,
            &["field 3 kept as unknown"],
        ),
        (
            "field_singular_to_repeated_string",
            WIRE,
            "FIELD_WIRE_COMPATIBLE_CARDINALITY",
            Outcome::Confirmed,
            &[],
        ),
        // Several elements become one.
        (
            "field_repeated_to_singular_message",
            WIRE,
            "FIELD_WIRE_COMPATIBLE_CARDINALITY",
            Outcome::Confirmed,
            &[],
        ),
        (
            "field_renamed",
            JSON,
            "FIELD_SAME_NAME",
            Outcome::JsonOnly,
            &[],
        ),
        (
            "proto2_default_changed",
            WIRE,
            "FIELD_SAME_DEFAULT",
            Outcome::Confirmed,
            &["10 (unset) read as 20 (unset)"],
        ),
        (
            "rpc_request_type_changed",
            WIRE,
            "RPC_SAME_REQUEST_TYPE",
            Outcome::Confirmed,
            &[],
        ),
        // Duplicate keys collapse in a map.
        (
            "map_to_repeated_entry",
            FILE,
            "FIELD_SAME_TYPE",
            Outcome::Confirmed,
            &[],
        ),
        // A type renamed to an identical one: buf's WIRE reports it, the bytes say otherwise.
        (
            "rpc_request_type_renamed_identical",
            FILE,
            "RPC_SAME_REQUEST_TYPE",
            Outcome::Refuted,
            &[],
        ),
        (
            "rpc_response_type_renamed_identical",
            FILE,
            "RPC_SAME_RESPONSE_TYPE",
            Outcome::Refuted,
            &[],
        ),
    ];
    for (case, cats, rule, outcome, shows) in expected {
        let (o, e) = effect(case, cats, rule);
        assert_eq!(o, outcome, "{case}/{rule}: {e}");
        for s in shows {
            assert!(e.contains(s), "{case}/{rule}: {e}");
        }
    }
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
