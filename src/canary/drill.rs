//! A canary drill on an API the testbed did not write: two builds of the shop example's v2
//! (`examples/shop/server.py`, Python grpcio) behind a gateway with metrics and an admin API,
//! unpinned calls running through it, and `testbed canary` moving them from one build to the
//! other. The main job runs it twice (a good build promoted, one failing a fifth of its calls
//! rolled back) and the report shows both timelines; the tests drive the same pieces.

use anyhow::Context;
use port::child::ChildServer;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `shop.v2.GetProductRequest { sku: "book-1" }`, encoded.
const GET_BOOK: &[u8] = b"\x0a\x06book-1";
const GET_PRODUCT: &str = "/shop.v2.Shop/GetProduct";

/// Calls counted by (the version that answered, its code and message: `OK` for a success).
pub type Counts = BTreeMap<(String, String), u64>;

/// The header the drill's callers name themselves in (the gateway's `--usage-identity-header`).
pub const CALLER_HEADER: &str = "x-client-id";
/// The callers of [`ShopLoad`], one loop each.
pub const CALLERS: [&str; 2] = ["storefront", "mobile-app"];

/// Unpinned GetProduct calls through a gateway, one loop back to back per caller of
/// [`CALLERS`] (each naming itself in [`CALLER_HEADER`]), until stopped.
#[derive(Debug)]
pub struct ShopLoad {
    stop: Arc<AtomicBool>,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<Counts>)>,
}

impl ShopLoad {
    /// Starts the loops against `addr`.
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for caller in CALLERS {
            let channel = client::connect(addr).await?;
            let stop = stop.clone();
            let task = tokio::spawn(async move {
                let mut counts = Counts::new();
                let mut grpc = tonic::client::Grpc::new(channel);
                while !stop.load(Ordering::Relaxed) {
                    let outcome = async {
                        grpc.ready()
                            .await
                            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                        let mut request = tonic::Request::new(GET_BOOK.to_vec());
                        request.metadata_mut().insert(
                            CALLER_HEADER,
                            tonic::metadata::AsciiMetadataValue::from_static(caller),
                        );
                        let path = http::uri::PathAndQuery::from_static(GET_PRODUCT);
                        grpc.unary(request, path, compat::RawCodec).await
                    }
                    .await;
                    let (metadata, code) = match outcome {
                        Ok(reply) => (reply.metadata().clone(), "OK".to_string()),
                        Err(status) => (
                            status.metadata().clone(),
                            format!("{:?}: {}", status.code(), status.message()),
                        ),
                    };
                    let version = metadata
                        .get("x-api-version")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_string();
                    *counts.entry((version, code)).or_default() += 1;
                }
                counts
            });
            tasks.push((caller, task));
        }
        Ok(Self { stop, tasks })
    }

    /// Stops the loops: every call they made, counted per caller.
    pub async fn stop_by_caller(self) -> anyhow::Result<BTreeMap<&'static str, Counts>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = BTreeMap::new();
        for (caller, task) in self.tasks {
            all.insert(caller, task.await.context("a load loop panicked")?);
        }
        Ok(all)
    }

    /// Stops the loops: every call they made, counted.
    pub async fn stop(self) -> anyhow::Result<Counts> {
        let mut all = Counts::new();
        for counts in self.stop_by_caller().await?.into_values() {
            for (key, n) in counts {
                *all.entry(key).or_default() += n;
            }
        }
        Ok(all)
    }
}

/// `examples/shop/server.py`: here, or in the clone this binary was built from.
pub fn shop_server() -> anyhow::Result<PathBuf> {
    let here = PathBuf::from("examples/shop/server.py");
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop/server.py");
    [here, built]
        .into_iter()
        .find(|path| path.is_file())
        .context("examples/shop/server.py is not here nor in the clone the testbed was built from")
}

