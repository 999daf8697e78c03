//! The non-gRPC servers the latency runs measure gRPC against, computing the same increment:
//!
//! - raw TCP ping-pong, the floor: the client sends a little-endian i64 (8 bytes), the server
//!   answers `value + 1` the same way; an overflowing value closes the connection, since this
//!   protocol has no way to say why;
//! - REST: `POST /increment` with JSON `{"value": n}` answers `{"value": n + 1}` (axum, HTTP/1.1
//!   keep-alive), or `422` with the error message;
//! - stock tonic: the v1 service alone on a default `tonic` server (Nagle off), without
//!   the layers the testbed's port adds (guard, reflection, health, fallback), so the latency runs
//!   can tell the cost of those layers from tonic's own.

use anyhow::Context;
use axum::http::StatusCode;
use axum::serve::ListenerExt;
use axum::{Json, Router, routing::post};
use serde::{Deserialize, Serialize};
use services::arithmetic::{DEFAULT_STEP, increment};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves raw TCP ping-pong on `listener` until the task is dropped.
pub async fn serve_tcp(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(err) = tcp_connection(stream).await {
                tracing::debug!(%peer, %err, "tcp connection ended");
            }
        });
    }
}

async fn tcp_connection(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 8];
    loop {
        match stream.read_exact(&mut buf).await {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err),
        }
        let value = i64::from_le_bytes(buf);
        let Ok(next) = increment(value, DEFAULT_STEP) else {
            return Ok(());
        };
        stream.write_all(&next.to_le_bytes()).await?;
    }
}

/// The JSON body of REST requests and replies.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RestValue {
    /// The number (request) or the incremented number (reply).
    pub value: i64,
}

async fn rest_increment(
    Json(body): Json<RestValue>,
) -> Result<Json<RestValue>, (StatusCode, String)> {
    increment(body.value, DEFAULT_STEP)
        .map(|value| Json(RestValue { value }))
        .map_err(|status| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                status.message().to_string(),
            )
        })
}

/// The REST baseline's routes.
pub fn rest_router() -> Router {
    Router::new().route("/increment", post(rest_increment))
}

/// Serves the v1 Incrementer on a stock tonic server on `listener`, until the task is dropped.
pub async fn serve_stock_grpc(listener: TcpListener) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(services::IncrementerV1::server())
        .serve_with_incoming(incoming)
        .await
}

/// Serves the REST baseline on `listener` with Nagle off, until the task is dropped.
pub async fn serve_rest(listener: TcpListener) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        // A failure only costs latency; the connection still works.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, rest_router()).await
}

/// One of the baseline servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Baseline {
    /// Raw TCP ping-pong, 8-byte little-endian integers.
    Tcp,
    /// REST: POST /increment with JSON.
    Rest,
    /// The v1 gRPC service alone on a stock tonic server, none of the port's layers.
    StockGrpc,
}

impl Baseline {
    /// The name on the command line (`testbed bench-target NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Tcp => "tcp",
            Baseline::Rest => "rest",
            Baseline::StockGrpc => "stock-grpc",
        }
    }

    /// Serves this baseline on `listener` until the future is dropped.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        match self {
            Baseline::Tcp => serve_tcp(listener).await.context("tcp baseline failed"),
            Baseline::Rest => serve_rest(listener).await.context("rest baseline failed"),
            Baseline::StockGrpc => serve_stock_grpc(listener)
                .await
                .context("stock tonic baseline failed"),
        }
    }
}

/// `testbed bench-target`: one baseline server in a process of its own, for the latency runs.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Which baseline.
    #[arg(value_enum)]
    pub kind: Baseline,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
}

/// Serves `args.kind` on `args.addr` until `stop` resolves, first printing
/// `testbed serving KIND on ADDR` (what [`port::child::ChildServer`] waits for).
pub async fn serve_until(
    args: &TargetArgs,
    stop: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    println!("testbed serving {} on {addr}", args.kind.name());
    tokio::select! {
        result = args.kind.serve(listener) => result,
        result = stop => result,
    }
}
