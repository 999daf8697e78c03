//! Retirement method by method: shop v2 narrowed `Product.price_cents`, so it cannot serve
//! v1's `GetProduct`, but it can serve `PlaceOrder` and `WatchOrder`. `+shop.v1/*` routes
//! those two to v2 and leaves `GetProduct` with v1; naming the broken method is refused with
//! compat's finding. Judged by grpcurl (the reply's `x-api-version`, v2's order ids) and the
//! admin API.

use crate::common::shop::{
    gateway_with_admin, grpcurl, ok, refused_start, route_list, shop, shop_python,
};
use crate::common::{temp_dir, tool};
use port::admin::pb::{ListRequest, RemoveRequest};

const TOKEN: &str = "retire-token-0123456789";
const BOOK: &str = r#"{"sku": "book-1"}"#;
const ORDER: &str = r#"{"lines": [{"sku": "book-1", "quantity": 1}], "card_token": "t"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_methods_a_newer_version_can_serve_are_retired_onto_it_and_the_rest_stay() {
    let (Some(python), Some(g)) = (shop_python(), tool(client::tools::grpcurl())) else {
        return;
    };
    let (v1, v2) = (
        shop(&python, "v1", &[]).await,
        shop(&python, "v2", &[]).await,
    );
    let dir = temp_dir("retire");
    let upstreams = [
        format!("v1=1.0.0@{}", v1.addr),
        format!("v2=2.0.0@{}+shop.v1/*", v2.addr),
    ];
    let (gw, admin) = gateway_with_admin(&upstreams, &[], dir.path(), "ci", TOKEN).await;
    let mut client = port::admin::connect(admin, TOKEN).await.unwrap();
    let list = client.list(ListRequest {}).await.unwrap().into_inner();
    let v2_backend = list.backends.iter().find(|b| b.name == "v2").unwrap();
    assert_eq!(
        v2_backend.partial_methods,
        ["shop.v1/Shop.PlaceOrder", "shop.v1/Shop.WatchOrder"]
    );
    let listed = route_list(admin, TOKEN);
    assert!(
        listed.contains("shop.v1 (Shop.PlaceOrder, Shop.WatchOrder only)"),
        "{listed}"
    );
    let addr = gw.addr.to_string();
    let g = g.as_path();
    tokio::task::block_in_place(|| {
        let reply = ok(g, &["-v", "-d", BOOK], &addr, &["shop.v1.Shop/GetProduct"]);
        assert!(reply.contains("x-api-version: 1.0.0"), "{reply}");
        let reply = ok(g, &["-v", "-d", ORDER], &addr, &["shop.v1.Shop/PlaceOrder"]);
        assert!(reply.contains("x-api-version: 2.0.0"), "{reply}");
        assert!(reply.contains(r#""orderId": "v2-"#), "{reply}");
    });

    // With v1 gone, v1's GetProduct has no backend, and says why; the retired methods stay.
    let remove = RemoveRequest {
        name: "v1".into(),
        force: true,
    };
    client.remove(remove).await.unwrap();
    tokio::task::block_in_place(|| {
        let (success, text) = grpcurl(g, &["-d", BOOK], &addr, &["shop.v1.Shop/GetProduct"]);
        assert!(!success, "{text}");
        assert!(
            text.contains("Unimplemented") && text.contains("takes only Shop/PlaceOrder"),
            "{text}"
        );
        let reply = ok(g, &["-v", "-d", ORDER], &addr, &["shop.v1.Shop/PlaceOrder"]);
        assert!(reply.contains("x-api-version: 2.0.0"), "{reply}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naming_a_method_the_newer_version_breaks_is_refused_with_the_finding() {
    let Some(python) = shop_python() else {
        return;
    };
    let (v1, v2) = (
        shop(&python, "v1", &[]).await,
        shop(&python, "v2", &[]).await,
    );
    let stderr = refused_start(&[
        format!("v1=1.0.0@{}", v1.addr),
        format!(
            "v2=2.0.0@{}+shop.v1/Shop.PlaceOrder+shop.v1/Shop.GetProduct",
            v2.addr
        ),
    ])
    .await;
    assert!(
        stderr.contains("Shop/GetProduct: GRPC_FIELD_SAME_VALUE_RANGE"),
        "{stderr}"
    );
}
