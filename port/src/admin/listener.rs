//! The admin API's own listener: the port's accept loop (connection caps, handshake timeout,
//! TLS) in front of the Routes service, and the handle that stops it.

use super::AdminConfig;
use super::auth::Authenticate;
use super::pb::routes_server::RoutesServer;
use super::service::RoutesService;
use crate::accept::{self, AcceptLimits, AcceptLoop, Admission};
use crate::connections::Connections;
use crate::server::{DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIMEOUT, SHUTDOWN_GRACE};
use anyhow::Context;
use router::RouterHandle;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tonic::transport::Server;

/// The admin API running on its own listener. Dropping it stops it at once; [`shutdown`]
/// lets calls in progress finish first.
///
/// [`shutdown`]: RunningAdmin::shutdown
#[derive(Debug)]
pub struct RunningAdmin {
    /// The address it listens on (the OS-chosen port when started on port 0).
    pub addr: SocketAddr,
    /// The service it runs, shared with its server.
    routes: Arc<RoutesService>,
    /// Whether it speaks TLS.
    pub tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Its open connections, closed when it stops (tonic serves each in a task of its own).
    connections: Arc<Connections>,
    _accept: AcceptLoop,
    /// Hands the table to the fleet now and then (see [`super::fleet::REPUBLISH_EVERY`]).
    republish: Option<JoinHandle<()>>,
}

impl RunningAdmin {
    /// Puts `table` in place of the whole route table (a config file reloaded on SIGHUP), as
    /// one change under the admin API's change lock, with where each of its backends is
    /// (`addresses`); the state file, if any, is written again. What went wrong writing it, if
    /// anything.
    pub async fn replace_table(
        &self,
        table: router::RouteTable,
        addresses: std::collections::HashMap<String, String>,
    ) -> Result<Option<String>, tonic::Status> {
        let _change = self.routes.lock_changes().await?;
        self.routes
            .handle
            .replace_table(table)
            .await
            .map_err(|err| super::service::table_status(&err))?;
        *self
            .routes
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = addresses;
        Ok(self.routes.persist())
    }

    /// Where a client reaches it, as `testbed route --admin` takes it: `https://ADDR` over
    /// TLS, else `ADDR`.
    pub fn address(&self) -> String {
        match self.tls {
            true => format!("https://{}", self.addr),
            false => self.addr.to_string(),
        }
    }

    /// Stops accepting calls and lets the ones in progress (a Drain, say) finish, for at most
    /// [`SHUTDOWN_GRACE`]; then drops them.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.shutdown.take() {
            // The receiver is gone only if the server already stopped; its result says why.
            let _ = stop.send(());
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(joined) => joined
                .context("the admin API task panicked")?
                .context("the admin API failed"),
            Err(_) => {
                self.task.abort();
                self.connections.close_all();
                Ok(())
            }
        }
    }
}

impl Drop for RunningAdmin {
    fn drop(&mut self) {
        if let Some(republish) = &self.republish {
            republish.abort();
        }
        self.task.abort();
        self.connections.close_all();
    }
}

/// Serves the admin API over `handle` as `config` says (on its address, port 0 picking a free
/// port; plaintext or TLS; to the callers its access admits) in the background. `addresses`
/// names where the table's remote backends are (see [`addresses`](super::addresses)); `upstream_ca` trusts
/// `https://` upstreams that Add names. Add and Replace refuse the admin listener's own
/// address as an upstream; [`start_guarding`] also names the port's.
pub async fn start(
    config: AdminConfig,
    handle: RouterHandle,
    addresses: HashMap<String, String>,
    upstream_ca: Option<PathBuf>,
) -> anyhow::Result<RunningAdmin> {
    start_guarding(config, handle, addresses, upstream_ca, &[]).await
}

/// [`start`], Add and Replace also refusing `gateway` (the addresses the port listens on) as
/// an upstream's address: every call routed there would loop back into the gateway.
pub async fn start_guarding(
    config: AdminConfig,
    handle: RouterHandle,
    addresses: HashMap<String, String>,
    upstream_ca: Option<PathBuf>,
    gateway: &[SocketAddr],
) -> anyhow::Result<RunningAdmin> {
    let AdminConfig {
        addr,
        access,
        tls,
        limits,
        max_upstreams,
        metrics,
        max_catalog_bytes,
        max_replicas,
        usage,
        shadow,
        quiet_period,
        state_file,
        fleet,
    } = config;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the admin API"))?;
    let addr = listener
        .local_addr()
        .context("admin listener has no address")?;
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the admin API listens beyond loopback in plaintext: its bearer tokens cross the \
             network readable (--admin-tls-cert and --admin-tls-key turn TLS on)"
        );
    }
    tracing::info!(
        %addr,
        tls = tls.is_some(),
        holders = ?access.tokens,
        certificates = ?access.certificates,
        "admin API serving"
    );
    let service = RoutesService {
        handle,
        addresses: Mutex::new(addresses),
        upstream_ca,
        own: gateway.iter().copied().chain([addr]).collect(),
        max_upstreams,
        max_catalog_bytes,
        max_replicas,
        changes: tokio::sync::Mutex::new(()),
        metrics,
        usage,
        shadow,
        quiet_period,
        state_file,
        fleet,
    };
    // The table as it starts, so that the state file holds it before any change.
    service.persist();
    let connections = Arc::new(Connections::default());
    let authenticate = Authenticate {
        access,
        connections: connections.clone(),
    };
    let routes = Arc::new(service);
    let republish = routes
        .fleet
        .is_some()
        .then(|| super::service::republish(&routes));
    let service = tonic::service::interceptor::InterceptedService::new(
        RoutesServer::from_arc(routes.clone()),
        authenticate,
    );
    let (shutdown, stop) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stop.await;
    };
    // As on the port: pings find a client that went silent after its handshake.
    let router = Server::builder()
        .http2_keepalive_interval(Some(DEFAULT_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(DEFAULT_KEEPALIVE_TIMEOUT))
        .add_service(service);
    let limits = AcceptLimits {
        admission: Admission {
            max_connections: limits.max_connections,
            per_peer: Some(limits.max_per_peer),
        },
        handshake_timeout: limits.handshake_timeout,
        listener: "admin API",
    };
    let (task, accept_loop) = match &tls {
        None => {
            let (incoming, accept_loop) =
                accept::incoming(listener, connections.clone(), limits, None);
            let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped));
            (task, accept_loop)
        }
        Some(config) => {
            let acceptor = TlsAcceptor::from(config.clone());
            let (incoming, accept_loop) =
                accept::incoming_tls(listener, connections.clone(), limits, acceptor);
            let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped));
            (task, accept_loop)
        }
    };
    Ok(RunningAdmin {
        addr,
        routes,
        tls: tls.is_some(),
        shutdown: Some(shutdown),
        task,
        connections,
        _accept: accept_loop,
        republish,
    })
}
