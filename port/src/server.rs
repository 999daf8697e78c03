//! Assembles one deployment on one port: the Incrementer versions (behind the version router
//! unless the deployment says otherwise), gRPC health and gRPC server reflection (v1 and
//! v1alpha), with `--interop` gRPC's interop test service beside them, and runs it until asked
//! to stop, letting in-flight requests finish.

use crate::accept::{self, AcceptLimits, AcceptLoop, Admission};
use crate::connections::Connections;
use crate::deployment::{DEFAULT_MAX_MESSAGE_BYTES, Deployment, v1_server, v2_server};
use crate::guard::GuardLayer;
use crate::loop_guard::LoopGuardLayer;
use crate::reflection::{Reflection, Served};
use crate::tls::TlsOptions;
use anyhow::Context;
use http::{Request, Response};
use router::{InFlight, RouteTable, RouterHandle, UpstreamProbe};
use services::Api;
use std::borrow::Cow;
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
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer, ServiceExt, util::BoxCloneSyncService};

/// The whole HTTP service one port runs.
pub type PortService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// A server started by [`start`]: its address, its router (if any) and a way to stop it.
/// Dropping it stops it at once (connections closed, nothing waited for); [`shutdown`]
/// stops it gracefully.
///
/// [`shutdown`]: RunningServer::shutdown
pub struct RunningServer {
    /// The address it listens on (the OS-chosen port when started on port 0).
    pub addr: SocketAddr,
    /// Control of the route table, for deployments with a router.
    pub router: Option<RouterHandle>,
    /// The health statuses it serves.
    pub health: HealthReporter,
    /// Its instance mark, appended to each request it passes on in
    /// [`GATEWAY_HEADER`](crate::loop_guard::GATEWAY_HEADER); a request already carrying it
    /// is refused as a routing loop.
    pub instance: String,
    open: Arc<InFlight>,
    connections: Arc<Connections>,
    // Checks remote backends while the server runs, so health follows their reachability.
    _probe: Option<UpstreamProbe>,
    /// Calls observed for metrics and the access log, when either is on.
    observer: Option<Arc<crate::observe::Observer>>,
    metrics: Option<crate::observe::MetricsListener>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    _accept: AcceptLoop,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .field("router", &self.router.is_some())
            .field("open_requests", &self.open.current())
            .field("connections", &self.connections.count())
            .finish_non_exhaustive()
    }
}

