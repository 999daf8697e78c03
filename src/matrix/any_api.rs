//! `testbed matrix --old A --new B --traffic FILE`: the compatibility matrix for any API. Rows
//! are clients of each version, each built from that version's own descriptors: the testbed's
//! dynamic tonic client (unpinned, and pinned to its own build with `x-api-version: =VERSION`),
//! grpcurl and a Python grpcio client. Columns are deployments of the user's two builds behind
//! a gateway: `old only`, `side by side`, `new only`, `side by side via` each real proxy given
//! with `--proxy` (in front of that gateway), and `old retired onto new` when NEW is another
//! package. Each cell sends the version's traffic through the gateway and to that version's own
//! server, and is judged by the comparison, as `testbed replay` judges (compat's
//! [`Replayer`]): a client is served right when it gets what its own version answers.
//!
//! New clients where the new build is not deployed, and pinned clients where their own build is
//! not, are shown but not judged: what they miss there is expected. Every other cell must come
//! out ok.

use super::grpcurl_lane::GrpcurlLane;
use super::outside_client::Failures;
use super::python_lane::{PythonClient, PythonLane};
use anyhow::Context;
use compat::cli::Baseline;
use compat::probe::Header;
use compat::replay::{Lanes, MethodReplay, ReplayOptions, Replayer, Verdict};
use compat::traffic::Line;
use port::child::ChildServer;
use prost::Message as _;
use prost_reflect::DescriptorPool;
use proxy::{Arrangement, ProxyKind, RunningProxy};
use semver::Version;
use serde::Serialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `matrix` flags for any API.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiMatrixArgs {
    /// Your API's old build (grpc://HOST:PORT): run the matrix on your API instead of the
    /// Incrementer, with --new and --traffic.
    #[arg(long, value_parser = compat::cli::parse_server, requires_all = ["new", "files"], conflicts_with_all = ["clients", "deployments"])]
    pub old: Option<String>,
    /// Your API's new build (grpc://HOST:PORT).
    #[arg(long, value_parser = compat::cli::parse_server, requires = "old")]
    pub new: Option<String>,
    /// The old clients' traffic (JSON lines, as `testbed replay` reads; repeatable). Send
    /// reads, or writes your test servers may take: every cell sends it.
    #[arg(long, id = "files", value_name = "FILE", requires = "old")]
    pub traffic: Vec<PathBuf>,
    /// The new clients' traffic (default: --traffic, read with NEW's descriptors).
    #[arg(long, value_name = "FILE", requires = "old")]
    pub new_traffic: Vec<PathBuf>,
    /// NEW's descriptors from DIR or FILE.binpb instead of reflection (--descriptors: OLD's).
    #[arg(long, value_name = "PATH", requires = "old")]
    pub new_descriptors: Option<String>,
    /// The version the gateway routes OLD as.
    #[arg(long, default_value = "1.0.0", requires = "old")]
    pub old_version: Version,
    /// The version the gateway routes NEW as (higher: it takes unpinned calls side by side).
    #[arg(long, default_value = "1.1.0", requires = "old")]
    pub new_version: Version,
    /// How each call is sent and compared.
    #[command(flatten)]
    pub baseline: Baseline,
}

/// One cell: a client of one version through one deployment.
#[derive(Debug, Clone, Serialize)]
pub struct ApiCell {
    /// `old testbed`, `new grpcurl`, `old python`, ...
    pub client: String,
    /// `old only`, `side by side`, `new only`.
    pub deployment: String,
    /// The worst method verdict.
    pub verdict: Verdict,
    /// Whether the verdict counts (new clients in `old only` do not).
    pub judged: bool,
    /// Calls sent.
    pub sent: usize,
    /// What went wrong, in words (empty when ok).
    pub reason: String,
    /// Per method, the comparison with the client's own version.
    pub methods: Vec<MethodReplay>,
}

