//! The ADS's order and its ACK/NACK bookkeeping, seen by a plain gRPC client speaking for one
//! node (no Envoy needed): the listener waits for the node's ACK of the clusters; a NACK is
//! recorded with its message and shown by `route list`, and the rejected version is not sent
//! again; an admin change pushes the next version.

use super::bed::Bed;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// How long a response that must not come is waited for.
const QUIET: Duration = Duration::from_millis(300);

fn request(type_url: &str, answering: Option<&DiscoveryResponse>) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_string(),
        version_info: answering
            .map(|r| r.version_info.clone())
            .unwrap_or_default(),
        response_nonce: answering.map(|r| r.nonce.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

async fn next(responses: &mut Streaming<DiscoveryResponse>) -> DiscoveryResponse {
    tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("a response within 10 s")
        .expect("the stream holds")
        .expect("the stream is open")
}

async fn quiet(responses: &mut Streaming<DiscoveryResponse>) {
    if let Ok(response) = tokio::time::timeout(QUIET, responses.message()).await {
        panic!("nothing expected, got {response:?}");
    }
}

#[tokio::test]
async fn the_listener_waits_for_the_clusters_ack_and_a_nack_is_recorded_not_resent() {
    let bed = Bed::start("127.0.0.1:0").await;
    let channel = client::connect(bed.xds).await.expect("a channel");
    let (send, requests) = mpsc::channel(8);
    let mut first = request(CDS, None);
    first.node = Some(Node {
        id: "raw-node".to_string(),
        cluster: "protocol".to_string(),
        ..Default::default()
    });
    send.send(first).await.expect("sent");
    let mut responses = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(ReceiverStream::new(requests))
        .await
        .expect("a stream")
        .into_inner();
    let clusters = next(&mut responses).await;
    assert_eq!(clusters.type_url, CDS);
    // The listener is asked for, but the clusters are not acknowledged yet: nothing comes.
    send.send(request(LDS, None)).await.expect("sent");
    quiet(&mut responses).await;
    send.send(request(CDS, Some(&clusters)))
        .await
        .expect("sent");
    let listener = next(&mut responses).await;
    assert_eq!(listener.type_url, LDS);
    assert_eq!(listener.version_info, clusters.version_info);
    // Rejected: recorded with the message, not sent again.
    let mut nack = request(LDS, Some(&clusters));
    nack.response_nonce = listener.nonce.clone();
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: "the listener is not to my taste".to_string(),
        details: Vec::new(),
    });
    send.send(nack).await.expect("sent");
    quiet(&mut responses).await;
    let status = bed.xds_status().await;
    let node = status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"] == "raw-node")
        .cloned()
        .expect("the node is listed");
    assert_eq!(node["current"], false, "{node:#}");
    let lds = node["types"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["type_url"] == LDS)
        .cloned()
        .expect("its listener state");
    assert_eq!(
        lds["nack_error"], "the listener is not to my taste",
        "{lds:#}"
    );
    assert_eq!(
        lds["nack_version"],
        listener.version_info.as_str(),
        "{lds:#}"
    );
    assert_eq!(lds["acked_version"], "", "{lds:#}");
    // A change: the next version comes, clusters first; the admin call answers once this
    // node acknowledged it all, so the node answers while the call waits.
    let v2 = format!("v2=2.0.0@{}", bed.v2);
    let add = ["add", v2.as_str()];
    let node_answers = async {
        let clusters_next = next(&mut responses).await;
        send.send(request(CDS, Some(&clusters_next)))
            .await
            .expect("sent");
        let listener_next = next(&mut responses).await;
        send.send(request(LDS, Some(&listener_next)))
            .await
            .expect("sent");
        (clusters_next, listener_next)
    };
    let (output, (clusters_next, listener_next)) = tokio::join!(bed.route(&add), node_answers);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(clusters_next.type_url, CDS);
    assert_eq!(listener_next.type_url, LDS);
    assert!(
        clusters_next.version_info.parse::<u64>().ok() > clusters.version_info.parse::<u64>().ok(),
        "{} after {}",
        clusters_next.version_info,
        clusters.version_info
    );
    assert_eq!(clusters_next.resources.len(), 2, "v1's and v2's clusters");
    let status = bed.xds_status().await;
    assert_eq!(
        status["version"],
        clusters_next.version_info.as_str(),
        "{status:#}"
    );
    assert_eq!(status["nodes"][0]["current"], true, "{status:#}");
}
