//! grpcurl, a client nobody here wrote, lists, describes and calls both API versions using
//! server reflection alone (no .proto file). grpcurl 1.8 speaks reflection v1alpha only.

use crate::common::{start, tool};
use port::deployment::Deployment;
use std::process::Command;

fn grpcurl(args: &[&str]) -> String {
    let Some(path) = tool(client::tools::grpcurl()) else {
        return String::new();
    };
    let output = Command::new(path)
        .arg("-plaintext")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_describes_and_calls_by_reflection() {
    if tool(client::tools::grpcurl()).is_none() {
        return;
    }
    let server = start(Deployment::SideBySide).await;
    let addr = server.addr.to_string();
    let addr = addr.as_str();

    let list = tokio::task::block_in_place(|| grpcurl(&[addr, "list"]));
    for service in [
        "increment.v1.Incrementer",
        "increment.v2.Incrementer",
        "grpc.health.v1.Health",
    ] {
        assert!(
            list.lines().any(|l| l == service),
            "{service} missing from:\n{list}"
        );
    }

    let described = tokio::task::block_in_place(|| {
        grpcurl(&[addr, "describe", "increment.v2.IncrementRequest"])
    });
    for field in [
        "int64 value = 1",
        "optional int64 step = 2",
        "uint64 request_id = 3",
    ] {
        assert!(
            described.contains(field),
            "{field} missing from:\n{described}"
        );
    }

    let v1 = tokio::task::block_in_place(|| {
        grpcurl(&[
            "-d",
            r#"{"value": 41}"#,
            addr,
            "increment.v1.Incrementer/Increment",
        ])
    });
    let v1: serde_json::Value = serde_json::from_str(&v1).unwrap();
    assert_eq!(v1["value"], "42");

    let v2 = tokio::task::block_in_place(|| {
        grpcurl(&[
            "-d",
            r#"{"value": 41, "step": 5, "request_id": 7}"#,
            addr,
            "increment.v2.Incrementer/Increment",
        ])
    });
    let v2: serde_json::Value = serde_json::from_str(&v2).unwrap();
    assert_eq!(v2["value"], "46");
    assert_eq!(v2["requestId"], "7");
    assert_eq!(v2["servedByVersion"], "2.0.0");
    server.shutdown().await.unwrap();
}
