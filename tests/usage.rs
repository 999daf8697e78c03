//! Who still calls what (`testbed route usage`): a gateway over three testbed backends counts
//! each caller's calls per method, backend and version, named by its address, user agent and
//! `--usage-identity-header` (over mutual TLS by its client certificate); and with `--quiet-period-secs` it refuses to remove a backend
//! whose recent callers nothing else serves (naming them) unless forced, while a backend whose
//! package another one serves may go.

use crate::common::credentials::token_file;
use port::child::ChildServer;
use services::pb::{v1, v2};
use std::path::Path;

const TOKEN: &str = "usage-test-token-0123";

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_testbed"))
}

async fn backend(api: &str) -> ChildServer {
    ChildServer::testbed(exe(), &["serve", "--backend", api, "--addr", "127.0.0.1:0"])
        .await
        .expect("a backend starts")
}

/// `request` naming its caller `who` in `x-client-id`.
fn from<T>(message: T, who: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-client-id", who.parse().expect("an ASCII name"));
    request
}

/// `testbed route ARGS --admin ADDR --token-file FILE`: exit code, stdout and stderr.
fn route(admin: &str, tokens: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(exe())
        .arg("route")
        .args(args)
        .args(["--admin", admin, "--token-file"])
        .arg(tokens)
        .output()
        .expect("testbed route runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_counted_per_method_and_version_and_the_quiet_period_protects_them() {
    let (b1, b2, b2b) = (
        backend("v1").await,
        backend("v2").await,
        backend("v2").await,
    );
    let dir = crate::common::temp_dir("usage");
    let tokens = token_file(dir.path(), &format!("ops {TOKEN}\n"));
    let tokens_arg = tokens.display().to_string();
    let specs = [
        format!("v1=1.0.0@{}", b1.addr),
        format!("v2=2.0.0@{}", b2.addr),
        format!("v2b=2.1.0@{};weight=0", b2b.addr),
    ];
    let mut args = vec![
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ];
    args.extend([
        "--admin-token-file",
        &tokens_arg,
        "--quiet-period-secs",
        "60",
    ]);
    args.extend(["--usage-identity-header", "X-Client-Id"]);
    for spec in &specs {
        args.extend(["--upstream", spec]);
    }
    let mut gateway = ChildServer::testbed(exe(), &args)
        .await
        .expect("the gateway starts");
    let admin = crate::common::admin_address(&mut gateway).await;

    let channel = client::connect(gateway.addr).await.unwrap();
    let mut old = v1::incrementer_client::IncrementerClient::new(channel.clone());
    let mut new = v2::incrementer_client::IncrementerClient::new(channel);
    for value in 0..5 {
        let request = v1::IncrementRequest { value };
        old.increment(from(request, "billing"))
            .await
            .expect("a v1 call");
    }
    for value in 0..3 {
        let request = v2::IncrementRequest {
            value,
            ..Default::default()
        };
        new.increment(from(request, "web"))
            .await
            .expect("a v2 call");
    }
    new.increment(v2::IncrementRequest::default())
        .await
        .expect("an anonymous v2 call");

    let (code, out, err) =
        tokio::task::block_in_place(|| route(&admin, &tokens, &["usage", "--json"]));
    assert_eq!(code, 0, "{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(reply["tracked"], true, "{reply}");
    assert_eq!(reply["quiet_period_secs"], 60, "{reply}");
    let rows = reply["rows"].as_array().expect("rows");
    let calls = |identity: &str, service: &str, backend: &str, version: &str| {
        rows.iter()
            .filter(|r| {
                r["identity"] == identity
                    && r["service"] == service
                    && r["backend"] == backend
                    && r["version"] == version
                    && r["method"] == "Increment"
                    && r["peer"] == "127.0.0.1"
                    && r["user_agent"]
                        .as_str()
                        .is_some_and(|ua| ua.starts_with("tonic/"))
                    && r["deprecated"] == false
            })
            .map(|r| r["calls"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(
        calls("billing", "increment.v1.Incrementer", "v1", "1.0.0"),
        5,
        "{reply}"
    );
    assert_eq!(
        calls("web", "increment.v2.Incrementer", "v2", "2.0.0"),
        3,
        "{reply}"
    );
    assert_eq!(
        calls("", "increment.v2.Incrementer", "v2", "2.0.0"),
        1,
        "{reply}"
    );
    assert_eq!(rows.len(), 3, "{reply}");
    let (_, only_v1, _) =
        tokio::task::block_in_place(|| route(&admin, &tokens, &["usage", "--backend", "v1"]));
    assert!(
        only_v1.contains("billing") && !only_v1.contains("web"),
        "{only_v1}"
    );

    // v1's caller has nowhere else to go: refused, named; forced, it goes.
    let (code, _, err) = tokio::task::block_in_place(|| route(&admin, &tokens, &["remove", "v1"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing to remove v1"), "{err}");
    assert!(err.contains("127.0.0.1 billing tonic/"), "{err}");
    assert!(
        err.contains("5 calls of /increment.v1.Incrementer/Increment"),
        "{err}"
    );
    let (code, _, err) = tokio::task::block_in_place(|| route(&admin, &tokens, &["drain", "v1"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing to drain v1"), "{err}");
    let (code, _, err) =
        tokio::task::block_in_place(|| route(&admin, &tokens, &["remove", "v1", "--force"]));
    assert_eq!(code, 0, "{err}");
    // v2's callers have v2b, which serves increment.v2 too.
    let (code, _, err) = tokio::task::block_in_place(|| route(&admin, &tokens, &["drain", "v2"]));
    assert_eq!(code, 0, "{err}");
    // With v2 draining, v2b is the last: removing it would strand nobody it served (none).
    let (code, _, err) = tokio::task::block_in_place(|| route(&admin, &tokens, &["remove", "v2b"]));
    assert_eq!(code, 0, "{err}");
}

/// `shop.v2.PlaceOrderRequest { lines: [{sku: "book-1", quantity: 1}], <payment> }`, encoded:
/// `voucher_code` (field 3) or `card_token` (field 2) set to `code`.
fn place_order(voucher: bool, code: &str) -> Vec<u8> {
    let line = b"\x0a\x06book-1\x10\x01";
    let mut out = vec![0x0a, line.len() as u8];
    out.extend_from_slice(line);
    out.push(if voucher { 0x1a } else { 0x12 });
    out.push(code.len() as u8);
    out.extend_from_slice(code.as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_calls_show_the_deprecated_methods_and_fields_callers_still_use() {
    let Some(python) = crate::common::shop::shop_python() else {
        return;
    };
    let upstream = crate::common::shop::shop(&python, "v2", &["--no-reflection"]).await;
    // The shop's v2 as its next release will declare it: PlaceOrder and voucher codes deprecated.
    let dir = crate::common::temp_dir("usage-deprecated");
    let proto = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/shop/proto/shop/v2/shop.proto"
    ))
    .unwrap();
    let marked = proto
        .replace(
            "rpc PlaceOrder(PlaceOrderRequest) returns (Order);",
            "rpc PlaceOrder(PlaceOrderRequest) returns (Order) { option deprecated = true; }",
        )
        .replace(
            "string voucher_code = 3;",
            "string voucher_code = 3 [deprecated = true];",
        );
    assert_ne!(marked, proto);
    std::fs::create_dir_all(dir.path().join("protos/shop/v2")).unwrap();
    std::fs::write(dir.path().join("protos/shop/v2/shop.proto"), marked).unwrap();
    let tokens = token_file(dir.path(), &format!("ops {TOKEN}\n"));
    let tokens_arg = tokens.display().to_string();
    let spec = format!("v2=2.0.0@{}", upstream.addr);
    let descriptors = format!("v2={}", dir.path().join("protos").display());
    let args = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--upstream",
        &spec,
        "--descriptors",
        &descriptors,
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token-file",
        &tokens_arg,
        "--usage-sample-every",
        "1",
    ];
    let mut gateway = ChildServer::testbed(exe(), &args)
        .await
        .expect("the gateway starts");
    let admin = crate::common::admin_address(&mut gateway).await;

    let channel = client::connect(gateway.addr).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    for (voucher, code) in [(true, "FREE"), (false, "tok_1"), (false, "tok_2")] {
        grpc.ready().await.unwrap();
        let request = tonic::Request::new(place_order(voucher, code));
        let path = http::uri::PathAndQuery::from_static("/shop.v2.Shop/PlaceOrder");
        grpc.unary(request, path, compat::RawCodec)
            .await
            .expect("an order is placed");
    }
    let (code, out, err) =
        tokio::task::block_in_place(|| route(&admin, &tokens, &["usage", "--json"]));
    assert_eq!(code, 0, "{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let orders: Vec<&serde_json::Value> = reply["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "PlaceOrder")
        .collect();
    assert_eq!(orders.len(), 1, "{reply}");
    assert_eq!(
        (&orders[0]["calls"], &orders[0]["deprecated"]),
        (&3.into(), &true.into())
    );
    let fields = reply["deprecated_fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{reply}");
    assert_eq!(
        fields[0]["field"], "shop.v2.PlaceOrderRequest.voucher_code",
        "{reply}"
    );
    assert_eq!(fields[0]["calls"], 1, "{reply}");
    assert_eq!(fields[0]["version"], "2.0.0", "{reply}");
    assert_eq!(reply["sampled_decoded"], 3, "{reply}");
    let (_, table, _) = tokio::task::block_in_place(|| route(&admin, &tokens, &["usage"]));
    assert!(
        table.contains("shop.v2.PlaceOrderRequest.voucher_code"),
        "{table}"
    );
    assert!(
        table.contains("/shop.v2.Shop/PlaceOrder (deprecated)"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_of_a_retiring_method_carry_deprecation_and_sunset_headers_grpcurl_shows() {
    let Some(grpcurl) = crate::common::tool(client::tools::grpcurl()) else {
        return;
    };
    let args = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--deprecation",
        "/increment.v1.Incrementer/Increment=2026-01-01",
        "--sunset",
        "increment.v1.Incrementer=2027-06-30",
        "--sunset-link",
        "https://example.com/increment-v1",
    ];
    let server = ChildServer::testbed(exe(), &args)
        .await
        .expect("serve starts");
    let call = |method: &str| {
        let out = std::process::Command::new(&grpcurl)
            .args(["-plaintext", "-v", "-d", r#"{"value": 1}"#])
            .arg(server.addr.to_string())
            .arg(method)
            .output()
            .expect("grpcurl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (old, new) = tokio::task::block_in_place(|| {
        (
            call("increment.v1.Incrementer/Increment"),
            call("increment.v2.Incrementer/Increment"),
        )
    });
    // grpcurl prints the response headers it received, one `name: value` a line.
    assert!(old.contains("deprecation: @1767225600"), "{old}");
    assert!(
        old.contains("sunset: Wed, 30 Jun 2027 00:00:00 GMT"),
        "{old}"
    );
    assert!(
        old.contains("link: <https://example.com/increment-v1>; rel=\"sunset\""),
        "{old}"
    );
    assert!(
        !new.contains("deprecation:") && !new.contains("sunset:"),
        "{new}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_the_callers_certificate_names_it_whatever_header_it_sends() {
    let dir = crate::common::temp_dir("usage-mtls");
    let pki = port::tls::TestPki::generate().expect("certificates");
    let files = pki.write_to(dir.path()).expect("written");
    let tokens = token_file(dir.path(), &format!("ops {TOKEN}\n"));
    let (cert, key, ca, tokens_arg) = (
        files.server_cert.display().to_string(),
        files.server_key.display().to_string(),
        files.ca_cert.display().to_string(),
        tokens.display().to_string(),
    );
    let args = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token-file",
        &tokens_arg,
        "--usage-identity-header",
        "x-client-id",
    ];
    let mut gateway = ChildServer::testbed(exe(), &args)
        .await
        .expect("the gateway starts");
    let admin = crate::common::admin_address(&mut gateway).await;
    let tls = pki.client(Some((&pki.client_cert, &pki.client_key)));
    let channel = port::tls::channel(gateway.addr, &tls)
        .await
        .expect("a mutual TLS channel");
    let mut v2 = v2::incrementer_client::IncrementerClient::new(channel);
    for value in 0..2 {
        let request = v2::IncrementRequest {
            value,
            ..Default::default()
        };
        v2.increment(request).await.expect("a v2 call");
    }
    let request = v2::IncrementRequest::default();
    v2.increment(from(request, "billing"))
        .await
        .expect("a v2 call naming itself");

    let (code, out, err) =
        tokio::task::block_in_place(|| route(&admin, &tokens, &["usage", "--json"]));
    assert_eq!(code, 0, "{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let rows = reply["rows"].as_array().expect("rows");
    let calls = |identity: &str| {
        rows.iter()
            .filter(|r| r["identity"] == identity && r["method"] == "Increment")
            .map(|r| r["calls"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    // TestPki's client certificate has the subject CN `testbed`: it names every call, the one
    // claiming to be `billing` too.
    assert_eq!(calls("testbed"), 3, "{reply}");
    assert_eq!(calls("billing"), 0, "{reply}");
    assert_eq!(calls(""), 0, "{reply}");
}
