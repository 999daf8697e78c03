//! Real proxies (nginx, HAProxy, Envoy) in front of the testbed, each started by the `proxy`
//! crate as a child process with a generated configuration. Two arrangements per proxy: in
//! front of the testbed's version router, and doing the version routing itself in front of
//! separate v1 and v2 backend processes (with v1 live, and with v1 retired by a path rewrite).
//! Every matrix client runs through each, unary and streaming, and each cell is checked against
//! the expectation `testbed::matrix::proxies` holds (the one `testbed matrix --proxy` checks);
//! the other cases check what really happens, including where a proxy breaks something. The v1
//! → v2 rollout runs through each proxy, reconfigured its own way between phases.
//! The cases on the wire are in [`wire`], the rollouts in [`rollout`], tuned timeouts and
//! GOAWAY in [`tuning`].

mod rollout;
mod tuning;
mod wire;

use crate::common::tool;
use bytes::Bytes;
use client::Mode;
use port::child::ChildServer;
use proxy::{Arrangement, ProxyKind, RunningProxy};
use services::Api;
use std::net::SocketAddr;
use std::time::Duration;
use testbed::matrix::ClientKind::{self, *};
use testbed::matrix::proxies::{PROXY_REJECTS, ProxyColumn, Stack};
use testbed::matrix::{Expect, Outcome};
use tonic::Code;

use ProxyColumn::*;

/// The v1 and v2 unary paths, for raw HTTP/2 requests.
const UNARY_V1: &str = "/increment.v1.Incrementer/Increment";
const UNARY_V2: &str = "/increment.v2.Incrementer/Increment";

async fn serve(args: &[&str]) -> ChildServer {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--addr", "127.0.0.1:0"]);
    ChildServer::testbed(exe, &all)
        .await
        .expect("a testbed server process starts")
}

/// Starts `column`'s backends and `kind` in front of them, or `None` (with a note) when the
/// proxy is not installed outside CI.
async fn start_stack(kind: ProxyKind, column: ProxyColumn) -> Option<Stack> {
    tool(kind.find())?;
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let stack = Stack::start(kind, column, exe)
        .await
        .unwrap_or_else(|err| panic!("{kind} starts in front of {column}: {err:#}"));
    Some(stack)
}

fn external_tools_present(client: ClientKind) -> bool {
    match client {
        PythonV1 | PythonV2 => tool(client::tools::python()).is_some(),
        GrpcurlV1 | GrpcurlV2 => tool(client::tools::grpcurl()).is_some(),
        _ => true,
    }
}

#[allow(non_snake_case)]
const fn Ok(version: Option<&'static str>) -> Expect {
    match version {
        Some(version) => Expect::Served { version },
        None => Expect::Unlabelled,
    }
}

#[allow(non_snake_case)]
const fn Fails(code: Code) -> Expect {
    Expect::Fails { code }
}

