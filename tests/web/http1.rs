//! gRPC-Web over HTTP/1.1 by hand, as a browser sends it: CORS preflights and origins, the
//! headers a page may read, and the port's bounds (one request message, the message limit,
//! the body budgets, the header-list limit) on gRPC-Web calls, each a trailers-only reply
//! with a clear `grpc-message`. Plain gRPC over HTTP/1.1 keeps its HTTP 505, and a port
//! without `--grpc-web` says how to turn it on.

use super::{ALLOWED_ORIGIN, start_web};
use crate::common::raw::frame;
use crate::common::{probe, start};
use port::deployment::Deployment;
use port::server::ServeOptions;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const V1: &str = "/increment.v1.Incrementer/Increment";
const WEB: &str = "application/grpc-web+proto";

/// An HTTP/1.1 reply: status, headers (names lowercase), body (de-chunked).
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The gRPC status in the headers (a trailers-only reply), with its message decoded.
    fn status_in_headers(&self) -> (String, String) {
        let code = self.header("grpc-status").unwrap_or("none").to_string();
        let message =
            percent_encoding::percent_decode_str(self.header("grpc-message").unwrap_or(""))
                .decode_utf8_lossy()
                .into_owned();
        (code, message)
    }
}

/// Sends one HTTP/1.1 request on a new connection and reads the whole reply (the future owns
/// what it sends).
fn http1(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> impl Future<Output = Reply> + use<> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let body = body.to_vec();
    async move {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(addr)
                .await
                .expect("connects");
            stream.write_all(head.as_bytes()).await.expect("head sent");
            // The server may answer (and close) before it reads the whole body: keep what came.
            let _ = stream.write_all(&body).await;
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes).await;
            bytes
        };
        let bytes = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("the reply comes within 10 s");
        parse(&bytes)
    }
}

fn parse(bytes: &[u8]) -> Reply {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = bytes[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(at) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..at]).trim(), 16)
            .expect("a chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[at + 2..at + 2 + size]);
        rest = &rest[at + 2 + size + 2..];
    }
    out
}

/// Standard base64 with padding, as grpc-web-text sends it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A v1 request for `value` as one gRPC-Web frame.
fn v1_message(value: i64) -> Vec<u8> {
    use prost::Message;
    let bytes = services::pb::v1::IncrementRequest { value }.encode_to_vec();
    frame(false, bytes.len() as u32, &bytes)
}

#[tokio::test]
async fn preflights_allow_the_listed_origin_and_its_headers_and_no_other() {
    let server = start_web(ServeOptions::default()).await;
    let preflight = |origin: &'static str| {
        http1(
            server.addr,
            "OPTIONS",
            V1,
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type,x-grpc-web,x-user-agent,x-api-version,authorization,grpc-timeout",
                ),
            ],
            b"",
        )
    };
    let allowed = preflight(ALLOWED_ORIGIN).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert_eq!(allowed.header("access-control-allow-methods"), Some("POST"));
    let headers = allowed.header("access-control-allow-headers").unwrap_or("");
    for name in [
        "x-grpc-web",
        "x-user-agent",
        "content-type",
        "x-api-version",
        "authorization",
        "grpc-timeout",
    ] {
        assert!(
            headers.split(',').any(|h| h.trim() == name),
            "{name} in {headers}"
        );
    }
    let refused = preflight("http://elsewhere.example").await;
    assert_eq!(
        refused.header("access-control-allow-origin"),
        None,
        "a browser refuses the call: {refused:?}"
    );
}

