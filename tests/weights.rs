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

/// `testbed serve` in front of the two upstreams, with `flags`.
async fn gateway(stable: &str, canary: &str, flags: &[&str]) -> ChildServer {
    let mut args = vec!["serve", "--addr", "127.0.0.1:0", "--upstream", stable];
    args.extend(["--upstream", canary]);
    args.extend(flags);
    ChildServer::testbed(exe(), &args)
        .await
        .expect("the gateway starts")
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
    let gateway = gateway(
        &stable_spec,
        &canary_spec,
        &["--sticky-header", "X-User-Id"],
    )
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_steps_a_canary_through_the_admin_api() {
    let (stable, canary) = (v2_backend().await, v2_backend().await);
    let dir = crate::common::temp_dir("weights");
    let tokens = crate::common::credentials::token_file(dir.path(), "ops ops-token-0123456789\n");
    let stable_spec = format!("v2a=2.0.0@{}", stable.addr);
    let canary_spec = format!("v2b=2.1.0@{};weight=0", canary.addr);
    let tokens = tokens.display().to_string();
    let admin_flags = ["--admin-addr", "127.0.0.1:0", "--admin-token-file", &tokens];
    let mut gateway = gateway(&stable_spec, &canary_spec, &admin_flags).await;
    let admin_addr = crate::common::admin_address(&mut gateway)
        .await
        .parse()
        .unwrap();
    let mut admin = port::admin::connect(admin_addr, "ops-token-0123456789")
        .await
        .unwrap();
    let client = IncrementerClient::connect(Api::V2, gateway.addr)
        .await
        .unwrap();
    // Weight 0: the canary takes nothing unpinned.
    assert_eq!(served_by(&client, 100).await.get("2.0.0"), Some(&100));
    for (weight, canary_calls) in [(Some(100), 100), (None, 100), (Some(0), 0)] {
        let reply = admin
            .set_weight(port::admin::pb::SetWeightRequest {
                name: "v2b".into(),
                weight,
            })
            .await
            .expect("SetWeight")
            .into_inner();
        assert_eq!(reply.changed.len(), 1);
        assert_eq!(reply.changed[0].weight, weight);
        let counts = served_by(&client, 100).await;
        assert_eq!(
            counts.get("2.1.0").copied().unwrap_or(0),
            canary_calls,
            "weight {weight:?}: {counts:?}"
        );
    }
    for (name, weight, code) in [
        ("v9", Some(5), tonic::Code::NotFound),
        ("v2b", Some(101), tonic::Code::InvalidArgument),
    ] {
        let refused = admin
            .set_weight(port::admin::pb::SetWeightRequest {
                name: name.into(),
                weight,
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
    }
    for child in [gateway, stable, canary] {
        child.kill().await.unwrap();
    }
}
