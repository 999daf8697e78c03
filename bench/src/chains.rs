//! The client side of each row: a chain of sequential dependent increments (each request sent
//! only after the previous reply, starting from 0), timed call by call into a histogram.

use crate::baseline::RestValue;
use anyhow::{Context, bail};
use bytes::Bytes;
use client::stream::StreamIncrementer;
use client::{IncrementerClient, connect};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use port::tls::ClientTls;
use services::Api;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// What one chain measured. Warm-up calls are never part of it.
#[derive(Debug)]
pub(crate) struct Chain {
    /// Per-call latency in nanoseconds.
    pub histogram: Histogram<u64>,
    /// Time of the measured calls: wall time from the first measured call to the last reply, or
    /// for a chain interleaved with another, the time its own calls took.
    pub total: Duration,
    /// When the measured calls began and ended, where this process timed them as one stretch;
    /// `None` for an interleaved chain (its stretch is shared with its partner) and for a chain
    /// a Python client timed itself.
    pub span: Option<(Instant, Instant)>,
    /// The last value received; must equal the number of calls.
    pub final_value: i64,
}

/// The wall time of the measured calls of `chains` run at once: from the first measured call
/// of any to the last reply of any, where every chain knows its stretch; otherwise (interleaved
/// chains, Python clients) the longest chain's time. Warm-up calls never count.
pub(crate) fn measured_wall(chains: &[Chain]) -> Duration {
    let spans: Option<Vec<(Instant, Instant)>> = chains.iter().map(|chain| chain.span).collect();
    match spans {
        Some(spans) if !spans.is_empty() => {
            let start = spans.iter().map(|(start, _)| *start).min();
            let end = spans.iter().map(|(_, end)| *end).max();
            start
                .zip(end)
                .map_or(Duration::ZERO, |(start, end)| end.duration_since(start))
        }
        _ => chains
            .iter()
            .map(|chain| chain.total)
            .max()
            .unwrap_or(Duration::ZERO),
    }
}

/// A client that turns `value` into `value + 1` somehow.
pub(crate) trait Incrementer {
    /// One call.
    fn increment(&mut self, value: i64) -> impl Future<Output = anyhow::Result<i64>> + Send;
}

/// Runs `warmup` unmeasured calls, then (once every chain sharing `start` has warmed up too)
/// `calls` measured ones from 0, and checks the result.
pub(crate) async fn run<C: Incrementer>(
    client: &mut C,
    warmup: u64,
    calls: u64,
    start: Option<&Barrier>,
) -> anyhow::Result<Chain> {
    warm_up(client, warmup).await?;
    if let Some(barrier) = start {
        barrier.wait().await;
    }
    let mut chain = Recorder::new()?;
    let start = Instant::now();
    for _ in 0..calls {
        chain.call(client).await?;
    }
    // Wall time, not the sum of the timed calls: for the in-process rows the timer costs more
    // than the call, and the wall time per call is the honest figure.
    let end = Instant::now();
    chain.finish(calls, end.duration_since(start), Some((start, end)))
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
pub(crate) async fn run_interleaved<A: Incrementer, B: Incrementer>(
    a: &mut A,
    b: &mut B,
    warmup: u64,
    calls: u64,
    start: Option<&Barrier>,
) -> anyhow::Result<(Chain, Chain)> {
    warm_up(a, warmup).await?;
    warm_up(b, warmup).await?;
    if let Some(barrier) = start {
        barrier.wait().await;
    }
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
        chain_a.finish(calls, busy_a, None)?,
        chain_b.finish(calls, busy_b, None)?,
    ))
}

/// As [`run_interleaved`], for any number of clients of one kind: blocks of
/// [`INTERLEAVE_BLOCK`] calls on each in turn, each chain checked as [`run`] checks one.
pub(crate) async fn run_alternating<C: Incrementer>(
    clients: &mut [C],
    warmup: u64,
    calls: u64,
) -> anyhow::Result<Vec<Chain>> {
    for client in clients.iter_mut() {
        warm_up(client, warmup).await?;
    }
    let mut recorders = Vec::with_capacity(clients.len());
    for _ in 0..clients.len() {
        recorders.push(Recorder::new()?);
    }
    let mut done = 0;
    while done < calls {
        let block = INTERLEAVE_BLOCK.min(calls - done);
        for (client, recorder) in clients.iter_mut().zip(&mut recorders) {
            for _ in 0..block {
                recorder.call(client).await?;
            }
        }
        done += block;
    }
    recorders
        .into_iter()
        .map(|recorder| {
            let busy = recorder.busy;
            recorder.finish(calls, busy, None)
        })
        .collect()
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

    fn finish(
        self,
        calls: u64,
        total: Duration,
        span: Option<(Instant, Instant)>,
    ) -> anyhow::Result<Chain> {
        if self.value != calls as i64 {
            bail!(
                "the chain ended at {}, not {calls}: some reply was wrong",
                self.value
            );
        }
        Ok(Chain {
            histogram: self.histogram,
            total,
            span,
            final_value: self.value,
        })
    }
}