/// The matrix for any API.
#[derive(Debug, Clone, Serialize)]
pub struct ApiMatrix {
    /// OLD and NEW.
    pub old: String,
    /// NEW.
    pub new: String,
    /// Every cell, rows (clients) first.
    pub cells: Vec<ApiCell>,
    /// Clients or rows left out, and why.
    pub notes: Vec<String>,
}

/// One version's clients: its traffic checked against its descriptors, its own server.
struct Caller {
    name: &'static str,
    /// The version the gateway routes this build as (what its pinned client asks for).
    version: Version,
    own: String,
    /// The traffic and how to send it, when it fits the version's descriptors.
    traffic: Option<(Vec<Line>, ReplayOptions)>,
    protoset: Arc<PathBuf>,
    /// The version's Python client, when Python with grpcio is there.
    python: Option<Arc<PythonClient>>,
}

/// The outside programs that make rows besides the testbed's own client.
struct Tools {
    grpcurl: Option<PathBuf>,
    /// Python with grpcio, and the dynamic client script.
    python: Option<(PathBuf, PathBuf)>,
}

impl Tools {
    /// grpcurl and Python with grpcio; outside CI a missing one leaves its rows out (said in
    /// `notes`), under `CI=true` it is an error.
    fn find(notes: &mut Vec<String>) -> anyhow::Result<Tools> {
        let mut optional =
            |found: Result<PathBuf, client::tools::MissingTool>, rows: &str| match found {
                Ok(path) => Ok(Some(path)),
                Err(missing) if std::env::var_os("CI").is_none() => {
                    notes.push(format!("no {rows} rows: {missing}"));
                    Ok(None)
                }
                Err(missing) => Err(anyhow::anyhow!("{missing}")),
            };
        let grpcurl = optional(client::tools::grpcurl(), "grpcurl")?;
        let python = optional(client::tools::python(), "python")?;
        let python = match python {
            Some(python) => Some((python, super::python_lane::script()?)),
            None => None,
        };
        Ok(Tools { grpcurl, python })
    }
}

/// The column of old clients served by NEW alone through `+PACKAGE` retirement, when NEW
/// serves none of some of OLD's packages.
const RETIRED: &str = "old retired onto new";

/// The deployments: a column name and the gateway's `serve` flags (its upstreams and, for a
/// version whose descriptors were given rather than reflected, those descriptors, written
/// to `dir`). `retired`: OLD's packages NEW does not serve, which the `old retired onto new`
/// column has the gateway route to NEW (`+PACKAGE/*`: each method NEW can serve wire-
/// compatibly), when there are any.
fn deployments(
    args: &ApiMatrixArgs,
    (old, new): (&str, &str),
    retired: &BTreeSet<String>,
    dir: &Path,
) -> Vec<(&'static str, Vec<String>)> {
    let flags = |name: &str, version: &Version, addr: &str, parts: &str, given: bool| {
        let mut flags = vec![
            "--upstream".to_string(),
            format!("{name}={version}@{addr}{parts}"),
        ];
        if given {
            let file = dir.join(format!("{name}.binpb"));
            flags.extend([
                "--descriptors".to_string(),
                format!("{name}={}", file.display()),
            ]);
        }
        flags
    };
    let old_given = args.baseline.descriptors.is_some();
    let new_given = args.new_descriptors.is_some();
    let old = flags("old", &args.old_version, old, "", old_given);
    let plain = flags("new", &args.new_version, new, "", new_given);
    let mut columns = vec![
        ("old only", old.clone()),
        ("side by side", [old, plain.clone()].concat()),
        ("new only", plain),
    ];
    if !retired.is_empty() {
        // The gateway checks each retired method against OLD's declaration of it: NEW's
        // descriptors with OLD's files beside them (see `both_builds`).
        let parts: String = retired.iter().map(|p| format!("+{p}/*")).collect();
        let mut flags = flags("new", &args.new_version, new, &parts, false);
        let both = dir.join(BOTH_BUILDS);
        flags.extend([
            "--descriptors".to_string(),
            format!("new={}", both.display()),
        ]);
        columns.push((RETIRED, flags));
    }
    columns
}

