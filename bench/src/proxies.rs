//! Row 14: the same v1 backend reached directly, through the testbed's router run as a proxy in
//! its own process (`testbed serve --upstream`, the gateway; once as plain as it gets, once
//! with the selection a team's table makes it do: two replicas and a 10 % canary, see
//! [`SELECTING_ROUTER_PATH`]), through an Envoy the gateway steers over xDS
//! ([`XDS_ENVOY_PATH`]: Envoy routes to the backend itself), and through each real proxy
//! (nginx, HAProxy, Envoy, as the `proxy` crate starts them), in one run. Per path: sequential
//! dependent unary calls with the tonic client (p50/p99; the paths' chains alternate in blocks,
//! so drift hits all alike), then h2load at `-c 10 -m 10` and `-c 100 -m 10` with the CPU time
//! the hop's process(es) used per 10,000 requests, read from `/proc`. Direct has no hop, so no
//! hop CPU; the backend is the same process for every path.

use super::BenchOptions;
use super::chains::{self, Chain};
use anyhow::Context;
use port::child::ChildServer;
use proxy::measure::{Load, h2load};
use proxy::xds_node::EnvoyNode;
use proxy::{Arrangement, ProxyKind, RunningProxy, Tuning};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The two h2load loads every path gets.
const LOADS: [(u32, u32); 2] = [(10, 10), (100, 10)];

/// Requests per h2load run: twice `--requests` (20,000 for the default 10,000: a steady rate at
/// 100 × 10 streams, and a few seconds at most through the slowest proxy), within 1,000-50,000.
fn h2load_requests(options: &BenchOptions) -> u64 {
    options.requests.saturating_mul(2).clamp(1_000, 50_000)
}

/// The name of the path through the testbed's router run as a proxy.
pub const ROUTER_PATH: &str = "testbed router (serve --upstream)";

/// The name of the path through an Envoy that takes its listener, routes and clusters from the
/// gateway's xDS control plane (`serve --xds-addr`): the data plane a fleet runs, with the
/// gateway out of the call's way.
pub const XDS_ENVOY_PATH: &str = "Envoy steered over xDS (serve --xds-addr)";

/// Envoy's worker threads on [`XDS_ENVOY_PATH`]: the `--concurrency` the proxy crate gives the
/// file-configured Envoy.
const ENVOY_WORKERS: u32 = 2;

/// The admin token of the gateway behind [`XDS_ENVOY_PATH`] (xDS needs the admin API on).
const XDS_ADMIN_TOKEN: &str = "bench-xds-admin-token-0123";

/// The name of the path through the router choosing for every call: the backend as two
/// replicas (its address, and `localhost` at its port: two connections to the same process)
/// and, at weight 10, a canary on the same backend, so that each unpinned call takes the
/// weighted split and then the power of two choices. What selection costs is this path's figures against [`ROUTER_PATH`]'s.
pub const SELECTING_ROUTER_PATH: &str = "testbed router, 2 replicas + a 10 % canary";

/// nginx's requests per client connection for these runs. Its default, 1,000, sends h2load a
/// GOAWAY after 1,000 requests on each connection, which h2load does not recover from: the run
/// would measure how fast nginx fails the rest, so the limit is raised (README, "Proxies": what
/// the default does to each client). The other proxies keep their defaults.
const NGINX_REQUESTS_PER_CONNECTION: u32 = 1_000_000_000;

fn tuning(kind: ProxyKind) -> Tuning {
    Tuning {
        requests_per_connection: (kind == ProxyKind::Nginx)
            .then_some(NGINX_REQUESTS_PER_CONNECTION),
        ..Tuning::default()
    }
}

/// One path's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathFigures {
    /// `direct`, `testbed router (serve --upstream)`, `nginx`, `HAProxy` or `Envoy`.
    pub path: String,
    /// Sequential calls measured on this path.
    pub calls: u64,
    /// The value the chain ended at: it must equal `calls`.
    pub final_value: i64,
    /// Median sequential call, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// `p50_us` over the direct path's p50 (1 for direct).
    pub p50_ratio_to_direct: f64,
    /// µs this path adds to the median call: `p50_us` − direct's p50.
    pub added_p50_us: f64,
    /// The h2load runs, one per load.
    pub loads: Vec<LoadFigures>,
}