/// The harness alone: timer and histogram around a call that does nothing.
pub(crate) struct Harness;

impl Incrementer for Harness {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        Ok(value + 1)
    }
}

/// Row 1: the service's own arithmetic, called in-process.
pub(crate) struct InProcess;

impl Incrementer for InProcess {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        Ok(services::arithmetic::increment(
            black_box(value),
            black_box(1),
        )?)
    }
}

/// Row 2: raw TCP ping-pong, 8-byte messages, Nagle off.
pub(crate) struct Tcp(TcpStream);

/// A TCP connection to `addr` with Nagle off, as every row's client uses.
pub(crate) async fn tcp_nodelay(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Tcp {
    /// Connects to the TCP baseline.
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
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
pub(crate) struct Rest {
    sender: http1::SendRequest<Full<Bytes>>,
    uri: hyper::Uri,
}

impl Rest {
    /// Opens one keep-alive connection to the REST baseline.
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
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

/// Rows 4, 4t, 5, 6 and 11: the testbed's [`IncrementerClient`] (tonic's generated client on a
/// `Channel`, plaintext or TLS), v1 or v2. A v2 chain checks that each reply echoes its request
/// id.
pub(crate) struct Unary {
    client: IncrementerClient,
    next_id: u64,
}

impl Unary {
    /// Connects a v1 client.
    pub(crate) async fn v1(addr: SocketAddr) -> anyhow::Result<Self> {
        Self::connect(Api::V1, addr).await
    }

    /// Connects a v2 client.
    pub(crate) async fn v2(addr: SocketAddr) -> anyhow::Result<Self> {
        Self::connect(Api::V2, addr).await
    }

    /// Connects a v1 client over TLS, trusting `tls`'s CA: the same client as [`Unary::v1`] on
    /// a TLS channel.
    pub(crate) async fn v1_tls(addr: SocketAddr, tls: ClientTls) -> anyhow::Result<Self> {
        let channel = tls_channel(addr, &tls).await?;
        Ok(Self::on(IncrementerClient::new(Api::V1, channel)))
    }

    async fn connect(api: Api, addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self::on(IncrementerClient::connect(api, addr).await?))
    }

    fn on(client: IncrementerClient) -> Self {
        Self { client, next_id: 1 }
    }
}

/// A tonic channel over TLS to `addr` (Nagle off, as every row's client), with the address in
/// its error.
pub(crate) async fn tls_channel(
    addr: SocketAddr,
    tls: &ClientTls,
) -> anyhow::Result<tonic::transport::Channel> {
    port::tls::channel(addr, tls)
        .await
        .with_context(|| format!("TLS connect {addr}"))
}

impl Incrementer for Unary {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        let request_id = self.next_id;
        self.next_id += 1;
        let reply = self.client.increment(value, None, request_id).await?;
        if reply.request_id != request_id {
            bail!(
                "reply to request {request_id} carried id {}",
                reply.request_id
            );
        }
        Ok(reply.value)
    }
}

/// Rows 7 and 7t: request/reply over one bidirectional stream, one call in flight.
pub(crate) struct StreamPingPong(StreamIncrementer);

impl StreamPingPong {
    /// Opens the stream.
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self(StreamIncrementer::open(connect(addr).await?).await?))
    }

    /// Opens the stream over TLS, trusting `tls`'s CA.
    pub(crate) async fn connect_tls(addr: SocketAddr, tls: ClientTls) -> anyhow::Result<Self> {
        let channel = tls_channel(addr, &tls).await?;
        Ok(Self(StreamIncrementer::open(channel).await?))
    }
}

impl Incrementer for StreamPingPong {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        Ok(self.0.increment(value, None).await?.value)
    }
}

/// Row 8: all requests sent on one stream, then all replies read. Not dependent: the values are
/// known up front, so this measures streaming throughput, not round trips.
pub(crate) async fn pipelined(addr: SocketAddr, calls: u64) -> anyhow::Result<Duration> {
    let client = IncrementerClient::connect(Api::V2, addr).await?;
    let values: Vec<i64> = (0..calls as i64).collect();
    let start = Instant::now();
    let replies = client.increment_stream(&values, None).await?;
    let took = start.elapsed();
    if replies.len() as u64 != calls {
        bail!(
            "pipelined stream ended after {} of {calls} replies",
            replies.len()
        );
    }
    if let Some((sent, reply)) = values
        .iter()
        .zip(&replies)
        .find(|(sent, reply)| reply.value != **sent + 1)
    {
        bail!(
            "pipelined reply to {sent} was {}, not {}",
            reply.value,
            sent + 1
        );
    }
    Ok(took)
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
        let (chain_a, chain_b) = run_interleaved(&mut a, &mut b, 0, calls, None)
            .await
            .unwrap();
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
        let err = run_interleaved(&mut a, &mut wrong, 0, 10, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ended at 20, not 10"), "{err}");
    }
}
