//! The admin API: change a running router's route table from outside its process.
//!
//! A gRPC service, `testbed.admin.v1.Routes` (`proto/admin/v1/routes.proto`: List, Add,
//! Replace, Drain, Remove), served on a listener of its own (`serve --admin-addr`, loopback by
//! default), never on the public port, in plaintext or over TLS (`--admin-tls-cert`,
//! `--admin-tls-key`; ALPN h2). Every call must carry `authorization: Bearer TOKEN` with one of
//! the tokens the server was given, or come over TLS with a client certificate from
//! `--admin-client-ca` ([`auth`]; `--admin-client-name` narrows it to named holders); each
//! change is logged with who made it (a token's holder, or `cert:NAME`, quoted), what was
//! asked and how it ended. Add and Replace take the text of `serve --upstream` and do what the
//! start does with it: read the upstream's descriptors by reflection (or take them from the
//! call's `descriptor_set`, for an upstream without reflection) and check a `+PACKAGE`
//! retirement with compat ([`service`]). Its listener bounds what a connection that never
//! authenticates may hold: [`ADMIN_MAX_CONNECTIONS`] at once (`--admin-max-connections`),
//! [`ADMIN_MAX_CONNECTIONS_PER_PEER`] from one IP address (`--admin-max-connections-per-peer`),
//! [`ADMIN_HANDSHAKE_TIMEOUT`] to finish the TLS handshake and send the HTTP/2 preface. A
//! connection on which a call authenticated is never closed to make room; one that never did is,
//! the oldest first, when a new connection comes to a full listener or from a peer at its share
//! (a peer whose whole share authenticated is refused): idle connections that never
//! authenticate cannot lock an operator out, whoever holds them. `testbed route` and
//! `testbed rollout --processes` are its clients ([`client`]).

mod audit;
pub mod auth;
mod catalog;
pub mod client;
pub mod fleet;
mod listener;
pub mod service;
mod shadow;
pub mod state;
pub mod token_file;
mod upstreams;
mod usage;

use crate::upstream::MAX_CATALOG_BYTES;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::ServerConfig;

/// Code generated from `proto/admin/v1/routes.proto`.
pub mod pb {
    #![allow(missing_docs, unreachable_pub)]
    tonic::include_proto!("testbed.admin.v1");
}

pub use auth::{Access, Caller, CertificateHolders, Tokens};
pub use client::{AdminAddress, AdminClient, connect, connect_to};
pub use listener::{RunningAdmin, start, start_guarding};
pub use service::addresses;

