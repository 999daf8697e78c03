//! An Envoy that takes everything from an xDS control plane (`testbed serve --xds-addr`): its
//! bootstrap, which holds only the node, the admin interface and the ADS cluster (the listener,
//! routes, clusters and endpoints all come over the ADS), and [`EnvoyNode`], an Envoy process
//! started with one, for the fleet tests, the measurements and the bench's xDS path.

use anyhow::Context;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The node metadata key (a string `IP:PORT`) naming where the node's listener listens:
/// several Envoys on one machine each need their own port.
pub const LISTEN_METADATA: &str = "testbed_listen";

/// What a node's bootstrap says.
#[derive(Debug, Clone)]
pub struct XdsBootstrap {
    /// The node's id (each Envoy of a fleet its own).
    pub node_id: String,
    /// The node's cluster.
    pub cluster: String,
    /// The control plane.
    pub xds: SocketAddr,
    /// Where the node's listener (served over xDS) listens.
    pub listen: SocketAddr,
    /// The Unix socket of Envoy's admin interface (no port to collide with another Envoy's).
    pub admin_socket: PathBuf,
}

/// The bootstrap YAML of `args`.
pub fn bootstrap(args: &XdsBootstrap) -> String {
    let quote = |text: &str| serde_json::Value::from(text).to_string();
    format!(
        "node:
  id: {id}
  cluster: {cluster}
  metadata: {{ {LISTEN_METADATA}: '{listen}' }}
admin:
  address: {{ pipe: {{ path: {admin} }} }}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
    - envoy_grpc: {{ cluster_name: xds }}
  cds_config: {{ ads: {{}}, resource_api_version: V3 }}
  lds_config: {{ ads: {{}}, resource_api_version: V3 }}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: '{xds_ip}', port_value: {xds_port} }}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
",
        id = quote(&args.node_id),
        cluster = quote(&args.cluster),
        listen = args.listen,
        admin = quote(&args.admin_socket.display().to_string()),
        xds_ip = args.xds.ip(),
        xds_port = args.xds.port(),
    )
}

/// A port on 127.0.0.1 free a moment ago (another socket may take it before Envoy binds it).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    listener.local_addr().context("a bound socket's address")
}

/// An Envoy process with a bootstrap pointing at a control plane, in a temporary directory
/// removed with it; dropping it kills Envoy.
#[derive(Debug)]
pub struct EnvoyNode {
    /// The node id.
    pub id: String,
    /// Where its listener listens once the control plane sent it.
    pub listen: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl EnvoyNode {
    /// Starts Envoy (`ProxyKind::Envoy.find()`: the `.venv`'s or PATH's) as node `id` of
    /// the control plane at `xds`, its listener on a free 127.0.0.1 port.
    pub async fn start(id: &str, xds: SocketAddr) -> anyhow::Result<Self> {
        Self::start_listening(id, xds, free_port()?).await
    }

    /// [`start`](Self::start), its listener on `listen`.
    pub async fn start_listening(
        id: &str,
        xds: SocketAddr,
        listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        Self::spawn(id, xds, listen, 1).await
    }

    /// [`start`](Self::start) with `workers` worker threads (`--concurrency`), as the bench
    /// runs Envoy with a file configuration, so that the two are measured alike.
    pub async fn start_with_workers(
        id: &str,
        xds: SocketAddr,
        workers: u32,
    ) -> anyhow::Result<Self> {
        Self::spawn(id, xds, free_port()?, workers).await
    }

    async fn spawn(
        id: &str,
        xds: SocketAddr,
        listen: SocketAddr,
        workers: u32,
    ) -> anyhow::Result<Self> {
        let binary = crate::ProxyKind::Envoy.find()?;
        let dir = tempfile::Builder::new()
            .prefix("testbed-xds-envoy-")
            .tempdir()
            .context("a temporary directory for Envoy")?;
        let args = XdsBootstrap {
            node_id: id.to_string(),
            cluster: "testbed".to_string(),
            xds,
            listen,
            admin_socket: dir.path().join("admin.sock"),
        };
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, bootstrap(&args))
            .with_context(|| format!("writing {}", config.display()))?;
        let log = std::fs::File::create(dir.path().join("envoy.log")).context("Envoy's log")?;
        let log_err = log.try_clone().context("Envoy's log")?;
        let child = Command::new(&binary)
            .args(["-c", &config.display().to_string()])
            // Several Envoys side by side: no shared memory for hot restart, so no --base-id.
            .args(["--disable-hot-restart", "--log-level", "warn"])
            .args(["--concurrency", &workers.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self {
            id: id.to_string(),
            listen,
            child,
            dir,
        })
    }

    /// Envoy's process id (`None` once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Its directory (bootstrap, log, admin socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until its listener accepts connections (the control plane sent it), at most
    /// `within`; the log's end in the error otherwise.
    pub async fn wait_listening(&mut self, within: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!(
                    "Envoy {} exited with {status}; its log:\n{}",
                    self.id,
                    self.log()
                );
            }
            if tokio::net::TcpStream::connect(self.listen).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "Envoy {} did not listen on {} within {within:?}; its log:\n{}",
            self.id,
            self.listen,
            self.log()
        )
    }

    /// Kills it and waits for it to exit.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("killing Envoy")
    }
}
