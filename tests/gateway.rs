//! The gateway in front of an API the testbed never saw: the example shop API
//! (`examples/shop/`), two versions served by plain Python grpcio servers with reflection and
//! health. `testbed serve --upstream` reads what each upstream declares by reflection at start,
//! routes it, describes it, reports its health, steers by `x-api-version`, and refuses to retire
//! v1 onto v2 because v2 narrowed a field.

use crate::common::shop::{
    gateway, gateway_with_admin, grpcurl, ok, shop, shop_descriptors, shop_python,
};
use crate::common::tool;
use port::child::ChildServer;
use port::upstream::{DescriptorOrigin, DescriptorsSpec, UpstreamSpec};
use std::path::Path;
use std::time::Duration;

/// grpcurl through the gateway at `addr` lists `shop.v2.Shop` and gets v2's answer from it.
fn serves_shop_v2(grpcurl_path: &Path, addr: std::net::SocketAddr) {
    let addr = addr.to_string();
    tokio::task::block_in_place(|| {
        let list = ok(grpcurl_path, &[], &addr, &["list"]);
        assert!(list.lines().any(|l| l == "shop.v2.Shop"), "{list}");
        let reply = ok(
            grpcurl_path,
            &["-d", r#"{"sku": "game-1"}"#],
            &addr,
            &["shop.v2.Shop/GetProduct"],
        );
        assert!(reply.contains(r#""stock": 3"#), "{reply}");
    });
}

fn spec(text: String) -> UpstreamSpec {
    text.parse().expect("a valid upstream spec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_the_testbed_never_saw_is_listed_described_called_and_steered_through_the_gateway() {
    let (Some(python), Some(grpcurl_path)) = (shop_python(), tool(client::tools::grpcurl())) else {
        return;
    };
    let v1 = shop(&python, "v1", &[]).await;
    let v1_1 = shop(&python, "v1", &[]).await;
    let v2 = shop(&python, "v2", &[]).await;
    // How long reading the example API's descriptors by reflection takes (the gateway does it
    // once, at start).
    for (name, server) in [("v1", &v1), ("v2", &v2)] {
        let found = port::upstream::discover(
            &spec(format!("{name}=1.0.0@{}", server.addr)),
            None,
            None,
            port::upstream::Fallback::None,
        )
        .await
        .expect("the shop server's descriptors are read by reflection");
        assert_eq!(found.origin, DescriptorOrigin::Reflection);
        assert_eq!(found.packages, [format!("shop.{name}")]);
        eprintln!(
            "descriptors of shop {name} read by reflection in {:?}",
            found.took
        );
    }
    let gw = gateway(&[
        "--upstream".into(),
        format!("v1=1.0.0@{}", v1.addr),
        "--upstream".into(),
        format!("v1-1=1.1.0@{}", v1_1.addr),
        "--upstream".into(),
        format!("v2=2.0.0@{}", v2.addr),
    ])
    .await;
    let addr = gw.addr.to_string();
    let g = grpcurl_path.as_path();
    tokio::task::block_in_place(|| {
        let list = ok(g, &[], &addr, &["list"]);
        for service in ["shop.v1.Shop", "shop.v2.Shop", "grpc.health.v1.Health"] {
            assert!(list.lines().any(|l| l == service), "{service} in {list}");
        }
        let described = ok(g, &[], &addr, &["describe", "shop.v2.Product"]);
        assert!(described.contains("int32 stock = 6;"), "{described}");
        assert!(described.contains("int32 price_cents = 3;"), "{described}");
        let described = ok(g, &[], &addr, &["describe", "shop.v1.PlaceOrderRequest"]);
        assert!(described.contains("oneof payment"), "{described}");

        // Unpinned: the highest version serving the package answers.
        let book = r#"{"sku": "book-1"}"#;
        let get_v1 = ["shop.v1.Shop/GetProduct"];
        let reply = ok(g, &["-v", "-d", book], &addr, &get_v1);
        assert!(reply.contains("x-api-version: 1.1.0"), "{reply}");
        assert!(reply.contains(r#""priceCents": "4299""#), "{reply}");
        assert!(!reply.contains("stock"), "{reply}");
        // Pinned.
        let reply = ok(
            g,
            &["-v", "-H", "x-api-version: ~1.0", "-d", book],
            &addr,
            &get_v1,
        );
        assert!(reply.contains("x-api-version: 1.0.0"), "{reply}");
        let (success, reply) = grpcurl(g, &["-H", "x-api-version: ^2", "-d", book], &addr, &get_v1);
        assert!(!success, "{reply}");
        assert!(reply.contains("Unimplemented"), "{reply}");
        assert!(
            reply.contains("no backend serves shop.v1 with x-api-version ^2"),
            "{reply}"
        );
        let reply = ok(
            g,
            &["-v", "-H", "x-api-version: ^2", "-d", book],
            &addr,
            &["shop.v2.Shop/GetProduct"],
        );
        assert!(reply.contains("x-api-version: 2.0.0"), "{reply}");
        assert!(reply.contains(r#""stock": 12"#), "{reply}");

        // The repeated field, the oneof and the server stream, through the gateway.
        let order = ok(
            g,
            &[
                "-H",
                "x-api-version: =2.0.0",
                "-d",
                r#"{"lines": [{"sku": "game-1", "quantity": 2}], "card_token": "tok"}"#,
            ],
            &addr,
            &["shop.v2.Shop/PlaceOrder"],
        );
        assert!(order.contains(r#""orderId": "v2-1""#), "{order}");
        assert!(order.contains(r#""totalCents": "5000""#), "{order}");
        let updates = ok(
            g,
            &["-d", r#"{"order_id": "v2-1"}"#],
            &addr,
            &["shop.v2.Shop/WatchOrder"],
        );
        for status in ["PLACED", "SHIPPED", "DELIVERED"] {
            assert!(
                updates.contains(&format!("ORDER_STATUS_{status}")),
                "{updates}"
            );
        }
        // An error from the upstream itself passes through.
        let (success, reply) = grpcurl(
            g,
            &["-d", r#"{"sku": "nope"}"#],
            &addr,
            &["shop.v2.Shop/GetProduct"],
        );
        assert!(!success && reply.contains("NotFound"), "{reply}");

        // Health reports each routed service.
        for service in ["shop.v1.Shop", "shop.v2.Shop"] {
            let health = ok(
                g,
                &["-d", &format!(r#"{{"service": "{service}"}}"#)],
                &addr,
                &["grpc.health.v1.Health/Check"],
            );
            assert!(
                health.contains(r#""status": "SERVING""#),
                "{service}: {health}"
            );
        }
    });
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_to_retire_v1_onto_a_v2_that_narrowed_a_field() {
    let Some(python) = shop_python() else {
        return;
    };
    let v1 = shop(&python, "v1", &[]).await;
    let v2 = shop(&python, "v2", &[]).await;
    let findings = |text: &str| {
        for part in [
            "backend \"v2\" cannot serve shop.v1 requests",
            "shop.v2 is not a wire-compatible superset of shop.v1",
            "GRPC_FIELD_SAME_VALUE_RANGE",
            "\"price_cents\"",
            "from \"int64\" to \"int32\"",
            "confirmed by prost",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
    };
    // In process.
    let specs = [
        spec(format!("v1=1.0.0@{}", v1.addr)),
        spec(format!("v2=2.0.0@{}+shop.v1", v2.addr)),
    ];
    let refused = port::upstream::gateway(&specs, &[], None)
        .await
        .expect_err("retiring v1 onto v2 is refused");
    findings(&format!("{refused:#}"));
    // And as `testbed serve`: it exits 1 before it listens, saying why.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["serve", "--addr", "127.0.0.1:0", "--upstream"])
        .arg(format!("v1=1.0.0@{}", v1.addr))
        .arg("--upstream")
        .arg(format!("v2=2.0.0@{}+shop.v1", v2.addr))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("testbed serve exits")
        .expect("testbed serve runs");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "it never listened");
    findings(&String::from_utf8_lossy(&out.stderr));
    // Both side by side are fine.
    let table = port::upstream::gateway(
        &specs.map(|mut s| {
            s.also_serving.clear();
            s
        }),
        &[],
        None,
    )
    .await
    .expect("v1 and v2 side by side")
    .table;
    assert!(table.is_served("shop.v1") && table.is_served("shop.v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_without_reflection_is_read_from_a_descriptors_file() {
    let (Some(python), Some(grpcurl_path)) = (shop_python(), tool(client::tools::grpcurl())) else {
        return;
    };
    let dir = crate::common::temp_dir("gateway-descriptors");
    let file = shop_descriptors(&python, "v2", dir.path());
    let v2 = shop(&python, "v2", &["--no-reflection"]).await;
    let specs = [spec(format!("v2=2.0.0@{}", v2.addr))];
    let err = port::upstream::gateway(&specs, &[], None)
        .await
        .expect_err("no reflection, no file: nothing says what v2 serves");
    assert!(
        format!("{err:#}").contains("--descriptors v2=FILE"),
        "{err:#}"
    );
    let descriptors = [DescriptorsSpec {
        name: "v2".into(),
        path: file.clone(),
    }];
    let gateway = port::upstream::gateway(&specs, &descriptors, None)
        .await
        .expect("the file says what v2 serves");
    assert_eq!(gateway.upstreams[0].origin, DescriptorOrigin::File(file));
    assert_eq!(gateway.upstreams[0].packages, ["shop.v2"]);
    let server = port::server::start_layout(
        "127.0.0.1:0".parse().unwrap(),
        port::Layout::Routed(gateway.table),
        "gateway",
    )
    .await
    .expect("the gateway starts");
    serves_shop_v2(&grpcurl_path, server.addr);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_increment_api_is_discovered_and_routed_as_before() {
    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let v2 = ChildServer::testbed(exe, &["serve", "--backend", "v2", "--addr", "127.0.0.1:0"])
        .await
        .expect("the v2 backend starts");
    let specs = [spec(format!("v2=2.0.0@{}+increment.v1", v2.addr))];
    let gateway = port::upstream::gateway(&specs, &[], None)
        .await
        .expect("v2 retires v1");
    assert_eq!(gateway.upstreams[0].origin, DescriptorOrigin::Reflection);
    assert_eq!(gateway.upstreams[0].packages, ["increment.v2"]);
    assert_eq!(
        gateway.table.catalog().packages(),
        ["increment.v1", "increment.v2"]
    );
    let backends = gateway.table.backends();
    assert_eq!(backends[0].serves, ["increment.v2", "increment.v1"]);
    // An upstream that is not up yet: the version's increment API stands in, so the router
    // can still start first.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    // v1 cannot serve v2: refused, as before.
    let specs = [spec(format!("v1=1.0.0@{dead_addr}+increment.v2"))];
    let err = port::upstream::gateway(&specs, &[], None)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("\"step\""), "{err:#}");
    let specs = [spec(format!("v1=1.0.0@{dead_addr}"))];
    let gateway = port::upstream::gateway(&specs, &[], None)
        .await
        .expect("a testbed upstream may start later");
    assert_eq!(gateway.upstreams[0].origin, DescriptorOrigin::BuiltIn);
    assert!(gateway.table.is_served("increment.v1"));
    // Any other API must be readable.
    let specs = [spec(format!("shop=3.0.0@{dead_addr}"))];
    let err = port::upstream::gateway(&specs, &[], None)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("--descriptors shop=FILE"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_without_reflection_is_added_at_runtime_with_its_descriptors() {
    use port::admin::pb::{AddRequest, ListRequest};
    let (Some(python), Some(grpcurl_path)) = (shop_python(), tool(client::tools::grpcurl())) else {
        return;
    };
    let dir = crate::common::temp_dir("gateway-runtime-descriptors");
    let file = shop_descriptors(&python, "v2", dir.path());
    let v1 = shop(&python, "v1", &[]).await;
    let v2 = shop(&python, "v2", &["--no-reflection"]).await;
    const TOKEN: &str = "carol-token-0123456789";
    let (gw, admin_addr) = gateway_with_admin(
        &[format!("v1=1.0.0@{}", v1.addr)],
        &[],
        dir.path(),
        "carol",
        TOKEN,
    )
    .await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    // `testbed route add UPSTREAM [--descriptors FILE]`: its success and its output.
    let route_add = |descriptors: Option<&Path>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_testbed"));
        command
            .args(["route", "add", &format!("v2=2.0.0@{}", v2.addr)])
            .args(["--admin", &admin_addr.to_string(), "--token-file"])
            .arg(&token_file)
            .env("RUST_LOG", "error");
        if let Some(path) = descriptors {
            command.arg("--descriptors").arg(path);
        }
        let out = command.output().expect("testbed route runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let mut admin = port::admin::connect(admin_addr, TOKEN).await.unwrap();
    let packages = async |admin: &mut port::admin::AdminClient| {
        admin
            .list(ListRequest {})
            .await
            .unwrap()
            .into_inner()
            .packages
    };

    // Without reflection and without descriptors nothing says what v2 serves: refused.
    let (added, text) = tokio::task::block_in_place(|| route_add(None));
    assert!(!added, "{text}");
    assert!(text.contains("FailedPrecondition"), "{text}");
    assert!(text.contains("--descriptors"), "{text}");
    // Bytes that are no descriptor set: INVALID_ARGUMENT.
    let status = admin
        .add(AddRequest {
            upstream: format!("v2=2.0.0@{}", v2.addr),
            descriptor_set: b"not a descriptor set".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(packages(&mut admin).await, ["shop.v1"]);

    // With the file, read by `testbed route` and sent with the call, shop.v2 is routed.
    let (added, text) = tokio::task::block_in_place(|| route_add(Some(&file)));
    assert!(added, "{text}");
    assert!(text.starts_with("added v2"), "{text}");
    assert_eq!(packages(&mut admin).await, ["shop.v1", "shop.v2"]);
    serves_shop_v2(&grpcurl_path, gw.addr);
    // The port checks the added API's unary methods as it checks those known at start: two
    // request messages are refused before they reach the upstream.
    let sku = b"\x0a\x06game-1";
    let mut two = crate::common::raw::frame(false, sku.len() as u32, sku);
    two.extend(crate::common::raw::frame(false, sku.len() as u32, sku));
    let reply =
        crate::common::raw::send(gw.addr, "/shop.v2.Shop/GetProduct", "application/grpc", two)
            .await;
    assert_eq!(
        reply.grpc_status,
        Some(tonic::Code::Internal as i32),
        "{reply:?}"
    );
    assert!(
        reply
            .grpc_message
            .contains("takes exactly one request message"),
        "{reply:?}"
    );
    gw.terminate().await.unwrap();
}
