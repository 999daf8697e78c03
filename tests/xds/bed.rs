//! The fleet's test bed: v1 and v2 backends, the gateway with its admin API and `--xds-addr`,
//! and Envoys pointed at it; the admin CLI, the nodes `route list` reports, and calls through
//! an Envoy that say which version served them.

use crate::common::credentials::token_file;
use crate::common::{temp_dir, tool};
use port::child::ChildServer;
use proxy::xds_node::EnvoyNode;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const TOKEN: &str = "xds-fleet-token-0123456789";
pub(super) use crate::common::served::{V1_PATH, V2_PATH};
/// How long Envoys get to connect, take a change or come back.
pub(super) const WITHIN: Duration = Duration::from_secs(30);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_testbed"))
}

/// The bed.
pub(super) struct Bed {
    pub(super) gateway: Option<ChildServer>,
    /// The gateway's flags besides the bed's own.
    flags: Vec<String>,
    pub(super) admin: String,
    pub(super) xds: SocketAddr,
    token: PathBuf,
    tokens: PathBuf,
    pub(super) v1: SocketAddr,
    pub(super) v2: SocketAddr,
    pub(super) envoys: Vec<EnvoyNode>,
    backends: Vec<ChildServer>,
    pub(super) dir: tempfile::TempDir,
}

/// A backend of `api` at `version` that names its version on every reply (see
/// [`testbed::xds::drill::labelled`]).
async fn labelled(api: &str, version: &str) -> [ChildServer; 2] {
    testbed::xds::drill::labelled(exe(), api, version)
        .await
        .expect("a labelled backend starts")
}

/// Whether Envoy is here (outside CI a missing one skips; under CI=true it fails).
pub(super) fn envoy_present() -> bool {
    tool(proxy::ProxyKind::Envoy.find()).is_some()
}

impl Bed {
    /// The backends and the gateway routing `v1=1.0.0` only, its xDS on `xds` (port 0: any).
    pub(super) async fn start(xds: &str) -> Bed {
        Self::start_with(xds, &[]).await
    }

    /// [`start`](Self::start), the gateway given `flags` too.
    pub(super) async fn start_with(xds: &str, flags: &[&str]) -> Bed {
        let dir = temp_dir("xds");
        let tokens = token_file(dir.path(), &format!("ci {TOKEN}\n"));
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("the token file");
        let backends: Vec<ChildServer> =
            [labelled("v1", "1.0.0").await, labelled("v2", "2.0.0").await]
                .into_iter()
                .flatten()
                .collect();
        let mut bed = Bed {
            gateway: None,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            admin: String::new(),
            xds: "127.0.0.1:0".parse().expect("an address"),
            token,
            tokens,
            v1: backends[0].addr,
            v2: backends[2].addr,
            envoys: Vec::new(),
            backends,
            dir,
        };
        bed.start_gateway(xds).await;
        bed
    }

    /// (Re)starts the gateway, its table kept in the bed's state file.
    pub(super) async fn start_gateway(&mut self, xds: &str) {
        let upstream = format!("v1=1.0.0@{}", self.v1);
        let state = self.dir.path().join("state.yaml");
        let mut args = vec![
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--admin-addr",
            "127.0.0.1:0",
            "--admin-token-file",
            self.tokens.to_str().expect("a UTF-8 path"),
            "--state-file",
            state.to_str().expect("a UTF-8 path"),
            "--xds-addr",
            xds,
        ];
        args.extend(self.flags.iter().map(String::as_str));
        let mut gateway = ChildServer::testbed(exe(), &args)
            .await
            .expect("the gateway starts");
        let admin = gateway.next_line().await.expect("the admin line");
        assert!(admin.starts_with("testbed admin API on "), "{admin}");
        let xds = gateway.next_line().await.expect("the xDS line");
        assert!(xds.starts_with("testbed xDS on "), "{xds}");
        self.admin = admin.rsplit(' ').next().unwrap_or_default().to_string();
        self.xds = xds
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("the xDS address");
        self.gateway = Some(gateway);
    }

    /// Another backend of `api` at `version` (labelled, see [`labelled`]); its address.
    pub(super) async fn add_backend(&mut self, api: &str, version: &str) -> SocketAddr {
        let pair = labelled(api, version).await;
        let addr = pair[0].addr;
        self.backends.extend(pair);
        addr
    }

    /// Starts Envoy node `id` and waits until its listener is up.
    pub(super) async fn add_envoy(&mut self, id: &str) -> &EnvoyNode {
        let mut envoy = EnvoyNode::start(id, self.xds).await.expect("Envoy starts");
        envoy
            .wait_listening(WITHIN)
            .await
            .unwrap_or_else(|err| panic!("{err:#}"));
        self.envoys.push(envoy);
        self.envoys.last().expect("just pushed")
    }

    /// Starts Envoy node `id` listening on `listen`, without waiting for it.
    pub(super) async fn add_envoy_at(&mut self, id: &str, listen: SocketAddr) {
        let envoy = EnvoyNode::start_listening(id, self.xds, listen)
            .await
            .expect("Envoy starts");
        self.envoys.push(envoy);
    }

    /// [`start`](Self::start) and Envoys `ids`, all current.
    pub(super) async fn with_envoys(ids: &[&str]) -> Bed {
        let mut bed = Self::start("127.0.0.1:0").await;
        for id in ids {
            bed.add_envoy(id).await;
        }
        bed.wait_current(ids).await;
        bed
    }

    /// [`with_envoys`](Self::with_envoys), v2=2.0.0 added beside v1.
    pub(super) async fn side_by_side(ids: &[&str]) -> Bed {
        let bed = Self::with_envoys(ids).await;
        let v2 = format!("v2=2.0.0@{}", bed.v2);
        bed.change(&["add", &v2]).await;
        bed
    }

    /// Kills the gateway (and with it the control plane).
    pub(super) async fn kill_gateway(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.kill().await.expect("the gateway is killed");
        }
    }

    /// `testbed route ARGS --admin ... --token-file ...`.
    pub(super) async fn route(&self, args: &[&str]) -> Output {
        crate::common::credentials::route_cli(&self.admin, &self.token, args).await
    }

    /// `route ARGS`, which must succeed.
    pub(super) async fn change(&self, args: &[&str]) {
        let output = self.route(args).await;
        assert!(
            output.status.success(),
            "route {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `route list --json`'s `xds`.
    pub(super) async fn xds_status(&self) -> Value {
        let output = self.route(&["list", "--json"]).await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let list: Value = serde_json::from_slice(&output.stdout).expect("route list --json");
        list["xds"].clone()
    }

    /// Waits until `route list` shows `ids` connected and current; their status.
    pub(super) async fn wait_current(&self, ids: &[&str]) -> Value {
        let started = Instant::now();
        loop {
            let status = self.xds_status().await;
            let current = ids.iter().all(|id| {
                status["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|n| n["id"] == *id && n["current"] == true && n["streams"] != 0)
            });
            if current {
                return status;
            }
            assert!(
                started.elapsed() < WITHIN,
                "nodes {ids:?} not current within {WITHIN:?}: {status:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The version that served a call to `path` with `header` through `addr`, or the status.
pub(super) async fn served(
    addr: SocketAddr,
    path: &str,
    header: Option<&str>,
) -> Result<String, tonic::Status> {
    let channel = client::connect(addr)
        .await
        .map_err(|err| tonic::Status::unavailable(format!("{err:#}")))?;
    crate::common::served::served(channel, path, header).await
}
