//! `testbed probe` through a gateway with an `x-api-version` pin sent as metadata: each version's
//! clients reach the version the pin names.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_pins_the_version_through_the_gateway() {
    let v1 = backend("v1", &[]).await;
    let v2 = backend("v2", &[]).await;
    // v2 also serves increment.v1 (v1 retired onto it, as the router allows): unpinned v1
    // calls go to the highest version serving the package.
    let gw = gateway(&[
        "--upstream".into(),
        format!("v1=1.0.0@{}", v1.addr),
        "--upstream".into(),
        format!("v2=2.0.0@{}+increment.v1", v2.addr),
    ])
    .await;
    let via = gw.addr.to_string();
    let run = |extra: &[&str]| servers("grpc", &v1, &v2, &[&["--via", &via][..], extra].concat());
    let served = |codes: &[&str], version: &str| -> Vec<String> {
        codes.iter().map(|c| format!("{c} ({version})")).collect()
    };
    let old_served_by = |version: &str| {
        let rows = [
            row(I1, I1, &["OK", "OK"], "ok").status(served(&["OK", "OK"], version)),
            row(S1, S1, &["OK"], "ok").status(served(&["OK"], version)),
        ];
        // v2's replies carry its served_by_version, which a v1 client cannot read.
        match version {
            "2.0.0" => rows.map(|r| r.unknown(&["3 (served_by_version)"])),
            _ => rows,
        }
    };
    let new_served_by_v2 = [
        row(I2, I2, &["OK", "OK"], "ok").status(served(&["OK", "OK"], "2.0.0")),
        row(S2, S2, &["OK"], "ok").status(served(&["OK"], "2.0.0")),
    ];

    // No metadata: every call goes to v2.
    let (code, text, report) = probe(&run(&[])).await;
    check_direction(&report, "old", &old_served_by("2.0.0"));
    check_direction(&report, "new", &new_served_by_v2);
    assert_eq!(report["directions"][0]["headers"], serde_json::json!([]));
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("metadata"), "{text}");

    // Pinned to ^1 for every call: old clients are served by v1; new clients' increment.v2
    // has no 1.x version, and the gateway turns them away.
    let (code, text, report) = probe(&run(&["-H", "X-Api-Version: ^1"])).await;
    check_direction(&report, "old", &old_served_by("1.0.0"));
    let unimplemented = |n: usize| vec!["UNIMPLEMENTED".to_string(); n];
    check_direction(
        &report,
        "new",
        &[
            row(I2, I2, &["OK", "OK"], "broken").status(unimplemented(2)),
            row(S2, S2, &["OK"], "broken").status(unimplemented(1)),
        ],
    );
    let refusal = &report["directions"][1]["methods"][0]["calls"][0]["target"]["message"];
    assert!(
        refusal
            .as_str()
            .is_some_and(|m| m.contains("increment.v2 with x-api-version ^1")),
        "{refusal}"
    );
    for d in 0..2 {
        assert_eq!(
            report["directions"][d]["headers"],
            serde_json::json!(["x-api-version: ^1"])
        );
    }
    assert!(
        text.contains(&format!(
            "old clients (old descriptors) → gateway {via} (compared with their own server {}), every call with metadata x-api-version: ^1",
            v1.addr
        )),
        "{text}"
    );
    assert_eq!(code, 0, "{text}");

    // Pinned for old clients only: old clients on v1, new clients on v2.
    let (code, text, report) = probe(&run(&["--old-header", "x-api-version: ^1"])).await;
    check_direction(&report, "old", &old_served_by("1.0.0"));
    check_direction(&report, "new", &new_served_by_v2);
    assert_eq!(
        report["directions"][0]["headers"],
        serde_json::json!(["x-api-version: ^1"])
    );
    assert_eq!(report["directions"][1]["headers"], serde_json::json!([]));
    assert_eq!(code, 0, "{text}");

    // A header that is not one is refused as a bad flag, before any call.
    for (bad, says) in [
        ("x-api-version ^1", "expected 'NAME: VALUE'"),
        ("x api: 1", "not a valid metadata name"),
        ("grpc-timeout: 1S", "reserved by gRPC"),
    ] {
        let stderr = refused(&run(&["-H", bad]), 2).await;
        assert!(stderr.contains(says), "{bad}: {stderr}");
    }
}
