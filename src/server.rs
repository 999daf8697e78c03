//! Assembles one deployment on one port: the Incrementer versions (behind the version router
//! unless the deployment says otherwise), gRPC health and gRPC server reflection (v1 and
//! v1alpha), and runs it until asked to stop, letting in-flight requests finish.

use crate::clients::Api;
use crate::deployment::{Deployment, v1_server, v2_server};
use crate::guard::GuardLayer;
use anyhow::Context;
use http::{Request, Response};
use router::{InFlight, RouteTable, RouterHandle};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer, ServiceExt, util::BoxCloneSyncService};

/// The whole HTTP service one port runs.
pub type PortService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// A server started by [`start`]: its address, its router (if any) and a way to stop it.
pub struct RunningServer {
    /// The address it listens on (the OS-chosen port when started on port 0).
    pub addr: SocketAddr,
    /// Control of the route table, for deployments with a router.
    pub router: Option<RouterHandle>,
    /// The health statuses it serves.
    pub health: HealthReporter,
    open: Arc<InFlight>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// How long a graceful shutdown waits for in-flight requests and streams before closing the
/// connections that remain (a health `Watch` stream, say, never ends by itself).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl RunningServer {
    /// Requests and streams open on the port now (from arrival until the response ends).
    pub fn open_requests(&self) -> usize {
        self.open.current()
    }

    /// Stops accepting connections and lets in-flight requests finish, for at most
    /// [`SHUTDOWN_GRACE`]; then closes whatever is still open.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        // The receiver is gone only if the server already stopped; then its result says why.
        let _ = self.shutdown.send(());
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(joined) => joined
                .context("server task panicked")?
                .context("server failed"),
            Err(_) => {
                tracing::warn!(
                    grace = ?SHUTDOWN_GRACE,
                    "streams still open after the grace period; closing them"
                );
                self.task.abort();
                Ok(())
            }
        }
    }
}

/// Limits and timeouts of one port. `Default` is what `testbed serve` uses without flags.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest message accepted or sent; larger ones get `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// HTTP/2 streams (calls) open at once per connection.
    pub max_concurrent_streams: Option<u32>,
    /// Deadline for every call, streams included (the client's `grpc-timeout` may be shorter).
    pub request_timeout: Option<Duration>,
    /// Interval of HTTP/2 keep-alive pings to each client.
    pub keepalive_interval: Option<Duration>,
    /// How long a keep-alive ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Option<Duration>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: crate::deployment::DEFAULT_MAX_MESSAGE_BYTES,
            max_concurrent_streams: None,
            request_timeout: None,
            keepalive_interval: None,
            keepalive_timeout: None,
        }
    }
}

/// What one port serves besides health and reflection.
pub enum Layout {
    /// The version router over this table (in-process or remote backends).
    Routed(RouteTable),
    /// These implementations mounted directly, no router: a single backend, or both.
    Direct(Vec<Api>),
    /// v2 paths rewritten to the v1 implementation: what the router refuses to build.
    NaiveProxyToV1,
}

/// Binds `addr` (port 0 picks a free port) and serves `deployment` on it in the background.
pub async fn start(addr: SocketAddr, deployment: Deployment) -> anyhow::Result<RunningServer> {
    let options = ServeOptions::default();
    let layout = deployment.layout(options.max_message_bytes)?;
    start_with(addr, layout, deployment.name(), &options).await
}

/// Binds `addr` and serves `layout` on it in the background with default options; `label` names
/// it in logs.
pub async fn start_layout(
    addr: SocketAddr,
    layout: Layout,
    label: &str,
) -> anyhow::Result<RunningServer> {
    start_with(addr, layout, label, &ServeOptions::default()).await
}