/// Where the admin API listens when `--admin-addr` is given without a value.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:50052";
/// Connections the admin API keeps open at once. Its clients are a few operators and scripts,
/// so this leaves them room while bounding what connections that never authenticate can hold.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
/// Connections the admin API keeps open at once from one IP address: a quarter of
/// [`ADMIN_MAX_CONNECTIONS`], so that one peer alone cannot fill it.
pub const ADMIN_MAX_CONNECTIONS_PER_PEER: usize = 16;
/// Upstreams the route table holds at most (`--max-upstreams`): the 192 descriptors that
/// [`crate::fds::DEFAULT_FD_RESERVE`] keeps for upstream connections and probes are 48
/// upstreams of 4 each. A larger value wants a larger `--fd-reserve`.
pub const MAX_UPSTREAMS: usize = 48;
/// Time a new admin connection has to finish its TLS handshake (if any) and send the HTTP/2
/// preface; a silent one is closed then.
pub const ADMIN_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin flags of `testbed serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminOptions {
    /// Serve the admin API (change routes at runtime: `testbed route`) on this address, a
    /// listener of its own (127.0.0.1:50052 when given without a value). Needs a token source
    /// or client certificates (--admin-client-ca).
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_ADMIN_ADDR, value_parser = crate::server::parse_addr)]
    pub admin_addr: Option<SocketAddr>,
    /// Admin bearer tokens, one `NAME TOKEN` a line (`#` comments); changes are logged with
    /// NAME (letters, digits and . _ @ - only). Tokens: at least 16 visible ASCII characters.
    #[arg(long, requires = "admin_addr")]
    pub admin_token_file: Option<PathBuf>,
    /// Also accept the token in this environment variable (logged as "env").
    #[arg(long, requires = "admin_addr")]
    pub admin_token_env: Option<String>,
    /// Serve the admin API over TLS (ALPN h2) with this certificate chain (PEM); needs
    /// --admin-tls-key. `testbed route --admin https://HOST:PORT --ca FILE` reaches it.
    #[arg(long, value_name = "FILE", requires_all = ["admin_addr", "admin_tls_key"])]
    pub admin_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --admin-tls-cert.
    #[arg(long, value_name = "FILE", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,
    /// Accept client certificates signed by this CA (PEM) on the admin API: a call is then
    /// made by the certificate's holder, logged as cert:NAME (NAME its subject CN, or
    /// dns:DNSNAME for a certificate without a CN; letters, digits and . _ @ - only, else the
    /// call gets PERMISSION_DENIED). Needs --admin-tls-cert. Without a token source every
    /// client must present one; with tokens too, a certificate is optional at the handshake.
    /// Another CA's or an expired certificate is refused at the handshake.
    #[arg(long, value_name = "FILE", requires = "admin_tls_cert")]
    pub admin_client_ca: Option<PathBuf>,
    /// Accept only client certificates naming NAME (repeatable): a subject CN (`alice`), or
    /// `dns:NAME` for the DNS name of a certificate without a CN (`dns:alice.example`); another
    /// certificate from --admin-client-ca gets PERMISSION_DENIED.
    #[arg(
        long = "admin-client-name",
        value_name = "NAME",
        requires = "admin_client_ca"
    )]
    pub admin_client_names: Vec<String>,
    /// Connections the admin API keeps open at once. A new one past it closes the oldest
    /// connection that has not made an authenticated call; when every one has, it is refused.
    #[arg(long, default_value_t = ADMIN_MAX_CONNECTIONS, value_parser = crate::server::at_least_one)]
    pub admin_max_connections: usize,
    /// Connections the admin API keeps open at once from one IP address. A new one past it
    /// closes that peer's oldest connection that has not made an authenticated call; when every
    /// one has, it is refused.
    #[arg(long, default_value_t = ADMIN_MAX_CONNECTIONS_PER_PEER, value_parser = crate::server::at_least_one)]
    pub admin_max_connections_per_peer: usize,
    /// Upstreams the route table holds at most: an Add past it is refused with
    /// RESOURCE_EXHAUSTED. Tied to --fd-reserve, whose default (256) keeps 192 descriptors for
    /// 48 upstreams of 4 connections each: raise both together.
    #[arg(long, default_value_t = MAX_UPSTREAMS, value_parser = crate::server::at_least_one)]
    pub max_upstreams: usize,
    /// Encoded descriptor bytes the route table's catalog holds at most, across every
    /// upstream (a file two upstreams share counted once): a start whose upstreams' descriptors
    /// come to more fails, and an Add or Replace that would take the catalog past it is refused
    /// with RESOURCE_EXHAUSTED. The gateway holds about 30 times this in memory.
    #[arg(long, default_value_t = MAX_CATALOG_BYTES, value_parser = crate::server::at_least_one)]
    pub max_catalog_bytes: usize,
    /// Addresses one upstream lists at most (`NAME=VERSION@A,B,...`): a start, a reload or an
    /// Add or Replace with more is refused naming the upstream. Each replica holds its own
    /// connections, within --fd-reserve: raise both together.
    #[arg(long, default_value_t = crate::upstream::MAX_REPLICAS, value_parser = crate::server::at_least_one)]
    pub max_replicas: usize,
    /// Refuse `route drain`/`remove` of a backend that served calls within this many seconds
    /// when no other backend serves those calls' package (the refusal names the callers;
    /// `--force` overrides it). 0, the default: no check.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub quiet_period_secs: u64,
    /// Keep the route table in this file: written (atomically) after every admin change, read
    /// at start in place of --upstream and --descriptors when it exists. It is a `--config`
    /// file too (docs/gateway.md).
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
}

impl Default for AdminOptions {
    fn default() -> Self {
        Self {
            admin_addr: None,
            admin_token_file: None,
            admin_token_env: None,
            admin_tls_cert: None,
            admin_tls_key: None,
            admin_client_ca: None,
            admin_client_names: Vec::new(),
            admin_max_connections: ADMIN_MAX_CONNECTIONS,
            admin_max_connections_per_peer: ADMIN_MAX_CONNECTIONS_PER_PEER,
            max_upstreams: MAX_UPSTREAMS,
            max_catalog_bytes: MAX_CATALOG_BYTES,
            max_replicas: crate::upstream::MAX_REPLICAS,
            quiet_period_secs: 0,
            state_file: None,
        }
    }
}

