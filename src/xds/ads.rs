//! The Aggregated Discovery Service, State of the World: one gRPC stream per Envoy carrying
//! clusters, endpoints, listeners and routes. Each stream pushes what its node subscribed to
//! whenever the served version changes (or the node's subscription does), at most one response
//! per type awaiting an answer, in the order xDS asks for: clusters, then their endpoints once
//! the clusters are sent (Envoy acknowledges new clusters only once their endpoints came), then
//! the listener and routes once the node acknowledged both: a route never names a cluster the
//! node has not taken yet. Make before break: while a node's routes are older than the version,
//! its clusters response keeps the clusters those routes name, and the clusters the version
//! dropped go only once the node acknowledged the new routes (a second clusters response of
//! the same version); the node counts as having the version's clusters only then. An
//! answer carrying the nonce of the response it answers is an ACK, or a NACK when it holds an
//! `error_detail`; a version a node rejected is not sent to it again. Delta xDS is refused as
//! not supported yet.

use super::compile::{self, LISTEN_METADATA, TYPES};
use super::plane::ControlPlane;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::value::Kind;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses a stream holds before the node reads them: one is ever outstanding, so this is
/// only room for the final error.
const OUTBOX: usize = 4;

/// The ADS over one control plane.
#[derive(Debug)]
pub struct Ads {
    /// The state it serves and records.
    pub plane: Arc<ControlPlane>,
    /// Streams open at once (`--xds-max-streams`); one past it is refused.
    pub streams: Arc<Semaphore>,
    /// The listener address of a node whose metadata names none (`--xds-listener-addr`).
    pub default_listen: SocketAddr,
    /// How long a stream may stay open before its first request
    /// (`--xds-first-request-timeout-ms`): a silent one would hold a stream's place.
    pub first_request_timeout: Duration,
}

type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Responses<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Responses<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(
                "the control plane has as many ADS streams open as it allows (serve \
                 --xds-max-streams)",
            )
        })?;
        let inbound = request.into_inner();
        let (outbox, responses) = mpsc::channel(OUTBOX);
        let plane = self.plane.clone();
        let default_listen = self.default_listen;
        let first_request_timeout = self.first_request_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let ran = run(
                &plane,
                inbound,
                &outbox,
                default_listen,
                first_request_timeout,
            );
            if let Err(status) = ran.await {
                tracing::warn!(code = ?status.code(), reason = status.message(), "xDS stream refused");
                let _ = outbox.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "Delta xDS is not supported yet: use State of the World (ads_config api_type: GRPC)",
        ))
    }
}

/// One response sent.
#[derive(Debug)]
struct Sent {
    version: u64,
    nonce: String,
    /// The names it answered.
    names: Vec<String>,
    /// Whether it held exactly the version's resources (a clusters response may also hold
    /// clusters the node's older routes still name).
    complete: bool,
    /// What it was sent from.
    snapshot: Arc<super::plane::Snapshot>,
}

/// What one stream sent of one type URL and what its node asked for.
#[derive(Debug, Default)]
struct Subscription {
    /// The resource names asked for (empty: all).
    names: Vec<String>,
    /// The last response.
    sent: Option<Sent>,
    /// Whether the node has yet to answer it.
    awaiting: bool,
    /// A version the node rejected: not sent again.
    rejected: Option<u64>,
}

/// Closes the node's stream in the plane's records however the stream ends.
struct Connected<'a> {
    plane: &'a ControlPlane,
    id: String,
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.plane.with_nodes(|nodes| nodes.disconnect(&self.id));
    }
}

/// Serves one stream until the node or the server closes it.
async fn run(
    plane: &ControlPlane,
    mut inbound: Streaming<DiscoveryRequest>,
    outbox: &mpsc::Sender<Result<DiscoveryResponse, Status>>,
    default_listen: SocketAddr,
    first_request_timeout: Duration,
) -> Result<(), Status> {
    let first = tokio::time::timeout(first_request_timeout, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no first request within {} ms of the stream's opening (serve --xds-first-request-timeout-ms)",
                first_request_timeout.as_millis()
            ))
        })??;
    let Some(first) = first else {
        return Ok(());
    };
    let node = first
        .node
        .clone()
        .ok_or_else(|| Status::invalid_argument("the stream's first request names no node"))?;
    if node.id.is_empty() {
        return Err(Status::invalid_argument(
            "the node has no id (node.id in its bootstrap)",
        ));
    }
    let listen = listen_of(&node, default_listen)?;
    plane.with_nodes(|nodes| nodes.connect(&node.id, &node.cluster))?;
    let connected = Connected {
        plane,
        id: node.id.clone(),
    };
    tracing::info!(node = %node.id, %listen, "xDS node connected");
    let mut stream = NodeStream {
        subscriptions: HashMap::new(),
        nonce: 0,
        listen,
        routed: None,
    };
    let mut snapshots = plane.watch();
    stream.handle(plane, &connected.id, first);
    loop {
        if !stream.send_pending(&snapshots, outbox).await {
            return Ok(());
        }
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(request)) => stream.handle(plane, &connected.id, request),
                // The node went away (or its stream broke): nothing to answer.
                Ok(None) | Err(_) => return Ok(()),
            },
            changed = snapshots.changed() => if changed.is_err() {
                return Ok(());
            },
            () = outbox.closed() => return Ok(()),
        }
    }
}

