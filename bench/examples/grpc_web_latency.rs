//! gRPC-Web's cost on the port: sequential unary v1 `Increment` calls to one `testbed serve
//! --grpc-web` port (the default deployment: v1 and v2 behind the router), by five clients in
//! alternating rounds so that they share the machine's noise: native gRPC and tonic-web's
//! `GrpcWebClientLayer` over HTTP/2, each on tonic's `Channel` and on hyper's own client, and
//! gRPC-Web over HTTP/1.1 on hyper's client (as a browser on plaintext localhost). Prints p50,
//! p90 and p99 per client; docs/results.md keeps the figures.
//!
//! ```sh
//! cargo run --release -p bench --example grpc_web_latency -- [CALLS_PER_ROUND] [ROUNDS]
//! ```

use anyhow::Context;
use bench::samples::print_clients;
use http::{Request, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use port::server::ServeOptions;
use services::pb::v1::IncrementRequest;
use services::pb::v1::incrementer_client::IncrementerClient;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic::body::Body;
use tonic::transport::Endpoint;
use tonic_web::{GrpcWebCall, GrpcWebClientLayer};
use tower::ServiceBuilder;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().map_or(Ok(2000), |n| n.parse())?;
    let rounds: usize = args.next().map_or(Ok(10), |n| n.parse())?;
    let mut options = ServeOptions::default();
    options.web.grpc_web = true;
    bench::on_port::measure_on_port(&options, "web-bench", |addr| measure(addr, calls, rounds))
}

/// Latencies of `$calls` sequential v1 calls by `$client` (a macro: each client is its own type).
macro_rules! round {
    ($calls:expr, $client:expr) => {{
        let mut seen = Vec::with_capacity($calls);
        for value in 0..$calls as i64 {
            let start = Instant::now();
            let reply = $client.increment(IncrementRequest { value }).await?;
            seen.push(start.elapsed());
            let reply = reply.into_inner().value;
            anyhow::ensure!(reply == value + 1, "wrong reply {reply} to {value}");
        }
        seen
    }};
}

async fn measure(addr: SocketAddr, calls: usize, rounds: usize) -> anyhow::Result<()> {
    let origin = format!("http://{addr}");
    let endpoint = Endpoint::from_shared(origin.clone())?;
    let mut native = IncrementerClient::new(endpoint.connect().await?);
    // gRPC-Web over HTTP/2 (prior knowledge): the layer marks requests HTTP/1.1, which the h2
    // connection does not care about; set back so that nothing downstream is confused.
    let h2 = ServiceBuilder::new()
        .layer(GrpcWebClientLayer::new())
        .map_request(|request: Request<GrpcWebCall<Body>>| {
            let mut request = request.map(Body::new);
            *request.version_mut() = Version::HTTP_2;
            request
        })
        .service(endpoint.connect().await?);
    let mut web_h2 = IncrementerClient::new(h2);
    // The same on hyper's own client (no `Buffer` task in front, unlike tonic's `Channel`), so
    // that the HTTP/1.1 row is compared with HTTP/2 on the same client.
    // Nagle off, as tonic's `Channel` and browsers have it (else 40 ms delayed-ACK stalls).
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let hyper_h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build::<_, Body>(connector.clone());
    let mut native_hyper = IncrementerClient::with_origin(hyper_h2.clone(), origin.parse()?);
    let h2 = ServiceBuilder::new()
        .layer(GrpcWebClientLayer::new())
        .map_request(|request: Request<GrpcWebCall<Body>>| {
            let mut request = request.map(Body::new);
            *request.version_mut() = Version::HTTP_2;
            request
        })
        .service(hyper_h2);
    let mut web_hyper_h2 = IncrementerClient::with_origin(h2, origin.parse()?);
    let h1 = ServiceBuilder::new()
        .layer(GrpcWebClientLayer::new())
        .map_request(|request: Request<GrpcWebCall<Body>>| request.map(Body::new))
        .service(Client::builder(TokioExecutor::new()).build::<_, Body>(connector));
    let mut web_h1 = IncrementerClient::with_origin(h1, origin.parse().context("origin")?);

    let names = [
        "gRPC, HTTP/2, tonic Channel",
        "gRPC-Web, HTTP/2, tonic Channel",
        "gRPC, HTTP/2, hyper",
        "gRPC-Web, HTTP/2, hyper",
        "gRPC-Web, HTTP/1.1, hyper",
    ];
    let mut all: [Vec<Duration>; 5] = Default::default();
    // A warm-up round of each, not kept.
    for keep in std::iter::once(false).chain(std::iter::repeat_n(true, rounds)) {
        let n = if keep { calls } else { calls.min(200) };
        let seen = [
            round!(n, native),
            round!(n, web_h2),
            round!(n, native_hyper),
            round!(n, web_hyper_h2),
            round!(n, web_h1),
        ];
        if keep {
            for (kept, seen) in all.iter_mut().zip(seen) {
                kept.extend(seen);
            }
        }
    }
    println!("unary v1 Increment through the router, {rounds} alternating rounds of {calls} calls");
    print_clients(&names, &mut all, "the first");
    Ok(())
}
