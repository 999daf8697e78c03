//! Convergence times, measured by hand (ignored; never asserted): from a change published to
//! the control plane until every connected Envoy acknowledged it, for 1, 3 and 10 Envoys, and
//! for a push of about 1,000 routes. The control plane runs in this process (what the admin
//! API does after each change: `publish`, then `applied`); the Envoys are real.
//! Run: `cargo test --test tests -- xds::measure --ignored --nocapture`.

use port::admin::fleet::Fleet;
use port::admin::pb::Backend;
use proxy::xds_node::EnvoyNode;
use std::time::{Duration, Instant};
use testbed::xds::{XdsArgs, start};

/// Changes timed per fleet size.
const CHANGES: usize = 10;

fn backend(name: &str, version: &str, address: &str, weight: Option<u32>) -> Backend {
    Backend {
        name: name.to_string(),
        version: version.to_string(),
        api: "increment.v1".to_string(),
        address: address.to_string(),
        serves: vec!["increment.v1".to_string()],
        weight,
        ..Default::default()
    }
}

/// Median, min and max of `times`, in milliseconds.
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms (min {:.1}, max {:.1}) over {}",
        ms(times[(times.len() - 1) / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

/// Publishes `backends` and waits for every connected Envoy: the time taken.
async fn push(plane: &testbed::xds::plane::ControlPlane, backends: &[Backend]) -> Duration {
    let started = Instant::now();
    let version = plane
        .publish(&|| backends.to_vec())
        .expect("the table compiles");
    plane
        .applied(version)
        .await
        .expect("every Envoy acknowledges");
    started.elapsed()
}

#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn convergence_times() {
    if !super::envoy_present() {
        return;
    }
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let v1 = port::child::ChildServer::testbed(
        exe,
        &["serve", "--backend", "v1", "--addr", "127.0.0.1:0"],
    )
    .await
    .expect("a backend");
    let address = v1.addr.to_string();
    let args = XdsArgs {
        xds_addr: Some("127.0.0.1:0".parse().expect("an address")),
        xds_listener_addr: "127.0.0.1:10000".parse().expect("an address"),
        xds_max_nodes: 64,
        xds_max_streams: 64,
        xds_ack_timeout_ms: 60_000,
        xds_first_request_timeout_ms: 10_000,
    };
    let xds = start(&args)
        .await
        .expect("the control plane")
        .expect("it runs");
    let table = |weight: u32| {
        vec![
            backend("a", "1.0.0", &address, Some(weight)),
            backend("b", "1.1.0", &address, None),
        ]
    };
    push(&xds.plane, &table(0)).await;
    // About 1,000 routes: 997 versions of one package (an exact pin each, a major pin, the
    // refusal and the default), each a cluster with its endpoint and health check.
    let many: Vec<Backend> = (0..997)
        .map(|k| backend(&format!("v{k}"), &format!("1.{k}.0"), &address, None))
        .collect();
    let started = Instant::now();
    let resources = testbed::xds::compile::compile(&many).expect("it compiles");
    let compiled = started.elapsed();
    let routes = {
        use prost::Message;
        envoy_types::pb::envoy::config::route::v3::RouteConfiguration::decode(
            resources.routes[0].1.value.as_slice(),
        )
        .expect("routes decode")
        .virtual_hosts[0]
            .routes
            .len()
    };
    println!(
        "{routes} routes and {} clusters compiled in {:.1} ms",
        resources.clusters.len(),
        compiled.as_secs_f64() * 1000.0
    );
    let mut envoys: Vec<EnvoyNode> = Vec::new();
    for size in [1usize, 3, 10] {
        while envoys.len() < size {
            let mut envoy = EnvoyNode::start(&format!("envoy-{}", envoys.len()), xds.addr)
                .await
                .expect("Envoy starts");
            envoy
                .wait_listening(Duration::from_secs(60))
                .await
                .expect("Envoy listens");
            envoys.push(envoy);
        }
        // Every Envoy current before timing.
        push(&xds.plane, &table(1)).await;
        let mut times: Vec<Duration> = Vec::new();
        for change in 0..CHANGES {
            let weight = 10 + u32::try_from(change).unwrap_or(0);
            times.push(push(&xds.plane, &table(weight)).await);
        }
        println!(
            "{size} Envoy(s), one weight change: {}",
            summary(&mut times)
        );
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            up.push(push(&xds.plane, &many).await);
            down.push(push(&xds.plane, &table(50)).await);
        }
        println!(
            "{size} Envoy(s), {routes} routes pushed: {}; back to 2 clusters: {}",
            summary(&mut up),
            summary(&mut down)
        );
    }
}