/// The file of [`both_builds`] in the matrix's folder.
const BOTH_BUILDS: &str = "both-builds.binpb";

/// NEW's files and OLD's as one descriptor set; a file of the same name in both must be the
/// same file (the well-known types), else the name of the first that is not.
fn both_builds(new: &DescriptorPool, old: &DescriptorPool) -> Result<Vec<u8>, String> {
    let mut files: Vec<prost_types::FileDescriptorProto> =
        new.file_descriptor_protos().cloned().collect();
    for file in old.file_descriptor_protos() {
        match files.iter().find(|f| f.name() == file.name()) {
            None => files.push(file.clone()),
            Some(same) if same == file => {}
            Some(_) => return Err(file.name().to_string()),
        }
    }
    Ok(prost_types::FileDescriptorSet { file: files }.encode_to_vec())
}

/// The packages `pool` declares services in.
fn service_packages(pool: &DescriptorPool) -> BTreeSet<String> {
    pool.services()
        .map(|s| s.package_name().to_string())
        .collect()
}

/// Runs the matrix with the testbed binary `exe` (the gateways) in `dir`, `proxies` (installed)
/// each in front of the side-by-side gateway as a column of its own.
pub async fn run(
    args: &ApiMatrixArgs,
    proxies: &[ProxyKind],
    exe: &Path,
    dir: &Path,
) -> anyhow::Result<ApiMatrix> {
    let old = args.old.as_deref().context("--old")?;
    let new = args.new.as_deref().context("--new")?;
    anyhow::ensure!(
        args.new_version > args.old_version,
        "--new-version {} must be higher than --old-version {}",
        args.new_version,
        args.old_version
    );
    anyhow::ensure!(
        !old.starts_with("https://") && !new.starts_with("https://"),
        "the matrix for any API reaches plaintext servers only; https:// is not supported yet"
    );
    let mut notes = Vec::new();
    let tools = Tools::find(&mut notes)?;
    let mut new_baseline = args.baseline.clone();
    new_baseline.descriptors = args.new_descriptors.clone();
    // --secondary is a second OLD: the new clients' noise comes from NEW asked twice.
    new_baseline.secondary = None;
    let new_files = if args.new_traffic.is_empty() {
        &args.traffic
    } else {
        &args.new_traffic
    };
    let mut callers = Vec::new();
    let mut pools = Vec::new();
    for (name, version, own, baseline, files) in [
        ("old", &args.old_version, old, &args.baseline, &args.traffic),
        ("new", &args.new_version, new, &new_baseline, new_files),
    ] {
        let (lines, options) = baseline.load(files, own, own).await?;
        pools.push(options.api.pool.clone());
        let protoset = Arc::new(dir.join(format!("{name}.binpb")));
        std::fs::write(protoset.as_ref(), options.api.pool.encode_to_vec())
            .with_context(|| format!("cannot write {}", protoset.display()))?;
        let python = tools.python.clone().map(|(python, script)| {
            Arc::new(PythonClient::new(
                python,
                script,
                options.api.pool.clone(),
                protoset.clone(),
            ))
        });
        let traffic = match Replayer::new(&lines, &options) {
            Ok(_) => Some((lines, options)),
            // New clients may not be able to send the old traffic (another package).
            Err(why) if name == "new" => {
                notes.push(format!(
                    "no new clients: {why:#} (give them traffic with --new-traffic)"
                ));
                None
            }
            Err(why) => return Err(why),
        };
        callers.push(Caller {
            name,
            version: version.clone(),
            own: own.to_string(),
            traffic,
            protoset,
            python,
        });
    }
    let retired: BTreeSet<String> = match pools.as_slice() {
        [old_pool, new_pool] => {
            let mut retired: BTreeSet<String> = service_packages(old_pool)
                .difference(&service_packages(new_pool))
                .cloned()
                .collect();
            let both = both_builds(new_pool, old_pool);
            if let (false, Err(clash)) = (retired.is_empty(), &both) {
                notes.push(format!(
                    "no {RETIRED} column: OLD's and NEW's descriptors both hold a file {clash} with other contents, and one gateway holds one file of a name; not supported yet (name each version's files by its package, e.g. shop/v1/shop.proto, as reflection of a server built so gives them)"
                ));
                retired.clear();
            }
            if let (false, Ok(both)) = (retired.is_empty(), both) {
                let list: Vec<&str> = retired.iter().map(String::as_str).collect();
                notes.push(format!(
                    "{RETIRED}: NEW alone, also routed {} (each of OLD's methods NEW serves wire-compatibly is readdressed to it; the rest has no backend)",
                    list.join(", ")
                ));
                let file = dir.join(BOTH_BUILDS);
                std::fs::write(&file, both)
                    .with_context(|| format!("cannot write {}", file.display()))?;
            }
            retired
        }
        _ => BTreeSet::new(),
    };
    let mut cells = Vec::new();
    for (deployment, flags) in deployments(args, (old, new), &retired, dir) {
        let mut serve = vec!["serve", "--addr", "127.0.0.1:0"];
        serve.extend(flags.iter().map(String::as_str));
        let gateway = match ChildServer::testbed(exe, &serve).await {
            Ok(gateway) => gateway,
            // The gateway refusing a retirement is the finding: OLD's clients cannot be moved.
            Err(why) if deployment == RETIRED => {
                cells.extend(refused_retirement(&callers, &tools, &format!("{why:#}")));
                continue;
            }
            // Any other gateway that does not start is a set-up to mend, not a finding.
            Err(why) => {
                return Err(why.context(format!(
                    "the gateway of the {deployment:?} deployment does not start"
                )));
            }
        };
        let column = Column {
            deployment,
            deploys_new: deployment != "old only",
            deploys_old: matches!(deployment, "old only" | "side by side"),
        };
        let found = column.cells(&callers, &tools, gateway.addr);
        cells.extend(found.await?);
        // Each proxy in front of the gateway that runs both builds.
        if deployment == "side by side" {
            for &kind in proxies {
                let router = gateway.addr;
                let proxy = RunningProxy::start(kind, &Arrangement::FrontOfRouter { router })
                    .await
                    .with_context(|| format!("{kind} does not start in front of the gateway"))?;
                let name = format!("side by side via {kind}");
                let column = Column {
                    deployment: &name,
                    deploys_old: true,
                    deploys_new: true,
                };
                let found = column.cells(&callers, &tools, proxy.addr());
                cells.extend(found.await?);
                proxy.stop().await?;
            }
        }
        gateway.terminate().await?;
    }
    Ok(ApiMatrix {
        old: old.to_string(),
        new: new.to_string(),
        cells,
        notes,
    })
}

