//! The testbed's own tuned gRPC unary client paths, measured beside tonic's stock `Channel` to
//! find where a unary round trip spends its time.
//!
//! A stock `Channel` hands each call to a `tower::Buffer` worker task, which hands it to
//! hyper's connection task, which writes the HEADERS frame and then, from a body pipe, the DATA
//! frame: two hops between tasks and two `writev`s per call. The paths here remove that step by
//! step:
//!
//! - [`UnbufferedUnary`]: the generated tonic client over hyper's HTTP/2 `SendRequest` itself,
//!   no `Buffer` (and no reconnect): one task hop fewer.
//! - [`H2Unary`]: the gRPC framing done here over the `h2` crate, so HEADERS and DATA are queued
//!   together and leave in one write, and the connection is driven inside the caller's task
//!   instead of a task of its own: no hop between tasks at all. The reply's trailers are still
//!   read and checked, so a failed call is an error, not a wrong number.

use super::chains::{Incrementer, tcp_nodelay};
use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use services::pb::v1;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use tokio::net::TcpStream;

/// The v1 unary method's path.
const INCREMENT_PATH: &str = "/increment.v1.Incrementer/Increment";
/// gRPC's length-prefixed message header: compression flag and 4-byte length.
const FRAME_HEADER: usize = 5;

/// hyper's HTTP/2 client connection as a tower service, so tonic's generated client can use it
/// without the `Buffer` a `Channel` puts in front.
#[derive(Debug, Clone)]
pub(crate) struct Http2Connection(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

type ResponseFuture =
    Pin<Box<dyn Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for Http2Connection {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

impl Http2Connection {
    /// Opens one HTTP/2 connection to `addr`; its driver runs as a task of its own.
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let io = hyper_util::rt::TokioIo::new(tcp_nodelay(addr).await?);
        let (sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "HTTP/2 client connection ended");
            }
        });
        Ok(Self(sender))
    }
}

/// Tonic's generated v1 client on an unbuffered hyper HTTP/2 connection. Kept apart from the
/// testbed's `IncrementerClient` on purpose: that one is built on a `Channel`, and the point of
/// this row is what the `Channel` costs.
pub(crate) struct UnbufferedUnary(v1::incrementer_client::IncrementerClient<Http2Connection>);

/// Connects tonic's generated v1 client to `addr` without a `Channel`.
pub(crate) async fn unbuffered_unary(addr: SocketAddr) -> anyhow::Result<UnbufferedUnary> {
    let origin = format!("http://{addr}").parse()?;
    let connection = Http2Connection::connect(addr).await?;
    Ok(UnbufferedUnary(
        v1::incrementer_client::IncrementerClient::with_origin(connection, origin),
    ))
}

impl Incrementer for UnbufferedUnary {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        Ok(self
            .0
            .increment(v1::IncrementRequest { value })
            .await?
            .into_inner()
            .value)
    }
}

/// A v1 unary client written on the `h2` crate: one write per call, no task of its own. Kept
/// apart from the testbed's `IncrementerClient` on purpose: it exists to measure what tonic's
/// client path costs, so it must not share it.
#[derive(Debug)]
pub(crate) struct H2Unary {
    sender: h2::client::SendRequest<Bytes>,
    connection: h2::client::Connection<TcpStream, Bytes>,
    uri: http::Uri,
    frame: BytesMut,
}

impl H2Unary {
    /// Connects to `addr`.
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let (sender, connection) = h2::client::handshake(tcp_nodelay(addr).await?)
            .await
            .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
        Ok(Self {
            sender,
            connection,
            uri: format!("http://{addr}{INCREMENT_PATH}").parse()?,
            frame: BytesMut::new(),
        })
    }

    fn encode(&mut self, message: &impl Message) -> Bytes {
        let len = message.encoded_len();
        self.frame.reserve(FRAME_HEADER + len);
        self.frame.put_u8(0);
        self.frame.put_u32(len as u32);
        // Cannot fail: the buffer was reserved for the encoded length.
        let _ = message.encode(&mut self.frame);
        self.frame.split().freeze()
    }
}

