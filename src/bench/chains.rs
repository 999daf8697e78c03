//! The client side of each row: a chain of sequential dependent increments (each request sent
//! only after the previous reply, starting from 0), timed call by call into a histogram.

use crate::clients::connect;
use crate::stream_client::StreamIncrementer;
use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use services::baseline::RestValue;
use services::pb::{v1, v2};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::client::GrpcService;
use tonic::transport::Channel;

/// What one chain measured.
#[derive(Debug)]
pub struct Chain {
    /// Per-call latency in nanoseconds.
    pub histogram: Histogram<u64>,
    /// Wall time of the measured calls.
    pub total: Duration,
    /// The last value received; must equal the number of calls.
    pub final_value: i64,
}

/// A client that turns `value` into `value + 1` somehow.
pub trait Incrementer {
    /// One call.
    fn increment(&mut self, value: i64) -> impl Future<Output = anyhow::Result<i64>> + Send;
}

/// Runs `warmup` unmeasured calls, then `calls` measured ones from 0, and checks the result.
pub async fn run<C: Incrementer>(client: &mut C, warmup: u64, calls: u64) -> anyhow::Result<Chain> {
    warm_up(client, warmup).await?;
    let mut chain = Recorder::new()?;
    let start = Instant::now();
    for _ in 0..calls {
        chain.call(client).await?;
    }
    // Wall time, not the sum of the timed calls: for the in-process rows the timer costs more
    // than the call, and the wall time per call is the honest figure.
    chain.finish(calls, start.elapsed())
}

/// Calls in a row on one client of an interleaved pair before switching to the other. Measured
/// on one CPU: switching every call made both rows a third slower (cold caches); blocks of 100
/// let slow phases of the machine fall on one row, and the router / direct p50 ratio scattered
/// 1.02-1.12 across runs; blocks of 10 keep the p50s within 3 % of an uninterleaved row and the
/// ratio within 0.988-0.991.
const INTERLEAVE_BLOCK: u64 = 10;

/// Runs two chains in alternating blocks of [`INTERLEAVE_BLOCK`] calls, `a` then `b`, each on its
/// own client and each checked as [`run`] checks one. Whatever the machine does meanwhile
/// (another tenant, a frequency change, the scheduler) slows both alike, so the ratio of the two
/// is far steadier than that of two runs one after the other. Each chain's total is the time its
/// own calls took.
pub async fn run_interleaved<A: Incrementer, B: Incrementer>(
    a: &mut A,
    b: &mut B,
    warmup: u64,
    calls: u64,
) -> anyhow::Result<(Chain, Chain)> {
    warm_up(a, warmup).await?;
    warm_up(b, warmup).await?;
    let (mut chain_a, mut chain_b) = (Recorder::new()?, Recorder::new()?);
    let mut done = 0;
    while done < calls {
        let block = INTERLEAVE_BLOCK.min(calls - done);
        for _ in 0..block {
            chain_a.call(a).await?;
        }
        for _ in 0..block {
            chain_b.call(b).await?;
        }
        done += block;
    }
    let (busy_a, busy_b) = (chain_a.busy, chain_b.busy);
    Ok((
        chain_a.finish(calls, busy_a)?,
        chain_b.finish(calls, busy_b)?,
    ))
}

async fn warm_up<C: Incrementer>(client: &mut C, calls: u64) -> anyhow::Result<()> {
    let mut value = 0;
    for _ in 0..calls {
        value = client.increment(value).await?;
    }
    Ok(())
}

/// A chain under way: its value, and the time of each of its calls.
struct Recorder {
    value: i64,
    histogram: Histogram<u64>,
    busy: Duration,
}

impl Recorder {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            value: 0,
            histogram: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
            busy: Duration::ZERO,
        })
    }

    /// One timed call: the next value of the chain from the last.
    async fn call<C: Incrementer>(&mut self, client: &mut C) -> anyhow::Result<()> {
        let before = Instant::now();
        self.value = client.increment(self.value).await?;
        let took = before.elapsed();
        self.histogram.saturating_record(took.as_nanos() as u64);
        self.busy += took;
        Ok(())
    }

    fn finish(self, calls: u64, total: Duration) -> anyhow::Result<Chain> {
        if self.value != calls as i64 {
            bail!(
                "the chain ended at {}, not {calls}: some reply was wrong",
                self.value
            );
        }
        Ok(Chain {
            histogram: self.histogram,
            total,
            final_value: self.value,
        })
    }
}

/// The harness alone: timer and histogram around a call that does nothing.
pub struct Harness;

impl Incrementer for Harness {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        Ok(value + 1)
    }
}

/// Row 1: the service's own arithmetic, called in-process.
pub struct InProcess;

impl Incrementer for InProcess {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        Ok(services::arithmetic::increment(
            black_box(value),
            black_box(1),
        )?)
    }
}

/// Row 2: raw TCP ping-pong, 8-byte messages, Nagle off.
pub struct Tcp(TcpStream);

/// A TCP connection to `addr` with Nagle off, as every row's client uses.
pub async fn tcp_nodelay(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Tcp {
    /// Connects to the TCP baseline.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self(tcp_nodelay(addr).await?))
    }
}

impl Incrementer for Tcp {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        self.0.write_all(&value.to_le_bytes()).await?;
        let mut reply = [0u8; 8];
        self.0.read_exact(&mut reply).await?;
        Ok(i64::from_le_bytes(reply))
    }
}