/// Every client through `kind` in each column, judged against the matrix's proxy expectations
/// (`testbed::matrix::proxies`, the same table `testbed matrix --proxy` checks).
async fn matrix_through(kind: ProxyKind) {
    if tool(kind.find()).is_none() {
        return;
    }
    let clients: Vec<ClientKind> = ClientKind::ALL
        .into_iter()
        .filter(|client| external_tools_present(*client))
        .collect();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let cells = testbed::matrix::proxies::run(&clients, kind, exe)
        .await
        .expect("the proxy's columns run");
    assert_eq!(cells.len(), clients.len() * ProxyColumn::ALL.len());
    let mismatches = testbed::matrix::mismatches(&cells);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

async fn stop(stack: Stack) {
    stack.stop().await.expect("the proxy stops");
}

#[tokio::test]
async fn matrix_through_nginx() {
    matrix_through(ProxyKind::Nginx).await;
}

#[tokio::test]
async fn matrix_through_haproxy() {
    matrix_through(ProxyKind::Haproxy).await;
}

#[tokio::test]
async fn matrix_through_envoy() {
    matrix_through(ProxyKind::Envoy).await;
}

/// One call of a Rust client sending `requirement` as `x-api-version`.
async fn call_with(addr: SocketAddr, api: Api, requirement: &str) -> Outcome {
    let mode = Mode::Unary;
    let result = async {
        let channel = client::connect(addr)
            .await
            .map_err(|e| client::external::CallError::Failed(e.to_string()))?;
        // Sent as raw metadata, so that values that are no semver requirement go out too.
        let value = tonic::metadata::MetadataValue::try_from(requirement)
            .map_err(|e| client::external::CallError::Failed(e.to_string()))?;
        let reply = match api {
            Api::V1 => {
                let mut raw =
                    services::pb::v1::incrementer_client::IncrementerClient::new(channel.clone());
                let mut request =
                    tonic::Request::new(services::pb::v1::IncrementRequest { value: 41 });
                request.metadata_mut().insert("x-api-version", value);
                let response = raw.increment(request).await?;
                client::Reply {
                    value: response.into_inner().value,
                    request_id: 1,
                    served_by: None,
                }
            }
            Api::V2 => {
                let mut raw =
                    services::pb::v2::incrementer_client::IncrementerClient::new(channel.clone());
                let mut request = tonic::Request::new(services::pb::v2::IncrementRequest {
                    value: 41,
                    step: Some(testbed::matrix::STEP),
                    request_id: 1,
                });
                request.metadata_mut().insert("x-api-version", value);
                let reply = raw.increment(request).await?.into_inner();
                client::Reply {
                    value: reply.value,
                    request_id: reply.request_id,
                    served_by: Some(reply.served_by_version),
                }
            }
        };
        Result::<_, client::external::CallError>::Ok(vec![reply])
    }
    .await;
    Outcome::judge(api, mode, result)
}

/// `x-api-version` values beyond the matrix's two, and what happens to them. In front of the
/// router the header passes through and the router decides. Routing by itself, each proxy reads
/// only a single pinned major with a regular expression: a range (`>=2, <3`) or a value that
/// is no requirement at all is ignored and the request is routed by its path, and `=2.1.0` is
/// read as "major 2" and served by 2.0.0. The three proxies agree on every row.
const HEADER_CASES: [(Api, &str, [Expect; 2]); 5] = [
    // Columns: front of router (the router's answer), version routing (the proxy's).
    (Api::V1, ">=2, <3", [Fails(Code::Unimplemented), Ok(None)]),
    (
        Api::V1,
        "=2.0.0",
        [Fails(Code::Unimplemented), PROXY_REJECTS],
    ),
    (Api::V2, "^3", [Fails(Code::Unimplemented), PROXY_REJECTS]),
    (
        Api::V2,
        "=2.1.0",
        [Fails(Code::Unimplemented), Ok(Some("2.0.0"))],
    ),
    (Api::V1, "banana", [Fails(Code::InvalidArgument), Ok(None)]),
];

#[tokio::test]
async fn x_api_version_rules_as_far_as_each_proxy_can_read_them() {
    let mut mismatches = Vec::new();
    for kind in ProxyKind::ALL {
        for (i, column) in [FrontOfRouter, VersionRouting].into_iter().enumerate() {
            let Some(stack) = start_stack(kind, column).await else {
                continue;
            };
            for (api, requirement, row) in HEADER_CASES {
                let outcome = call_with(stack.proxy.addr(), api, requirement).await;
                let outcome = match outcome {
                    // v1 replies carry no version: only the v2 rows name one.
                    Outcome::Correct { values, served_by } if api == Api::V1 => Outcome::Correct {
                        values,
                        served_by: served_by.filter(|_| false),
                    },
                    other => other,
                };
                if !row[i].fits(&outcome) {
                    mismatches.push(format!(
                        "{kind} {column:?}, {api} x-api-version {requirement:?}: expected {:?}, got {outcome:?}",
                        row[i]
                    ));
                }
            }
            stop(stack).await;
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The commands: `testbed matrix --proxy` adds the proxy's three columns to the JSON (and exits
/// 0 when they hold), `testbed rollout --proxy envoy` rolls out through Envoy (exit 0: nothing
/// failed), and bad `--proxy` uses are refused as usage errors.
#[tokio::test]
async fn matrix_and_rollout_commands_take_a_proxy() {
    let exe = env!("CARGO_BIN_EXE_testbed");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(exe)
            .args(args)
            .output()
            .expect("testbed runs");
        let json = serde_json::from_slice::<serde_json::Value>(&output.stdout).ok();
        (output.status.code(), json, output.stderr)
    };
    for bad in [
        &["rollout", "--proxy", "caddy"][..],
        &["rollout", "--proxy", "nginx", "--processes"],
        &["matrix", "--proxy", "caddy"],
    ] {
        assert_eq!(run(bad).0, Some(2), "{bad:?}");
    }
    if tool(ProxyKind::Envoy.find()).is_none() {
        return;
    }
    let matrix = [
        "matrix",
        "--proxy",
        "envoy",
        "--deployment",
        "side-by-side",
        "--client",
        "rust-v1-pinned",
        "--json",
        "-",
    ];
    let (code, json, stderr) = run(&matrix);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&stderr));
    let json = json.expect("JSON on stdout");
    let columns: Vec<&str> = json["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["deployment"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "side-by-side",
            "envoy front-of-router",
            "envoy version-routing",
            "envoy v1-retired"
        ]
    );
    assert_eq!(json["cells"][3]["unary"]["code"], "UNIMPLEMENTED");
    assert_eq!(json["settings"]["proxies"][0], "envoy");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("rollout.json");
    let rollout = [
        "rollout",
        "--proxy",
        "envoy",
        "--phase-seconds",
        "0.5",
        "--v1-clients",
        "1",
        "--v2-clients",
        "1",
        "--json",
        file.to_str().unwrap(),
    ];
    let (code, _, stderr) = run(&rollout);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).expect("valid JSON");
    assert_eq!(json["proxy"], "envoy");
    assert_eq!(json["load"]["phases"].as_array().unwrap().len(), 4);
    assert_eq!(json["changes"].as_array().unwrap().len(), 2);
}