#[tokio::test]
async fn a_call_from_an_allowed_origin_can_read_status_and_version_and_others_are_refused() {
    let server = start_web(ServeOptions::default()).await;
    let message = v1_message(41);
    let call = |origin: &'static str| {
        http1(
            server.addr,
            "POST",
            V1,
            &[
                ("origin", origin),
                ("content-type", WEB),
                ("x-grpc-web", "1"),
            ],
            &message,
        )
    };
    let allowed = call(ALLOWED_ORIGIN).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.header("content-type"), Some(WEB));
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert_eq!(allowed.header("x-api-version"), Some("1.0.0"));
    let exposed = allowed
        .header("access-control-expose-headers")
        .unwrap_or("");
    for name in [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-api-version",
    ] {
        assert!(
            exposed.split(',').any(|h| h.trim() == name),
            "{name} in {exposed}"
        );
    }
    // One message (value 42), then the trailers as a frame flagged 0x80.
    let body = &allowed.body;
    assert_eq!(body[0], 0, "{body:?}");
    let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let trailers = &body[5 + length..];
    assert_eq!(trailers[0], 0x80, "{body:?}");
    let text = String::from_utf8_lossy(&trailers[5..]).to_ascii_lowercase();
    assert!(text.contains("grpc-status:0"), "{text}");

    let refused = call("http://elsewhere.example").await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let (code, text) = refused.status_in_headers();
    assert_eq!(code, "7", "PERMISSION_DENIED: {refused:?}");
    assert_eq!(
        text,
        "origin \"http://elsewhere.example\" may not call this port: it is not one of the \
         --cors-allow-origin values"
    );
    probe(&server).await;
}

#[tokio::test]
async fn grpc_web_unary_calls_meet_the_one_message_check_the_message_limit_and_the_budgets() {
    let mut options = ServeOptions::default();
    options.bodies.connection_body_budget_bytes = 1024;
    let server = start_web(options).await;
    let two = [v1_message(1), v1_message(2)].concat();
    let cases: [(&str, Vec<u8>, &str, &str); 5] = [
        (
            WEB,
            two.clone(),
            "13",
            "takes exactly one request message (a unary request), and received more than one",
        ),
        (
            "application/grpc-web-text",
            base64(&two).into_bytes(),
            "13",
            "received more than one",
        ),
        (WEB, Vec::new(), "13", "and received none"),
        (
            WEB,
            frame(false, 5 << 20, b""),
            "8",
            "request message of 5242880 bytes is over this server's limit of 4194304 bytes",
        ),
        (
            WEB,
            frame(false, 2000, &[0; 10]),
            "8",
            "over its body budget of 1024 bytes (--connection-body-budget-bytes)",
        ),
    ];
    for (content_type, body, want_code, want_text) in cases {
        let reply = http1(
            server.addr,
            "POST",
            V1,
            &[("content-type", content_type)],
            &body,
        )
        .await;
        let (code, text) = reply.status_in_headers();
        assert_eq!(
            (reply.status, code.as_str()),
            (200, want_code),
            "{content_type} {reply:?}"
        );
        assert!(
            text.contains(want_text),
            "{text:?} should say {want_text:?}"
        );
    }
    crate::common::until_idle(&server, Duration::from_secs(5)).await;
    probe(&server).await;
}

/// A request's method and headers, and its reply's HTTP status, gRPC code and message start.
type Refused<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str, &'a str);

#[tokio::test]
async fn what_is_not_a_grpc_web_call_gets_a_clear_answer_and_plain_grpc_over_http1_keeps_505() {
    let server = start_web(ServeOptions::default()).await;
    let message = v1_message(1);
    let pad = "a".repeat(20_000);
    let cases: [Refused; 3] = [
        (
            "GET",
            &[("content-type", WEB)],
            405,
            "13",
            "HTTP method \"GET\" is not allowed: gRPC-Web requests are POST",
        ),
        (
            "POST",
            &[("content-type", "application/grpc-web+json")],
            415,
            "3",
            "content-type \"application/grpc-web+json\" is not a gRPC-Web type served here",
        ),
        (
            "POST",
            &[("content-type", WEB), ("x-pad", &pad)],
            431,
            "8",
            "request headers of 20",
        ),
    ];
    for (method, headers, want_status, want_code, want_text) in cases {
        let reply = http1(server.addr, method, V1, headers, &message).await;
        let (code, text) = reply.status_in_headers();
        assert_eq!(
            (reply.status, code.as_str()),
            (want_status, want_code),
            "{reply:?}"
        );
        assert!(
            text.starts_with(want_text),
            "{text:?} should start {want_text:?}"
        );
    }
    let plain = http1(
        server.addr,
        "POST",
        V1,
        &[("content-type", "application/grpc")],
        &message,
    )
    .await;
    assert_eq!(plain.status, 505, "{plain:?}");
    assert!(String::from_utf8_lossy(&plain.body).contains("HTTP/1.1 requests are not supported"));
    probe(&server).await;
}

