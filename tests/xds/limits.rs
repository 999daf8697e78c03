//! What an ADS client can make the control plane hold is bounded: streams open at once
//! (`--xds-max-streams`) and nodes tracked (`--xds-max-nodes`), each refused with
//! RESOURCE_EXHAUSTED naming its flag past the bound, and a stream silent past
//! `--xds-first-request-timeout-ms` is closed with DEADLINE_EXCEEDED; a second stream of a
//! node connected already is refused with ALREADY_EXISTS naming it; Delta xDS is refused as
//! not supported yet; a stream whose first request names no node is refused. No Envoy needed:
//! the client is a plain gRPC client with Envoy's types.

use super::bed::Bed;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// An open ADS stream: its requests' sender (kept, so that it stays open) and its responses.
type Open = (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>);

/// Opens a stream as node `id` (none: no node) subscribing to clusters; the first response, or
/// the status that refused it.
async fn open(bed: &Bed, id: Option<&str>) -> Result<(Open, DiscoveryResponse), Status> {
    let channel = client::connect(bed.xds)
        .await
        .map_err(|e| Status::unavailable(format!("{e:#}")))?;
    let mut ads = AggregatedDiscoveryServiceClient::new(channel);
    let (send, requests) = mpsc::channel(4);
    let first = DiscoveryRequest {
        node: id.map(|id| Node {
            id: id.to_string(),
            cluster: "limits".to_string(),
            ..Default::default()
        }),
        type_url: CDS.to_string(),
        ..Default::default()
    };
    send.send(first)
        .await
        .map_err(|_| Status::internal("the request stream closed"))?;
    let mut responses = ads
        .stream_aggregated_resources(ReceiverStream::new(requests))
        .await?
        .into_inner();
    let response = responses
        .message()
        .await?
        .ok_or_else(|| Status::internal("the stream ended"))?;
    Ok(((send, responses), response))
}

#[tokio::test]
async fn streams_and_nodes_are_bounded_and_delta_is_refused() {
    let bed = Bed::start_with(
        "127.0.0.1:0",
        &[
            "--xds-max-streams",
            "3",
            "--xds-max-nodes",
            "2",
            "--xds-first-request-timeout-ms",
            // Long enough for the next open to find the silent stream holding its place.
            "3000",
        ],
    )
    .await;
    let (first, response) = open(&bed, Some("node-1")).await.expect("a first stream");
    assert_eq!(response.type_url, CDS);
    assert!(!response.resources.is_empty(), "v1's cluster");
    let (second, _) = open(&bed, Some("node-2")).await.expect("a second node");
    // Another node, while both nodes tracked are connected: refused.
    let err = open(&bed, Some("node-3")).await.expect_err("a third node");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("--xds-max-nodes"), "{err:?}");
    // A second stream of a connected node: refused, naming it.
    let err = open(&bed, Some("node-1")).await.expect_err("node-1 twice");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("\"node-1\""), "{err:?}");
    // A stream that never sends its first request holds the third place, until it is closed.
    let channel = client::connect(bed.xds).await.expect("a channel");
    let (_silent_send, requests) = mpsc::channel::<DiscoveryRequest>(1);
    let mut silent = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(ReceiverStream::new(requests))
        .await
        .expect("a silent stream")
        .into_inner();
    let err = open(&bed, Some("node-3"))
        .await
        .expect_err("a fourth stream");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("--xds-max-streams"), "{err:?}");
    let err = silent
        .message()
        .await
        .expect_err("the silent stream closed");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().contains("--xds-first-request-timeout-ms"),
        "{err:?}"
    );
    drop((first, second));
    // No node: refused, not held.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let err = open(&bed, None).await.expect_err("no node");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // Delta: not supported yet.
    let channel = client::connect(bed.xds).await.expect("a channel");
    let (_send, requests) = mpsc::channel::<DeltaDiscoveryRequest>(1);
    let err = AggregatedDiscoveryServiceClient::new(channel)
        .delta_aggregated_resources(ReceiverStream::new(requests))
        .await
        .expect_err("delta is refused");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert!(err.message().contains("State of the World"), "{err:?}");
}
