//! gRPC-Web on the port (`testbed serve --grpc-web`), judged by the real JavaScript clients
//! under Node ([`client/web/driver.cjs`](../client/web/driver.cjs)): the npm `grpc-web` client
//! (text and binary) and Connect's gRPC-Web transport (connect-web over fetch, connect-node
//! over HTTP/1.1 and HTTP/2), against the port's own services and, through the gateway, two
//! `testbed serve` upstreams: unary v1 and v2 with `x-api-version` pinned and not, server
//! streaming, trailers-only errors. CORS, the port's bounds and the HTTP/1.1 answers are in
//! [`http1`], with hand-written HTTP/1.1 requests.
//!
//! Node and the npm packages come from `scripts/setup` (`.tools/node_modules`); without them the
//! tests skip, except under `CI=true`, where they fail.

mod http1;
mod json;

use crate::common::shop::{gateway, shop, shop_descriptors, shop_python};
use crate::common::{temp_dir, tool};
use client::tools::MissingTool;
use port::child::ChildServer;
use port::deployment::Deployment;
use port::server::{self, RunningServer, ServeOptions};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The origin the tests' servers allow.
const ALLOWED_ORIGIN: &str = "http://localhost:8080";

/// The npm packages the driver needs, as `scripts/setup` installs them.
const PACKAGES: [&str; 6] = [
    "grpc-web",
    "xhr2",
    "@bufbuild/protobuf",
    "@connectrpc/connect",
    "@connectrpc/connect-web",
    "@connectrpc/connect-node",
];

const SETUP: &str = "bash scripts/setup (Node and npm from Debian; grpc-web, xhr2, \
    @bufbuild/protobuf and @connectrpc/connect{,-web,-node} into .tools with npm)";

/// `name` in a folder of `PATH`.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Node and the folder holding the driver's packages.
fn node_and_modules() -> Result<(PathBuf, PathBuf), MissingTool> {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules");
    let node = on_path("node").ok_or_else(|| MissingTool {
        tool: "node",
        looked: "PATH".into(),
        fix: SETUP,
    })?;
    if let Some(missing) = PACKAGES
        .iter()
        .find(|name| !modules.join(name).join("package.json").is_file())
    {
        return Err(MissingTool {
            tool: "the gRPC-Web npm clients",
            looked: format!("{} (no {missing})", modules.display()),
            fix: SETUP,
        });
    }
    Ok((node, modules))
}

/// The JavaScript clients, or `None` when they are missing outside CI.
pub(crate) fn web_clients() -> Option<WebClients> {
    let (node, modules) = match node_and_modules() {
        Ok(found) => found,
        // Skips outside CI, fails under CI=true.
        Err(missing) => return tool(Err(missing)).and(None),
    };
    let dir = temp_dir("web");
    let mut descriptors = Vec::new();
    for (name, bytes) in [
        ("increment.binpb", services::FILE_DESCRIPTOR_SET),
        ("interop.binpb", services::interop::FILE_DESCRIPTOR_SET),
        ("health.binpb", tonic_health::pb::FILE_DESCRIPTOR_SET),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("the descriptors are written");
        descriptors.push(path);
    }
    Some(WebClients {
        node,
        modules,
        descriptors,
        dir,
    })
}

/// Node, the driver's packages and the testbed's descriptor sets written for it.
pub(crate) struct WebClients {
    node: PathBuf,
    modules: PathBuf,
    descriptors: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

/// What one call saw: its replies as protobuf JSON, the reply headers (and trailers), the code.
#[derive(Debug)]
pub(crate) struct Seen {
    messages: Vec<Value>,
    headers: serde_json::Map<String, Value>,
    code: i64,
    message: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    /// The one reply's `value` (int64 fields are strings in protobuf JSON).
    fn value(&self) -> i64 {
        assert_eq!(self.code, 0, "the call failed: {self:?}");
        assert_eq!(self.messages.len(), 1, "one reply: {self:?}");
        let value = &self.messages[0]["value"];
        value
            .as_str()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("no value in {self:?}"))
    }
}