/// One h2load run through a path.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoadFigures {
    /// Connections (`-c`).
    pub connections: u32,
    /// Streams in flight per connection (`-m`).
    pub streams: u32,
    /// Requests that succeeded (h2load reads the HTTP status only).
    pub succeeded: u64,
    /// Requests that failed (a GOAWAY h2load does not recover from, a reset); over several
    /// rounds, the most of any round.
    pub failed: u64,
    /// Requests per second, as h2load reports it.
    pub requests_per_s: f64,
    /// CPU seconds the hop's processes used per 10,000 succeeded requests: (user + system time
    /// over the run) × 10,000 / `succeeded`. `None` for direct (no hop) and when nothing
    /// succeeded.
    pub hop_cpu_s_per_10k: Option<f64>,
    /// `requests_per_s` over the direct path's at the same load.
    pub share_of_direct: f64,
}

/// Every path's figures, medians over the rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxiesResult {
    /// Requests per h2load run.
    pub h2load_requests: u64,
    /// The paths, direct first.
    pub paths: Vec<PathFigures>,
    /// Proxies that were not installed (outside CI only), with the command that installs them.
    pub skipped: Vec<String>,
}

/// A way to the backend, and what to charge its CPU to.
enum Hop {
    Direct,
    /// The router process and its path's name.
    Router(ChildServer, &'static str),
    /// An Envoy steered over xDS, and the gateway (with its token file's folder) steering it,
    /// kept running while Envoy is measured.
    XdsEnvoy {
        envoy: Box<EnvoyNode>,
        _gateway: ChildServer,
        _dir: tempfile::TempDir,
    },
    Proxy(RunningProxy),
}

impl Hop {
    fn addr(&self, backend: SocketAddr) -> SocketAddr {
        match self {
            Hop::Direct => backend,
            Hop::Router(router, _) => router.addr,
            Hop::XdsEnvoy { envoy, .. } => envoy.listen,
            Hop::Proxy(proxy) => proxy.addr(),
        }
    }

    fn name(&self) -> String {
        match self {
            Hop::Direct => "direct".to_string(),
            Hop::Router(_, name) => name.to_string(),
            Hop::XdsEnvoy { .. } => XDS_ENVOY_PATH.to_string(),
            Hop::Proxy(proxy) if proxy.kind() == ProxyKind::Nginx => {
                format!("nginx (keepalive_requests {NGINX_REQUESTS_PER_CONNECTION})")
            }
            Hop::Proxy(proxy) => proxy.kind().name().to_string(),
        }
    }

