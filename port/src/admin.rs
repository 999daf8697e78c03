//! The admin API: change a running router's route table from outside its process.
//!
//! A gRPC service, `testbed.admin.v1.Routes` (`proto/admin/v1/routes.proto`: List, Add,
//! Replace, Drain, Remove), served on a listener of its own (`serve --admin-addr`, loopback by
//! default), never on the public port. Every call must carry `authorization: Bearer TOKEN` with
//! one of the tokens the server was given ([`auth`]); each change is logged with the name of the
//! token's holder, what was asked and how it ended. Add and Replace take the text of
//! `serve --upstream` and do what the start does with it: read the upstream's descriptors by
//! reflection and check a `+PACKAGE` retirement with compat ([`service`]). `testbed route` and
//! `testbed rollout --processes` are its clients ([`client`]).
//!
//! Not yet: TLS on the admin listener, client certificates in place of tokens, and
//! `--descriptors` files for upstreams added at runtime (they must serve reflection).

pub mod auth;
pub mod client;
pub mod service;

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Code generated from `proto/admin/v1/routes.proto`.
pub mod pb {
    #![allow(missing_docs, unreachable_pub)]
    tonic::include_proto!("testbed.admin.v1");
}

pub use auth::{Caller, Tokens};
pub use client::{AdminClient, connect};
pub use service::{RunningAdmin, addresses, start};

/// Where the admin API listens when `--admin-addr` is given without a value.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:50052";

/// The admin flags of `testbed serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdminOptions {
    /// Serve the admin API (change routes at runtime: `testbed route`) on this address, a
    /// listener of its own (127.0.0.1:50052 when given without a value). Needs a token source.
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_ADMIN_ADDR, value_parser = crate::server::parse_addr)]
    pub admin_addr: Option<SocketAddr>,
    /// Admin bearer tokens, one `NAME TOKEN` a line (`#` comments); changes are logged with
    /// NAME. Tokens: at least 16 visible ASCII characters.
    #[arg(long, requires = "admin_addr")]
    pub admin_token_file: Option<PathBuf>,
    /// Also accept the token in this environment variable (logged as "env").
    #[arg(long, requires = "admin_addr")]
    pub admin_token_env: Option<String>,
    /// Client certificates in place of tokens on the admin API: not supported yet.
    #[arg(long, requires = "admin_addr")]
    pub admin_client_ca: Option<PathBuf>,
}

impl AdminOptions {
    /// The tokens the admin API accepts, or `None` when it is not enabled. Refuses to enable it
    /// without a token source (or with an empty one), and refuses what is not supported yet.
    pub fn tokens(&self) -> anyhow::Result<Option<Tokens>> {
        if self.admin_addr.is_none() {
            return Ok(None);
        }
        if let Some(ca) = &self.admin_client_ca {
            bail!(
                "--admin-client-ca {}: client certificates on the admin API are not supported \
                 yet; use --admin-token-file FILE or --admin-token-env VAR",
                ca.display()
            );
        }
        let mut tokens = Tokens::default();
        if let Some(path) = &self.admin_token_file {
            tokens = tokens.merged(Tokens::from_file(path)?)?;
        }
        if let Some(var) = &self.admin_token_env {
            tokens = tokens.merged(Tokens::from_env(var)?)?;
        }
        if tokens.is_empty() {
            bail!(
                "the admin API needs a token: give --admin-token-file FILE (one `NAME TOKEN` a \
                 line) or --admin-token-env VAR; it is not started without one"
            );
        }
        Ok(Some(tokens))
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
