//! Builds of one package side by side through the gateway: the example shop's `shop.v1` at
//! 1.0.0 (`examples/shop/proto`), at 1.1.0 with `Product.description` added (`server.py
//! --build minor`) and at 1.2.0 with `Order.total_cents` a double (`--build breaking`), each a
//! plain Python grpcio server with reflection. Judged by grpcurl: who served each call (the
//! reply's `x-api-version`), what the reply holds, and what reflection describes when asked for
//! each version.

use crate::common::shop::{
    gateway_with_admin, grpcurl, ok, refused_start, route_list, shop, shop_python,
};
use crate::common::{temp_dir, tool};
use port::admin::pb::{AddRequest, ListRequest, RemoveRequest, SetWeightRequest};
use std::path::Path;
use tonic::Code;

const TOKEN: &str = "builds-token-0123456789";
const BOOK: &str = r#"{"sku": "book-1"}"#;
const ORDER: &str = r#"{"lines": [{"sku": "book-1", "quantity": 1}], "card_token": "t"}"#;

/// The version that served a `grpcurl -v` reply, from its `x-api-version` response header.
fn served_by(reply: &str) -> &str {
    reply
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("x-api-version: "))
        .unwrap_or_else(|| panic!("no x-api-version in the reply: {reply}"))
}

/// `grpcurl -v` calling `method` with `body`, pinned to `requirement` when given.
fn call(g: &Path, addr: &str, requirement: Option<&str>, body: &str, method: &str) -> String {
    let header = requirement.map(|r| format!("x-api-version: {r}"));
    let mut flags = vec!["-v", "-d", body];
    if let Some(header) = &header {
        flags.extend(["-H", header]);
    }
    ok(g, &flags, addr, &[method])
}

