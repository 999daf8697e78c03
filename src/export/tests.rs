//! The plan's decisions on tables built by hand: what the major-pin regex takes, which rules a
//! package gets, and what each format refuses.

use super::*;

fn backend(name: &str, version: &str, serves: &[&str], weight: Option<u32>) -> Backend {
    Backend {
        name: name.into(),
        version: version.into(),
        api: serves[0].into(),
        serves: serves.iter().map(|s| s.to_string()).collect(),
        weight,
        ..Default::default()
    }
}

fn args(format: Format) -> ExportArgs {
    ExportArgs {
        format,
        namespace: None,
        host: "testbed".into(),
        service_host: Vec::new(),
        service_port: 50051,
    }
}

#[test]
fn the_major_pin_regex_takes_exactly_values_that_mean_the_whole_major() {
    let versions: Vec<Version> = ["1.9.0", "2.0.0", "2.1.0", "2.9.9", "2.1.0-rc.1", "3.0.0"]
        .iter()
        .map(|v| Version::parse(v).unwrap())
        .collect();
    let whole = VersionReq::parse(">=2.0.0, <3.0.0").unwrap();
    let re = regex::Regex::new(&major_pin_regex(2)).unwrap();
    for value in ["2", "^2", "~2", "=2", "2.x", "2.*", "2.x.x", "^2.*", "2.X"] {
        assert!(re.is_match(value), "{value}");
        let req = VersionReq::parse(value).unwrap();
        for v in &versions {
            assert_eq!(req.matches(v), whole.matches(v), "{value} on {v}");
        }
    }
    for value in [
        "^2.1", "~2.0", "2.0", ">=2", "12", "=2.0.0", "^2, <3", " 2", "3",
    ] {
        assert!(!re.is_match(value), "{value}");
    }
}

#[test]
fn a_package_gets_exact_pins_major_pins_a_refusal_and_its_default_in_that_order() {
    let backends = [
        backend("v1", "1.0.0", &["demo.v1"], None),
        backend("v2", "2.0.0", &["demo.v2", "demo.v1"], None),
        backend("rc", "3.0.0-rc.1", &["demo.v3"], None),
        Backend {
            draining: true,
            ..backend("old", "0.9.0", &["demo.v1"], None)
        },
    ];
    let plan = plan(&backends, &args(Format::Istio)).unwrap();
    let names: Vec<&str> = plan.packages.iter().map(|p| p.package.as_str()).collect();
    assert_eq!(names, ["demo.v1", "demo.v2", "demo.v3"]);
    let v1 = &plan.packages[0].rules;
    let headers: Vec<&HeaderMatch> = v1.iter().map(|r| &r.header).collect();
    assert_eq!(
        headers,
        [
            &HeaderMatch::Exact("=2.0.0".into()),
            &HeaderMatch::Exact("=1.0.0".into()),
            &HeaderMatch::Regex(major_pin_regex(2)),
            &HeaderMatch::Regex(major_pin_regex(1)),
            &HeaderMatch::Any,
            &HeaderMatch::Absent,
        ]
    );
    // The draining 0.9.0 gets nothing; unpinned calls go to the highest stable version.
    assert_eq!(v1.last().unwrap().split[0].0.backend, "v2");
    assert!(v1[4].split.is_empty());
    // A major only a prerelease has gets no pin (the router refuses ^3 there too), but the
    // prerelease is the default when nothing stable serves the package.
    let v3 = &plan.packages[2].rules;
    assert!(
        !v3.iter()
            .any(|r| r.header == HeaderMatch::Regex(major_pin_regex(3)))
    );
    assert_eq!(v3.last().unwrap().split[0].0.backend, "rc");
}

#[test]
fn each_format_refuses_what_it_cannot_say() {
    let retired = [
        backend("v1", "1.0.0", &["demo.v1"], None),
        backend("v2", "2.0.0", &["demo.v2", "demo.v1"], None),
    ];
    let plan_of = |backends: &[Backend], args: &ExportArgs| plan(backends, args).unwrap();
    let gateway = args(Format::GatewayApi);
    let err = documents(&plan_of(&retired, &gateway), &gateway).unwrap_err();
    assert!(err.to_string().contains("no path rewrite"), "{err}");

    let half_retired = [
        backend("v1", "1.0.0", &["demo.v1"], Some(50)),
        backend("v2", "2.0.0", &["demo.v2", "demo.v1"], Some(50)),
    ];
    let istio = args(Format::Istio);
    let err = documents(&plan_of(&half_retired, &istio), &istio).unwrap_err();
    assert!(err.to_string().contains("different path rewrite"), "{err}");
    assert!(documents(&plan_of(&retired, &istio), &istio).is_ok());

    let thirds = [
        backend("a", "2.0.0", &["demo.v2"], Some(1)),
        backend("b", "2.1.0", &["demo.v2"], Some(2)),
    ];
    let err = documents(&plan_of(&thirds, &istio), &istio).unwrap_err();
    assert!(err.to_string().contains("whole percentages"), "{err}");
    assert!(documents(&plan_of(&thirds, &gateway), &gateway).is_ok());

    // Two versions behind one Service: subsets in Istio, impossible in Gateway API.
    let shared = ExportArgs {
        service_host: vec!["a=demo".parse().unwrap(), "b=demo".parse().unwrap()],
        ..args(Format::GatewayApi)
    };
    let err = documents(&plan_of(&thirds, &shared), &shared).unwrap_err();
    assert!(err.to_string().contains("no subsets"), "{err}");
    let shared = ExportArgs {
        format: Format::Istio,
        ..shared
    };
    let mixed = [
        backend("a", "2.0.0", &["demo.v2"], Some(50)),
        backend("b", "2.1.0", &["demo.v2"], Some(50)),
    ];
    let documents = documents(&plan_of(&mixed, &shared), &shared).unwrap();
    assert_eq!(
        documents.len(),
        2,
        "one VirtualService, one DestinationRule"
    );
    assert_eq!(documents[1]["spec"]["subsets"].as_array().unwrap().len(), 2);
}

#[test]
fn service_hosts_are_given_or_derived_and_bad_ones_refused() {
    assert!(
        "v2=incrementer-v2.shop.svc.cluster.local"
            .parse::<ServiceHost>()
            .is_ok()
    );
    for bad in ["v2", "=host", "v2=Upper", "v2=-dash", "v2=a..b"] {
        assert!(bad.parse::<ServiceHost>().is_err(), "{bad}");
    }
    let args = args(Format::Istio);
    assert_eq!(service_host("v2/increment.v1", &args).unwrap(), "v2");
    assert_eq!(service_host("Canary_B", &args).unwrap(), "canary-b");
    let err = service_host("9lives", &args).unwrap_err();
    assert!(
        err.to_string().contains("--service-host 9lives=HOST"),
        "{err}"
    );
}

#[test]
fn a_version_too_long_for_a_label_and_a_host_that_is_no_dns_name_are_refused() {
    let long = format!("2.0.0-{}", "a".repeat(60));
    let err = plan(
        &[backend("v2", &long, &["demo.v2"], None)],
        &args(Format::Istio),
    )
    .unwrap_err();
    assert!(err.to_string().contains("63 characters"), "{err}");
    assert!(dns_name("testbed.shop.svc.cluster.local").is_ok());
    assert!(dns_name("Testbed").is_err() && dns_name("").is_err());
}
