//! The compiled resources of small tables: what Envoy is asked to do per rule.

use super::*;
use prost::Message;

fn backend(
    name: &str,
    version: &str,
    address: &str,
    serves: &[&str],
    weight: Option<u32>,
) -> Backend {
    Backend {
        name: name.to_string(),
        version: version.to_string(),
        api: serves[0].to_string(),
        address: address.to_string(),
        serves: serves.iter().map(|s| s.to_string()).collect(),
        weight,
        ..Default::default()
    }
}

fn routes(resources: &Resources) -> route::RouteConfiguration {
    route::RouteConfiguration::decode(resources.routes[0].1.value.as_slice()).unwrap()
}

#[test]
fn pins_weights_and_a_retired_package_become_routes_and_replicas_endpoints() {
    let table = [
        backend(
            "v2",
            "2.0.0",
            "127.0.0.1:7002,127.0.0.1:7003",
            &["increment.v2", "increment.v1"],
            Some(90),
        ),
        backend(
            "v2b",
            "2.1.0",
            "127.0.0.1:7004",
            &["increment.v2"],
            Some(10),
        ),
    ];
    let resources = compile(&table).unwrap();
    assert_eq!(resources.clusters.len(), 2);
    let assignment =
        endpoint::ClusterLoadAssignment::decode(resources.endpoints[0].1.value.as_slice()).unwrap();
    assert_eq!(assignment.endpoints[0].lb_endpoints.len(), 2);
    let config = routes(&resources);
    let routes = &config.virtual_hosts[0].routes;
    // increment.v1, retired onto v2: rewritten.
    let v1 = routes
        .iter()
        .find(|r| r.name.starts_with("increment.v1"))
        .unwrap();
    let Some(route::route::Action::Route(action)) = &v1.action else {
        panic!("{v1:?}")
    };
    assert_eq!(action.prefix_rewrite, "/increment.v2.");
    // increment.v2 without a header: the weighted split.
    let unpinned = routes
        .iter()
        .rfind(|r| r.name.starts_with("increment.v2"))
        .unwrap();
    let Some(route::route::Action::Route(action)) = &unpinned.action else {
        panic!("{unpinned:?}")
    };
    let Some(route::route_action::ClusterSpecifier::WeightedClusters(split)) =
        &action.cluster_specifier
    else {
        panic!("{action:?}")
    };
    let weights: Vec<(String, Option<UInt32Value>)> = split
        .clusters
        .iter()
        .map(|c| (c.name.clone(), c.weight))
        .collect();
    assert_eq!(weights.len(), 2, "{weights:?}");
    // Any other x-api-version: refused, the versions named.
    let refused = routes
        .iter()
        .find(|r| {
            r.name.starts_with("increment.v2")
                && matches!(r.action, Some(route::route::Action::DirectResponse(_)))
        })
        .unwrap();
    let Some(route::route::Action::DirectResponse(direct)) = &refused.action else {
        unreachable!()
    };
    assert_eq!(direct.status, 404);
    let Some(core::data_source::Specifier::InlineString(body)) =
        direct.body.as_ref().and_then(|b| b.specifier.clone())
    else {
        panic!("{direct:?}")
    };
    assert!(
        body.contains("cannot evaluate") && body.contains("2.0.0, 2.1.0"),
        "{body}"
    );
}

#[test]
fn what_envoy_cannot_reach_is_refused() {
    let tls = [backend(
        "v1",
        "1.0.0",
        "https://127.0.0.1:7001",
        &["increment.v1"],
        None,
    )];
    let err = compile(&tls).unwrap_err().to_string();
    assert!(err.contains("TLS upstreams are not supported"), "{err}");
    let named = [backend(
        "v1",
        "1.0.0",
        "localhost:7001",
        &["increment.v1"],
        None,
    )];
    let err = compile(&named).unwrap_err().to_string();
    assert!(err.contains("IP addresses only"), "{err}");
}

#[test]
fn a_refusal_names_at_most_twenty_versions_so_envoy_takes_its_body() {
    let many: Vec<Backend> = (0..500)
        .map(|k| {
            backend(
                &format!("v{k}"),
                &format!("1.{k}.0"),
                "127.0.0.1:7001",
                &["increment.v1"],
                None,
            )
        })
        .collect();
    let config = routes(&compile(&many).unwrap());
    for route in &config.virtual_hosts[0].routes {
        if let Some(route::route::Action::DirectResponse(direct)) = &route.action {
            let Some(core::data_source::Specifier::InlineString(body)) =
                direct.body.as_ref().and_then(|b| b.specifier.clone())
            else {
                panic!("{direct:?}")
            };
            assert!(body.len() < 1024 && body.contains("and 480 more"), "{body}");
        }
    }
}

#[test]
fn no_names_are_every_cluster_but_no_endpoints_and_no_routes() {
    let table = [backend(
        "v1",
        "1.0.0",
        "127.0.0.1:7001",
        &["increment.v1"],
        None,
    )];
    let resources = compile(&table).unwrap();
    assert_eq!(resources.of(CLUSTER, &[]).unwrap().len(), 1);
    assert!(resources.of(ENDPOINT, &[]).unwrap().is_empty());
    assert!(resources.of(ROUTE, &[]).unwrap().is_empty());
    let star = ["*".to_string()];
    assert_eq!(resources.of(ROUTE, &star).unwrap().len(), 1);
    let named = [ROUTES_NAME.to_string()];
    assert_eq!(resources.of(ROUTE, &named).unwrap().len(), 1);
}
