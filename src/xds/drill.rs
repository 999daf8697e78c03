//! The main job's fleet drill: a v1 → v2 rollout through three Envoys the gateway steers over
//! xDS, under mixed-version load through each. v1 and v2 are `testbed serve --backend`
//! processes, each behind a gateway of its own that names the version on every reply (a bare
//! backend names none); the steering gateway starts with v1 only, then each step is one
//! `testbed route` command, as a user runs it, which answers once every Envoy acknowledged the
//! change: v2 added, v1 retired onto v2, v1 removed. Each change's time is the command's, from
//! start to answer (reflection read and the fleet's acknowledgements included).

use crate::load::{Load, LoadOptions, LoadReport};
use anyhow::{Context, bail};
use port::child::ChildServer;
use proxy::xds_node::EnvoyNode;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The Envoys of the fleet.
pub const NODES: [&str; 3] = ["envoy-1", "envoy-2", "envoy-3"];
/// How long Envoys get to connect and take the first table.
const WITHIN: Duration = Duration::from_secs(30);
/// The admin token the drill's gateway takes.
const TOKEN: &str = "fleet-drill-token-0123456789";

/// One admin change of the drill.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The phase it starts.
    pub phase: String,
    /// The `testbed route` arguments (without the admin flags).
    pub command: String,
    /// From the command's start until it answered: every Envoy acknowledged the change.
    pub took_ms: f64,
}

/// What the drill saw through one Envoy.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRun {
    /// The node's id.
    pub node: String,
    /// Its v1 clients' load, phase by phase (from the first phase).
    pub v1: LoadReport,
    /// Its v2 clients' load, phase by phase (from `v2 added`).
    pub v2: LoadReport,
}

/// The drill's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FleetDrill {
    /// Each change, in order.
    pub changes: Vec<Change>,
    /// Each Envoy's load.
    pub nodes: Vec<NodeRun>,
}

/// The processes of the drill, kept until it ends.
struct Stage {
    exe: PathBuf,
    admin: String,
    token: PathBuf,
    v2: SocketAddr,
    envoys: Vec<EnvoyNode>,
    _processes: Vec<ChildServer>,
    _dir: tempfile::TempDir,
}

/// A backend of `api` behind a gateway of its own that routes only `version` to it (so that
/// each reply names its version; a bare backend names none): the labelling gateway first.
pub async fn labelled(exe: &Path, api: &str, version: &str) -> anyhow::Result<[ChildServer; 2]> {
    let raw =
        ChildServer::testbed(exe, &["serve", "--backend", api, "--addr", "127.0.0.1:0"]).await?;
    let upstream = format!("{api}={version}@{}", raw.addr);
    let label = ChildServer::testbed(
        exe,
        &["serve", "--upstream", &upstream, "--addr", "127.0.0.1:0"],
    )
    .await?;
    Ok([label, raw])
}

