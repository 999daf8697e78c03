//! The route table's selection, validation and change rules, as unit tests.

use super::{RouteTable, TableError};
use crate::GrpcPath;
use crate::testing::{V1, V2, backend, catalog, descriptors, table};
use crate::{ApiCatalog, CatalogError};
use semver::VersionReq;

/// The name of the backend `table` picks for a `demo.v2` request with `requirement`.
fn pick(table: &RouteTable, requirement: Option<&str>) -> Result<String, tonic::Code> {
    pick_for(table, V2, requirement).map_err(|status| status.code())
}

fn pick_for(
    table: &RouteTable,
    package: &str,
    requirement: Option<&str>,
) -> Result<String, tonic::Status> {
    let path = format!("/{package}.Counter/Add");
    let path = GrpcPath::parse(&path).unwrap();
    let requirement = requirement.map(|r| VersionReq::parse(r).unwrap());
    table
        .select(&path, requirement.as_ref(), crate::ChoicePoint::random())
        .map(|route| route.backend.name.clone())
}

#[test]
fn duplicate_backend_names_are_refused() {
    let err = RouteTable::new(
        catalog(),
        vec![backend("a", "1.0.0", V1), backend("a", "2.0.0", V2)],
    )
    .unwrap_err();
    assert!(
        matches!(&err, TableError::DuplicateName(name) if name == "a"),
        "{err}"
    );
    let err = table(vec![backend("a", "1.0.0", V1)])
        .with_backend(backend("a", "1.1.0", V1))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "a backend named \"a\" is already in the route table"
    );
}