    /// CPU time used so far by the hop's processes; `None` for direct.
    fn cpu_time(&self) -> anyhow::Result<Option<Duration>> {
        match self {
            Hop::Direct => Ok(None),
            Hop::Router(router, _) => {
                let pid = router.pid().context("the router exited")?;
                process_cpu_time(pid).map(Some)
            }
            Hop::XdsEnvoy { envoy, .. } => {
                let pid = envoy.pid().context("Envoy exited")?;
                process_cpu_time(pid).map(Some)
            }
            Hop::Proxy(proxy) => proxy.cpu_time().map(Some),
        }
    }
}

/// User + system time of process `pid` (all its threads), from `/proc/PID/stat`.
fn process_cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // Fields after the command name (which may hold spaces, so split after its closing paren):
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after `) `.
    let after_name = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .with_context(|| format!("cannot parse {path}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("no CPU ticks in field {} of {path}", i + 3))
    };
    let ticks = ticks(11)? + ticks(12)?;
    // The kernel reports in USER_HZ, 100 on Linux for every architecture Rust's std supports.
    Ok(Duration::from_millis(ticks * 10))
}

/// Runs one round: starts the backend, the router as a proxy and every installed proxy, then
/// measures every path. A proxy that is not installed is skipped outside CI (named in
/// `skipped`) and fails the row under `CI=true`.
pub(crate) async fn run(options: &BenchOptions) -> anyhow::Result<ProxiesResult> {
    client::tools::h2load()?;
    let exe = &options.testbed_exe;
    let runtime = ["--runtime", options.flavor.name()];
    let serve = async |args: &[&str]| {
        let command = [&runtime[..], &["serve", "--addr", "127.0.0.1:0"], args].concat();
        let server = ChildServer::testbed(exe, &command).await?;
        if let Some(cpus) = &options.server_cpus {
            cpus.pin_process(server.pid().context("the server exited as it started")?)?;
        }
        anyhow::Ok(server)
    };
    let backend = serve(&["--backend", "v1"]).await?;
    let upstream = format!("v1=1.0.0@{}", backend.addr);
    // The second replica is the same backend by another name, so that the path differs from
    // the plain router's by the selection alone, not by a second backend process's share.
    let (replicas, canary) = (
        format!(
            "v1=1.0.0@{},localhost:{}",
            backend.addr,
            backend.addr.port()
        ),
        format!("v1c=1.0.1@{};weight=10", backend.addr),
    );
    let selecting = ["--upstream", &replicas, "--upstream", &canary];
    let mut hops = vec![
        Hop::Direct,
        Hop::Router(serve(&["--upstream", &upstream]).await?, ROUTER_PATH),
        Hop::Router(serve(&selecting).await?, SELECTING_ROUTER_PATH),
    ];
    let mut skipped = Vec::new();
    match ProxyKind::Envoy.find() {
        Ok(_) => hops.push(xds_envoy(&serve, &upstream, options).await?),
        Err(missing) if super::in_ci() => return Err(missing.into()),
        Err(missing) => skipped.push(missing.to_string()),
    }
    for kind in ProxyKind::ALL {
        match kind.find() {
            Ok(_) => {
                let arrangement = Arrangement::FrontOfRouter {
                    router: backend.addr,
                };
                let proxy = RunningProxy::start_tuned(kind, &arrangement, tuning(kind))
                    .await
                    .with_context(|| format!("{kind} did not start"))?;
                // Where the servers are placed, the proxy goes too (not beside the client, whose
                // CPUs it would inherit), so that every hop is measured alike.
                if let Some(cpus) = &options.server_cpus {
                    for pid in proxy.pids()? {
                        cpus.pin_process(pid)?;
                    }
                }
                hops.push(Hop::Proxy(proxy));
            }
            Err(missing) if super::in_ci() => return Err(missing.into()),
            Err(missing) => skipped.push(missing.to_string()),
        }
    }
    let chains = sequential(&hops, backend.addr, options).await?;
    let requests = h2load_requests(options);
    let mut loads = Vec::new();
    for hop in &hops {
        loads.push(throughput(hop, backend.addr, requests).await?);
    }
    let paths = hops
        .iter()
        .zip(chains)
        .zip(loads)
        .map(|((hop, chain), loads)| (hop.name(), chain, loads))
        .collect();
    for hop in hops {
        if let Hop::Proxy(proxy) = hop {
            proxy.stop().await?;
        }
    }
    Ok(ProxiesResult::new(paths, skipped, requests))
}

/// The gateway routing `upstream` with its xDS control plane on, and an Envoy it steers (with
/// as many workers as the bench's file-configured Envoy), once Envoy's listener is up.
async fn xds_envoy<F>(serve: &F, upstream: &str, options: &BenchOptions) -> anyhow::Result<Hop>
where
    F: AsyncFn(&[&str]) -> anyhow::Result<ChildServer>,
{
    let dir = tempfile::Builder::new()
        .prefix("bench-xds")
        .tempdir()
        .context("a folder for the admin token")?;
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("bench {XDS_ADMIN_TOKEN}\n")).context("the token file")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600))
            .context("the token file's mode")?;
    }
    let tokens = tokens.display().to_string();
    let mut gateway = serve(&[
        "--upstream",
        upstream,
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token-file",
        &tokens,
        "--xds-addr",
        "127.0.0.1:0",
    ])
    .await?;
    let xds: SocketAddr = loop {
        let line = gateway.next_line().await?;
        if let Some(addr) = line.strip_prefix("testbed xDS on ") {
            break addr
                .trim()
                .parse()
                .with_context(|| format!("the gateway printed {line:?}"))?;
        }
    };
    let mut envoy = EnvoyNode::start_with_workers("bench", xds, ENVOY_WORKERS).await?;
    envoy.wait_listening(Duration::from_secs(30)).await?;
    if let Some(cpus) = &options.server_cpus {
        cpus.pin_process(envoy.pid().context("Envoy exited as it started")?)?;
    }
    Ok(Hop::XdsEnvoy {
        envoy: Box::new(envoy),
        _gateway: gateway,
        _dir: dir,
    })
}

/// The sequential chains of every path, in alternation.
async fn sequential(
    hops: &[Hop],
    backend: SocketAddr,
    options: &BenchOptions,
) -> anyhow::Result<Vec<Chain>> {
    let mut clients = Vec::new();
    for hop in hops {
        clients.push(chains::Unary::v1(hop.addr(backend)).await?);
    }
    chains::run_alternating(&mut clients, options.warmup, options.requests).await
}

