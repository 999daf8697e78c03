//! A raw HTTP/2 client for sending bytes no well-behaved gRPC client would send, and reading
//! back the HTTP status and the gRPC status, wherever the server put it.

use bytes::Bytes;
use http::HeaderMap;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// What the server answered.
#[derive(Debug)]
pub(crate) struct RawReply {
    /// The HTTP status.
    pub http_status: u16,
    /// `grpc-status` from the trailers, or from the headers of a trailers-only reply.
    pub grpc_status: Option<i32>,
    /// `grpc-message`, percent-decoded.
    pub grpc_message: String,
    /// Whether the reply ended with its headers (a trailers-only reply).
    pub ended_on_headers: bool,
    /// The response headers.
    pub headers: HeaderMap,
    /// The trailers (empty for a trailers-only reply).
    pub trailers: HeaderMap,
}

/// Sends one request with this content-type and body bytes, and reads the whole reply.
pub(crate) async fn send(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> RawReply {
    send_with(addr, path, &[("content-type", content_type)], body).await
}

/// Sends one request with these headers (plus `te: trailers`) and body bytes, and reads the
/// whole reply; `ended_on_headers` tells whether the reply was trailers-only.
pub(crate) async fn send_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> RawReply {
    send_method(addr, "POST", path, headers, body).await
}

/// [`send_with`] with this HTTP method instead of POST.
pub(crate) async fn send_method(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> RawReply {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut stream) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    // A server that answers from the headers alone (a trailers-only refusal) may close the
    // stream before the body goes out: then sending it fails, and the reply is what counts.
    let _ = stream.send_data(Bytes::from(body), true);
    let response = response.await.unwrap();
    let http_status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let ended_on_headers = body.is_end_stream();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    let status_of = |map: &HeaderMap| {
        map.get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    let message_of = |map: &HeaderMap| {
        map.get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .map(percent_decode)
    };
    RawReply {
        http_status,
        grpc_status: status_of(&trailers).or_else(|| status_of(&headers)),
        grpc_message: message_of(&trailers)
            .or_else(|| message_of(&headers))
            .unwrap_or_default(),
        ended_on_headers,
        headers,
        trailers,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A gRPC frame: flag byte, 4-byte big-endian length, then the message bytes.
pub(crate) fn frame(compressed: bool, declared_len: u32, message: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&declared_len.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Opens a gRPC call on a new HTTP/2 connection and leaves both directions open.
pub(crate) async fn open_call(
    addr: SocketAddr,
    path: &str,
) -> (h2::SendStream<Bytes>, h2::RecvStream) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let (response, send) = client
        .send_request(grpc_request(addr, path), false)
        .unwrap();
    (send, response.await.unwrap().into_body())
}

/// The request head of a gRPC call to `path` at `addr`.
pub(crate) fn grpc_request(addr: SocketAddr, path: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}