/// How long a graceful shutdown waits for in-flight requests and streams before closing the
/// connections that remain (a health `Watch` stream, say, never ends by itself).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl RunningServer {
    /// Requests and streams open on the port now (from arrival until the response ends).
    pub fn open_requests(&self) -> usize {
        self.open.current()
    }

    /// Client connections open on the port now.
    pub fn open_connections(&self) -> usize {
        self.connections.count()
    }

    /// Where `/metrics` is served (`--metrics-addr`; the OS-chosen port when it named port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .map(crate::observe::MetricsListener::addr)
    }

    /// The metrics, when they are served (the admin API counts its changes in them).
    pub fn metrics(&self) -> Option<Arc<crate::observe::Metrics>> {
        self.observer.as_ref()?.metrics().cloned()
    }

    /// Shadowing, when the port can shadow (see [`crate::observe::Observer::shadow`]).
    pub fn shadow(&self) -> Option<Arc<crate::shadow::Shadow>> {
        self.observer.as_ref()?.shadow().cloned()
    }

    /// The usage table, when it is kept (`ObserveOptions::track_usage`).
    pub fn usage(&self) -> Option<Arc<crate::observe::Usage>> {
        self.observer.as_ref()?.usage().cloned()
    }

    /// Stops accepting connections and lets in-flight requests finish, for at most
    /// [`SHUTDOWN_GRACE`]; then closes every connection still open. When it returns, nothing
    /// is served any more.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown_within(SHUTDOWN_GRACE).await
    }

    /// [`shutdown`](Self::shutdown) with a grace period of `grace`.
    pub async fn shutdown_within(mut self, grace: Duration) -> anyhow::Result<()> {
        if let Some(stop) = self.shutdown.take() {
            // The receiver is gone only if the server already stopped; its result says why.
            let _ = stop.send(());
        }
        match tokio::time::timeout(grace, &mut self.task).await {
            Ok(joined) => joined
                .context("server task panicked")?
                .context("server failed"),
            Err(_) => {
                tracing::warn!(
                    ?grace,
                    connections = self.connections.count(),
                    "requests still open after the grace period; closing their connections"
                );
                self.task.abort();
                self.connections.close_all();
                Ok(())
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        self.task.abort();
        self.connections.close_all();
    }
}

/// Calls open at once on one connection unless `--max-concurrent-streams` says otherwise
/// (hyper's own default; tonic alone sets no limit).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 200;
/// Streams the server may reset because of the client's errors on one connection before it
/// sends GOAWAY `ENHANCE_YOUR_CALM` (hyper's default; tonic alone sets no limit).
pub const DEFAULT_MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Largest request header block, decoded, in bytes (hyper's default, advertised in SETTINGS).
pub const DEFAULT_MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Client connections open at once; more are accepted and closed at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The reflection answers kept built by default (`--max-reflection-views`).
pub const DEFAULT_MAX_REFLECTION_VIEWS: usize = 16;
/// Time a new connection has to finish its TLS handshake (if any) and the HTTP/2 preface.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Interval of the server's HTTP/2 keep-alive pings on a connection that sends nothing.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// How long a keep-alive ping may go unanswered before the connection is closed.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Limits and timeouts of one port, as `testbed serve` takes them on its command line.
/// `Default` is what it uses without flags. README's "Limits" section says what happens at
/// each limit.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeOptions {
    /// Largest message accepted or sent, in bytes; larger ones get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES, value_parser = at_least_one)]
    pub max_message_bytes: usize,
    /// Calls (HTTP/2 streams) open at once per connection, advertised in SETTINGS; streams
    /// past it are refused with RST_STREAM(REFUSED_STREAM).
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Streams reset because of a client's errors (malformed requests, refused streams) on
    /// one connection before it gets GOAWAY(ENHANCE_YOUR_CALM) and is closed.
    #[arg(long, default_value_t = DEFAULT_MAX_LOCAL_ERROR_RESETS, value_parser = at_least_one)]
    pub max_local_error_resets: usize,
    /// Largest request header block in bytes (decoded), advertised in SETTINGS; a larger one
    /// gets HTTP 431 and the connection is kept.
    #[arg(long, default_value_t = DEFAULT_MAX_HEADER_LIST_BYTES, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_header_list_bytes: u32,
    /// Client connections open at once; connections past it are accepted and closed at once.
    /// At start it is clamped to what the open-files limit leaves after --fd-reserve (the
    /// start log gives the numbers).
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one)]
    pub max_connections: usize,
    /// Reflection services kept built, one per build reflection calls ask for (by
    /// x-api-version) and the catalog's own; past it the oldest is dropped and built again
    /// when asked for.
    #[arg(long, default_value_t = DEFAULT_MAX_REFLECTION_VIEWS, value_parser = at_least_one)]
    pub max_reflection_views: usize,
    /// Seconds a new connection has to finish its TLS handshake (if any) and send the HTTP/2
    /// preface and SETTINGS; after that it is closed.
    #[arg(long = "handshake-timeout-secs", default_value = "20", value_parser = seconds)]
    pub handshake_timeout: Duration,
    /// Deadline for every call in milliseconds, streams included; a client's grpc-timeout may
    /// be shorter. Past it the call ends with DEADLINE_EXCEEDED.
    #[arg(long = "request-timeout-ms", value_parser = millis)]
    pub request_timeout: Option<Duration>,
    /// Send an HTTP/2 keep-alive ping to a client that sent nothing for this many seconds.
    #[arg(long = "keepalive-interval-secs", default_value = "60", value_parser = seconds)]
    pub keepalive_interval: Option<Duration>,
    /// Close a connection whose keep-alive ping is unanswered for this many seconds.
    #[arg(long = "keepalive-timeout-secs", default_value = "20", value_parser = seconds)]
    pub keepalive_timeout: Duration,
    /// Also serve gRPC's interop test service, grpc.testing.TestService, beside the API (for
    /// grpc's interop cases: status_code_and_message, custom_metadata, ...). Off by default.
    #[arg(long)]
    pub interop: bool,
    /// TLS (and mutual TLS) on the port, and for `https://` upstreams.
    #[command(flatten)]
    pub tls: TlsOptions,
    /// The file-descriptor budget.
    #[command(flatten)]
    pub fds: crate::fds::FdOptions,
    /// Each upstream's connection pool.
    #[command(flatten)]
    pub pool: crate::pool::PoolOptions,
    /// Bytes that request messages still arriving may declare at once.
    #[command(flatten)]
    pub bodies: crate::guard::BodyLimits,
    /// Metrics and the access log (both off by default).
    #[command(flatten)]
    pub observe: crate::observe::ObserveOptions,
    /// Deprecation and sunset headers on the replies of methods being retired.
    #[command(flatten)]
    pub sunset: crate::sunset::SunsetOptions,
    /// gRPC-Web for browsers, and its CORS (off by default).
    #[command(flatten)]
    pub web: crate::web::WebOptions,
    /// JSON over HTTP for every method served (off by default).
    #[command(flatten)]
    pub json: crate::web::json::JsonOptions,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_local_error_resets: DEFAULT_MAX_LOCAL_ERROR_RESETS,
            max_header_list_bytes: DEFAULT_MAX_HEADER_LIST_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_reflection_views: DEFAULT_MAX_REFLECTION_VIEWS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            request_timeout: None,
            keepalive_interval: Some(DEFAULT_KEEPALIVE_INTERVAL),
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            interop: false,
            tls: TlsOptions::default(),
            fds: crate::fds::FdOptions::default(),
            pool: crate::pool::PoolOptions::default(),
            bodies: crate::guard::BodyLimits::default(),
            observe: crate::observe::ObserveOptions::default(),
            sunset: crate::sunset::SunsetOptions::default(),
            web: crate::web::WebOptions::default(),
            json: crate::web::json::JsonOptions::default(),
        }
    }
}