/// h2load at each of [`LOADS`] through `hop`, with the hop's CPU time over each run.
async fn throughput(
    hop: &Hop,
    backend: SocketAddr,
    requests: u64,
) -> anyhow::Result<Vec<(Load, u64, u64, f64, Option<Duration>)>> {
    let mut runs = Vec::new();
    for (connections, streams) in LOADS {
        let load = Load {
            requests,
            connections,
            streams,
        };
        let before = hop.cpu_time()?;
        let measured = h2load(hop.addr(backend), load).await?;
        let used = hop
            .cpu_time()?
            .zip(before)
            .map(|(after, before)| after.saturating_sub(before));
        runs.push((
            load,
            measured.succeeded,
            measured.failed,
            measured.requests_per_s,
            used,
        ));
    }
    Ok(runs)
}

/// One path's raw figures: its name, its chain, and per load (load, succeeded, failed,
/// requests/s, hop CPU time).
type RawPath = (String, Chain, Vec<(Load, u64, u64, f64, Option<Duration>)>);

impl ProxiesResult {
    /// The figures from the raw measurements; the first path is direct, the reference of every
    /// ratio.
    fn new(paths: Vec<RawPath>, skipped: Vec<String>, h2load_requests: u64) -> Self {
        let us = |ns: u64| ns as f64 / 1e3;
        let paths = paths
            .into_iter()
            .map(|(path, chain, loads)| {
                PathFigures {
                    path,
                    calls: chain.histogram.len(),
                    final_value: chain.final_value,
                    p50_us: us(chain.histogram.value_at_quantile(0.5)),
                    p99_us: us(chain.histogram.value_at_quantile(0.99)),
                    p50_ratio_to_direct: f64::NAN,
                    added_p50_us: f64::NAN,
                    loads: loads
                        .into_iter()
                        .map(|(load, succeeded, failed, rps, cpu)| LoadFigures {
                            connections: load.connections,
                            streams: load.streams,
                            succeeded,
                            failed,
                            requests_per_s: rps,
                            // Nothing succeeded: no figure per request.
                            hop_cpu_s_per_10k: cpu
                                .filter(|_| succeeded > 0)
                                .map(|cpu| cpu.as_secs_f64() * 10_000.0 / succeeded as f64),
                            share_of_direct: f64::NAN,
                        })
                        .collect(),
                }
            })
            .collect();
        Self {
            h2load_requests,
            paths,
            skipped,
        }
        .with_ratios()
    }

    /// Sets every ratio to direct (the first path) from the figures beside it, so that a ratio
    /// printed next to two figures is their quotient.
    fn with_ratios(mut self) -> Self {
        let Some(direct) = self.paths.first().cloned() else {
            return self;
        };
        for path in &mut self.paths {
            path.p50_ratio_to_direct = path.p50_us / direct.p50_us;
            path.added_p50_us = path.p50_us - direct.p50_us;
            for (load, direct) in path.loads.iter_mut().zip(&direct.loads) {
                load.share_of_direct = load.requests_per_s / direct.requests_per_s;
            }
        }
        self
    }

    /// The median round of several: per path and load, the median of each measured figure
    /// (`failed`: the most of any round), and the ratios to direct from those medians.
    pub(crate) fn median(rounds: &[ProxiesResult]) -> Option<ProxiesResult> {
        let first = rounds.first()?;
        let median = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let mut result = first.clone();
        for (p, path) in result.paths.iter_mut().enumerate() {
            let of_path = |f: &dyn Fn(&PathFigures) -> f64| {
                median(
                    rounds
                        .iter()
                        .filter_map(|r| r.paths.get(p))
                        .map(f)
                        .collect(),
                )
            };
            path.p50_us = of_path(&|x| x.p50_us);
            path.p99_us = of_path(&|x| x.p99_us);
            for (l, load) in path.loads.iter_mut().enumerate() {
                let of_load = |f: &dyn Fn(&LoadFigures) -> f64| {
                    median(
                        rounds
                            .iter()
                            .filter_map(|r| r.paths.get(p)?.loads.get(l))
                            .map(f)
                            .collect(),
                    )
                };
                load.requests_per_s = of_load(&|x| x.requests_per_s);
                load.succeeded = of_load(&|x| x.succeeded as f64) as u64;
                load.hop_cpu_s_per_10k = load
                    .hop_cpu_s_per_10k
                    .map(|_| of_load(&|x| x.hop_cpu_s_per_10k.unwrap_or(f64::NAN)));
                load.failed = rounds
                    .iter()
                    .filter_map(|r| Some(r.paths.get(p)?.loads.get(l)?.failed))
                    .max()
                    .unwrap_or(0);
            }
        }
        Some(result.with_ratios())
    }