/// The old clients' cells of an `old retired onto new` column whose gateway refused to start:
/// broken, with the gateway's words.
fn refused_retirement(callers: &[Caller], tools: &Tools, why: &str) -> Vec<ApiCell> {
    let mut cells = Vec::new();
    for caller in callers.iter().filter(|c| c.name == "old") {
        let pinned = format!("testbed (x-api-version ={})", caller.version);
        let kinds = [
            Some(("testbed", true)),
            Some((pinned.as_str(), false)),
            tools.grpcurl.as_ref().map(|_| ("grpcurl", true)),
            caller.python.as_ref().map(|_| ("python", true)),
        ];
        for (kind, judged) in kinds.into_iter().flatten() {
            cells.push(ApiCell {
                client: format!("old {kind}"),
                deployment: RETIRED.to_string(),
                verdict: Verdict::Broken,
                judged,
                sent: 0,
                reason: format!("the gateway refuses to retire OLD onto NEW: {why}"),
                methods: Vec::new(),
            });
        }
    }
    cells
}

/// One column: a deployment's name, and which builds run behind it.
struct Column<'a> {
    deployment: &'a str,
    /// Whether OLD's build runs behind it.
    deploys_old: bool,
    /// Whether NEW's build runs behind it: new clients are judged only where it does.
    deploys_new: bool,
}

