//! The Aggregated Discovery Service, State of the World: one gRPC stream per Envoy carrying
//! clusters, endpoints, listeners and routes. Each stream pushes what its node subscribed to
//! whenever the served version changes (or the node's subscription does), at most one response
//! per type awaiting an answer, in the order xDS asks for: clusters, then their endpoints once
//! the clusters are sent (Envoy acknowledges new clusters only once their endpoints came), then
//! the listener and routes once the node acknowledged both: a route never names a cluster the
//! node has not taken yet. An
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
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(status) = run(&plane, inbound, &outbox, default_listen).await {
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

/// What one stream sent of one type URL and what its node asked for.
#[derive(Debug, Default)]
struct Subscription {
    /// The resource names asked for (empty: all).
    names: Vec<String>,
    /// The last response: its version, nonce and the names it answered.
    sent: Option<(u64, String, Vec<String>)>,
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
) -> Result<(), Status> {
    let Some(first) = inbound.message().await? else {
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
    plane
        .with_nodes(|nodes| nodes.connect(&node.id, &node.cluster))
        .map_err(Status::resource_exhausted)?;
    let connected = Connected {
        plane,
        id: node.id.clone(),
    };
    tracing::info!(node = %node.id, %listen, "xDS node connected");
    let mut subscriptions: HashMap<String, Subscription> = HashMap::new();
    let mut nonce = 0u64;
    let mut snapshots = plane.watch();
    handle(plane, &connected.id, &mut subscriptions, first);
    loop {
        if !send_pending(&snapshots, &mut subscriptions, &mut nonce, listen, outbox).await {
            return Ok(());
        }
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(request)) => handle(plane, &connected.id, &mut subscriptions, request),
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

/// Records one request: a subscription, an ACK or a NACK.
fn handle(
    plane: &ControlPlane,
    id: &str,
    subscriptions: &mut HashMap<String, Subscription>,
    request: DiscoveryRequest,
) {
    if !TYPES.contains(&request.type_url.as_str()) {
        tracing::debug!(node = %id, type_url = %request.type_url, "xDS: a type not served");
        return;
    }
    let subscription = subscriptions.entry(request.type_url.clone()).or_default();
    let answered = subscription
        .sent
        .as_ref()
        .filter(|(_, nonce, _)| {
            !request.response_nonce.is_empty() && *nonce == request.response_nonce
        })
        .map(|(version, _, _)| *version);
    let mut names = request.resource_names;
    names.sort();
    names.dedup();
    subscription.names = names;
    plane.with_nodes(|nodes| match (answered, &request.error_detail) {
        (Some(version), Some(error)) => {
            tracing::warn!(node = %id, type_url = %request.type_url, version, error = %error.message, "xDS NACK");
            nodes.nack(id, &request.type_url, version, &error.message);
        }
        (Some(version), None) => nodes.ack(id, &request.type_url, version),
        (None, _) => nodes.seen(id, &request.type_url),
    });
    if let Some(version) = answered {
        subscription.awaiting = false;
        if request.error_detail.is_some() {
            subscription.rejected = Some(version);
        }
    }
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
        s.sent.as_ref().is_some_and(|(v, _, _)| *v == version)
            && (!acked || (!s.awaiting && s.rejected != Some(version)))
    })
}

/// Sends every response the node needs now and may take (see the module's order); `false`
/// once the stream is closed.
async fn send_pending(
    snapshots: &tokio::sync::watch::Receiver<Option<Arc<super::plane::Snapshot>>>,
    subscriptions: &mut HashMap<String, Subscription>,
    nonce: &mut u64,
    listen: SocketAddr,
    outbox: &mpsc::Sender<Result<DiscoveryResponse, Status>>,
) -> bool {
    let Some(snapshot) = snapshots.borrow().clone() else {
        return true;
    };
    let version = snapshot.version;
    for type_url in TYPES {
        let ready = match type_url {
            compile::CLUSTER => true,
            compile::ENDPOINT => holds(subscriptions, compile::CLUSTER, version, false),
            _ => {
                holds(subscriptions, compile::CLUSTER, version, true)
                    && holds(subscriptions, compile::ENDPOINT, version, true)
            }
        };
        let Some(subscription) = subscriptions.get_mut(type_url) else {
            continue;
        };
        if !ready || subscription.awaiting || subscription.rejected == Some(version) {
            continue;
        }
        let needed = match &subscription.sent {
            None => true,
            Some((sent, _, names)) => *sent != version || *names != subscription.names,
        };
        if !needed {
            continue;
        }
        let resources = match snapshot.resources.of(type_url, &subscription.names) {
            Some(resources) => resources,
            None => vec![compile::listener_of(listen)],
        };
        *nonce += 1;
        let response = DiscoveryResponse {
            version_info: version.to_string(),
            resources,
            type_url: type_url.to_string(),
            nonce: nonce.to_string(),
            ..Default::default()
        };
        if outbox.send(Ok(response)).await.is_err() {
            return false;
        }
        subscription.sent = Some((version, nonce.to_string(), subscription.names.clone()));
        subscription.awaiting = true;
    }
    true
}