/// Where `node`'s listener listens: its metadata's [`LISTEN_METADATA`], else `default`.
fn listen_of(
    node: &envoy_types::pb::envoy::config::core::v3::Node,
    default: SocketAddr,
) -> Result<SocketAddr, Status> {
    let value = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(LISTEN_METADATA))
        .and_then(|v| v.kind.as_ref());
    match value {
        None => Ok(default),
        Some(Kind::StringValue(text)) => text.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "node metadata {LISTEN_METADATA} is {text:?}, not IP:PORT"
            ))
        }),
        Some(_) => Err(Status::invalid_argument(format!(
            "node metadata {LISTEN_METADATA} is not a string IP:PORT"
        ))),
    }
}

/// One stream's state.
#[derive(Debug)]
struct NodeStream {
    subscriptions: HashMap<String, Subscription>,
    nonce: u64,
    /// Where its node's listener listens.
    listen: SocketAddr,
    /// The snapshot whose routes the node acknowledged last: its clusters stay until the node
    /// acknowledges newer routes.
    routed: Option<Arc<super::plane::Snapshot>>,
}

/// Whether `subscriptions` hold `type_url` at `version`: sent (and, with `acked`, answered
/// without a rejection), or not subscribed to at all.
fn holds(
    subscriptions: &HashMap<String, Subscription>,
    type_url: &str,
    version: u64,
    acked: bool,
) -> bool {
    subscriptions.get(type_url).is_none_or(|s| {
        s.sent.as_ref().is_some_and(|sent| sent.version == version)
            && (!acked || (!s.awaiting && s.rejected != Some(version)))
    })
}

impl NodeStream {
    /// Records one request: a subscription, an ACK or a NACK.
    fn handle(&mut self, plane: &ControlPlane, id: &str, request: DiscoveryRequest) {
        if !TYPES.contains(&request.type_url.as_str()) {
            tracing::debug!(node = %id, type_url = %request.type_url, "xDS: a type not served");
            return;
        }
        let subscription = self
            .subscriptions
            .entry(request.type_url.clone())
            .or_default();
        // The answer to the last response, while one is awaited: Envoy's later requests of the
        // type (a changed subscription, say) carry the same nonce, and are no answer, so
        // an ACK never follows a NACK of the same response.
        let answered = subscription.sent.as_ref().filter(|sent| {
            subscription.awaiting
                && !request.response_nonce.is_empty()
                && sent.nonce == request.response_nonce
        });
        let rejected = request.error_detail.is_some();
        // A NACK carries the version the node still runs, an ACK the one it took: an answer
        // of neither kind is no answer (the node keeps it pending, as it would a response
        // not yet read), only a subscription update.
        let answered =
            answered.filter(|sent| rejected || request.version_info == sent.version.to_string());
        let (version, complete) = match answered {
            Some(sent) => (Some(sent.version), sent.complete),
            None => (None, false),
        };
        if let Some(sent) = answered.filter(|_| !rejected && request.type_url == compile::ROUTE) {
            self.routed = Some(sent.snapshot.clone());
        }
        let mut names = request.resource_names;
        names.sort();
        names.dedup();
        subscription.names = names;
        plane.with_nodes(|nodes| match (version, &request.error_detail) {
            (Some(version), Some(error)) => {
                tracing::warn!(node = %id, type_url = %request.type_url, version, error = %error.message, "xDS NACK");
                nodes.nack(id, &request.type_url, version, &error.message);
            }
            // Clusters kept for older routes: not yet the version's own.
            (Some(version), None) if complete => nodes.ack(id, &request.type_url, version),
            _ => nodes.seen(id, &request.type_url),
        });
        if let Some(version) = version {
            subscription.awaiting = false;
            if rejected {
                subscription.rejected = Some(version);
            }
        }
    }

    /// The resources of `type_url` to send from `snapshot`, and whether they are exactly the
    /// version's: clusters also keep those the node's older routes name.
    fn resources(
        &self,
        snapshot: &super::plane::Snapshot,
        type_url: &str,
        names: &[String],
    ) -> (Vec<envoy_types::pb::google::protobuf::Any>, bool) {
        let Some(mut resources) = snapshot.resources.of(type_url, names) else {
            return (vec![compile::listener_of(self.listen)], true);
        };
        let mut complete = true;
        if type_url == compile::CLUSTER
            && let Some(routed) = self
                .routed
                .as_ref()
                .filter(|r| r.version != snapshot.version)
        {
            for (name, cluster) in &routed.resources.clusters {
                if !snapshot.resources.clusters.iter().any(|(n, _)| n == name) {
                    resources.push(cluster.clone());
                    complete = false;
                }
            }
        }
        (resources, complete)
    }

