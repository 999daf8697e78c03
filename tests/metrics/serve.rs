//! `testbed serve --metrics-addr` as a process: where it says metrics are, and its log on standard
//! output.

use super::*;

#[tokio::test]
async fn testbed_serve_prints_where_metrics_are_and_logs_to_standard_output() {
    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let args = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--access-log",
        "-",
    ];
    let mut child = port::child::ChildServer::testbed(exe, &args)
        .await
        .expect("testbed serve starts");
    let said = child.next_line().await.unwrap();
    let metrics: SocketAddr = said
        .strip_prefix("testbed metrics on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("not the metrics address: {said:?}"));
    common::probe_addr(child.addr).await;
    let line: serde_json::Value = serde_json::from_str(&child.next_line().await.unwrap())
        .expect("an access-log line on standard output");
    assert_eq!(line["method"], "/increment.v1.Incrementer/Increment");
    assert_eq!(line["backend"], "v1");
    assert_eq!(line["status"], "OK");
    let (_, text) = http_get(metrics, "/metrics", None).await;
    let ok = [("backend", "v1"), ("grpc_code", "OK")];
    assert_eq!(
        sample(&text, "grpc_server_handled_total", &ok),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_stream_the_client_drops_is_counted_as_canceled() {
    let server = start(metrics_on()).await;
    let (send, replies) = common::open_v2_stream(&server).await;
    drop((send, replies));
    let canceled = [
        ("grpc_method", "IncrementStream"),
        ("grpc_code", "Canceled"),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(&server).await;
        if sample(&text, "grpc_server_handled_total", &canceled) == 1.0 {
            assert_eq!(sample(&text, "grpc_server_msg_received_total", &[]), 1.0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_access_log_that_cannot_be_opened_stops_the_start_with_exit_1() {
    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let output = tokio::process::Command::new(exe)
        .args(["serve", "--addr", "127.0.0.1:0", "--access-log"])
        .arg("/nonexistent-folder/access.log")
        .output()
        .await
        .expect("testbed runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("--access-log: cannot open /nonexistent-folder/access.log"),
        "{said}"
    );
}
