//! JSON calls as the port's other layers see them: with their connection (the access log names
//! the peer), their bodies charged to the port's body budgets per connection (a client holding a
//! half-sent body takes nothing from another connection's share, and a body past its share gets
//! 429), and a stalled body answered with 408 once `--json-body-timeout-ms` passes. Plain
//! HTTP/1.1 over TCP, so that a body can be left half-sent.

use port::deployment::Deployment;
use port::guard::BodyLimits;
use port::observe::{Destination, ObserveOptions};
use port::server::{self, ServeOptions};
use port::web::json::JsonOptions;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATH: &str = "/increment.v1.Incrementer/Increment";

/// The head of a JSON POST declaring `length` bytes of body.
fn head(addr: SocketAddr, length: usize) -> String {
    format!(
        "POST {PATH} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\nconnection: close\r\n\r\n"
    )
}

/// The status and body of the answer read to its end from `stream`.
async fn answer(mut stream: TcpStream) -> (u16, Value) {
    let mut text = Vec::new();
    stream.read_to_end(&mut text).await.expect("the answer");
    let text = String::from_utf8_lossy(&text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunked(body)
    } else {
        body.to_string()
    };
    let json = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    (status, json)
}

/// A chunked body's chunks, joined.
fn dechunked(mut body: &str) -> String {
    let mut joined = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        joined.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    joined
}

/// `body` posted whole on a new connection.
async fn post(addr: SocketAddr, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!("{}{body}", head(addr, body.len()));
    stream.write_all(request.as_bytes()).await.expect("sent");
    answer(stream).await
}

#[tokio::test]
async fn json_bodies_are_charged_to_their_connection_and_a_stalled_one_times_out() {
    let dir = crate::common::temp_dir("json-budget");
    let log = dir.path().join("access.log");
    let options = ServeOptions {
        json: JsonOptions {
            json: true,
            json_body_timeout: Duration::from_secs(3),
            ..JsonOptions::default()
        },
        bodies: BodyLimits {
            connection_body_budget_bytes: 64,
            ..BodyLimits::default()
        },
        observe: ObserveOptions {
            access_log: Some(Destination::File(log.clone())),
            ..ObserveOptions::default()
        },
        ..ServeOptions::default()
    };
    let layout = Deployment::SideBySide
        .layout(options.max_message_bytes)
        .expect("a layout");
    let server = server::start_with("127.0.0.1:0".parse().unwrap(), layout, "json", &options)
        .await
        .expect("the port starts");
    let addr = server.addr;

    // One connection holds 50 of its 64 bytes, its body half-sent...
    let mut stalled = TcpStream::connect(addr).await.expect("connects");
    let half = format!("{}{{\"value\":\"1\"{}", head(addr, 100), " ".repeat(38));
    stalled.write_all(half.as_bytes()).await.expect("sent");
    // ... which takes nothing from another connection's share (one shared share would refuse).
    let (status, json) = post(addr, &format!(r#"{{"value":"41"}}{}"#, " ".repeat(16))).await;
    assert_eq!(
        (status, json["value"].clone()),
        (200, "42".into()),
        "{json}"
    );
    // A body past its own connection's share gets 429, naming the budget.
    let (status, json) = post(addr, &format!(r#"{{"value":"1"}}{}"#, " ".repeat(60))).await;
    assert_eq!((status, json["code"].clone()), (429, 8.into()), "{json}");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(message.contains("--connection-body-budget-bytes"), "{json}");
    // The stalled body ends with the timeout's answer.
    let (status, json) = answer(stalled).await;
    assert_eq!((status, json["code"].clone()), (408, 4.into()), "{json}");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(message.contains("--json-body-timeout-ms"), "{json}");

    // The JSON call is in the access log with its peer, as a gRPC call would be.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["method"] == PATH && line["code"] == 0);
        if let Some(line) = found {
            break line;
        }
        assert!(tokio::time::Instant::now() < deadline, "no line in {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        line["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{line}"
    );
}
