//! An Add whose upstream implements a package the router never saw: refused when it would
//! retire an older package it breaks, else the catalog grows (health, reflection, calls), and
//! shrinks again when its last backend is removed.

use super::{TOKEN, temp_dir};
use port::admin::pb::{AddRequest, ListRequest, RemoveRequest};
use std::net::SocketAddr;
use tonic::Code;

/// The health status of `service` through `addr`.
async fn health(addr: SocketAddr, service: &str) -> Result<i32, Code> {
    let mut client =
        tonic_health::pb::health_client::HealthClient::new(client::connect(addr).await.unwrap());
    let request = tonic_health::pb::HealthCheckRequest {
        service: service.into(),
    };
    match client.check(request).await {
        Ok(reply) => Ok(reply.into_inner().status),
        Err(status) => Err(status.code()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_with_an_api_the_router_never_saw_extends_its_catalog_at_runtime() {
    use crate::common::shop::{gateway_with_admin, shop, shop_python};
    use tonic_health::ServingStatus;
    let (Some(python), Some(grpcurl)) =
        (shop_python(), crate::common::tool(client::tools::grpcurl()))
    else {
        return;
    };
    let (v1, v2) = (
        shop(&python, "v1", &[]).await,
        shop(&python, "v2", &[]).await,
    );
    let dir = temp_dir("admin-shop");
    let (gw, admin_addr) = gateway_with_admin(
        &[format!("v1=1.0.0@{}", v1.addr)],
        &[],
        dir.path(),
        "ci",
        TOKEN,
    )
    .await;
    let mut admin = port::admin::connect(admin_addr, TOKEN).await.unwrap();
    let packages = |reply: port::admin::pb::ListReply| reply.packages;
    let list = admin.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(packages(list), ["shop.v1"]);
    assert_eq!(health(gw.addr, "shop.v2.Shop").await, Err(Code::NotFound));

    // Retiring v1 onto v2 is refused with compat's finding, and the catalog stays as it was.
    let status = admin
        .add(AddRequest {
            upstream: format!("v2=2.0.0@{}+shop.v1", v2.addr),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("GRPC_FIELD_SAME_VALUE_RANGE"),
        "{status:?}"
    );
    let list = admin.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(packages(list), ["shop.v1"]);

    // Added as itself, shop.v2 becomes routed, healthy, listed and describable.
    admin
        .add(AddRequest {
            upstream: format!("v2=2.0.0@{}", v2.addr),
            ..Default::default()
        })
        .await
        .unwrap();
    let list = admin.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(packages(list), ["shop.v1", "shop.v2"]);
    let serving = ServingStatus::Serving as i32;
    assert_eq!(health(gw.addr, "shop.v2.Shop").await, Ok(serving));
    let addr = gw.addr.to_string();
    // grpcurl FLAGS... ADDR REST...: its output, which must be a success.
    let run = |flags: &[&str], rest: &[&str]| {
        let out = std::process::Command::new(&grpcurl)
            .arg("-plaintext")
            .args(flags)
            .arg(&addr)
            .args(rest)
            .output()
            .expect("grpcurl runs");
        assert!(out.status.success(), "{rest:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    tokio::task::block_in_place(|| {
        let list = run(&[], &["list"]);
        assert!(list.lines().any(|l| l == "shop.v2.Shop"), "{list}");
        let described = run(&[], &["describe", "shop.v2.Product"]);
        assert!(described.contains("int32 stock = 6;"), "{described}");
        let book = r#"{"sku": "book-1"}"#;
        let reply = run(&["-v", "-d", book], &["shop.v2.Shop/GetProduct"]);
        assert!(reply.contains("x-api-version: 2.0.0"), "{reply}");
        assert!(reply.contains(r#""stock": 12"#), "{reply}");
    });

    admin
        .remove(RemoveRequest {
            name: "v2".into(),
            force: false,
        })
        .await
        .unwrap();
    // Its last backend gone, the package it brought leaves the catalog: health no longer
    // knows the service (the packages managed at start stay, NOT_SERVING when unrouted).
    let list = admin.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(packages(list), ["shop.v1"]);
    assert_eq!(health(gw.addr, "shop.v2.Shop").await, Err(Code::NotFound));
}