/// Two shop v2 builds behind a gateway: `v2a` at 2.0.0 serving, `v2b` at 2.1.0 at weight 0
/// (failing `fail_percent` of its calls), the gateway with metrics and an admin API.
#[derive(Debug)]
pub struct Stage {
    /// The gateway.
    pub gateway: ChildServer,
    /// Its metrics listener.
    pub metrics: SocketAddr,
    /// Its admin API.
    pub admin: SocketAddr,
    /// The admin token file.
    pub tokens: PathBuf,
    _builds: [ChildServer; 2],
    _dir: tempfile::TempDir,
}

/// The token the drill's admin API takes.
const TOKEN: &str = "canary-drill-token-0123";

impl Stage {
    /// Starts it with `python` (a venv's, with grpcio) and the testbed binary `exe`.
    pub async fn start(python: &Path, exe: &Path, fail_percent: u32) -> anyhow::Result<Self> {
        let server = shop_server()?;
        let build = |extra: Vec<String>| {
            let mut command = tokio::process::Command::new(python);
            command
                .arg(&server)
                .args(["--version", "v2", "--addr", "127.0.0.1:0"])
                .args(extra);
            ChildServer::spawn(command, "shop v2 build")
        };
        let stable = build(Vec::new()).await?;
        let canary = build(vec!["--fail-percent".into(), fail_percent.to_string()]).await?;
        let dir = tempfile::Builder::new().prefix("canary-drill").tempdir()?;
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, format!("ops {TOKEN}\n"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600))?;
        }
        let (stable_spec, canary_spec) = (
            format!("v2a=2.0.0@{}", stable.addr),
            format!("v2b=2.1.0@{};weight=0", canary.addr),
        );
        let tokens_arg = tokens.display().to_string();
        let args = [
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--upstream",
            &stable_spec,
            "--upstream",
            &canary_spec,
            "--metrics-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--admin-token-file",
            &tokens_arg,
            "--usage-identity-header",
            CALLER_HEADER,
        ];
        let mut gateway = ChildServer::testbed(exe, &args).await?;
        let (mut metrics, mut admin) = (None, None);
        while metrics.is_none() || admin.is_none() {
            let line = gateway.next_line().await?;
            if let Some(rest) = line.strip_prefix("testbed metrics on http://") {
                metrics = rest.strip_suffix("/metrics").and_then(|a| a.parse().ok());
            } else if let Some(rest) = line.strip_prefix("testbed admin API on ") {
                admin = rest.trim().parse().ok();
            }
        }
        Ok(Self {
            gateway,
            metrics: metrics.context("no metrics address")?,
            admin: admin.context("no admin address")?,
            tokens,
            _builds: [stable, canary],
            _dir: dir,
        })
    }

    /// The gateway's usage table (`testbed route usage --json`): who called what, per version.
    pub async fn usage(&self) -> anyhow::Result<serde_json::Value> {
        let target = self.canary_args(&[], Duration::ZERO, 0).target;
        let mut client = target.connect().await?;
        let reply = client
            .usage(port::admin::pb::UsageRequest::default())
            .await
            .map_err(|status| target.refused(status))?
            .into_inner();
        Ok(crate::route::usage_json(&reply))
    }

    /// `testbed canary --from v2a --to v2b` arguments for this stage, judged from its metrics.
    pub fn canary_args(
        &self,
        steps: &[u8],
        interval: Duration,
        min_calls: u64,
    ) -> super::CanaryArgs {
        super::CanaryArgs {
            from: "v2a".into(),
            to: "v2b".into(),
            steps: steps.to_vec(),
            interval,
            max_error_rate: 0.01,
            // Both builds are the same server: their p99s differ by noise.
            max_p99_ratio: 1000.0,
            error_codes: super::DEFAULT_ERROR_CODES
                .split(',')
                .map(String::from)
                .collect(),
            min_calls,
            max_holds: 3,
            metrics: Some(self.metrics.to_string()),
            prometheus: None,
            calls_query: super::source::CALLS_QUERY.into(),
            errors_query: super::source::ERRORS_QUERY.into(),
            p99_query: super::source::P99_QUERY.into(),
            target: crate::route::Target {
                admin: port::admin::AdminAddress::Plain(self.admin),
                token_file: Some(self.tokens.clone()),
                token_name: None,
                tls: Default::default(),
                json: true,
            },
        }
    }
}