/// One call for the driver: which client, which method, the request as protobuf JSON.
fn call(client: &str, method: &str, request: Value) -> Value {
    json!({ "client": client, "method": method, "request": request, "format": "text" })
}

/// `call` with headers, or another grpc-web format.
fn with(mut call: Value, key: &str, value: Value) -> Value {
    call[key] = value;
    call
}

impl WebClients {
    /// Runs `calls` against `base` (`http://127.0.0.1:PORT`), one driver process for all.
    pub(crate) async fn run(&self, base: &str, calls: &[Value]) -> Vec<Seen> {
        let plan = json!({ "base": base, "descriptors": self.descriptors, "calls": calls });
        let path = self.dir.path().join("plan.json");
        std::fs::write(&path, plan.to_string()).expect("the plan is written");
        let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("client/web/driver.cjs");
        let run = tokio::process::Command::new(&self.node)
            .arg(driver)
            .arg(&path)
            .env("NODE_PATH", &self.modules)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(std::time::Duration::from_secs(60), run)
            .await
            .expect("the driver finishes within 60 s")
            .expect("node runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "the driver failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        let seen: Vec<Seen> = stdout
            .lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line).expect("the driver prints JSON");
                Seen {
                    messages: value["messages"].as_array().cloned().unwrap_or_default(),
                    headers: value["headers"].as_object().cloned().unwrap_or_default(),
                    code: value["code"].as_i64().unwrap_or(-1),
                    message: value["message"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect();
        assert_eq!(seen.len(), calls.len(), "one line per call: {stdout}");
        seen
    }
}

/// `testbed serve`'s default deployment (v1 and v2 behind the router) with `--grpc-web
/// --interop --cors-allow-origin ALLOWED_ORIGIN`, in this process.
pub(crate) async fn start_web(options: ServeOptions) -> RunningServer {
    let mut options = options;
    options.web.grpc_web = true;
    options.web.cors_allow_origins = vec![ALLOWED_ORIGIN.into()];
    options.interop = true;
    let layout = Deployment::SideBySide
        .layout(options.max_message_bytes)
        .expect("the layout builds");
    server::start_with("127.0.0.1:0".parse().unwrap(), layout, "web", &options)
        .await
        .expect("the server starts")
}

const V1: &str = "/increment.v1.Incrementer/Increment";
const V2: &str = "/increment.v2.Incrementer/Increment";
const STREAMING_OUTPUT: &str = "/grpc.testing.TestService/StreamingOutputCall";
const HEALTH: &str = "/grpc.health.v1.Health/Check";

/// A call for the driver and what its result must be.
type Case = (Value, Box<dyn Fn(&Seen)>);

/// The calls both the port and the gateway answer, and what each must see.
fn incrementer_calls() -> Vec<Case> {
    let mut calls: Vec<Case> = Vec::new();
    for client in [
        "grpc-web",
        "connect-web",
        "connect-node-1.1",
        "connect-node-2",
    ] {
        calls.push((
            call(client, V1, json!({ "value": "41" })),
            Box::new(|seen: &Seen| {
                assert_eq!(seen.value(), 42);
                assert_eq!(seen.header("x-api-version"), Some("1.0.0"), "{seen:?}");
            }),
        ));
        calls.push((
            call(client, V2, json!({ "value": "40", "step": "2" })),
            Box::new(|seen: &Seen| {
                assert_eq!(seen.value(), 42);
                assert_eq!(seen.messages[0]["servedByVersion"], "2.0.0");
                assert_eq!(seen.header("x-api-version"), Some("2.0.0"), "{seen:?}");
            }),
        ));
        calls.push((
            with(
                call(client, V2, json!({ "value": "1" })),
                "headers",
                json!({ "x-api-version": "^2" }),
            ),
            Box::new(|seen: &Seen| {
                assert_eq!(seen.value(), 2);
                assert_eq!(seen.header("x-api-version"), Some("2.0.0"), "{seen:?}");
            }),
        ));
        calls.push((
            with(
                call(client, V2, json!({ "value": "1" })),
                "headers",
                json!({ "x-api-version": "banana" }),
            ),
            Box::new(|seen: &Seen| {
                assert_eq!(seen.code, 3, "INVALID_ARGUMENT: {seen:?}");
                assert!(
                    seen.message
                        .starts_with("x-api-version header \"banana\" is not a semver"),
                    "{seen:?}"
                );
            }),
        ));
        calls.push((
            call(client, V2, json!({ "value": i64::MAX.to_string() })),
            Box::new(|seen: &Seen| {
                assert_eq!(seen.code, 11, "OUT_OF_RANGE: {seen:?}");
                assert_eq!(
                    seen.message,
                    "value 9223372036854775807 + step 1 overflows int64 (largest value is \
                     9223372036854775807)"
                );
            }),
        ));
    }
    // The binary format of the grpc-web client (text is its default, and the tests' above).
    calls.push((
        with(
            call("grpc-web", V2, json!({ "value": "6", "step": "3" })),
            "format",
            json!("binary"),
        ),
        Box::new(|seen: &Seen| assert_eq!(seen.value(), 9)),
    ));
    calls.push((
        with(
            call("grpc-web", V2, json!({ "value": "1" })),
            "headers",
            json!({ "x-api-version": "^3" }),
        ),
        Box::new(|seen: &Seen| {
            assert_eq!(seen.code, 12, "UNIMPLEMENTED: {seen:?}");
            assert!(
                seen.message
                    .contains("no backend serves increment.v2 with x-api-version ^3"),
                "{seen:?}"
            );
        }),
    ));
    calls
}

/// Server streaming by each client: three replies of 3, 5 and 7 bytes, then OK in the trailers.
fn streaming_calls() -> Vec<Case> {
    let mut calls: Vec<Case> = Vec::new();
    for client in ["grpc-web", "connect-node-1.1", "connect-node-2"] {
        let sizes = json!({ "responseParameters": [{ "size": 3 }, { "size": 5 }, { "size": 7 }] });
        calls.push((
            call(client, STREAMING_OUTPUT, sizes),
            Box::new(|seen: &Seen| {
                assert_eq!(seen.code, 0, "{seen:?}");
                let lengths: Vec<usize> = seen
                    .messages
                    .iter()
                    .map(|reply| {
                        // Bytes fields are base64 in protobuf JSON.
                        let body = reply["payload"]["body"].as_str().unwrap_or_default();
                        body.len() / 4 * 3 - body.matches('=').count()
                    })
                    .collect();
                assert_eq!(lengths, [3, 5, 7], "{seen:?}");
            }),
        ));
    }
    calls
}

/// Runs `calls` against `base` and checks each.
async fn check(clients: &WebClients, base: &str, calls: Vec<Case>) {
    let (plans, checks): (Vec<Value>, Vec<_>) = calls.into_iter().unzip();
    let seen = clients.run(base, &plans).await;
    for ((plan, check), seen) in plans.iter().zip(checks).zip(&seen) {
        eprintln!("{plan} -> {seen:?}");
        check(seen);
    }
}

#[tokio::test]
async fn grpc_web_and_connect_clients_call_the_ports_own_services() {
    let Some(clients) = web_clients() else { return };
    let server = start_web(ServeOptions::default()).await;
    let mut calls = incrementer_calls();
    calls.extend(streaming_calls());
    for client in ["grpc-web", "connect-node-1.1", "connect-node-2"] {
        calls.push((
            call(
                client,
                HEALTH,
                json!({ "service": "increment.v2.Incrementer" }),
            ),
            Box::new(|seen: &Seen| {
                assert_eq!(seen.code, 0, "{seen:?}");
                assert_eq!(seen.messages[0]["status"], "SERVING", "{seen:?}");
            }),
        ));
    }
    check(&clients, &format!("http://{}", server.addr), calls).await;
    crate::common::probe(&server).await;
}

#[tokio::test]
async fn grpc_web_calls_through_the_gateway_reach_upstreams_as_grpc() {
    let Some(clients) = web_clients() else { return };
    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let v1 = ChildServer::testbed(exe, &["serve", "--backend", "v1", "--addr", "127.0.0.1:0"]);
    let v2 = ChildServer::testbed(exe, &["serve", "--backend", "v2", "--addr", "127.0.0.1:0"]);
    let (v1, v2) = tokio::join!(v1, v2);
    let (v1, v2) = (v1.expect("v1 starts"), v2.expect("v2 starts"));
    let upstream_v1 = format!("v1=1.0.0@{}", v1.addr);
    let upstream_v2 = format!("v2=2.0.0@{}", v2.addr);
    let args = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--grpc-web",
        "--cors-allow-origin",
        ALLOWED_ORIGIN,
        "--upstream",
        &upstream_v1,
        "--upstream",
        &upstream_v2,
    ];
    let gateway = ChildServer::testbed(exe, &args)
        .await
        .expect("the gateway starts");
    let base = format!("http://{}", gateway.addr);
    check(&clients, &base, incrementer_calls()).await;
    crate::common::probe_addr(gateway.addr).await;
}

#[tokio::test]
async fn grpc_web_clients_call_an_api_the_testbed_did_not_write_through_the_gateway() {
    let Some(mut clients) = web_clients() else {
        return;
    };
    let Some(python) = shop_python() else { return };
    let descriptors = shop_descriptors(&python, "v1", clients.dir.path());
    clients.descriptors.push(descriptors);
    let upstream = shop(&python, "v1", &[]).await;
    let gateway = gateway(&[
        "--grpc-web".into(),
        "--upstream".into(),
        format!("shop1=1.0.0@{}", upstream.addr),
    ])
    .await;
    let base = format!("http://{}", gateway.addr);
    let order = json!({ "lines": [{ "sku": "book-1", "quantity": 2 }], "cardToken": "tok" });
    let placed = clients
        .run(
            &base,
            &[
                call(
                    "grpc-web",
                    "/shop.v1.Shop/GetProduct",
                    json!({ "sku": "book-1" }),
                ),
                call("connect-node-2", "/shop.v1.Shop/PlaceOrder", order),
            ],
        )
        .await;
    assert_eq!(placed[0].code, 0, "{:?}", placed[0]);
    assert_eq!(placed[0].messages[0]["sku"], "book-1", "{:?}", placed[0]);
    assert_eq!(placed[0].header("x-api-version"), Some("1.0.0"));
    let id = placed[1].messages[0]["orderId"].clone();
    assert!(id.is_string(), "{:?}", placed[1]);
    // A server stream from the Python upstream, and its trailers-only NOT_FOUND.
    let watch = "/shop.v1.Shop/WatchOrder";
    let mut calls = Vec::new();
    for client in ["grpc-web", "connect-web", "connect-node-2"] {
        calls.push(call(client, watch, json!({ "orderId": id })));
        calls.push(call(client, watch, json!({ "orderId": "nope" })));
    }
    let seen = clients.run(&base, &calls).await;
    for pair in seen.chunks(2) {
        let (updates, missing) = (&pair[0], &pair[1]);
        assert_eq!(updates.code, 0, "{updates:?}");
        let last = updates
            .messages
            .last()
            .map(|update| update["status"].clone());
        assert!(updates.messages.len() >= 2, "{updates:?}");
        assert_eq!(last, Some(json!("ORDER_STATUS_DELIVERED")), "{updates:?}");
        assert_eq!(missing.code, 5, "NOT_FOUND: {missing:?}");
        assert_eq!(missing.message, "no order 'nope'");
    }
}
