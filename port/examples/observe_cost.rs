//! What metrics, the access log and the usage table cost on the in-process router's p50: five
//! side-by-side routers in this process (nothing observed, `--metrics-addr`, `--access-log
//! FILE`, both, the usage table the admin API turns on),
//! sequential v2 unary calls to each in alternating rounds (each round starting with the next
//! router), so drift on a shared machine hits all of them alike; prints each one's p50 and p99 and its ratio to the first.
//!
//! `cargo run --release -p port --example observe_cost -- [ROUNDS] [CALLS_PER_ROUND]`

use port::observe::{Destination, ObserveOptions};
use port::server::{self, ServeOptions};
use port::{Deployment, RunningServer};
use services::pb::v2::{IncrementRequest, incrementer_client::IncrementerClient};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(Ok(20), |a| a.parse())?;
    let per_round: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let dir = std::env::temp_dir().join(format!("observe-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let metrics = || Some("127.0.0.1:0".parse().expect("an address"));
    let log = |name: &str| Some(Destination::File(dir.join(name)));
    let configs = [
        ("off", ObserveOptions::default()),
        (
            "--metrics-addr",
            ObserveOptions {
                metrics_addr: metrics(),
                ..ObserveOptions::default()
            },
        ),
        (
            "--access-log FILE",
            ObserveOptions {
                access_log: log("access.log"),
                ..ObserveOptions::default()
            },
        ),
        (
            "both",
            ObserveOptions {
                metrics_addr: metrics(),
                access_log: log("both.log"),
                ..ObserveOptions::default()
            },
        ),
        (
            "usage table",
            ObserveOptions {
                track_usage: true,
                ..ObserveOptions::default()
            },
        ),
    ];
    let mut targets: Vec<(
        &str,
        RunningServer,
        IncrementerClient<Channel>,
        Vec<Duration>,
    )> = Vec::new();
    for (name, observe) in configs {
        let options = ServeOptions {
            observe,
            ..ServeOptions::default()
        };
        let layout = Deployment::SideBySide.layout(options.max_message_bytes)?;
        let running = server::start_with("127.0.0.1:0".parse()?, layout, name, &options).await?;
        let channel = Channel::from_shared(format!("http://{}", running.addr))?
            .connect()
            .await?;
        targets.push((name, running, IncrementerClient::new(channel), Vec::new()));
    }
    // Warm-up, not counted.
    for (_, _, client, _) in &mut targets {
        for i in 0..per_round {
            call(client, i).await?;
        }
    }
    for round in 0..rounds {
        // Each round starts with the next router, so none always runs first.
        let count = targets.len();
        for k in 0..count {
            let (_, _, client, times) = &mut targets[(round + k) % count];
            for i in 0..per_round {
                let start = Instant::now();
                call(client, i).await?;
                times.push(start.elapsed());
            }
        }
    }
    let p = |times: &mut Vec<Duration>, q: f64| {
        times.sort_unstable();
        times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6
    };
    let base = p(&mut targets[0].3, 0.5);
    println!("{rounds} rounds of {per_round} sequential v2 unary calls to each router, in turn");
    println!("| router | p50 µs | p99 µs | p50 / off |");
    println!("|---|---|---|---|");
    for (name, _, _, times) in &mut targets {
        let p50 = p(times, 0.5);
        let p99 = p(times, 0.99);
        println!("| {name} | {p50:.1} | {p99:.1} | {:.3} |", p50 / base);
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

async fn call(client: &mut IncrementerClient<Channel>, i: usize) -> anyhow::Result<()> {
    let request = IncrementRequest {
        value: i as i64,
        step: Some(1),
        request_id: i as u64,
    };
    let reply = client.increment(request).await?.into_inner();
    anyhow::ensure!(reply.value == i as i64 + 1, "a wrong reply: {reply:?}");
    Ok(())
}
