//! Weights through the gateway: `;weight=N` on an upstream gives it that share of the calls it
//! can serve, the reply's `x-api-version` names the version that served each one, and
//! `--sticky-header` keeps one caller on one side of the split. Counted from the replies.

use client::IncrementerClient;
use port::child::ChildServer;
use services::Api;
use std::collections::BTreeMap;
use std::path::Path;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_testbed"))
}

async fn v2_backend() -> ChildServer {
    ChildServer::testbed(
        exe(),
        &["serve", "--backend", "v2", "--addr", "127.0.0.1:0"],
    )
    .await
    .expect("a v2 backend starts")
}

/// Which version served each of `n` unpinned v2 calls, counted.
async fn served_by(client: &IncrementerClient, n: u64) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let reply = client.increment(i as i64, None, i).await.expect("a call");
        assert_eq!(reply.value, i as i64 + 1);
        *counts
            .entry(reply.served_by.unwrap_or_default())
            .or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_canary_takes_its_share_and_a_sticky_caller_stays_put() {
    let (stable, canary) = (v2_backend().await, v2_backend().await);
    let stable_spec = format!("v2a=2.0.0@{}", stable.addr);
    let canary_spec = format!("v2b=2.1.0@{};weight=10", canary.addr);
    let gateway = ChildServer::testbed(
        exe(),
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--upstream",
            &stable_spec,
            "--upstream",
            &canary_spec,
            "--sticky-header",
            "X-User-Id",
        ],
    )
    .await
    .expect("the gateway starts");
    let client = IncrementerClient::connect(Api::V2, gateway.addr)
        .await
        .unwrap();
    let counts = served_by(&client, 1000).await;
    let on_canary = counts.get("2.1.0").copied().unwrap_or(0);
    assert_eq!(counts.values().sum::<u64>(), 1000, "{counts:?}");
    // 1,000 calls at 10 %: the binomial's mean is 100, its deviation 9.5; 5 deviations each way.
    assert!((50..=150).contains(&on_canary), "{counts:?}");
    // Pinned calls ignore the split.
    let pinned = client.clone().with_requirement(&"=2.1.0".parse().unwrap());
    assert_eq!(served_by(&pinned, 20).await.get("2.1.0"), Some(&20));

    for user in 0..30 {
        let channel = client::connect(gateway.addr).await.unwrap();
        let mut grpc = services::pb::v2::incrementer_client::IncrementerClient::new(channel);
        let mut versions = std::collections::BTreeSet::new();
        for value in 0..5 {
            let mut request = tonic::Request::new(services::pb::v2::IncrementRequest {
                value,
                ..Default::default()
            });
            request
                .metadata_mut()
                .insert("x-user-id", format!("user-{user}").parse().unwrap());
            let reply = grpc.increment(request).await.expect("a sticky call");
            let version = reply.metadata().get("x-api-version").cloned();
            versions.insert(format!("{version:?}"));
        }
        // Without stickiness each call would fall at random: 5 calls at 10 % agree with
        // probability 0.59, so 30 callers all staying put would happen once in 10^7 runs.
        assert_eq!(versions.len(), 1, "user-{user} moved: {versions:?}");
    }
    for child in [gateway, stable, canary] {
        child.kill().await.unwrap();
    }
}