impl Incrementer for H2Unary {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        let frame = self.encode(&v1::IncrementRequest { value });
        let request = http::Request::post(&self.uri)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())?;
        let call = call(self.sender.clone(), request, frame);
        // The connection does the socket I/O whenever it is polled; polling it here, beside the
        // call, is what keeps the whole round trip in this task.
        tokio::select! {
            biased;
            reply = call => reply,
            ended = &mut self.connection => match ended {
                Ok(()) => bail!("the server closed the connection"),
                Err(err) => Err(anyhow::Error::new(err).context("HTTP/2 connection failed")),
            },
        }
    }
}

async fn call(
    sender: h2::client::SendRequest<Bytes>,
    request: http::Request<()>,
    frame: Bytes,
) -> anyhow::Result<i64> {
    let mut sender = sender.ready().await?;
    let (response, mut body_tx) = sender.send_request(request, false)?;
    body_tx.send_data(frame, true)?;
    let response = response.await?;
    if let Some(status) = tonic::Status::from_header_map(response.headers())
        && status.code() != tonic::Code::Ok
    {
        return Err(status.into());
    }
    let mut body = response.into_body();
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    match tonic::Status::from_header_map(&trailers) {
        Some(status) if status.code() == tonic::Code::Ok => {}
        Some(status) => return Err(status.into()),
        None => bail!("the reply ended without a grpc-status"),
    }
    decode_reply(data.freeze())
}

/// The reply's single length-prefixed message, decoded.
fn decode_reply(mut data: Bytes) -> anyhow::Result<i64> {
    if data.len() < FRAME_HEADER {
        bail!("the reply held {} bytes, not a gRPC message", data.len());
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 || len != data.len() {
        bail!(
            "the reply is not one uncompressed message (flag {compressed}, length {len} of {})",
            data.len()
        );
    }
    Ok(v1::IncrementReply::decode(data)?.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use port::Deployment;

    async fn direct_server() -> port::RunningServer {
        port::server::start("127.0.0.1:0".parse().unwrap(), Deployment::Direct)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn both_tuned_clients_increment_and_surface_errors_as_statuses() {
        let server = direct_server().await;
        let mut h2 = H2Unary::connect(server.addr).await.unwrap();
        let mut unbuffered = unbuffered_unary(server.addr).await.unwrap();
        assert_eq!(h2.increment(41).await.unwrap(), 42);
        assert_eq!(unbuffered.increment(41).await.unwrap(), 42);
        for err in [
            h2.increment(i64::MAX).await.unwrap_err(),
            unbuffered.increment(i64::MAX).await.unwrap_err(),
        ] {
            let status = err.downcast_ref::<tonic::Status>().unwrap();
            assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        }
        // The connections stay usable after a failed call.
        assert_eq!(h2.increment(1).await.unwrap(), 2);
        assert_eq!(unbuffered.increment(1).await.unwrap(), 2);
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn the_h2_client_says_when_the_server_goes_away() {
        let server = direct_server().await;
        let mut h2 = H2Unary::connect(server.addr).await.unwrap();
        assert_eq!(h2.increment(0).await.unwrap(), 1);
        server.shutdown().await.unwrap();
        let err = h2.increment(1).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("the server closed the connection"),
            "{message}"
        );
    }

    #[test]
    fn replies_that_are_not_one_plain_message_are_errors() {
        let message = v1::IncrementReply { value: 7 }.encode_to_vec();
        let framed = |flag: u8, len: u32, body: &[u8]| {
            let mut frame = vec![flag];
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(body);
            Bytes::from(frame)
        };
        let len = message.len() as u32;
        assert_eq!(decode_reply(framed(0, len, &message)).unwrap(), 7);
        for (data, says) in [
            (Bytes::from_static(b"\0\0"), "not a gRPC message"),
            (framed(1, len, &message), "flag 1"),
            (framed(0, len + 1, &message), "length"),
        ] {
            let err = decode_reply(data).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