#[test]
fn unmanaged_packages_are_refused() {
    // A package the descriptors do not have at all cannot even be in the catalog.
    assert!(matches!(
        ApiCatalog::from_encoded(&descriptors(), &[V1, "demo.v3"]),
        Err(CatalogError::UnknownPackage(p)) if p == "demo.v3"
    ));
    // A backend implementing a package the catalog does not manage.
    let v1_only = ApiCatalog::from_encoded(&descriptors(), &[V1]).unwrap();
    let err = RouteTable::new(v1_only.clone(), vec![backend("v2", "2.0.0", V2)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "backend \"v2\": package demo.v2 is not managed by this router (managed: demo.v1)"
    );
    // A backend routed a package the catalog does not manage.
    let err = RouteTable::new(
        catalog(),
        vec![backend("v2", "2.0.0", V2).also_serving("other.v1")],
    )
    .unwrap_err();
    assert!(
        matches!(&err, TableError::UnmanagedPackage { backend, package, .. }
            if backend == "v2" && package == "other.v1"),
        "{err}"
    );
}

#[test]
fn two_active_backends_of_one_version_are_refused_but_a_draining_one_may_share_it() {
    let err = RouteTable::new(
        catalog(),
        vec![backend("a", "1.0.0", V1), backend("b", "1.0.0", V1)],
    )
    .unwrap_err();
    assert!(matches!(err, TableError::AmbiguousVersion { .. }), "{err}");
    assert!(!err.to_string().contains("build metadata"), "{err}");
    let err = RouteTable::new(
        catalog(),
        vec![backend("a", "1.0.0", V1), backend("b", "1.0.0+build5", V1)],
    )
    .unwrap_err();
    assert!(err.to_string().contains("build metadata"), "{err}");
    let t = table(vec![backend("a", "1.0.0", V1)])
        .with_draining("a")
        .unwrap()
        .with_backend(backend("b", "1.0.0", V1))
        .unwrap();
    assert_eq!(pick_for(&t, V1, None).unwrap(), "b");
}

#[test]
fn the_highest_satisfying_version_is_selected() {
    let t = table(vec![
        backend("old", "1.0.0", V2),
        backend("new", "2.0.0", V2),
        backend("mid", "1.2.0", V2),
    ]);
    assert_eq!(pick(&t, None).unwrap(), "new");
    assert_eq!(pick(&t, Some("*")).unwrap(), "new");
    assert_eq!(pick(&t, Some("^1")).unwrap(), "mid");
    assert_eq!(pick(&t, Some("^1.1")).unwrap(), "mid");
    assert_eq!(pick(&t, Some("~1.0")).unwrap(), "old");
    assert_eq!(pick(&t, Some(">=1, <2")).unwrap(), "mid");
    let refused = pick_for(&t, V2, Some(">=3")).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    assert_eq!(
        refused.message(),
        "no backend serves demo.v2 with x-api-version >=3; \
         versions serving demo.v2: 2.0.0, 1.2.0, 1.0.0"
    );
}

#[test]
fn weights_split_only_among_the_backends_that_satisfy_a_request() {
    let t = table(vec![
        backend("v2a", "2.0.0", V2),
        backend("v2b", "2.1.0", V2).with_weight(Some(0)),
    ]);
    // Weight 0: the canary takes only what asks for it.
    for _ in 0..50 {
        assert_eq!(pick(&t, None).unwrap(), "v2a");
    }
    assert_eq!(pick(&t, Some("=2.1.0")).unwrap(), "v2b");
    let t = t.with_weight("v2b", Some(100)).unwrap();
    assert_eq!(pick(&t, None).unwrap(), "v2b");
    assert_eq!(pick(&t, Some("~2.0")).unwrap(), "v2a");
    // Cleared: the highest version takes everything again.
    let t = t.with_weight("v2a", Some(100)).unwrap();
    let t = t
        .with_weight("v2b", None)
        .unwrap()
        .with_weight("v2a", None)
        .unwrap();
    assert_eq!(pick(&t, None).unwrap(), "v2b");
    assert_eq!(t.backends()[1].weight, None);
    assert!(matches!(
        t.with_weight("v9", Some(1)),
        Err(TableError::UnknownBackend(_))
    ));
}

#[test]
fn a_sticky_header_keeps_each_caller_on_one_side_of_the_split() {
    let t = table(vec![
        backend("v2a", "2.0.0", V2),
        backend("v2b", "2.1.0", V2).with_weight(Some(50)),
    ])
    .with_sticky_header(Some(http::HeaderName::from_static("x-user-id")));
    let path = GrpcPath::parse("/demo.v2.Counter/Add").unwrap();
    let mut sides = std::collections::HashSet::new();
    for user in 0..40 {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-user-id", format!("user-{user}").parse().unwrap());
        let first = t
            .select(&path, None, t.choice_point(path.package, &headers))
            .unwrap();
        let first = first.backend.name.clone();
        for _ in 0..5 {
            let again = t
                .select(&path, None, t.choice_point(path.package, &headers))
                .unwrap();
            assert_eq!(again.backend.name, first, "user-{user} moved");
        }
        sides.insert(first);
    }
    assert_eq!(sides.len(), 2, "40 users at 50 % all fell on one side");
}

#[test]
fn a_draining_backend_is_not_selected() {
    let t = table(vec![backend("a", "2.0.0", V1), backend("b", "1.0.0", V1)]);
    let t = t.with_draining("a").unwrap();
    assert_eq!(pick_for(&t, V1, None).unwrap(), "b");
    assert_eq!(
        pick_for(&t, V1, Some("^2")).unwrap_err().code(),
        tonic::Code::Unimplemented
    );
    let t = t.with_draining("b").unwrap();
    assert!(!t.is_served(V1));
    assert_eq!(
        pick_for(&t, V1, None).unwrap_err().message(),
        "no backend serves demo.v1 with any version; versions serving demo.v1: none"
    );
    // Still in the table, as draining, until removed.
    let names: Vec<(String, bool)> = t
        .backends()
        .into_iter()
        .map(|b| (b.name, b.draining))
        .collect();
    assert_eq!(names, [("a".into(), true), ("b".into(), true)]);
    assert_eq!(t.without("a").unwrap().backends().len(), 1);
}

#[test]
fn an_older_package_is_refused_to_a_backend_lacking_its_fields() {
    // demo.v1 requests lack nothing demo.v2 has: v2 may serve them.
    let t = table(vec![backend("v2", "2.0.0", V2).also_serving(V1)]);
    assert_eq!(pick_for(&t, V1, None).unwrap(), "v2");
    // The reverse would drop `step` on the floor.
    let err =
        RouteTable::new(catalog(), vec![backend("v1", "1.0.0", V1).also_serving(V2)]).unwrap_err();
    let err = err.to_string();
    assert!(
        err.starts_with(
            "backend \"v1\" cannot serve demo.v2 requests: demo.v1 is not a wire-compatible \
             superset of demo.v2: "
        ),
        "{err}"
    );
    // The refusal quotes compat's findings with what they do on the wire.
    for says in [
        "\"step\"",
        "confirmed by prost",
        "kept as unknown",
        "GRPC_RPC_NO_DELETE",
    ] {
        assert!(err.contains(says), "{says}: {err}");
    }
    // Also when it comes as a replacement.
    let err = table(vec![backend("v1", "1.0.0", V1)])
        .with_replaced(backend("v1", "1.0.0", V1).also_serving(V2))
        .unwrap_err();
    assert!(matches!(err, TableError::Incompatible { .. }), "{err}");
}

#[test]
fn changes_to_unknown_backends_are_refused() {
    let t = table(vec![backend("a", "1.0.0", V1)]);
    for err in [
        t.with_draining("x").unwrap_err(),
        t.without("x").unwrap_err(),
        t.with_replaced(backend("x", "1.0.0", V1)).unwrap_err(),
    ] {
        assert!(
            matches!(&err, TableError::UnknownBackend(n) if n == "x"),
            "{err}"
        );
    }
}

#[test]
fn without_a_requirement_a_prerelease_is_chosen_only_when_nothing_stable_serves() {
    let both = table(vec![
        backend("stable", "2.0.0", V2),
        backend("rc", "2.1.0-rc.1", V2),
    ]);
    assert_eq!(pick(&both, None).unwrap(), "stable");
    assert_eq!(pick(&both, Some("*")).unwrap(), "stable");
    assert_eq!(pick(&both, Some("^2")).unwrap(), "stable");
    // A requirement that names the prerelease opts in to it.
    assert_eq!(pick(&both, Some(">=2.1.0-rc.1")).unwrap(), "rc");
    assert_eq!(pick(&both, Some("=2.1.0-rc.1")).unwrap(), "rc");

    let only_rc = table(vec![backend("rc", "2.1.0-rc.1", V2)]);
    assert_eq!(pick(&only_rc, None).unwrap(), "rc");
    assert_eq!(
        pick(&only_rc, Some("^2")).unwrap_err(),
        tonic::Code::Unimplemented
    );
}

#[test]
fn a_newer_stable_release_beats_an_older_prerelease_and_vice_versa() {
    let t = table(vec![
        backend("rc", "2.1.0-rc.1", V2),
        backend("next", "2.1.0", V2),
    ]);
    assert_eq!(pick(&t, None).unwrap(), "next");
    let t = table(vec![
        backend("old", "1.9.0", V2),
        backend("rc", "2.0.0-rc.1", V2),
    ]);
    assert_eq!(pick(&t, None).unwrap(), "old");
}

/// A build of `demo.v2` declaring `services` (full names) and nothing else.
fn build_declaring(services: &[&str]) -> crate::Build {
    let file = prost_types::FileDescriptorProto {
        name: Some("demo/v2.proto".into()),
        package: Some(V2.into()),
        service: services
            .iter()
            .map(|full| prost_types::ServiceDescriptorProto {
                name: full.rsplit_once('.').map(|(_, name)| name.to_string()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let set = prost_types::FileDescriptorSet { file: vec![file] };
    crate::Build::of(&prost_reflect::DescriptorPool::from_file_descriptor_set(set).unwrap())
}

#[test]
fn a_breaking_build_takes_only_what_nothing_else_satisfies_and_keeps_weight_zero() {
    let counter = "demo.v2.Counter";
    let breaking = build_declaring(&[counter]).breaking("the build of a (2.0.0): FIELD_SAME_TYPE");
    let table = table(vec![
        backend("a", "2.0.0", V2).with_build(build_declaring(&[counter])),
        backend("b", "2.1.0", V2).with_build(breaking),
    ]);
    for _ in 0..50 {
        assert_eq!(pick(&table, None).as_deref(), Ok("a"));
        assert_eq!(pick(&table, Some("^2")).as_deref(), Ok("a"));
    }
    assert_eq!(pick(&table, Some("^2.1")).as_deref(), Ok("b"));
    let err = table.with_weight("b", Some(10)).unwrap_err();
    assert!(
        matches!(&err, TableError::PinnedOnly { backend, .. } if backend == "b"),
        "{err}"
    );
    assert!(table.with_weight("b", Some(0)).is_ok());
    let info = table.backends();
    assert_eq!(info[1].weight, Some(0));
    assert!(
        info[1]
            .breaks
            .as_deref()
            .is_some_and(|b| b.contains("FIELD_SAME_TYPE"))
    );
    // Reflection describes the build calls would reach.
    let described = |req: Option<&str>| {
        let req = req.map(|r| VersionReq::parse(r).unwrap());
        table
            .build_for(req.as_ref())
            .map(|(name, _)| name.to_string())
    };
    assert_eq!(described(None).as_deref(), Some("a"));
    assert_eq!(described(Some("^2")).as_deref(), Some("a"));
    assert_eq!(described(Some("=2.1.0")).as_deref(), Some("b"));
    assert_eq!(described(Some("^3")), None);
}

#[test]
fn a_service_is_available_while_a_backend_whose_build_declares_it_serves_its_package() {
    let counter = "demo.v2.Counter";
    let without = table(vec![
        backend("a", "2.0.0", V2).with_build(build_declaring(&[])),
    ]);
    assert!(!without.is_service_available(V2, counter));
    let with = without
        .with_backend(backend("b", "2.1.0", V2).with_build(build_declaring(&[counter])))
        .unwrap();
    assert!(with.is_service_available(V2, counter));
    // No build known: the catalog's word; a package routed with +PACKAGE: the catalog vouches.
    let unknown = table(vec![backend("c", "2.0.0", V2).also_serving(V1)]);
    assert!(unknown.is_service_available(V2, counter));
    let retired = table(vec![
        backend("d", "2.0.0", V2)
            .with_build(build_declaring(&[counter]))
            .also_serving(V1),
    ]);
    assert!(retired.is_service_available(V1, "demo.v1.Counter"));
}