/// Binds `addr` and serves `layout` on it in the background with `options`.
pub async fn start_with(
    addr: SocketAddr,
    layout: Layout,
    label: &str,
    options: &ServeOptions,
) -> anyhow::Result<RunningServer> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr().context("listener has no address")?;
    let (health, health_service) = tonic_health::server::health_reporter();
    let mut routes = Routes::new(health_service)
        .add_service(reflection_v1()?)
        .add_service(reflection_v1alpha()?);
    // tonic's own fallback answers UNIMPLEMENTED with no message; say what was asked for.
    let with_fallback = std::mem::take(routes.axum_router_mut()).fallback(unknown_service);
    let routes = Routes::from(with_fallback);
    let (service, router) = assemble(layout, routes, &health, options.max_message_bytes).await?;
    let open = Arc::new(InFlight::default());
    let service = GuardLayer::new(
        options.request_timeout,
        options.max_message_bytes,
        open.clone(),
    )
    .layer(service);
    let (shutdown, stop) = oneshot::channel::<()>();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let builder = Server::builder()
        // HTTP/1 requests are let in only to be told, by the guard, that this port speaks HTTP/2.
        .accept_http1(true)
        .max_concurrent_streams(options.max_concurrent_streams)
        .http2_keepalive_interval(options.keepalive_interval)
        .http2_keepalive_timeout(options.keepalive_timeout);
    let task = tokio::spawn(
        builder.serve_with_incoming_shutdown(service, incoming, async move {
            let _ = stop.await;
        }),
    );
    tracing::info!(%addr, label, "serving");
    Ok(RunningServer {
        addr,
        router,
        health,
        open,
        shutdown,
        task,
    })
}

async fn assemble(
    layout: Layout,
    routes: Routes,
    health: &HealthReporter,
    max_message_bytes: usize,
) -> anyhow::Result<(PortService, Option<RouterHandle>)> {
    let apis = match layout {
        Layout::Routed(table) => {
            let handle = RouterHandle::new(table, Some(health.clone())).await;
            let service = BoxCloneSyncService::new(handle.layer().layer(routes));
            return Ok((service, Some(handle)));
        }
        Layout::NaiveProxyToV1 => vec![Api::V1, Api::V2],
        Layout::Direct(ref apis) => apis.clone(),
    };
    // Without a router nothing changes what is mounted, so the mounted services are simply up.
    for api in &apis {
        let service = match api {
            Api::V1 => services::V1_SERVICE,
            Api::V2 => services::V2_SERVICE,
        };
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    if let Layout::NaiveProxyToV1 = layout {
        let v1 = routes.add_service(v1_server(max_message_bytes));
        let service = tower::service_fn(move |request| naive_proxy_to_v1(v1.clone(), request));
        return Ok((BoxCloneSyncService::new(service), None));
    }
    let mounted = apis.iter().fold(routes, |routes, api| match api {
        Api::V1 => routes.add_service(v1_server(max_message_bytes)),
        Api::V2 => routes.add_service(v2_server(max_message_bytes)),
    });
    Ok((BoxCloneSyncService::new(mounted), None))
}

/// The mistake the router exists to prevent: sending v2 requests to the v1 implementation
/// because the bytes happen to decode. v1 ignores `step`, so the answers are silently wrong.
async fn naive_proxy_to_v1(
    v1: Routes,
    request: Request<Body>,
) -> Result<Response<Body>, Infallible> {
    let request = match request.uri().path().strip_prefix("/increment.v2.") {
        None => request,
        Some(rest) => {
            let new_path = format!("/increment.v1.{rest}");
            match router::readdress(request, &new_path) {
                Ok(request) => request,
                Err(status) => return Ok(status.into_http()),
            }
        }
    };
    v1.oneshot(request).await
}

async fn unknown_service(uri: http::Uri) -> Response<Body> {
    Status::unimplemented(format!(
        "no service here serves {}; `grpcurl -plaintext HOST:PORT list` shows the ones that exist",
        uri.path()
    ))
    .into_http()
}

/// Every descriptor the port can describe: both API versions, health, and reflection itself.
fn descriptor_sets() -> [&'static [u8]; 4] {
    [
        services::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    descriptor_sets().into_iter().fold(
        tonic_reflection::server::Builder::configure().include_reflection_service(false),
        |builder, set| builder.register_encoded_file_descriptor_set(set),
    )
}

fn reflection_v1() -> anyhow::Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
> {
    reflection_builder()
        .build_v1()
        .context("cannot build the grpc.reflection.v1 service")
}

fn reflection_v1alpha() -> anyhow::Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
> {
    reflection_builder()
        .build_v1alpha()
        .context("cannot build the grpc.reflection.v1alpha service")
}