#[tokio::test]
async fn without_grpc_web_a_grpc_web_call_is_told_how_to_turn_it_on() {
    let server = start(Deployment::SideBySide).await;
    let reply = http1(
        server.addr,
        "POST",
        V1,
        &[("content-type", WEB)],
        &v1_message(1),
    )
    .await;
    assert_eq!(reply.status, 415, "{reply:?}");
    let (code, text) = reply.status_in_headers();
    assert_eq!(code, "3");
    assert!(
        text.starts_with("content-type \"application/grpc-web+proto\" is gRPC-Web, which is off on this port: start testbed serve with --grpc-web"),
        "{text}"
    );
    let preflight = http1(
        server.addr,
        "OPTIONS",
        V1,
        &[
            ("origin", ALLOWED_ORIGIN),
            ("access-control-request-method", "POST"),
        ],
        b"",
    )
    .await;
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        None,
        "{preflight:?}"
    );
}

#[tokio::test]
async fn reflection_answers_one_list_services_request_over_grpc_web() {
    let server = start_web(ServeOptions::default()).await;
    // ServerReflectionRequest { list_services: "" }: field 7, an empty string.
    let request = frame(false, 2, &[0x3a, 0x00]);
    let path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    let reply = http1(
        server.addr,
        "POST",
        path,
        &[("content-type", WEB)],
        &request,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = String::from_utf8_lossy(&reply.body);
    for service in [
        "increment.v1.Incrementer",
        "increment.v2.Incrementer",
        "grpc.health.v1.Health",
    ] {
        assert!(body.contains(service), "{service} in {body:?}");
    }
    assert!(body.ends_with("grpc-status:0\r\n"), "{body:?}");
}

#[tokio::test]
async fn a_call_refused_before_its_body_is_read_keeps_its_http1_connection_usable() {
    let server = start_web(ServeOptions::default()).await;
    let stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connects");
    let (mut read, mut write) = stream.into_split();
    // A message larger than the socket buffers, refused by the router before it is read.
    let body = frame(false, 300_000, &[0; 300_000]);
    let head = format!(
        "POST {V1} HTTP/1.1\r\nhost: x\r\ncontent-type: {WEB}\r\nx-api-version: banana\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        write.write_all(&body).await?;
        Ok::<_, std::io::Error>(write)
    });
    let mut first = Vec::new();
    while !first.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut chunk))
            .await
            .expect("the refusal comes")
            .expect("reads");
        assert!(
            n > 0,
            "closed before the reply: {:?}",
            String::from_utf8_lossy(&first)
        );
        first.extend_from_slice(&chunk[..n]);
    }
    let (code, text) = parse(&first).status_in_headers();
    assert_eq!(code, "3", "{text}");
    let mut write = writer
        .await
        .expect("the writer ends")
        .expect("the whole request was written: the port read it to its end");
    // The same connection then serves the next call.
    let message = v1_message(41);
    let next = format!(
        "POST {V1} HTTP/1.1\r\nhost: x\r\ncontent-type: {WEB}\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n",
        message.len()
    );
    write.write_all(next.as_bytes()).await.expect("sent");
    write.write_all(&message).await.expect("sent");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut rest))
        .await
        .expect("the second reply comes")
        .expect("reads");
    let second = parse(&rest);
    assert_eq!(second.header("x-api-version"), Some("1.0.0"), "{second:?}");
    assert!(
        String::from_utf8_lossy(&second.body).contains("grpc-status:0"),
        "{second:?}"
    );
}
