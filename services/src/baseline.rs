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

use crate::arithmetic::{DEFAULT_STEP, increment};
use axum::http::StatusCode;
use axum::serve::ListenerExt;
use axum::{Json, Router, routing::post};
use serde::{Deserialize, Serialize};
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
        .add_service(crate::IncrementerV1::server())
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
