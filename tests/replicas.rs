//! Replicas through the gateway: `v2=2.0.0@A,B` balances the calls over two Python shop v2
//! servers (told apart by their prices: B sells at half price, `server.py --discount 50`), a
//! replica that dies is skipped, and one that comes back takes calls again. Judged by a Python
//! grpcio client counting who answered each call.

use crate::common::shop::{SHOP_SERVER, gateway_with_admin, route_list, shop, shop_python};
use crate::common::temp_dir;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "replicas-token-0123456789";
/// book-1's price at replica A and at replica B (half price).
const FULL: &str = "4299";
const HALF: &str = "2149";

/// `n` GetProduct calls through `addr` from one grpcio channel: per call the price (which
/// replica) and the `x-api-version` that served, or `ERR CODE`; counted.
fn calls(python: &Path, addr: &str, n: usize) -> BTreeMap<String, usize> {
    let generated = Path::new(SHOP_SERVER).with_file_name("generated");
    let script = format!(
        r#"
import sys, grpc
sys.path.insert(0, {generated:?})
from shop.v2 import shop_pb2, shop_pb2_grpc
stub = shop_pb2_grpc.ShopStub(grpc.insecure_channel({addr:?}))
for _ in range({n}):
    try:
        reply, call = stub.GetProduct.with_call(shop_pb2.GetProductRequest(sku="book-1"), timeout=5)
        print(reply.price_cents, dict(call.initial_metadata()).get("x-api-version"))
    except grpc.RpcError as e:
        print("ERR", e.code().name)
"#,
        generated = generated.display().to_string(),
    );
    let out = std::process::Command::new(python)
        .args(["-c", &script])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{out:?}");
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        *counts.entry(line.to_string()).or_default() += 1;
    }
    counts
}

fn count(counts: &BTreeMap<String, usize>, line: &str) -> usize {
    counts.get(line).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_balanced_over_replicas_and_a_dead_one_is_skipped_until_it_is_back() {
    let Some(python) = shop_python() else {
        return;
    };
    let a = shop(&python, "v2", &[]).await;
    let b = shop(&python, "v2", &["--discount", "50"]).await;
    let b_addr = b.addr.to_string();
    let dir = temp_dir("replicas");
    let upstream = format!("v2=2.0.0@{},{b_addr}", a.addr);
    let (gw, admin) = gateway_with_admin(&[upstream], &[], dir.path(), "ci", TOKEN).await;
    let addr = gw.addr.to_string();
    let (full, half) = (format!("{FULL} 2.0.0"), format!("{HALF} 2.0.0"));

    // Both replicas serve; one client's calls one after another split between them (the
    // power of two choices between two idle replicas is a coin toss: 200 calls, each side
    // within 6 standard deviations of 100).
    let counts = tokio::task::block_in_place(|| calls(&python, &addr, 200));
    eprintln!("200 calls over two replicas: {counts:?}");
    let (on_a, on_b) = (count(&counts, &full), count(&counts, &half));
    assert_eq!(on_a + on_b, 200, "{counts:?}");
    assert!((58..=142).contains(&on_a), "{counts:?}");
    let listed = route_list(admin, TOKEN);
    assert!(listed.contains(&format!("{},{b_addr}", a.addr)), "{listed}");

    // B dies: it is ejected at its first failed call (or by the health checks), A takes the rest.
    b.kill().await.unwrap();
    let counts = tokio::task::block_in_place(|| calls(&python, &addr, 100));
    eprintln!("100 calls after replica B died: {counts:?}");
    let failed: usize = counts
        .iter()
        .filter(|(line, _)| line.starts_with("ERR"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(count(&counts, &half), 0, "{counts:?}");
    assert!(failed <= 2, "{counts:?}");
    assert_eq!(count(&counts, &full) + failed, 100, "{counts:?}");

    // B back on its port: re-admitted once its health checks pass.
    let _b = shop(&python, "v2", &["--discount", "50", "--addr", &b_addr]).await;
    let started = Instant::now();
    loop {
        let counts = tokio::task::block_in_place(|| calls(&python, &addr, 20));
        assert_eq!(
            count(&counts, &full) + count(&counts, &half),
            20,
            "{counts:?}"
        );
        if count(&counts, &half) > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica B never took calls again: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An Add checks every replica: one with nothing listening is refused, naming it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut client = port::admin::connect(admin, TOKEN).await.unwrap();
    let status = client
        .add(port::admin::pb::AddRequest {
            upstream: format!("v2b=2.1.0@{},{dead_addr}", a.addr),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains(&dead_addr.to_string()),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_listing_more_replicas_than_max_replicas_are_refused_naming_the_flag() {
    // At the start, before any upstream is called (nothing listens at these addresses).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["serve", "--addr", "127.0.0.1:0", "--max-replicas", "1"])
        .args(["--upstream", "v2=2.0.0@127.0.0.1:1,127.0.0.1:2"])
        .output()
        .await
        .expect("testbed serve runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("upstream v2: 2 addresses"), "{stderr}");
    assert!(stderr.contains("--max-replicas 1"), "{stderr}");

    // Through the admin API: an Add with three addresses past --max-replicas 2 is refused
    // (before any is called: the third has nothing behind it), and one with two is taken.
    let Some(python) = shop_python() else {
        return;
    };
    let a = shop(&python, "v2", &[]).await;
    let b = shop(&python, "v2", &["--discount", "50"]).await;
    let dir = temp_dir("max-replicas");
    let upstream = format!("v2=2.0.0@{}", a.addr);
    let flags = ["--max-replicas", "2"];
    let (_gw, admin) = gateway_with_admin(&[upstream], &flags, dir.path(), "ci", TOKEN).await;
    let mut client = port::admin::connect(admin, TOKEN).await.unwrap();
    let three = format!("v2b=2.1.0@{},{},127.0.0.2:1", a.addr, b.addr);
    let status = client
        .add(port::admin::pb::AddRequest {
            upstream: three,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("upstream v2b: 3 addresses"),
        "{status:?}"
    );
    assert!(status.message().contains("--max-replicas 2"), "{status:?}");
    client
        .add(port::admin::pb::AddRequest {
            upstream: format!("v2b=2.1.0@{},{}", a.addr, b.addr),
            ..Default::default()
        })
        .await
        .expect("two replicas are within --max-replicas 2");
    assert!(route_list(admin, TOKEN).contains("v2b"));
}
