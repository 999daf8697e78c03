//! The version router: steering by path and `x-api-version`, the arrangements it refuses, and
//! runtime changes of the route table under live traffic with health following along.

use crate::common::{channel, start, v2_client, v2_request};
use client::IncrementerClient;
use port::deployment::{Deployment, catalog, v1_backend, v2_backend};
use router::{API_VERSION_HEADER, Backend, RouteTable, TableError};
use semver::Version;
use services::pb::v1;
use services::{Api, IncrementerV2};
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The testbed's own client of `api` on `server`, sending `requirement` if given.
async fn client_of(
    server: &port::RunningServer,
    api: Api,
    requirement: Option<&str>,
) -> IncrementerClient {
    let client = IncrementerClient::new(api, channel(server).await);
    match requirement {
        Some(requirement) => client.with_requirement(&requirement.parse().unwrap()),
        None => client,
    }
}

fn v2_next() -> Backend {
    let version = Version::new(2, 1, 0);
    Backend::in_process(
        "v2-next",
        version.clone(),
        "increment.v2",
        IncrementerV2::server(&version),
    )
}

#[tokio::test]
async fn highest_satisfying_version_wins_and_every_reply_names_it() {
    let server = start(Deployment::SideBySide).await;
    server
        .router
        .as_ref()
        .unwrap()
        .add(v2_next())
        .await
        .unwrap();
    // The router's header and v2's own served_by_version agree.
    let mut v2 = v2_client(&server).await;
    let reply = v2.increment(v2_request(1, None, 1)).await.unwrap();
    assert_eq!(reply.metadata().get(API_VERSION_HEADER).unwrap(), "2.1.0");
    assert_eq!(reply.into_inner().served_by_version, "2.1.0");
    for (requirement, expected) in [
        ("=2.0.0", "2.0.0"),
        ("~2.0", "2.0.0"),
        (">=1, <3", "2.1.0"),
        ("^2.1", "2.1.0"),
    ] {
        let client = client_of(&server, Api::V2, Some(requirement)).await;
        let reply = client.increment(1, None, 1).await.unwrap();
        assert_eq!(reply.served_by.as_deref(), Some(expected), "{requirement}");
    }

    let reply = client_of(&server, Api::V1, None)
        .await
        .increment(1, None, 1)
        .await
        .unwrap();
    assert_eq!(reply.served_by.as_deref(), Some("1.0.0"));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unsatisfiable_requirement_is_unimplemented_naming_what_exists() {
    let server = start(Deployment::SideBySide).await;
    let client = client_of(&server, Api::V2, Some("^3")).await;
    let status = client.increment(1, None, 1).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("^3"), "{}", status.message());
    assert!(status.message().contains("2.0.0"), "{}", status.message());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_requirement_is_invalid_argument_and_the_server_keeps_serving() {
    let server = start(Deployment::SideBySide).await;
    let mut client = v2_client(&server).await;
    for garbage in ["banana", "^^2", "2.0.0.0"] {
        // Sent raw: the testbed's client only sends requirements that parse.
        let mut request = Request::new(v2_request(1, None, 1));
        request
            .metadata_mut()
            .insert(API_VERSION_HEADER, garbage.parse().unwrap());
        let status = client.increment(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{garbage}");
        assert!(status.message().contains(garbage), "{}", status.message());
    }
    assert_eq!(
        client
            .increment(v2_request(1, None, 1))
            .await
            .unwrap()
            .into_inner()
            .value,
        2
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn retired_v1_paths_are_served_by_v2() {
    let server = start(Deployment::V1Retired).await;
    let client = client_of(&server, Api::V1, None).await;
    let reply = client.increment(41, None, 1).await.unwrap();
    assert_eq!(
        (reply.value, reply.served_by.as_deref()),
        (42, Some("2.0.0"))
    );
    server.shutdown().await.unwrap();
}

#[test]
fn the_table_refuses_v1_serving_v2_requests_but_allows_the_reverse() {
    let err = RouteTable::new(
        catalog().unwrap(),
        vec![v1_backend().also_serving("increment.v2")],
    )
    .unwrap_err();
    assert!(matches!(err, TableError::Incompatible { .. }), "{err}");
    // compat's findings, with what they do on the wire: v1 would drop v2's step.
    let message = err.to_string();
    for says in ["name \"step\"", "confirmed by prost", "1099511627783"] {
        assert!(message.contains(says), "{says}: {message}");
    }

    let table = RouteTable::new(
        catalog().unwrap(),
        vec![v2_backend().also_serving("increment.v1")],
    );
    assert!(table.is_ok());
    assert!(
        catalog()
            .unwrap()
            .check_superset("increment.v2", "increment.v1")
            .is_ok()
    );
}

#[test]
fn the_table_refuses_duplicates_and_unmanaged_packages() {
    let twice = RouteTable::new(catalog().unwrap(), vec![v1_backend(), v1_backend()]);
    assert!(matches!(twice, Err(TableError::DuplicateName(_))));
    let same_version = RouteTable::new(
        catalog().unwrap(),
        vec![v2_backend(), {
            let mut other = v2_backend();
            other.name = "v2-copy".into();
            other
        }],
    );
    assert!(matches!(
        same_version,
        Err(TableError::AmbiguousVersion { .. })
    ));
    let unmanaged = RouteTable::new(
        catalog().unwrap(),
        vec![v1_backend().also_serving("shop.v1")],
    );
    assert!(matches!(
        unmanaged,
        Err(TableError::UnmanagedPackage { .. })
    ));
}

#[tokio::test]
async fn without_the_router_v2_requests_reach_v1_and_get_silently_wrong_answers() {
    let server = start(Deployment::NaiveProxyToV1).await;
    let mut client = v2_client(&server).await;
    let reply = client
        .increment(v2_request(41, Some(5), 9))
        .await
        .unwrap()
        .into_inner();
    // The call succeeds, yet v1 ignored the step and the request id: 42 instead of 46.
    assert_eq!(reply.value, 42);
    assert_eq!(reply.request_id, 0);
    assert_eq!(reply.served_by_version, "");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_services_are_unimplemented() {
    let server = start(Deployment::SideBySide).await;
    let mut health = HealthClient::new(channel(&server).await);
    // Health is served beside the routed packages: the router passes it through.
    assert!(
        health
            .check(HealthCheckRequest {
                service: String::new()
            })
            .await
            .is_ok()
    );
    let mut grpc = tonic::client::Grpc::new(channel(&server).await);
    let codec = tonic_prost::ProstCodec::<v1::IncrementRequest, v1::IncrementReply>::default();
    for path in [
        "/increment.v3.Incrementer/Increment",
        "/increment.v1.Incrementer/Decrement",
    ] {
        grpc.ready().await.unwrap();
        let status = grpc
            .unary(
                Request::new(v1::IncrementRequest { value: 1 }),
                path.parse().unwrap(),
                codec.clone(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
        assert!(status.message().contains(&path[1..]), "{path}: {status:?}");
    }
    server.shutdown().await.unwrap();
}

async fn health_of(
    health: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> ServingStatus {
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// Reads a health Watch stream until it reports `status` (it may repeat earlier statuses first).
async fn wait_for(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
    status: ServingStatus,
) {
    let seen = async {
        while let Some(update) = watch.message().await.unwrap() {
            if update.status() == status {
                return;
            }
        }
        panic!("watch stream ended before reporting {status:?}");
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), seen)
        .await
        .unwrap_or_else(|_| panic!("no {status:?} from the health watch within 10 s"));
}

#[tokio::test]
async fn drain_and_remove_let_in_flight_streams_finish_and_health_follows() {
    let server = start(Deployment::SideBySide).await;
    let handle = server.router.clone().unwrap();
    let mut health = HealthClient::new(channel(&server).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "increment.v2.Incrementer".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    // A v2 stream is open and has had one answer before the drain starts.
    let (send, mut replies) = crate::common::open_v2_stream(&server).await;
    let mut client = v2_client(&server).await;

    let drain = tokio::spawn({
        let handle = handle.clone();
        async move { handle.drain("v2").await }
    });
    // New requests are refused while draining...
    let refused = loop {
        match client.increment(v2_request(1, None, 1)).await {
            Err(status) => break status,
            Ok(_) => tokio::task::yield_now().await,
        }
    };
    assert_eq!(refused.code(), Code::Unimplemented);
    wait_for(&mut watch, ServingStatus::NotServing).await;
    // ...while the open stream keeps being served by the backend it started on.
    send.send(v2_request(10, Some(2), 2)).await.unwrap();
    let reply = replies.message().await.unwrap().unwrap();
    assert_eq!(
        (reply.value, reply.served_by_version.as_str()),
        (12, "2.0.0")
    );
    assert!(!drain.is_finished(), "drain waits for the open stream");
    drop(send);
    assert!(replies.message().await.unwrap().is_none());
    drain.await.unwrap().unwrap();

    handle.remove("v2").await.unwrap();
    let names: Vec<String> = handle
        .table()
        .backends()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["v1"]);
    assert_eq!(
        health_of(&mut health, "increment.v2.Incrementer").await,
        ServingStatus::NotServing
    );
    assert_eq!(
        health_of(&mut health, "increment.v1.Incrementer").await,
        ServingStatus::Serving
    );

    handle.add(v2_backend()).await.unwrap();
    wait_for(&mut watch, ServingStatus::Serving).await;
    assert_eq!(
        client
            .increment(v2_request(1, None, 1))
            .await
            .unwrap()
            .into_inner()
            .value,
        2
    );
    drop(watch);
    server.shutdown().await.unwrap();
}
