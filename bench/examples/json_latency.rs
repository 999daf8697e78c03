//! JSON over HTTP's cost on the port: sequential unary v1 `Increment` calls to one `testbed
//! serve --json` port (the default deployment: v1 and v2 behind the router), by three clients on
//! hyper's own client in alternating rounds so that they share the machine's noise: native gRPC
//! over HTTP/2, and `POST /increment.v1.Incrementer/Increment` with a JSON body over HTTP/2 and
//! over HTTP/1.1 (as curl or a browser's fetch on plaintext localhost). A call's time ends when
//! its whole reply is read; the JSON reply is checked after. Prints p50, p90 and p99 per
//! client; docs/web.md keeps the figures.
//!
//! ```sh
//! cargo run --release -p bench --example json_latency -- [CALLS_PER_ROUND] [ROUNDS]
//! ```

use bench::samples::print_clients;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use port::server::ServeOptions;
use services::pb::v1::IncrementRequest;
use services::pb::v1::incrementer_client::IncrementerClient;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic::body::Body;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().map_or(Ok(2000), |n| n.parse())?;
    let rounds: usize = args.next().map_or(Ok(10), |n| n.parse())?;
    let mut options = ServeOptions::default();
    options.json.json = true;
    bench::on_port::measure_on_port(&options, "json-bench", |addr| measure(addr, calls, rounds))
}

type Hyper = Client<HttpConnector, Full<Bytes>>;

/// Latencies of `calls` sequential JSON calls on `client`.
async fn json_round(client: &Hyper, url: &str, calls: usize) -> anyhow::Result<Vec<Duration>> {
    let mut seen = Vec::with_capacity(calls);
    for value in 0..calls as i64 {
        let body = format!(r#"{{"value":"{value}"}}"#);
        let start = Instant::now();
        let request = Request::post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = client.request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        seen.push(start.elapsed());
        let reply: serde_json::Value = serde_json::from_slice(&bytes)?;
        let expected = (value + 1).to_string();
        anyhow::ensure!(
            status == 200 && reply["value"] == expected.as_str(),
            "wrong reply {status} {reply} to {value}"
        );
    }
    Ok(seen)
}

async fn measure(addr: SocketAddr, calls: usize, rounds: usize) -> anyhow::Result<()> {
    let origin = format!("http://{addr}");
    // Nagle off, as tonic's `Channel`, curl and browsers have it (else delayed-ACK stalls).
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let grpc_h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build::<_, Body>(connector.clone());
    let mut native = IncrementerClient::with_origin(grpc_h2, origin.parse()?);
    let json_h2: Hyper = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector.clone());
    let json_h1: Hyper = Client::builder(TokioExecutor::new()).build(connector);
    let url = format!("{origin}/increment.v1.Incrementer/Increment");

    let names = [
        "gRPC, HTTP/2, hyper",
        "JSON, HTTP/2, hyper",
        "JSON, HTTP/1.1, hyper",
    ];
    let mut all: [Vec<Duration>; 3] = Default::default();
    // A warm-up round of each, not kept.
    for keep in std::iter::once(false).chain(std::iter::repeat_n(true, rounds)) {
        let n = if keep { calls } else { calls.min(200) };
        let mut grpc = Vec::with_capacity(n);
        for value in 0..n as i64 {
            let start = Instant::now();
            let reply = native.increment(IncrementRequest { value }).await?;
            grpc.push(start.elapsed());
            let reply = reply.into_inner().value;
            anyhow::ensure!(reply == value + 1, "wrong reply {reply} to {value}");
        }
        let seen = [
            grpc,
            json_round(&json_h2, &url, n).await?,
            json_round(&json_h1, &url, n).await?,
        ];
        if keep {
            for (kept, seen) in all.iter_mut().zip(seen) {
                kept.extend(seen);
            }
        }
    }
    println!("unary v1 Increment through the router, {rounds} alternating rounds of {calls} calls");
    print_clients(&names, &mut all, "gRPC");
    Ok(())
}