    /// Sends every response the node needs now and may take (see the module's order);
    /// `false` once the stream is closed.
    async fn send_pending(
        &mut self,
        snapshots: &tokio::sync::watch::Receiver<Option<Arc<super::plane::Snapshot>>>,
        outbox: &mpsc::Sender<Result<DiscoveryResponse, Status>>,
    ) -> bool {
        let Some(snapshot) = snapshots.borrow().clone() else {
            return true;
        };
        let version = snapshot.version;
        for type_url in TYPES {
            let subscriptions = &self.subscriptions;
            let ready = match type_url {
                compile::CLUSTER => true,
                compile::ENDPOINT => holds(subscriptions, compile::CLUSTER, version, false),
                _ => {
                    holds(subscriptions, compile::CLUSTER, version, true)
                        && holds(subscriptions, compile::ENDPOINT, version, true)
                }
            };
            let routes_taken = holds(subscriptions, compile::ROUTE, version, true);
            let Some(subscription) = subscriptions.get(type_url) else {
                continue;
            };
            if !ready || subscription.awaiting || subscription.rejected == Some(version) {
                continue;
            }
            let needed = match &subscription.sent {
                None => true,
                Some(sent) => {
                    sent.version != version
                        || sent.names != subscription.names
                        || (!sent.complete && routes_taken)
                }
            };
            if !needed {
                continue;
            }
            let names = subscription.names.clone();
            let (resources, complete) = self.resources(&snapshot, type_url, &names);
            self.nonce += 1;
            let response = DiscoveryResponse {
                version_info: version.to_string(),
                resources,
                type_url: type_url.to_string(),
                nonce: self.nonce.to_string(),
                ..Default::default()
            };
            if outbox.send(Ok(response)).await.is_err() {
                return false;
            }
            let Some(subscription) = self.subscriptions.get_mut(type_url) else {
                continue;
            };
            subscription.sent = Some(Sent {
                version,
                nonce: self.nonce.to_string(),
                names,
                complete,
                snapshot: snapshot.clone(),
            });
            subscription.awaiting = true;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::plane::Snapshot;
    use envoy_types::pb::google::rpc::Status as RpcStatus;

    /// A stream of node "n" that sent version 5 of the clusters as nonce 1, awaiting its answer.
    fn sent_clusters(plane: &ControlPlane) -> NodeStream {
        plane.with_nodes(|nodes| nodes.connect("n", "c")).unwrap();
        let snapshot = Arc::new(Snapshot {
            version: 5,
            resources: compile::Resources::default(),
        });
        let subscription = Subscription {
            names: Vec::new(),
            sent: Some(Sent {
                version: 5,
                nonce: "1".to_string(),
                names: Vec::new(),
                complete: true,
                snapshot,
            }),
            awaiting: true,
            rejected: None,
        };
        NodeStream {
            subscriptions: HashMap::from([(compile::CLUSTER.to_string(), subscription)]),
            nonce: 1,
            listen: "127.0.0.1:10000".parse().unwrap(),
            routed: None,
        }
    }

    fn answer(version: &str, error: Option<&str>) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: compile::CLUSTER.to_string(),
            version_info: version.to_string(),
            response_nonce: "1".to_string(),
            error_detail: error.map(|message| RpcStatus {
                code: 3,
                message: message.to_string(),
                details: Vec::new(),
            }),
            ..Default::default()
        }
    }

    fn clusters_state(plane: &ControlPlane) -> port::admin::pb::XdsTypeState {
        use port::admin::fleet::Fleet;
        plane.status().nodes[0].types[0].clone()
    }

    #[test]
    fn a_request_after_a_nack_with_its_nonce_is_no_ack() {
        let plane = ControlPlane::new(8, std::time::Duration::ZERO);
        let mut stream = sent_clusters(&plane);
        stream.handle(&plane, "n", answer("", Some("bad cluster")));
        assert_eq!(clusters_state(&plane).nack_version, "5");
        // Envoy's next requests of the type carry the same nonce (and its old version).
        stream.handle(&plane, "n", answer("", None));
        stream.handle(&plane, "n", answer("5", None));
        assert_eq!(clusters_state(&plane).acked_version, "");
        assert_eq!(stream.subscriptions[compile::CLUSTER].rejected, Some(5));
    }

    #[test]
    fn an_ack_names_the_version_it_answers() {
        let plane = ControlPlane::new(8, std::time::Duration::ZERO);
        let mut stream = sent_clusters(&plane);
        // The nonce, but not the version sent: no answer yet.
        stream.handle(&plane, "n", answer("4", None));
        assert_eq!(clusters_state(&plane).acked_version, "");
        assert!(stream.subscriptions[compile::CLUSTER].awaiting);
        stream.handle(&plane, "n", answer("5", None));
        assert_eq!(clusters_state(&plane).acked_version, "5");
        assert!(!stream.subscriptions[compile::CLUSTER].awaiting);
    }
}