/// What the admin API of one `serve` is to be: where it listens, who may call it, whether it
/// speaks TLS, and the limits of its listener. Made by [`AdminConfig::plaintext`] or
/// [`AdminOptions::config`] only, which keep its one rule: client certificates are accepted
/// only over TLS that verifies them against the client CA.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where it listens (port 0 picks a free port).
    addr: SocketAddr,
    /// Who may call it.
    access: Access,
    /// TLS (asking for client certificates when `access` accepts them), or `None` for
    /// plaintext h2c.
    tls: Option<Arc<ServerConfig>>,
    limits: ListenerLimits,
    /// Upstreams the route table may hold; an Add past it is refused.
    max_upstreams: usize,
    /// The port's metrics, which count each change (`testbed_admin_changes_total`).
    metrics: Option<Arc<crate::observe::Metrics>>,
    /// Encoded descriptor bytes the catalog may hold; an Add or Replace past them is refused.
    max_catalog_bytes: usize,
    /// Replicas one upstream may list; an Add or Replace with more is refused.
    max_replicas: usize,
    /// The port's usage table (the `Usage` call; the quiet period's check).
    usage: Option<Arc<crate::observe::Usage>>,
    /// The port's shadowing (the `Shadow` and `ShadowReport` calls).
    shadow: Option<Arc<crate::shadow::Shadow>>,
    /// How recently a backend's callers may have used it, with nothing else serving them, for
    /// a drain or removal of it to go ahead unforced; zero: no check.
    quiet_period: Duration,
    /// Where the route table is kept after each change (`--state-file`).
    state_file: Option<PathBuf>,
    /// The proxies each change must reach (`--xds-addr`).
    fleet: Option<Arc<dyn fleet::Fleet>>,
}

/// What the admin API's listener allows a connection before it is served.
#[derive(Debug, Clone, Copy)]
struct ListenerLimits {
    max_connections: usize,
    max_per_peer: usize,
    handshake_timeout: Duration,
}

impl AdminConfig {
    /// Plaintext on `addr`, for the holders of `tokens`.
    pub fn plaintext(addr: SocketAddr, tokens: Tokens) -> Self {
        Self {
            addr,
            access: Access::tokens(tokens),
            tls: None,
            limits: ListenerLimits::default(),
            max_upstreams: MAX_UPSTREAMS,
            metrics: None,
            max_catalog_bytes: MAX_CATALOG_BYTES,
            max_replicas: crate::upstream::MAX_REPLICAS,
            usage: None,
            shadow: None,
            quiet_period: Duration::ZERO,
            state_file: None,
            fleet: None,
        }
    }

    /// Hands each change to `fleet` and waits for it to be applied there before answering
    /// (see [`fleet`]); `List` reports the fleet's status.
    pub fn with_fleet(mut self, fleet: Option<Arc<dyn fleet::Fleet>>) -> Self {
        self.fleet = fleet;
        self
    }

    /// Writes the route table to `path` after each change (see [`state`]).
    pub fn with_state_file(mut self, path: Option<PathBuf>) -> Self {
        self.state_file = path;
        self
    }

    /// Counts each change in `metrics` (the port's, when it serves them).
    pub fn with_metrics(mut self, metrics: Option<Arc<crate::observe::Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Answers `Usage` from `usage` (the port's table, when it keeps one), and checks drains
    /// and removals against it.
    pub fn with_usage(mut self, usage: Option<Arc<crate::observe::Usage>>) -> Self {
        self.usage = usage;
        self
    }

    /// Answers `Shadow` and `ShadowReport` with `shadow` (the port's, when it can shadow).
    pub fn with_shadow(mut self, shadow: Option<Arc<crate::shadow::Shadow>>) -> Self {
        self.shadow = shadow;
        self
    }

    /// Refuses an unforced drain or removal of a backend whose callers used it within
    /// `period` with nothing else serving their package (zero: no check).
    pub fn with_quiet_period(mut self, period: Duration) -> Self {
        self.quiet_period = period;
        self
    }

    /// At most `max_bytes` of encoded descriptors in the route table's catalog (at least 1),
    /// instead of [`MAX_CATALOG_BYTES`]: an Add or Replace that would take it past them is
    /// refused.
    pub fn with_max_catalog_bytes(mut self, max_bytes: usize) -> Self {
        self.max_catalog_bytes = max_bytes.max(1);
        self
    }

    /// At most `max_replicas` addresses per upstream (at least 1), instead of
    /// [`crate::upstream::MAX_REPLICAS`]: an Add or Replace with more is refused.
    pub fn with_max_replicas(mut self, max_replicas: usize) -> Self {
        self.max_replicas = max_replicas.max(1);
        self
    }

    /// At most `max_upstreams` upstreams in the route table (at least 1), instead of
    /// [`MAX_UPSTREAMS`]: an Add past it is refused.
    pub fn with_max_upstreams(mut self, max_upstreams: usize) -> Self {
        self.max_upstreams = max_upstreams.max(1);
        self
    }

    /// At most `max_connections` open at once (at least 1), and `handshake_timeout` for a
    /// new connection's TLS handshake and HTTP/2 preface, instead of
    /// [`ADMIN_MAX_CONNECTIONS`] and [`ADMIN_HANDSHAKE_TIMEOUT`]. The share of one peer is
    /// kept at most `max_connections`.
    pub fn with_limits(mut self, max_connections: usize, handshake_timeout: Duration) -> Self {
        let max_connections = max_connections.max(1);
        self.limits = ListenerLimits {
            max_connections,
            max_per_peer: self.limits.max_per_peer.min(max_connections),
            handshake_timeout,
        };
        self
    }

    /// At most `max_per_peer` connections open at once from one IP address (at least 1, at
    /// most the listener's cap), instead of [`ADMIN_MAX_CONNECTIONS_PER_PEER`].
    pub fn with_peer_limit(mut self, max_per_peer: usize) -> Self {
        self.limits.max_per_peer = max_per_peer.clamp(1, self.limits.max_connections);
        if self.limits.max_per_peer != max_per_peer {
            tracing::warn!(
                asked = max_per_peer,
                max_per_peer = self.limits.max_per_peer,
                max_connections = self.limits.max_connections,
                "--admin-max-connections-per-peer kept between 1 and --admin-max-connections"
            );
        }
        self
    }

    /// Connections its listener keeps open at once.
    pub fn max_connections(&self) -> usize {
        self.limits.max_connections
    }

    /// At most `max_connections` open at once (at least 1), its handshake timeout kept.
    pub fn with_max_connections(self, max_connections: usize) -> Self {
        let handshake_timeout = self.limits.handshake_timeout;
        self.with_limits(max_connections, handshake_timeout)
    }
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: ADMIN_MAX_CONNECTIONS,
            max_per_peer: ADMIN_MAX_CONNECTIONS_PER_PEER,
            handshake_timeout: ADMIN_HANDSHAKE_TIMEOUT,
        }
    }
}