    /// The terminal table.
    pub fn render(&self) -> String {
        use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        let mut header = vec![
            "path to the v1 backend".to_string(),
            "p50 µs".to_string(),
            "p99 µs".to_string(),
            "p50 / direct".to_string(),
        ];
        for (c, m) in LOADS {
            header.push(format!("req/s c{c} m{m} (share)"));
            header.push(format!("hop CPU s / 10k, c{c}"));
        }
        table.set_header(header);
        for path in &self.paths {
            let mut row = vec![
                path.path.clone(),
                format!("{:.1}", path.p50_us),
                format!("{:.1}", path.p99_us),
                format!("{:.2}", path.p50_ratio_to_direct),
            ];
            for load in &path.loads {
                let failed = if load.failed > 0 {
                    format!(", {} failed", load.failed)
                } else {
                    String::new()
                };
                row.push(format!(
                    "{:.0} ({:.0} %{failed})",
                    load.requests_per_s,
                    load.share_of_direct * 100.0
                ));
                row.push(
                    load.hop_cpu_s_per_10k
                        .map_or("–".to_string(), |s| format!("{s:.2}")),
                );
            }
            table.add_row(row);
        }
        let mut out = format!(
            "Through each proxy (sequential unary calls in alternation; h2load {} requests per run):\n{table}\n",
            self.h2load_requests
        );
        for skipped in &self.skipped {
            out.push_str(&format!("skipped: {skipped}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    fn chain(p50_us: u64, calls: u64) -> Chain {
        let mut histogram = Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for _ in 0..calls {
            histogram.record(p50_us * 1000).unwrap();
        }
        Chain {
            histogram,
            total: Duration::from_micros(p50_us * calls),
            span: None,
            final_value: calls as i64,
        }
    }

    fn load(
        connections: u32,
        rps: f64,
        succeeded: u64,
        cpu_ms: Option<u64>,
    ) -> (Load, u64, u64, f64, Option<Duration>) {
        let load = Load {
            requests: succeeded,
            connections,
            streams: 10,
        };
        (load, succeeded, 0, rps, cpu_ms.map(Duration::from_millis))
    }

    #[test]
    fn ratios_and_cpu_per_10k_follow_from_the_raw_figures() {
        let result = ProxiesResult::new(
            vec![
                (
                    "direct".into(),
                    chain(100, 50),
                    vec![load(10, 80_000.0, 20_000, None)],
                ),
                (
                    "HAProxy".into(),
                    chain(150, 50),
                    vec![load(10, 40_000.0, 20_000, Some(300))],
                ),
            ],
            vec![],
            20_000,
        );
        let haproxy = &result.paths[1];
        // 300 ms of CPU for 20,000 requests: 0.15 s per 10,000.
        let cpu = haproxy.loads[0].hop_cpu_s_per_10k.unwrap();
        assert!((cpu - 0.15).abs() < 1e-9, "{cpu}");
        assert!((haproxy.loads[0].share_of_direct - 0.5).abs() < 1e-9);
        assert!((haproxy.p50_ratio_to_direct - 1.5).abs() < 0.01);
        assert!((haproxy.added_p50_us - 50.0).abs() < 0.2);
        assert_eq!(result.paths[0].loads[0].hop_cpu_s_per_10k, None);
        assert_eq!(haproxy.final_value, haproxy.calls as i64);
    }

    #[test]
    fn the_median_round_is_taken_figure_by_figure_and_ratios_follow_the_medians() {
        let round = |direct_rps: f64, proxy_rps: f64| {
            ProxiesResult::new(
                vec![
                    (
                        "direct".into(),
                        chain(100, 10),
                        vec![load(10, direct_rps, 1000, None)],
                    ),
                    (
                        "haproxy".into(),
                        chain(150, 10),
                        vec![load(10, proxy_rps, 1000, Some(20))],
                    ),
                ],
                vec![],
                1_000,
            )
        };
        let rounds = [round(30.0, 10.0), round(10.0, 9.0), round(20.0, 5.0)];
        let median = ProxiesResult::median(&rounds).unwrap();
        assert_eq!(median.paths[0].loads[0].requests_per_s, 20.0);
        assert_eq!(median.paths[1].loads[0].requests_per_s, 9.0);
        // 9 / 20, from the medians shown beside it (the rounds' own ratios are 1/3, 0.9, 1/4).
        assert!((median.paths[1].loads[0].share_of_direct - 0.45).abs() < 1e-12);
    }

    #[test]
    fn reads_this_processes_cpu_time() {
        let before = process_cpu_time(std::process::id()).unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = process_cpu_time(std::process::id()).unwrap();
        assert!(after > before, "{before:?} then {after:?}");
    }
}