impl Stage {
    async fn start(exe: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("fleet-drill").tempdir()?;
        let (tokens, token) = (dir.path().join("tokens"), dir.path().join("token"));
        std::fs::write(&tokens, format!("ops {TOKEN}\n"))?;
        std::fs::write(&token, format!("{TOKEN}\n"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            for file in [&tokens, &token] {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        let [v1, v1_raw] = labelled(exe, "v1", "1.0.0").await?;
        let [v2, v2_raw] = labelled(exe, "v2", "2.0.0").await?;
        let upstream = format!("v1=1.0.0@{}", v1.addr);
        let tokens_arg = tokens.display().to_string();
        let args = [
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--admin-addr",
            "127.0.0.1:0",
            "--admin-token-file",
            &tokens_arg,
            "--xds-addr",
            "127.0.0.1:0",
        ];
        let mut gateway = ChildServer::testbed(exe, &args).await?;
        let admin = gateway.next_line().await?;
        let admin = admin
            .strip_prefix("testbed admin API on ")
            .with_context(|| format!("the gateway printed {admin:?}"))?
            .to_string();
        let xds = gateway.next_line().await?;
        let xds: SocketAddr = xds
            .strip_prefix("testbed xDS on ")
            .and_then(|a| a.trim().parse().ok())
            .with_context(|| format!("the gateway printed {xds:?}"))?;
        let mut envoys = Vec::new();
        for node in NODES {
            let mut envoy = EnvoyNode::start(node, xds).await?;
            envoy.wait_listening(WITHIN).await?;
            envoys.push(envoy);
        }
        Ok(Self {
            exe: exe.to_path_buf(),
            admin,
            token,
            v2: v2.addr,
            envoys,
            _processes: vec![gateway, v1, v1_raw, v2, v2_raw],
            _dir: dir,
        })
    }

    /// `testbed route ARGS`, which must succeed: how long it took.
    async fn route(&self, args: &[&str]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let out = tokio::process::Command::new(&self.exe)
            .arg("route")
            .args(args)
            .args(["--admin", &self.admin, "--token-file"])
            .arg(&self.token)
            .output()
            .await
            .context("testbed route runs")?;
        if !out.status.success() {
            bail!(
                "testbed route {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(started.elapsed())
    }

    /// Waits until `route list` shows every node connected and current.
    async fn wait_current(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let out = tokio::process::Command::new(&self.exe)
                .args([
                    "route",
                    "list",
                    "--json",
                    "--admin",
                    &self.admin,
                    "--token-file",
                ])
                .arg(&self.token)
                .output()
                .await
                .context("testbed route list runs")?;
            let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let nodes = list["xds"]["nodes"].as_array().cloned().unwrap_or_default();
            let current = NODES.iter().all(|id| {
                nodes
                    .iter()
                    .any(|n| n["id"] == *id && n["current"] == true && n["streams"] != 0)
            });
            if current {
                return Ok(());
            }
            if started.elapsed() > WITHIN {
                bail!(
                    "the Envoys were not all current within {WITHIN:?}: {}",
                    list["xds"]
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs the drill with the testbed binary `exe`, each phase `phase` long.
pub async fn run(exe: &Path, phase: Duration) -> anyhow::Result<FleetDrill> {
    let stage = Stage::start(exe).await?;
    stage.wait_current().await?;
    let options = LoadOptions {
        v1_clients: 2,
        v2_clients: 2,
        requests_per_client: None,
        rate_per_client: Some(100.0),
        open_loop: false,
        v1_requirement: None,
        v2_requirement: Some(semver::VersionReq::parse("^2").context("a requirement")?),
        // v2's calls start once v2 is added (a fleet has no health Watch to wait on).
        v2_waits_for_health: false,
        call_log: None,
    };
    let (v1_clients, v2_clients) = (
        LoadOptions {
            v2_clients: 0,
            ..options.clone()
        },
        LoadOptions {
            v1_clients: 0,
            ..options
        },
    );
    let mut loads = Vec::new();
    for envoy in &stage.envoys {
        loads.push(Load::start(envoy.listen, &v1_clients, "v1 only").await?);
    }
    let mut v2_loads = Vec::new();
    tokio::time::sleep(phase).await;
    let steps = [
        ("v2 added", format!("add v2=2.0.0@{}", stage.v2)),
        (
            "v1 retired onto v2",
            format!("replace v2=2.0.0@{}+increment.v1", stage.v2),
        ),
        ("v1 removed", "remove v1 --force".to_string()),
    ];
    let mut changes = Vec::new();
    for (name, command) in steps {
        for load in loads.iter_mut().chain(&mut v2_loads) {
            load.next_phase(name);
        }
        let args: Vec<&str> = command.split(' ').collect();
        let took = stage.route(&args).await?;
        if v2_loads.is_empty() {
            for envoy in &stage.envoys {
                v2_loads.push(Load::start(envoy.listen, &v2_clients, name).await?);
            }
        }
        changes.push(Change {
            phase: name.to_string(),
            command: format!("testbed route {command}"),
            took_ms: took.as_secs_f64() * 1e3,
        });
        tokio::time::sleep(phase).await;
    }
    let mut nodes = Vec::new();
    for ((envoy, v1), v2) in stage.envoys.iter().zip(loads).zip(v2_loads) {
        nodes.push(NodeRun {
            node: envoy.id.clone(),
            v1: v1.stop().await?,
            v2: v2.stop().await?,
        });
    }
    Ok(FleetDrill { changes, nodes })
}