impl AdminOptions {
    /// The admin API these options ask for, or `None` when it is not enabled. Refuses to
    /// enable it without a token source (or with an empty one) unless client certificates are
    /// accepted, and reads and checks every file now, before anything starts.
    pub fn config(&self) -> anyhow::Result<Option<AdminConfig>> {
        let Some(addr) = self.admin_addr else {
            return Ok(None);
        };
        let mut tokens = Tokens::default();
        if let Some(path) = &self.admin_token_file {
            tokens = tokens.merged(Tokens::from_file(path)?)?;
        }
        if let Some(var) = &self.admin_token_env {
            tokens = tokens.merged(Tokens::from_env(var)?)?;
        }
        let certificates = match &self.admin_client_ca {
            Some(_) => Some(CertificateHolders::named(self.admin_client_names.clone())?),
            None if !self.admin_client_names.is_empty() => {
                bail!("--admin-client-name needs --admin-client-ca FILE")
            }
            None => None,
        };
        if tokens.is_empty() && certificates.is_none() {
            bail!(
                "the admin API needs a token: give --admin-token-file FILE (one `NAME TOKEN` a \
                 line) or --admin-token-env VAR, or client certificates (--admin-tls-cert, \
                 --admin-tls-key and --admin-client-ca FILE); it is not started without one"
            );
        }
        let tls = match (&self.admin_tls_cert, &self.admin_tls_key) {
            (Some(cert), Some(key)) => {
                // With tokens too, a token holder without a certificate must still get in.
                let clients_optional = !tokens.is_empty();
                let config = crate::tls::server_config_with(
                    cert,
                    key,
                    self.admin_client_ca.as_deref(),
                    clients_optional,
                )
                .context("--admin-tls-cert, --admin-tls-key, --admin-client-ca")?;
                Some(Arc::new(config))
            }
            (None, None) if self.admin_client_ca.is_some() => {
                bail!(
                    "--admin-client-ca needs TLS: give --admin-tls-cert FILE --admin-tls-key FILE"
                )
            }
            (None, None) => None,
            _ => bail!("--admin-tls-cert and --admin-tls-key go together"),
        };
        let config = AdminConfig {
            addr,
            access: Access {
                tokens,
                certificates,
            },
            tls,
            limits: ListenerLimits::default(),
            max_upstreams: MAX_UPSTREAMS,
            metrics: None,
            max_catalog_bytes: MAX_CATALOG_BYTES,
            max_replicas: crate::upstream::MAX_REPLICAS,
            usage: None,
            shadow: None,
            quiet_period: Duration::from_secs(self.quiet_period_secs),
            state_file: self.state_file.clone(),
            fleet: None,
        }
        .with_limits(self.admin_max_connections, ADMIN_HANDSHAKE_TIMEOUT)
        .with_peer_limit(self.admin_max_connections_per_peer)
        .with_max_upstreams(self.max_upstreams)
        .with_max_catalog_bytes(self.max_catalog_bytes)
        .with_max_replicas(self.max_replicas);
        Ok(Some(config))
    }
}

/// Random bytes from the kernel, hex encoded: a fresh admin token (32 bytes, 64 characters).
pub fn generate_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("cannot read random bytes from /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