/// `grpcurl describe SYMBOL` through reflection asked for `requirement` (the header on the
/// reflection stream).
fn describe(g: &Path, addr: &str, requirement: Option<&str>, symbol: &str) -> String {
    let header = requirement.map(|r| format!("x-api-version: {r}"));
    let mut flags = vec![];
    if let Some(header) = &header {
        flags.extend(["-reflect-header", header]);
    }
    ok(g, &flags, addr, &["describe", symbol])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builds_of_one_package_serve_side_by_side_and_a_breaking_one_is_pinned_only() {
    let (Some(python), Some(g)) = (shop_python(), tool(client::tools::grpcurl())) else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let new = shop(&python, "v1", &["--build", "minor"]).await;
    let bad = shop(&python, "v1", &["--build", "breaking"]).await;
    let dir = temp_dir("builds");
    let upstreams = [
        format!("old=1.0.0@{}", old.addr),
        format!("new=1.1.0@{}", new.addr),
        format!("bad=1.2.0@{}", bad.addr),
    ];
    let (gw, admin_addr) = gateway_with_admin(&upstreams, &[], dir.path(), "ci", TOKEN).await;
    let addr = gw.addr.to_string();
    let g = g.as_path();
    tokio::task::block_in_place(|| {
        let get = "shop.v1.Shop/GetProduct";
        // Unpinned, and pinned to any 1.x: the newest build that does not break, with its field.
        for requirement in [None, Some("^1.0")] {
            let reply = call(g, &addr, requirement, BOOK, get);
            assert_eq!(served_by(&reply), "1.1.0", "{requirement:?}: {reply}");
            assert!(
                reply.contains(r#""description": "The Pragmatic"#),
                "{reply}"
            );
        }
        // Pinned to the old build: served by it, without the field it does not have.
        let reply = call(g, &addr, Some("=1.0.0"), BOOK, get);
        assert_eq!(served_by(&reply), "1.0.0", "{reply}");
        assert!(!reply.contains("description"), "{reply}");
        // Only a requirement that nothing else satisfies reaches the breaking build, whose
        // total is a double (a JSON number) where the others' int64 is a JSON string.
        let place = "shop.v1.Shop/PlaceOrder";
        let reply = call(g, &addr, Some("^1.2"), ORDER, place);
        assert_eq!(served_by(&reply), "1.2.0", "{reply}");
        assert!(reply.contains(r#""totalCents": 4299"#), "{reply}");
        let reply = call(g, &addr, None, ORDER, place);
        assert_eq!(served_by(&reply), "1.1.0", "{reply}");
        assert!(reply.contains(r#""totalCents": "4299""#), "{reply}");

        // Reflection describes the build a call with the same header would reach.
        let product = |requirement| describe(g, &addr, requirement, "shop.v1.Product");
        assert!(product(None).contains("string description = 6;"));
        assert!(product(Some("~1.1")).contains("string description = 6;"));
        let old_product = product(Some("=1.0.0"));
        assert!(!old_product.contains("description"), "{old_product}");
        assert!(
            old_product.contains("int64 price_cents = 3;"),
            "{old_product}"
        );
        let order = |requirement| describe(g, &addr, requirement, "shop.v1.Order");
        assert!(order(Some("^1.2")).contains("double total_cents = 3;"));
        assert!(order(None).contains("int64 total_cents = 3;"));
        let (success, text) = grpcurl(
            g,
            &["-reflect-header", "x-api-version: not a version"],
            &addr,
            &["list"],
        );
        assert!(!success && text.contains("x-api-version"), "{text}");
    });

    // The admin API says which build is pinned-only and why, and keeps its weight at 0.
    let mut admin = port::admin::connect(admin_addr, TOKEN).await.unwrap();
    let list = admin.list(ListRequest {}).await.unwrap().into_inner();
    let breaks = |name: &str| {
        let backend = list.backends.iter().find(|b| b.name == name);
        backend.map(|b| (b.breaks.clone(), b.weight))
    };
    assert_eq!(breaks("old"), Some((String::new(), None)));
    assert_eq!(breaks("new"), Some((String::new(), None)));
    let (what, weight) = breaks("bad").expect("bad is listed");
    assert_eq!(weight, Some(0));
    assert!(
        what.starts_with("the build of new (1.1.0): ")
            && what.contains("FIELD_WIRE_COMPATIBLE_TYPE"),
        "{what}"
    );
    let status = admin
        .set_weight(SetWeightRequest {
            name: "bad".into(),
            weight: Some(10),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("pinned-only"), "{status:?}");
    let text = route_list(admin_addr, TOKEN);
    assert!(
        text.contains("pinned-only") && text.contains("bad is pinned-only"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_added_at_runtime_join_as_compat_compares_them_with_the_routed_one() {
    let (Some(python), Some(g)) = (shop_python(), tool(client::tools::grpcurl())) else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let new = shop(&python, "v1", &["--build", "minor"]).await;
    let bad = shop(&python, "v1", &["--build", "breaking"]).await;
    let dir = temp_dir("builds-runtime");
    let (gw, admin_addr) = gateway_with_admin(
        &[format!("old=1.0.0@{}", old.addr)],
        &[],
        dir.path(),
        "ci",
        TOKEN,
    )
    .await;
    let mut admin = port::admin::connect(admin_addr, TOKEN).await.unwrap();
    let addr = gw.addr.to_string();
    let g = g.as_path();
    let add = |upstream: String| AddRequest {
        upstream,
        ..Default::default()
    };
    let describes_description = |requirement: Option<&str>| {
        tokio::task::block_in_place(|| {
            describe(g, &addr, requirement, "shop.v1.Product").contains("description")
        })
    };
    assert!(!describes_description(None));

    // At the routed build's version, another build is refused.
    let status = admin
        .add(add(format!("same=1.0.0@{}", new.addr)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("at the same version, 1.0.0"),
        "{status:?}"
    );

    // A newer superset becomes the routed build: its calls and its descriptors.
    admin
        .add(add(format!("new=1.1.0@{}", new.addr)))
        .await
        .unwrap();
    assert!(describes_description(None));
    assert!(!describes_description(Some("=1.0.0")));
    let reply =
        tokio::task::block_in_place(|| call(g, &addr, None, BOOK, "shop.v1.Shop/GetProduct"));
    assert_eq!(served_by(&reply), "1.1.0", "{reply}");

    // A newer build that breaks it joins pinned-only; an older one it breaks is refused.
    admin
        .add(add(format!("bad=1.2.0@{}", bad.addr)))
        .await
        .unwrap();
    let list = admin.list(ListRequest {}).await.unwrap().into_inner();
    let bad_backend = list.backends.iter().find(|b| b.name == "bad").unwrap();
    assert!(
        bad_backend.breaks.contains("FIELD_WIRE_COMPATIBLE_TYPE"),
        "{bad_backend:?}"
    );
    assert_eq!(bad_backend.weight, Some(0));
    let reply =
        tokio::task::block_in_place(|| call(g, &addr, None, ORDER, "shop.v1.Shop/PlaceOrder"));
    assert_eq!(served_by(&reply), "1.1.0", "{reply}");
    let status = admin
        .add(add(format!("older=0.9.0@{}", bad.addr)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("which breaks it"), "{status:?}");

    // The routed build removed, reflection describes the highest stable build left that does
    // not break: the old one.
    let remove = RemoveRequest {
        name: "new".into(),
        force: true,
    };
    admin.remove(remove).await.unwrap();
    assert!(!describes_description(None));
    let reply =
        tokio::task::block_in_place(|| call(g, &addr, None, BOOK, "shop.v1.Shop/GetProduct"));
    assert_eq!(served_by(&reply), "1.0.0", "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builds_at_one_version_are_refused_at_start() {
    let Some(python) = shop_python() else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let new = shop(&python, "v1", &["--build", "minor"]).await;
    let stderr = refused_start(&[
        format!("a=1.0.0@{}", old.addr),
        format!("b=1.0.0+build.7@{}", new.addr),
    ])
    .await;
    assert!(
        stderr.contains("declare shop/v1/shop.proto differently at one version, 1.0.0"),
        "{stderr}"
    );
}

/// `--max-reflection-views 1`: one reflection service is kept built, so every change of the
/// build asked for drops it and builds the other's; each answer still describes the build a
/// call with the same header reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_reflection_view_kept_each_build_is_still_described_as_it_is() {
    let (Some(python), Some(g)) = (shop_python(), tool(client::tools::grpcurl())) else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let new = shop(&python, "v1", &["--build", "minor"]).await;
    let dir = temp_dir("builds-views");
    let upstreams = [
        format!("old=1.0.0@{}", old.addr),
        format!("new=1.1.0@{}", new.addr),
    ];
    let extra = ["--max-reflection-views", "1"];
    let (gw, _) = gateway_with_admin(&upstreams, &extra, dir.path(), "ci", TOKEN).await;
    let addr = gw.addr.to_string();
    tokio::task::block_in_place(|| {
        for _ in 0..3 {
            let old_product = describe(&g, &addr, Some("=1.0.0"), "shop.v1.Product");
            assert!(!old_product.contains("description"), "{old_product}");
            let new_product = describe(&g, &addr, Some("=1.1.0"), "shop.v1.Product");
            assert!(
                new_product.contains("string description = 6;"),
                "{new_product}"
            );
            assert!(describe(&g, &addr, None, "shop.v1.Product").contains("description = 6"));
        }
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["serve", "--max-reflection-views", "0"])
        .output()
        .expect("testbed runs");
    assert_eq!(out.status.code(), Some(2), "0 views is refused as a flag");
}
