//! `--metrics-addr` and `--access-log`: the counts in `/metrics` and the access log's lines
//! against the calls the test made (counted by the test itself), content negotiation checked
//! by `promtool`, the bounds (series cap, log queue, metrics connections), and a real Prometheus
//! scraping the port and answering a PromQL query per version and code.

mod serve;

use crate::common::prometheus::{Prometheus, http_get, sample, tool};
use crate::common::{self, raw};
use port::Deployment;
use port::observe::{Destination, ObserveOptions};
use port::server::{self, RunningServer, ServeOptions};
use services::pb::v1;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A side-by-side router (v1@1.0.0, v2@2.0.0 in process) with `observe`.
async fn start(observe: ObserveOptions) -> RunningServer {
    let options = ServeOptions {
        observe,
        ..ServeOptions::default()
    };
    let layout = Deployment::SideBySide
        .layout(options.max_message_bytes)
        .unwrap();
    server::start_with("127.0.0.1:0".parse().unwrap(), layout, "metrics", &options)
        .await
        .expect("the server starts")
}

fn metrics_on() -> ObserveOptions {
    ObserveOptions {
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..ObserveOptions::default()
    }
}

async fn scrape(server: &RunningServer) -> String {
    let (head, body) = http_get(server.metrics_addr().unwrap(), "/metrics", None).await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    body
}

fn with_requirement<T>(message: T, requirement: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-version", requirement.parse().unwrap());
    request
}

/// What [`make_calls`] did, counted here.
struct Made {
    v1_ok: usize,
    v2_ok: usize,
    v2_out_of_range: usize,
    unsatisfied: usize,
    unknown: usize,
    stream_messages: usize,
}

impl Made {
    fn calls(&self) -> usize {
        self.v1_ok + self.v2_ok + self.v2_out_of_range + self.unsatisfied + self.unknown + 1
    }
}

