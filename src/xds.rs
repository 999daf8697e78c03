//! `testbed serve --xds-addr`: an xDS control plane for a fleet of Envoys. The gateway's route
//! table, as the admin API changes it, is compiled to Envoy's listeners, routes, clusters and
//! endpoints ([`compile`], from the same model `route export` uses) and served over the
//! Aggregated Discovery Service, State of the World ([`ads`]). Per node it records the version
//! acknowledged per type URL, the last rejection with Envoy's `error_detail`, and when the node
//! was last seen ([`nodes`]); `testbed route list` shows them, and an admin change answers only
//! once every connected Envoy acknowledged it, or fails with the Envoy's error ([`plane`]).
//! [`bootstrap`] writes an Envoy's bootstrap pointing at the control plane and starts Envoys
//! for the tests and the measurement. See docs/xds.md.

pub mod ads;
pub mod bootstrap;
pub mod compile;
pub mod drill;
pub mod nodes;
pub mod plane;

use anyhow::Context;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

/// Nodes tracked at most, by default.
pub const DEFAULT_MAX_NODES: u64 = 1024;
/// ADS streams open at once at most, by default.
pub const DEFAULT_MAX_STREAMS: u64 = 1024;
/// How long an admin change waits for the Envoys' acknowledgements, by default.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ADS stream may stay open before its first request, by default.
pub const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest DiscoveryRequest read (an Envoy's requests are small; its NACK messages and
/// resource name lists are what grows).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// `serve`'s xDS flags.
#[derive(Debug, Clone, clap::Args)]
pub struct XdsArgs {
    /// Serve the route table to Envoys over xDS (ADS, State of the World) on this address; port
    /// 0 picks a free port. Needs --admin-addr (the admin API is what changes the table).
    #[arg(long, value_name = "ADDR", requires = "admin_addr")]
    pub xds_addr: Option<SocketAddr>,
    /// The listener address of an Envoy whose node metadata names none (`testbed_listen`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:10000")]
    pub xds_listener_addr: SocketAddr,
    /// Envoy nodes tracked at most; a new one past it replaces the one disconnected longest,
    /// and is refused while all are connected.
    #[arg(long, default_value_t = DEFAULT_MAX_NODES, value_parser = clap::value_parser!(u64).range(1..))]
    pub xds_max_nodes: u64,
    /// ADS streams open at once at most; one more is refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = DEFAULT_MAX_STREAMS, value_parser = clap::value_parser!(u64).range(1..))]
    pub xds_max_streams: u64,
    /// How long an admin change waits for every connected Envoy to acknowledge it, in
    /// milliseconds (it then fails with DEADLINE_EXCEEDED naming the Envoys; the change stays
    /// made); 0: it does not wait.
    #[arg(long, default_value_t = DEFAULT_ACK_TIMEOUT.as_millis() as u64)]
    pub xds_ack_timeout_ms: u64,
    /// How long an ADS stream may stay open without its first request, in milliseconds; it is
    /// then closed with DEADLINE_EXCEEDED (a silent stream holds one of --xds-max-streams).
    #[arg(long, default_value_t = DEFAULT_FIRST_REQUEST_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub xds_first_request_timeout_ms: u64,
}

/// The control plane serving on its listener. Dropping it stops it.
#[derive(Debug)]
pub struct RunningXds {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state, the admin API's fleet.
    pub plane: Arc<plane::ControlPlane>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Drop for RunningXds {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// Starts the control plane `args` asks for on its address, if any.
pub async fn start(args: &XdsArgs) -> anyhow::Result<Option<RunningXds>> {
    let Some(addr) = args.xds_addr else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for xDS"))?;
    let addr = listener
        .local_addr()
        .context("the xDS listener has no address")?;
    let max_nodes = usize::try_from(args.xds_max_nodes).unwrap_or(usize::MAX);
    let max_streams = usize::try_from(args.xds_max_streams)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS);
    let plane = plane::ControlPlane::new(max_nodes, Duration::from_millis(args.xds_ack_timeout_ms));
    let ads = ads::Ads {
        plane: plane.clone(),
        streams: Arc::new(Semaphore::new(max_streams)),
        default_listen: args.xds_listener_addr,
        first_request_timeout: Duration::from_millis(args.xds_first_request_timeout_ms),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(port::server::DEFAULT_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(port::server::DEFAULT_KEEPALIVE_TIMEOUT))
        .add_service(
            AggregatedDiscoveryServiceServer::new(ads).max_decoding_message_size(MAX_REQUEST_BYTES),
        );
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(server.serve_with_incoming_shutdown(incoming, async move {
        let _ = stopped.await;
    }));
    tracing::info!(%addr, "xDS control plane serving");
    Ok(Some(RunningXds {
        addr,
        plane,
        stop: Some(stop),
        task,
    }))
}