/// Parses a whole number of at least 1 (a count flag).
pub(crate) fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(err) => Err(format!("{text:?} is not a whole number: {err}")),
    }
}

pub(crate) fn millis(text: &str) -> Result<Duration, String> {
    at_least_one(text).map(|n| Duration::from_millis(n as u64))
}

fn seconds(text: &str) -> Result<Duration, String> {
    at_least_one(text).map(|n| Duration::from_secs(n as u64))
}

/// What one port serves besides health and reflection.
#[derive(Debug)]
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
    let mut routes = Routes::new(compat::accept_compressed!(health_service));
    let interop = Interop(options.interop);
    if options.interop {
        // Beside the API, behind the guard; a router passes its paths to these routes.
        routes = routes.add_service(services::interop::server(options.max_message_bytes));
        health
            .set_service_status(services::interop::TEST_SERVICE, ServingStatus::Serving)
            .await;
    }
    let (service, router) = assemble(layout, routes, &health, options, interop).await?;
    let open = Arc::new(InFlight::default());
    let loop_guard = LoopGuardLayer::new();
    let service = loop_guard.layer(service);
    let guard = GuardLayer::new(
        options.request_timeout,
        options.max_message_bytes,
        open.clone(),
    )
    .unary_methods(unary_methods(interop)?, router.clone())
    .body_limits(&options.bodies);
    let budget = guard.budget();
    let service = guard.layer(service);
    let service = tower::util::option_layer(options.sunset.layer()?).layer(service);
    // Outermost, so that the guard's refusals are observed as clients see them; absent (not
    // merely idle) when nothing is observed.
    let sets: Vec<&[u8]> = DESCRIPTOR_SETS
        .into_iter()
        .chain(interop.descriptors())
        .collect();
    let observer =
        crate::observe::Observer::new(&options.observe, &sets, router.clone())?.map(Arc::new);
    let metrics = crate::observe::serve(options.observe.metrics_addr, observer.as_deref()).await?;
    let service =
        tower::util::option_layer(observer.clone().map(crate::observe::ObserveLayer::new))
            .layer(service);
    // gRPC-Web outside everything else, so that each layer above sees the gRPC call it becomes.
    let service = crate::web::layer(
        &options.web,
        options.max_header_list_bytes,
        options.max_message_bytes,
        BoxCloneSyncService::new(service),
    )?;
    // JSON outside that: a JSON call becomes a gRPC call, never a gRPC-Web one.
    let service = crate::web::json::layer(
        &options.json,
        &sets,
        router.clone(),
        options.max_message_bytes,
        budget,
        service,
    )?;
    let (shutdown, stop) = oneshot::channel::<()>();
    let connections = Arc::new(Connections::default());
    // `testbed serve` clamped and logged its caps already (with the admin API's); a server
    // started otherwise is clamped here, so that it too leaves descriptors for its upstreams.
    let fds = crate::fds::Plan::new(&options.fds, options.max_connections, None)?;
    if fds.max_connections < options.max_connections {
        fds.log();
    }
    let limits = AcceptLimits {
        admission: Admission {
            max_connections: fds.max_connections,
            per_peer: None,
        },
        handshake_timeout: options.handshake_timeout,
        listener: "port",
    };
    let tls = options.tls.acceptor()?;
    let scheme = if tls.is_some() { "https" } else { "h2c" };
    let (incoming, accept_loop) = accept::incoming(listener, connections.clone(), limits, tls);
    let builder = Server::builder()
        // HTTP/1 requests are let in for gRPC-Web (`--grpc-web`); the guard tells the others
        // that this port speaks gRPC over HTTP/2.
        .accept_http1(true)
        .max_concurrent_streams(Some(options.max_concurrent_streams))
        .http2_max_local_error_reset_streams(Some(options.max_local_error_resets))
        .http2_max_header_list_size(Some(options.max_header_list_bytes))
        .http2_keepalive_interval(options.keepalive_interval)
        .http2_keepalive_timeout(Some(options.keepalive_timeout));
    let task = tokio::spawn(
        builder.serve_with_incoming_shutdown(service, incoming, async move {
            let _ = stop.await;
        }),
    );
    tracing::info!(%addr, label, scheme, instance = loop_guard.mark(), "serving");
    let probe = router
        .as_ref()
        .map(|handle| UpstreamProbe::start(handle, options.pool.probe()));
    Ok(RunningServer {
        addr,
        router,
        health,
        instance: loop_guard.mark().to_string(),
        open,
        connections,
        _probe: probe,
        observer,
        metrics,
        shutdown: Some(shutdown),
        task,
        _accept: accept_loop,
    })
}