/// Unary calls that succeed and fail with known codes, a call no version satisfies, a path
/// that names no method, and one bidi stream.
async fn make_calls(server: &RunningServer) -> Made {
    let made = Made {
        v1_ok: 5,
        v2_ok: 2,
        v2_out_of_range: 3,
        unsatisfied: 1,
        unknown: 1,
        stream_messages: 3,
    };
    let mut v1c = common::v1_client(server).await;
    let mut v2c = common::v2_client(server).await;
    for i in 0..made.v1_ok {
        let reply = v1c
            .increment(v1::IncrementRequest { value: i as i64 })
            .await;
        assert_eq!(reply.unwrap().into_inner().value, i as i64 + 1);
    }
    for i in 0..made.v2_ok {
        let reply = v2c
            .increment(common::v2_request(1, Some(2), i as u64))
            .await;
        assert_eq!(reply.unwrap().into_inner().value, 3);
    }
    for i in 0..made.v2_out_of_range {
        let status = v2c
            .increment(common::v2_request(i64::MAX, None, i as u64))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    }
    for _ in 0..made.unsatisfied {
        let request = with_requirement(v1::IncrementRequest { value: 1 }, "^3");
        let status = v1c.increment(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    }
    for _ in 0..made.unknown {
        let reply = raw::send(
            server.addr,
            "/made.up.v1.Nothing/Here",
            "application/grpc",
            raw::frame(false, 0, &[]),
        )
        .await;
        assert_eq!(reply.grpc_status, Some(tonic::Code::Unimplemented as i32));
    }
    let (send, outbound) = tokio::sync::mpsc::channel(4);
    let mut stream = v2c
        .increment_stream(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .unwrap()
        .into_inner();
    for i in 0..made.stream_messages {
        send.send(common::v2_request(i as i64, None, i as u64))
            .await
            .unwrap();
        assert_eq!(stream.message().await.unwrap().unwrap().value, i as i64 + 1);
    }
    drop(send);
    assert!(stream.message().await.unwrap().is_none(), "the stream ends");
    made
}

#[tokio::test]
async fn metrics_count_every_call_by_version_and_code() {
    let server = start(metrics_on()).await;
    let made = make_calls(&server).await;
    let text = scrape(&server).await;
    let handled = "grpc_server_handled_total";
    let v1 = [("backend", "v1"), ("version", "1.0.0")];
    assert_eq!(
        sample(&text, handled, &[v1[0], v1[1], ("grpc_code", "OK")]),
        made.v1_ok as f64,
        "{text}"
    );
    let v2_unary = [
        ("backend", "v2"),
        ("version", "2.0.0"),
        ("grpc_type", "unary"),
    ];
    let ok = [&v2_unary[..], &[("grpc_code", "OK")]].concat();
    assert_eq!(sample(&text, handled, &ok), made.v2_ok as f64, "{text}");
    let failed = [&v2_unary[..], &[("grpc_code", "OutOfRange")]].concat();
    assert_eq!(sample(&text, handled, &failed), made.v2_out_of_range as f64);
    // No version served these: the router refused them itself.
    let unsatisfied = [
        ("grpc_service", "increment.v1.Incrementer"),
        ("grpc_method", "Increment"),
        ("grpc_code", "Unimplemented"),
        ("backend", ""),
        ("version", ""),
    ];
    assert_eq!(
        sample(&text, handled, &unsatisfied),
        made.unsatisfied as f64
    );
    let unknown = [("grpc_method", "unknown"), ("grpc_code", "Unimplemented")];
    assert_eq!(sample(&text, handled, &unknown), made.unknown as f64);
    assert!(!text.contains("made.up"), "an unknown path became a label");
    assert_eq!(sample(&text, handled, &[]), made.calls() as f64);
    assert_eq!(
        sample(&text, "grpc_server_started_total", &[]),
        made.calls() as f64
    );
    let stream = [("grpc_type", "bidi_stream"), ("version", "2.0.0")];
    assert_eq!(sample(&text, handled, &stream), 1.0);
    for name in [
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
    ] {
        assert_eq!(sample(&text, name, &stream), made.stream_messages as f64);
        assert_eq!(sample(&text, name, &v1), made.v1_ok as f64);
    }
    assert_eq!(
        sample(&text, "grpc_server_handling_seconds_count", &v1),
        made.v1_ok as f64
    );
    assert_eq!(
        sample(
            &text,
            "grpc_server_handling_seconds_bucket",
            &[v1[0], ("le", "+Inf")]
        ),
        made.v1_ok as f64
    );
    for backend in ["v1", "v2"] {
        let labels = [("backend", backend)];
        assert_eq!(sample(&text, "testbed_upstream_healthy", &labels), 1.0);
        assert_eq!(sample(&text, "testbed_upstream_in_flight", &labels), 0.0);
        assert_eq!(sample(&text, "testbed_upstream_ejected", &labels), 0.0);
    }
}

#[tokio::test]
async fn the_access_log_has_one_line_per_call_with_its_fields() {
    let dir = common::temp_dir("access-log");
    let path = dir.path().join("access.log");
    let server = start(ObserveOptions {
        access_log: Some(Destination::File(path.clone())),
        ..ObserveOptions::default()
    })
    .await;
    let made = make_calls(&server).await;
    let lines = log_lines(&path, made.calls()).await;
    let with = |key: &str, value: &str| {
        lines
            .iter()
            .filter(|line| line[key].as_str() == Some(value))
            .collect::<Vec<_>>()
    };
    let v1_ok: Vec<_> = with("backend", "v1")
        .into_iter()
        .filter(|line| line["status"] == "OK")
        .collect();
    assert_eq!(v1_ok.len(), made.v1_ok);
    let line = v1_ok[0];
    assert_eq!(line["method"], "/increment.v1.Incrementer/Increment");
    assert_eq!(line["version"], "1.0.0");
    assert_eq!(line["code"], 0);
    assert_eq!(line["messages_in"], 1);
    assert_eq!(line["messages_out"], 1);
    // A v1 request for value 0 is a 5-byte frame prefix and an empty message; its reply is
    // the prefix and `value: 1` (2 bytes).
    assert_eq!(line["bytes_in"], 5);
    assert_eq!(line["bytes_out"], 7);
    assert!(
        line["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{line}"
    );
    assert!(
        line["user_agent"].as_str().unwrap().contains("tonic"),
        "{line}"
    );
    assert_eq!(line["authority"].as_str(), Some(&*server.addr.to_string()));
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0, "{line}");
    assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
    assert_eq!(line["requirement"], serde_json::Value::Null);
    let unsatisfied = with("requirement", "^3");
    assert_eq!(unsatisfied.len(), made.unsatisfied);
    assert_eq!(unsatisfied[0]["status"], "Unimplemented");
    assert_eq!(unsatisfied[0]["backend"], serde_json::Value::Null);
    assert_eq!(with("status", "OutOfRange").len(), made.v2_out_of_range);
    let stream = with("method", "/increment.v2.Incrementer/IncrementStream");
    assert_eq!(stream.len(), 1);
    assert_eq!(stream[0]["messages_in"], made.stream_messages);
    assert_eq!(stream[0]["messages_out"], made.stream_messages);
    assert_eq!(
        with("method", "/made.up.v1.Nothing/Here").len(),
        made.unknown
    );
}

/// The log's lines, once there are `expected` of them (for at most 10 s), each parsed.
async fn log_lines(path: &Path, expected: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= expected || tokio::time::Instant::now() > deadline {
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|line| serde_json::from_str(line).expect("each line is JSON"))
                .collect();
            assert_eq!(lines.len(), expected, "{text}");
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn openmetrics_is_served_when_asked_for_and_promtool_accepts_both_formats() {
    let server = start(metrics_on()).await;
    make_calls(&server).await;
    let addr = server.metrics_addr().unwrap();
    let (head, text) = http_get(addr, "/metrics", None).await;
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (head, open) = http_get(addr, "/metrics", Some(accept)).await;
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    let (head, _) = http_get(addr, "/other", None).await;
    assert!(head.starts_with("HTTP/1.0 404"), "{head}");
    let Some(promtool) = common::tool(tool("promtool")) else {
        return;
    };
    // promtool reads the Prometheus text format; the OpenMetrics one is checked by the
    // Prometheus server's own scrape (below).
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&checked.stdout).to_string()
        + &String::from_utf8_lossy(&checked.stderr);
    // Lint findings (a counter's name, say) are advice; a parse error is a failure.
    assert!(!said.contains("error while linting"), "{said}");
    assert!(
        checked.status.success() || !said.contains("text format parsing error"),
        "{said}"
    );
}

#[tokio::test]
async fn label_sets_past_the_series_cap_are_counted_as_other() {
    let server = start(ObserveOptions {
        metrics_max_series: 2,
        ..metrics_on()
    })
    .await;
    let made = make_calls(&server).await;
    let text = scrape(&server).await;
    let handled = "grpc_server_handled_total";
    let series = text
        .lines()
        .filter(|line| line.starts_with(handled) && !line.contains("grpc_method=\"other\""))
        .count();
    assert_eq!(series, 2, "{text}");
    let other = sample(&text, handled, &[("grpc_method", "other")]);
    assert_eq!(
        other,
        (made.calls() - made.v1_ok - made.v2_ok) as f64,
        "{text}"
    );
    assert_eq!(sample(&text, handled, &[]), made.calls() as f64);
    assert_eq!(
        sample(&text, "testbed_metrics_series_overflow_total", &[]),
        other
    );
}

#[tokio::test]
async fn a_full_access_log_queue_drops_lines_counts_them_and_holds_no_call_up() {
    let dir = common::temp_dir("access-fifo");
    let fifo = dir.path().join("log");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.expect("mkfifo runs").success());
    // A reader that never reads: the pipe fills (64 KiB), then the writer blocks.
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::File::open(fifo).expect("the FIFO opens for reading")
    });
    let server = start(ObserveOptions {
        access_log: Some(Destination::File(fifo)),
        access_log_queue: 1,
        ..metrics_on()
    })
    .await;
    let _reader = reader.join().unwrap();
    let mut client = common::v1_client(&server).await;
    let calls = 1000;
    for i in 0..calls {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            client.increment(v1::IncrementRequest { value: i }),
        )
        .await
        .expect("no call waits for the log");
        assert_eq!(reply.unwrap().into_inner().value, i + 1);
    }
    let text = scrape(&server).await;
    let dropped = sample(&text, "testbed_access_log_dropped_total", &[]);
    // At most the pipe (64 KiB), the writer's buffer (8 KiB) and the queue (1) hold lines of
    // about 300 bytes: fewer than 300 of the 1000.
    assert!(dropped >= 700.0, "{dropped} dropped: {text}");
    assert_eq!(
        sample(&text, "grpc_server_handled_total", &[]),
        calls as f64
    );
}