impl Column<'_> {
    /// Each caller's clients through `target` (or the reason there is none).
    async fn cells(
        &self,
        callers: &[Caller],
        tools: &Tools,
        target: SocketAddr,
    ) -> anyhow::Result<Vec<ApiCell>> {
        let mut cells = Vec::new();
        for caller in callers {
            let Some((lines, options)) = &caller.traffic else {
                continue;
            };
            // A new client is judged where the new build runs; a pinned client where its own
            // build runs (elsewhere what it misses is expected, and shown).
            let own_deployed = if caller.name == "new" {
                self.deploys_new
            } else {
                self.deploys_old
            };
            let judged = caller.name == "old" || own_deployed;
            let target = target.to_string();
            let options = ReplayOptions {
                new: target.clone(),
                ..options.clone()
            };
            let replayer = Replayer::new(lines, &options)?;
            // Each lane of a client: its own server, the second one for the noise, the target.
            let second = options.secondary.as_deref().unwrap_or(&caller.own);
            let ends = [caller.own.as_str(), second, target.as_str()];
            // Each row: its kind, whether it is judged, what the replay found, and the calls the
            // client itself could not make (the outside clients').
            let mut rows = vec![(
                "testbed".to_string(),
                judged,
                replayer.once(&replayer.connect().await?).await,
                Vec::new(),
            )];
            // The same client pinned to its own build, as a caller that cannot move yet would be.
            let pin = format!("x-api-version: ={}", caller.version);
            let mut pinned_options = options.clone();
            pinned_options
                .headers
                .push(Header::parse(&pin).map_err(anyhow::Error::msg)?);
            let pinned = Replayer::new(lines, &pinned_options)?;
            rows.push((
                format!("testbed ({})", pin.replace(": ", " ")),
                own_deployed,
                pinned.once(&pinned.connect().await?).await,
                Vec::new(),
            ));
            if let Some(grpcurl) = &tools.grpcurl {
                let failures = Arc::new(Failures::default());
                let lanes = Lanes(ends.map(|addr| {
                    GrpcurlLane::new(
                        grpcurl.clone(),
                        addr,
                        options.api.pool.clone(),
                        caller.protoset.clone(),
                        failures.clone(),
                    )
                }));
                let found = replayer.once(&lanes).await;
                rows.push(("grpcurl".to_string(), judged, found, failures.take()));
            }
            if let Some(python) = &caller.python {
                python.failures.take();
                let lanes = Lanes(ends.map(|addr| PythonLane::new(python.clone(), addr)));
                let found = replayer.once(&lanes).await;
                rows.push(("python".to_string(), judged, found, python.failures.take()));
            }
            for (kind, judged, (methods, sent), client_failures) in rows {
                let mut reason = methods
                    .iter()
                    .filter(|m| m.verdict != Verdict::Ok)
                    .map(|m| format!("{}: {}", m.method, m.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut verdict = Verdict::worst(&methods);
                // A client that could not make its calls was not served at all, even where
                // its failures on every lane compare as equal statuses.
                if !client_failures.is_empty() {
                    verdict = Verdict::Broken;
                    reason = format!(
                        "the {kind} client could not make {} call(s): {}{}",
                        client_failures.len(),
                        client_failures[0],
                        if reason.is_empty() {
                            String::new()
                        } else {
                            format!("; {reason}")
                        }
                    );
                }
                cells.push(ApiCell {
                    client: format!("{} {kind}", caller.name),
                    deployment: self.deployment.to_string(),
                    verdict,
                    judged,
                    sent,
                    reason,
                    methods,
                });
            }
        }
        Ok(cells)
    }
}