/// Whether the port mounts gRPC's interop test service (`--interop`).
#[derive(Debug, Clone, Copy)]
struct Interop(bool);

impl Interop {
    /// The interop descriptors, when mounted.
    fn descriptors(self) -> Option<&'static [u8]> {
        self.0.then_some(services::interop::FILE_DESCRIPTOR_SET)
    }

    /// The interop service's name, when mounted, for reflection's listing.
    fn listed(self) -> Vec<String> {
        self.descriptors()
            .map(|_| services::interop::TEST_SERVICE.to_string())
            .into_iter()
            .collect()
    }
}

async fn assemble(
    layout: Layout,
    routes: Routes,
    health: &HealthReporter,
    options: &ServeOptions,
    interop: Interop,
) -> anyhow::Result<(PortService, Option<RouterHandle>)> {
    let (views, max_message_bytes) = (options.max_reflection_views, options.max_message_bytes);
    let apis = match layout {
        Layout::Routed(table) => {
            // The catalog's descriptors (what the upstreams declare) become describable too.
            let catalog = Cow::Owned(table.catalog().pool().encode_to_vec());
            let handle = RouterHandle::new(table, Some(health.clone())).await;
            let served = Served::Router(handle.clone());
            let routes = with_reflection(routes, served, Some(catalog), interop, views)?;
            let service = BoxCloneSyncService::new(handle.layer().layer(routes));
            return Ok((service, Some(handle)));
        }
        Layout::NaiveProxyToV1 => vec![Api::V1, Api::V2],
        Layout::Direct(ref apis) => apis.clone(),
    };
    let names = apis.iter().map(|api| api.service().to_string()).collect();
    let routes = with_reflection(routes, Served::Fixed(names), None, interop, views)?;
    // Without a router nothing changes what is mounted, so the mounted services are simply up.
    for api in &apis {
        health
            .set_service_status(api.service(), ServingStatus::Serving)
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
        crate::guard::quote(uri.path())
    ))
    .into_http()
}

/// The paths of every method whose client sends exactly one message (unary and
/// server-streaming), from the descriptors the port itself serves (a router's catalog, the
/// APIs its upstreams declare, is consulted by the guard as it changes).
fn unary_methods(interop: Interop) -> anyhow::Result<std::collections::HashSet<String>> {
    use prost::Message;
    let mut paths = std::collections::HashSet::new();
    for encoded in DESCRIPTOR_SETS.into_iter().chain(interop.descriptors()) {
        let set = prost_types::FileDescriptorSet::decode(encoded)
            .context("a served file descriptor set does not decode")?;
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    if !method.client_streaming() {
                        paths.insert(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
    }
    Ok(paths)
}

/// Every descriptor the port can describe: both API versions, health, and reflection itself.
const DESCRIPTOR_SETS: [&[u8]; 4] = [
    services::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// Mounts reflection that lists what `served` says (and the interop service when mounted), and
/// a fallback that names what was asked for (tonic's own answers UNIMPLEMENTED with no message).
fn with_reflection(
    mut routes: Routes,
    served: Served,
    catalog: Option<Cow<'static, [u8]>>,
    interop: Interop,
    max_views: usize,
) -> anyhow::Result<Routes> {
    let sets = DESCRIPTOR_SETS
        .into_iter()
        .chain(interop.descriptors())
        .map(Cow::Borrowed)
        .chain(catalog)
        .collect();
    let reflection = Reflection::new(served, interop.listed(), sets, max_views)?;
    let router = std::mem::take(routes.axum_router_mut());
    let router = [
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    .into_iter()
    .fold(router, |router, name| {
        let service = reflection
            .clone()
            .map_request(|request: Request<axum::body::Body>| request.map(Body::new));
        router.route_service(&format!("/{name}/{{*method}}"), service)
    })
    .fallback(unknown_service);
    Ok(Routes::from(router))
}

/// Parses a `HOST:PORT` flag value, the host a name (`localhost`) or an address; a name is
/// looked up and its first address taken.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|err| format!("{text:?} is not HOST:PORT or cannot be looked up: {err}"))?
        .next()
        .ok_or_else(|| format!("{text:?} has no address"))
}
