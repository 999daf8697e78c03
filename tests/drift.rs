//! Drift through the gateway: the upstream of a routed backend (the example shop's `shop.v1`,
//! plain Python grpcio) is restarted on its port with another build, and the gateway, reading
//! descriptors again (`--descriptor-refresh-secs`, and at once when the upstream answers again),
//! marks it drifted and pinned-only when the new build breaks what it declared when it joined,
//! and updates its build and catalog when the new one is a superset. Judged by the admin API,
//! `testbed route list` and grpcurl's reflection.

use crate::common::shop::{gateway_with_admin, ok, route_list, shop, shop_python};
use crate::common::{temp_dir, tool};
use port::admin::pb::{Backend, ListRequest};
use std::time::{Duration, Instant};

const TOKEN: &str = "drift-token-0123456789";

/// The admin API's view of backend `name`, once `wanted` holds of it (within 15 s).
async fn until(
    admin: &mut port::admin::AdminClient,
    name: &str,
    what: &str,
    wanted: impl Fn(&Backend) -> bool,
) -> Backend {
    let started = Instant::now();
    loop {
        let list = admin.list(ListRequest {}).await.unwrap().into_inner();
        let backend = list.backends.into_iter().find(|b| b.name == name).unwrap();
        if wanted(&backend) {
            return backend;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "backend {name} never became {what}: {backend:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_restarted_with_another_build_is_marked_drifted_and_recovers() {
    let (Some(python), Some(g)) = (shop_python(), tool(client::tools::grpcurl())) else {
        return;
    };
    let first = shop(&python, "v1", &[]).await;
    let upstream_addr = first.addr.to_string();
    let dir = temp_dir("drift");
    let (gw, admin_addr) = gateway_with_admin(
        &[format!("v1=1.0.0@{upstream_addr}")],
        // Far past the test: only the restart (seen by the health checks) triggers a read.
        &["--descriptor-refresh-secs", "3600"],
        dir.path(),
        "ci",
        TOKEN,
    )
    .await;
    let mut admin = port::admin::connect(admin_addr, TOKEN).await.unwrap();
    let addr = gw.addr.to_string();
    let describe =
        |symbol: &str| tokio::task::block_in_place(|| ok(&g, &[], &addr, &["describe", symbol]));
    assert!(describe("shop.v1.Order").contains("int64 total_cents = 3;"));

    // Restarted with a build that breaks what it declared: drifted, pinned-only, described as
    // it is now.
    first.kill().await.unwrap();
    // Restarted once the gateway has seen it gone: the restart is then a recovery, which is
    // read at once (one faster than a health check is found by the periodic read instead).
    until(&mut admin, "v1", "unreachable", |b| !b.reachable).await;
    let breaking = shop(
        &python,
        "v1",
        &["--addr", &upstream_addr, "--build", "breaking"],
    )
    .await;
    let drifted = until(&mut admin, "v1", "drifted", |b| b.drifted).await;
    assert_eq!(drifted.weight, Some(0), "{drifted:?}");
    assert!(
        drifted.breaks.contains("FIELD_WIRE_COMPATIBLE_TYPE") && drifted.breaks.contains("drifted"),
        "{drifted:?}"
    );
    assert!(describe("shop.v1.Order").contains("double total_cents = 3;"));
    let text = route_list(admin_addr, TOKEN);
    assert!(
        text.contains("drifted") && text.contains("v1 is pinned-only"),
        "{text}"
    );

    // Restarted with a superset of what it joined with: no longer drifted, its weight back, the
    // catalog holding the new build.
    breaking.kill().await.unwrap();
    until(&mut admin, "v1", "unreachable", |b| !b.reachable).await;
    let _minor = shop(
        &python,
        "v1",
        &["--addr", &upstream_addr, "--build", "minor"],
    )
    .await;
    let recovered = until(&mut admin, "v1", "no longer drifted", |b| !b.drifted).await;
    assert_eq!(
        (recovered.weight, recovered.breaks.as_str()),
        (None, ""),
        "{recovered:?}"
    );
    assert!(describe("shop.v1.Product").contains("string description = 6;"));
    assert!(describe("shop.v1.Order").contains("int64 total_cents = 3;"));
}