/// Row 3: REST, JSON over one HTTP/1.1 keep-alive connection (hyper client, axum server).
pub struct Rest {
    sender: http1::SendRequest<Full<Bytes>>,
    uri: hyper::Uri,
}

impl Rest {
    /// Opens one keep-alive connection to the REST baseline.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tcp_nodelay(addr).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "REST client connection ended");
            }
        });
        Ok(Self {
            sender,
            uri: format!("http://{addr}/increment").parse()?,
        })
    }
}

impl Incrementer for Rest {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        let body = serde_json::to_vec(&RestValue { value })?;
        let request = hyper::Request::post(&self.uri)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::HOST, "127.0.0.1")
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "REST server answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(serde_json::from_slice::<RestValue>(&body)?.value)
    }
}

/// Rows 4, 4b and 11: tonic's generated v1 client, on a `Channel` unless built otherwise.
pub struct UnaryV1<T = Channel>(pub v1::incrementer_client::IncrementerClient<T>);

impl UnaryV1 {
    /// Connects a v1 client.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self(v1::incrementer_client::IncrementerClient::new(
            connect(addr).await?,
        )))
    }
}

impl<T> Incrementer for UnaryV1<T>
where
    T: GrpcService<tonic::body::Body> + Send,
    T::Future: Send,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        Ok(self
            .0
            .increment(v1::IncrementRequest { value })
            .await?
            .into_inner()
            .value)
    }
}

/// Rows 5 and 6: tonic v2 unary (direct, or through the router).
pub struct UnaryV2 {
    client: v2::incrementer_client::IncrementerClient<Channel>,
    next_id: u64,
}

impl UnaryV2 {
    /// Connects a v2 client.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            client: v2::incrementer_client::IncrementerClient::new(connect(addr).await?),
            next_id: 1,
        })
    }
}

impl Incrementer for UnaryV2 {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        let request_id = self.next_id;
        self.next_id += 1;
        let request = v2::IncrementRequest {
            value,
            step: None,
            request_id,
        };
        let reply = self.client.increment(request).await?.into_inner();
        if reply.request_id != request_id {
            bail!(
                "reply to request {request_id} carried id {}",
                reply.request_id
            );
        }
        Ok(reply.value)
    }
}

/// Row 7: request/reply over one bidirectional stream, one call in flight.
pub struct StreamPingPong(StreamIncrementer);

impl StreamPingPong {
    /// Opens the stream.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self(StreamIncrementer::open(connect(addr).await?).await?))
    }
}

impl Incrementer for StreamPingPong {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        Ok(self.0.increment(value, None).await?.value)
    }
}

/// Row 8: all requests sent on one stream, then all replies read. Not dependent: the values are
/// known up front, so this measures streaming throughput, not round trips.
pub async fn pipelined(addr: SocketAddr, calls: u64) -> anyhow::Result<Duration> {
    let mut client = v2::incrementer_client::IncrementerClient::new(connect(addr).await?);
    let requests: Vec<v2::IncrementRequest> = (0..calls as i64)
        .map(|value| v2::IncrementRequest {
            value,
            step: None,
            request_id: value as u64,
        })
        .collect();
    let start = Instant::now();
    let mut replies = client
        .increment_stream(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let mut expected = 1;
    while let Some(reply) = replies.message().await? {
        if reply.value != expected {
            bail!(
                "pipelined reply {} was {}, not {expected}",
                expected - 1,
                reply.value
            );
        }
        expected += 1;
    }
    if expected != calls as i64 + 1 {
        bail!(
            "pipelined stream ended after {} of {calls} replies",
            expected - 1
        );
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Adds `step`, and notes its name in a shared log at every call.
    struct Logged {
        name: char,
        step: i64,
        log: Arc<Mutex<Vec<char>>>,
    }

    impl Incrementer for Logged {
        async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
            if let Ok(mut log) = self.log.lock() {
                log.push(self.name);
            }
            Ok(value + self.step)
        }
    }

    fn pair(step_b: i64) -> (Logged, Logged, Arc<Mutex<Vec<char>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let client = |name, step| Logged {
            name,
            step,
            log: log.clone(),
        };
        (client('a', 1), client('b', step_b), log)
    }

    #[tokio::test]
    async fn interleaved_chains_alternate_in_blocks_and_each_is_checked() {
        let (mut a, mut b, log) = pair(1);
        let calls = 2 * INTERLEAVE_BLOCK + 3;
        let (chain_a, chain_b) = run_interleaved(&mut a, &mut b, 0, calls).await.unwrap();
        assert_eq!(
            (chain_a.final_value, chain_b.final_value),
            (calls as i64, calls as i64)
        );
        assert_eq!(chain_a.histogram.len(), calls);
        let log = log.lock().unwrap().clone();
        let block = INTERLEAVE_BLOCK as usize;
        let expected: Vec<char> = [block, block, 3]
            .into_iter()
            .flat_map(|n| std::iter::repeat_n('a', n).chain(std::iter::repeat_n('b', n)))
            .collect();
        assert_eq!(log, expected);

        let (mut a, mut wrong, _) = pair(2);
        let err = run_interleaved(&mut a, &mut wrong, 0, 10)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ended at 20, not 10"), "{err}");
    }
}
