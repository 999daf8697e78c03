//! Reflection (v1 and v1alpha) and health on the testbed's port, checked with Rust clients.

use crate::common::{channel, start};
use port::deployment::Deployment;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

/// One reflection request on a new stream, and its one response.
pub(crate) async fn reflect(
    client: &mut ServerReflectionClient<tonic::transport::Channel>,
    request: MessageRequest,
) -> MessageResponse {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    response.message_response.unwrap()
}

/// The services the server's reflection lists, sorted, without health and reflection.
async fn listed_api_services(server: &port::RunningServer) -> Vec<String> {
    let mut client = ServerReflectionClient::new(channel(server).await);
    let MessageResponse::ListServicesResponse(list) =
        reflect(&mut client, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list")
    };
    let mut names: Vec<String> = list
        .service
        .into_iter()
        .map(|s| s.name)
        .filter(|name| name.starts_with("increment."))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn reflection_lists_only_what_the_port_serves() {
    for (deployment, want) in [
        (Deployment::V1Only, vec!["increment.v1.Incrementer"]),
        (Deployment::V2Only, vec!["increment.v2.Incrementer"]),
        (
            Deployment::V1Retired,
            vec!["increment.v1.Incrementer", "increment.v2.Incrementer"],
        ),
    ] {
        let server = start(deployment).await;
        assert_eq!(listed_api_services(&server).await, want, "{deployment}");
    }
    let backend = port::server::start_layout(
        "127.0.0.1:0".parse().unwrap(),
        port::Layout::Direct(vec![services::Api::V1]),
        "v1 backend",
    )
    .await
    .unwrap();
    assert_eq!(
        listed_api_services(&backend).await,
        ["increment.v1.Incrementer"]
    );
}

#[tokio::test]
async fn reflection_follows_the_route_table_as_it_changes() {
    let server = start(Deployment::V1Only).await;
    assert_eq!(
        listed_api_services(&server).await,
        ["increment.v1.Incrementer"]
    );
    let router = server.router.clone().unwrap();
    router.add(port::deployment::v2_backend()).await.unwrap();
    assert_eq!(
        listed_api_services(&server).await,
        ["increment.v1.Incrementer", "increment.v2.Incrementer"]
    );
    router.drain("v1").await.unwrap();
    router.remove("v1").await.unwrap();
    assert_eq!(
        listed_api_services(&server).await,
        ["increment.v2.Incrementer"]
    );
}

#[tokio::test]
async fn reflection_lists_every_service_and_resolves_the_v2_request_type() {
    let server = start(Deployment::SideBySide).await;
    let mut client = ServerReflectionClient::new(channel(&server).await);

    let MessageResponse::ListServicesResponse(list) =
        reflect(&mut client, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "increment.v1.Incrementer",
            "increment.v2.Incrementer",
        ]
    );

    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &mut client,
        MessageRequest::FileContainingSymbol("increment.v2.IncrementRequest".into()),
    )
    .await
    else {
        panic!("expected a file descriptor")
    };
    use prost::Message;
    let file = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())
        .unwrap();
    assert_eq!(file.package(), "increment.v2");
    let request = file
        .message_type
        .iter()
        .find(|m| m.name() == "IncrementRequest")
        .unwrap();
    let fields: Vec<(&str, i32)> = request
        .field
        .iter()
        .map(|f| (f.name(), f.number()))
        .collect();
    assert_eq!(fields, [("value", 1), ("step", 2), ("request_id", 3)]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_reports_each_service_and_not_found_for_unknown_ones() {
    for deployment in [Deployment::SideBySide, Deployment::Direct] {
        let server = start(deployment).await;
        let mut health = HealthClient::new(channel(&server).await);
        for service in ["", "increment.v1.Incrementer", "increment.v2.Incrementer"] {
            let reply = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                reply.status(),
                ServingStatus::Serving,
                "{deployment} {service:?}"
            );
        }
        let status = health
            .check(HealthCheckRequest {
                service: "increment.v3.Incrementer".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn health_follows_the_deployment() {
    let server = start(Deployment::V1Only).await;
    let mut health = HealthClient::new(channel(&server).await);
    let status_of = |name: &str| HealthCheckRequest {
        service: name.into(),
    };
    let v1 = health
        .check(status_of("increment.v1.Incrementer"))
        .await
        .unwrap();
    assert_eq!(v1.into_inner().status(), ServingStatus::Serving);
    let v2 = health
        .check(status_of("increment.v2.Incrementer"))
        .await
        .unwrap();
    assert_eq!(v2.into_inner().status(), ServingStatus::NotServing);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_says_not_serving_while_an_upstream_is_unreachable() {
    // A port nothing listens on: bound, its number taken, then closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let upstream: port::upstream::UpstreamSpec = format!("v1=1.0.0@{dead_addr}").parse().unwrap();
    let table = router::RouteTable::new(
        port::deployment::catalog().unwrap(),
        vec![upstream.backend().unwrap()],
    )
    .unwrap();
    let server = port::server::start_layout(
        "127.0.0.1:0".parse().unwrap(),
        port::Layout::Routed(table),
        "router over a dead upstream",
    )
    .await
    .unwrap();
    let mut health = HealthClient::new(channel(&server).await);
    let mut updates = health
        .watch(HealthCheckRequest {
            service: "increment.v1.Incrementer".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let not_serving = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(update) = updates.message().await.unwrap() {
            if update.status() == ServingStatus::NotServing {
                return;
            }
        }
    })
    .await;
    assert!(
        not_serving.is_ok(),
        "health kept saying SERVING for an upstream nobody can reach"
    );
}
