//! What shadow traffic costs the primary: sequential unary v1 `Increment` calls through two
//! gateways in front of the same two v1 upstreams (the primary, and a candidate at
//! `;weight=0`), one without shadowing and one with `--shadow candidate --shadow-rate RATE`
//! (`--shadow-method` naming `Increment`, which declares no idempotency level), in alternating
//! rounds so that both share the machine's noise. Prints p50, p90 and p99 per gateway and the
//! shadowing gateway's p50 as a ratio of the other's, and checks from the shadow report that
//! the copies were compared (and the candidate found answering as the primary).
//!
//! ```sh
//! cargo run --release -p bench --example shadow_latency -- [CALLS_PER_ROUND] [ROUNDS] [RATE]
//! ```

use anyhow::Context;
use bench::samples::{micros, percentile};
use port::server::{self, Layout, ServeOptions};
use port::upstream::UpstreamSpec;
use services::Api;
use services::pb::v1::IncrementRequest;
use services::pb::v1::incrementer_client::IncrementerClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().map_or(Ok(2000), |n| n.parse())?;
    let rounds: usize = args.next().map_or(Ok(10), |n| n.parse())?;
    let rate: f64 = args.next().map_or(Ok(1.0), |n| n.parse())?;
    // Upstreams and gateways on one runtime of two workers (the gateways' share of the
    // machine), the clients on this thread.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (plain, shadowing, _upstreams) = servers.block_on(start(rate))?;
    let result = client.block_on(measure(&plain, &shadowing, calls, rounds));
    servers.block_on(async {
        if let Some(shadow) = shadowing.shadow() {
            let report = shadow.report();
            println!(
                "shadow report: {} eligible, {} chosen, {} compared, {} busy; verdict {}",
                report.eligible,
                report.sampled,
                report.compared,
                report.busy,
                report.verdict()
            );
        }
        drop((plain, shadowing));
    });
    result
}

/// Two v1 upstreams, and two gateways over them: without and with shadowing.
async fn start(
    rate: f64,
) -> anyhow::Result<(
    server::RunningServer,
    server::RunningServer,
    [server::RunningServer; 2],
)> {
    let any = "127.0.0.1:0".parse()?;
    let options = ServeOptions::default();
    let primary =
        server::start_with(any, Layout::Direct(vec![Api::V1]), "primary", &options).await?;
    let candidate =
        server::start_with(any, Layout::Direct(vec![Api::V1]), "candidate", &options).await?;
    let specs: Vec<UpstreamSpec> = [
        format!("primary=1.0.0@{}", primary.addr),
        format!("candidate=1.1.0@{};weight=0", candidate.addr),
    ]
    .iter()
    .map(|s| s.parse().map_err(|e: String| anyhow::anyhow!(e)))
    .collect::<anyhow::Result<_>>()?;
    let gateway = port::upstream::gateway(&specs, &[], None).await?;
    let plain = server::start_with(
        any,
        Layout::Routed(gateway.table.clone()),
        "gateway",
        &options,
    )
    .await?;
    let mut shadowed = options.clone();
    shadowed.observe.shadow.shadow = Some("candidate".into());
    shadowed.observe.shadow.shadow_rate = rate;
    let increment = compat::probe::MethodPattern::parse("Incrementer/Increment")
        .map_err(|e| anyhow::anyhow!(e))?;
    shadowed.observe.shadow.shadow_method = vec![increment];
    let shadowing = server::start_with(
        any,
        Layout::Routed(gateway.table),
        "shadowing gateway",
        &shadowed,
    )
    .await?;
    Ok((plain, shadowing, [primary, candidate]))
}

async fn client(server: &server::RunningServer) -> anyhow::Result<IncrementerClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{}", server.addr))?
        .connect()
        .await
        .context("the gateway accepts")?;
    Ok(IncrementerClient::new(channel))
}

/// Latencies of `calls` sequential v1 calls.
async fn round(
    client: &mut IncrementerClient<Channel>,
    calls: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut seen = Vec::with_capacity(calls);
    for value in 0..calls as i64 {
        let start = Instant::now();
        let reply = client.increment(IncrementRequest { value }).await?;
        seen.push(start.elapsed());
        let reply = reply.into_inner().value;
        anyhow::ensure!(reply == value + 1, "wrong reply {reply} to {value}");
    }
    Ok(seen)
}

async fn measure(
    plain: &server::RunningServer,
    shadowing: &server::RunningServer,
    calls: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let mut clients = [client(plain).await?, client(shadowing).await?];
    let mut all: [Vec<Duration>; 2] = Default::default();
    // A warm-up round of each, not kept.
    for keep in std::iter::once(false).chain(std::iter::repeat_n(true, rounds)) {
        let n = if keep { calls } else { calls.min(200) };
        for (kept, client) in all.iter_mut().zip(clients.iter_mut()) {
            let seen = round(client, n).await?;
            if keep {
                kept.extend(seen);
            }
        }
    }
    println!(
        "unary v1 Increment through the gateway, {rounds} alternating rounds of {calls} calls"
    );
    println!(
        "{:<28} {:>9} {:>9} {:>9}",
        "gateway", "p50 µs", "p90 µs", "p99 µs"
    );
    let mut p50s = Vec::new();
    for (name, seen) in ["without shadowing", "with shadowing"]
        .iter()
        .zip(all.iter_mut())
    {
        let p50 = percentile(seen, 0.50);
        p50s.push(micros(p50));
        println!(
            "{name:<28} {:>9.1} {:>9.1} {:>9.1}",
            micros(p50),
            micros(percentile(seen, 0.90)),
            micros(percentile(seen, 0.99)),
        );
    }
    println!(
        "p50 with shadowing / without: {:.3}",
        p50s[1] / p50s[0].max(f64::MIN_POSITIVE)
    );
    Ok(())
}