#[tokio::test]
async fn the_metrics_listener_holds_at_most_its_connection_cap() {
    let server = start(metrics_on()).await;
    let addr = server.metrics_addr().unwrap();
    let mut idle = Vec::new();
    for _ in 0..port::observe::MAX_CONNECTIONS {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Accepted and closed at once: the read sees the end (or a reset).
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the connection past the cap is closed: {read:?}"
    );
    idle.clear();
    // The slots come back as the idle connections close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (head, body) = http_get(addr, "/metrics", None).await;
        if head.starts_with("HTTP/1.0 200") {
            assert!(body.contains("testbed_metrics_series_overflow"), "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{head}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_port_and_promql_gives_each_versions_calls_by_code() {
    let Some(binary) = common::tool(tool("prometheus")) else {
        return;
    };
    let server = start(metrics_on()).await;
    let made = make_calls(&server).await;
    let prometheus = Prometheus::start(&binary, server.metrics_addr().unwrap());
    let by_code = "sum by (version, grpc_code) (grpc_server_handled_total{grpc_type=\"unary\"})";
    let expected = |version: &str, code: &str| match (version, code) {
        ("1.0.0", "OK") => made.v1_ok,
        ("2.0.0", "OK") => made.v2_ok,
        ("2.0.0", "OutOfRange") => made.v2_out_of_range,
        ("", "Unimplemented") => made.unsatisfied,
        _ => 0,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let result = loop {
        let result = prometheus.query(by_code).await.unwrap_or_default();
        // Four series once the first scrape is in.
        if result.len() == 4 {
            break result;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus returned no full result within 60 s: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for (labels, value) in &result {
        let version = labels["version"].as_str().unwrap_or("");
        let code = labels["grpc_code"].as_str().unwrap_or("");
        assert_eq!(
            *value,
            expected(version, code) as f64,
            "{labels}: {result:?}"
        );
    }
    // The success rate per version, as a dashboard would ask for it.
    let rate = "sum by (version) (grpc_server_handled_total{grpc_code=\"OK\",version!=\"\"}) / sum by (version) (grpc_server_handled_total{version!=\"\"})";
    let rates = prometheus
        .query(rate)
        .await
        .expect("the ratio query answers");
    let v2_calls = made.v2_ok + made.v2_out_of_range + 1;
    for (labels, value) in &rates {
        let want = match labels["version"].as_str() {
            Some("1.0.0") => 1.0,
            Some("2.0.0") => (made.v2_ok + 1) as f64 / v2_calls as f64,
            other => panic!("an unexpected version {other:?}: {rates:?}"),
        };
        assert!((value - want).abs() < 1e-9, "{labels}: {value} != {want}");
    }
    assert_eq!(rates.len(), 2, "{rates:?}");
}

#[tokio::test]
async fn without_flags_nothing_is_observed() {
    let server = start(ObserveOptions::default()).await;
    assert_eq!(server.metrics_addr(), None);
    assert!(server.metrics().is_none());
    common::probe(&server).await;
}

#[tokio::test]
async fn admin_changes_are_counted_and_a_drained_backend_is_ejected() {
    use port::admin::pb::{DrainRequest, RemoveRequest};
    let server = start(metrics_on()).await;
    let tokens = port::admin::Tokens::single("alice", crate::admin::TOKEN).unwrap();
    let config = port::admin::AdminConfig::plaintext("127.0.0.1:0".parse().unwrap(), tokens)
        .with_metrics(server.metrics());
    let handle = server.router.clone().expect("a router");
    let admin = port::admin::start(config, handle, Default::default(), None)
        .await
        .expect("the admin API starts");
    let mut client = port::admin::connect(admin.addr, crate::admin::TOKEN)
        .await
        .expect("the admin client connects");
    let drain = DrainRequest {
        name: "v1".into(),
        timeout_ms: 1000,
        force: false,
    };
    client.drain(drain).await.expect("v1 drains");
    let refused = client
        .remove(RemoveRequest {
            name: "nope".into(),
            force: false,
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::NotFound);
    let text = scrape(&server).await;
    let changes = "testbed_admin_changes_total";
    let counted =
        |action, result| sample(&text, changes, &[("action", action), ("result", result)]);
    assert_eq!(counted("drain", "done"), 1.0, "{text}");
    assert_eq!(counted("remove", "refused"), 1.0, "{text}");
    assert_eq!(sample(&text, changes, &[]), 2.0);
    let ejected = "testbed_upstream_ejected";
    assert_eq!(sample(&text, ejected, &[("backend", "v1")]), 1.0, "{text}");
    assert_eq!(sample(&text, ejected, &[("backend", "v2")]), 0.0);
}
