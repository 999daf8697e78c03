//! Routes checked against reality (issue 22, case 4): an Add of an address nothing listens at
//! is refused and the table unchanged; a Replace that would make a backend serve another
//! package is refused, naming both, and a version whose major disagrees with its package is
//! warned of; the gateway's own addresses are refused as upstreams and a request carrying the
//! gateway's own instance mark is answered as a routing loop; names and addresses that are
//! not plain are refused saying what is wrong; `2.0.0+build5` beside `2.0.0` is the same
//! version; concurrent Adds of new packages all succeed; `serve` refuses its own port as an
//! upstream; `testbed route list` escapes control characters in what the server holds; an Add
//! past `--max-upstreams` is refused with RESOURCE_EXHAUSTED naming the flag.

use crate::common::credentials::token_file;
use crate::common::temp_dir;
use port::admin::pb::{AddRequest, ListRequest, ReplaceRequest};
use port::admin::{AdminClient, AdminConfig, RunningAdmin, Tokens};
use port::loop_guard::GATEWAY_HEADER;
use port::server::{Layout, RunningServer, start_layout};
use port::upstream::UpstreamSpec;
use prost::Message;
use router::{Backend, RouteTable};
use services::Api;
use services::pb::v2;
use std::collections::HashMap;
use std::net::SocketAddr;
use tonic::Code;

const TOKEN: &str = "routes-token-0123456789";

/// A testbed backend serving `api` alone (with reflection), as `serve --backend` does.
async fn backend(api: Api) -> RunningServer {
    start_layout(
        "127.0.0.1:0".parse().unwrap(),
        Layout::Direct(vec![api]),
        "backend",
    )
    .await
    .expect("the backend starts")
}

/// A gateway over `v1=1.0.0@V1` and `v2=2.0.0@V2`, its admin API guarding its own port.
struct Gateway {
    port: RunningServer,
    admin: RunningAdmin,
    _v1: RunningServer,
    v2: RunningServer,
}

impl Gateway {
    async fn start() -> Self {
        let (v1, v2) = (backend(Api::V1).await, backend(Api::V2).await);
        let specs: Vec<UpstreamSpec> = [
            format!("v1=1.0.0@{}", v1.addr),
            format!("v2=2.0.0@{}", v2.addr),
        ]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
        let gateway = port::upstream::gateway(&specs, &[], None).await.unwrap();
        let addresses = port::admin::addresses(&gateway);
        let port = start_layout(
            "127.0.0.1:0".parse().unwrap(),
            Layout::Routed(gateway.table),
            "gateway",
        )
        .await
        .unwrap();
        let admin = admin_over(&port, addresses).await;
        Self {
            port,
            admin,
            _v1: v1,
            v2,
        }
    }

    async fn client(&self) -> AdminClient {
        port::admin::connect(self.admin.addr, TOKEN).await.unwrap()
    }

    /// `(name, version, api)` of every backend in the table.
    async fn table(&self) -> Vec<(String, String, String)> {
        let reply = self.client().await.list(ListRequest {}).await.unwrap();
        reply
            .into_inner()
            .backends
            .into_iter()
            .map(|b| (b.name, b.version, b.api))
            .collect()
    }
}

/// The admin API over `server`'s router for [`TOKEN`], refusing `server`'s address too.
async fn admin_over(server: &RunningServer, addresses: HashMap<String, String>) -> RunningAdmin {
    let tokens = Tokens::single("ops", TOKEN).unwrap();
    let config = AdminConfig::plaintext("127.0.0.1:0".parse().unwrap(), tokens);
    let handle = server.router.clone().expect("a router");
    port::admin::start_guarding(config, handle, addresses, None, &[server.addr])
        .await
        .expect("the admin API starts")
}

async fn add(client: &mut AdminClient, upstream: &str) -> Result<Vec<String>, tonic::Status> {
    client
        .add(AddRequest {
            upstream: upstream.into(),
            ..Default::default()
        })
        .await
        .map(|reply| reply.into_inner().warnings)
}

fn assert_refused(result: Result<Vec<String>, tonic::Status>, code: Code, says: &[&str]) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    for piece in says {
        assert!(status.message().contains(piece), "{piece:?}: {status:?}");
    }
}

#[tokio::test]
async fn an_add_of_an_address_nothing_listens_at_is_refused_and_the_table_is_unchanged() {
    let gateway = Gateway::start().await;
    // Bound but not listening: connections are refused, and no other test gets the port.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = held.local_addr().unwrap();
    let before = gateway.table().await;
    let mut client = gateway.client().await;
    assert_refused(
        add(&mut client, &format!("v2dead=2.7.0@{dead}")).await,
        Code::FailedPrecondition,
        &[&dead.to_string(), "cannot be reached", "start it first"],
    );
    assert_eq!(gateway.table().await, before);
    // And v2 calls keep going to v2.
    let mut v2 = v2::incrementer_client::IncrementerClient::new(
        client::connect(gateway.port.addr).await.unwrap(),
    );
    let reply = v2
        .increment(crate::common::v2_request(1, Some(2), 1))
        .await
        .unwrap();
    assert_eq!(reply.metadata().get("x-api-version").unwrap(), "2.0.0");
}

#[tokio::test]
async fn a_replace_that_changes_a_backends_package_is_refused_and_a_version_off_its_package_warned()
{
    let gateway = Gateway::start().await;
    let before = gateway.table().await;
    let mut client = gateway.client().await;
    let status = client
        .replace(ReplaceRequest {
            upstream: format!("v1=1.0.0@{}", gateway.v2.addr),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    for piece in ["serves increment.v2", "backend v1 serves increment.v1"] {
        assert!(status.message().contains(piece), "{piece}: {status:?}");
    }
    assert_eq!(gateway.table().await, before);
    // Added under a new name it is accepted, with a warning that its version says v1.
    let warnings = add(&mut client, &format!("odd=1.5.0@{}", gateway.v2.addr))
        .await
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("version 1.5.0 but serves increment.v2"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn loops_are_refused_at_add_and_a_request_carrying_the_gateways_own_mark_is_answered() {
    let gateway = Gateway::start().await;
    let mut client = gateway.client().await;
    for own in [gateway.port.addr, gateway.admin.addr] {
        assert_refused(
            add(&mut client, &format!("self=2.8.0@{own}")).await,
            Code::FailedPrecondition,
            &["own listener", "loop"],
        );
    }
    let port = gateway.port.addr.port();
    assert_refused(
        add(&mut client, &format!("self=2.8.0@localhost:{port}")).await,
        Code::FailedPrecondition,
        &["own listener"],
    );

    // A request that already went through this gateway: refused, not forwarded again.
    let mut v2 = v2::incrementer_client::IncrementerClient::new(
        client::connect(gateway.port.addr).await.unwrap(),
    );
    let mut request = tonic::Request::new(crate::common::v2_request(1, Some(2), 1));
    let marks = format!("0123456789abcdef, {}", gateway.port.instance);
    request
        .metadata_mut()
        .insert(GATEWAY_HEADER, marks.parse().unwrap());
    let status = v2.increment(request).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("routing loop"), "{status:?}");
    assert!(
        status.message().contains(&gateway.port.instance),
        "{status:?}"
    );
    // Another gateway's mark alone is a chain, not a loop.
    let mut request = tonic::Request::new(crate::common::v2_request(1, Some(2), 2));
    request
        .metadata_mut()
        .insert(GATEWAY_HEADER, "0123456789abcdef".parse().unwrap());
    assert_eq!(v2.increment(request).await.unwrap().into_inner().value, 3);
}

#[tokio::test]
async fn an_ipv4_mapped_address_of_the_gateway_is_its_own_listener_too() {
    let gateway = Gateway::start().await;
    let mut client = gateway.client().await;
    let port = gateway.port.addr.port();
    assert_refused(
        add(
            &mut client,
            &format!("self=2.8.0@[::ffff:127.0.0.1]:{port}"),
        )
        .await,
        Code::FailedPrecondition,
        &["own listener"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_routed_to_each_other_answer_a_call_without_a_deadline_as_a_loop() {
    let a = Gateway::start().await;
    // B routes increment.v2 (and v1) to A, as read from A's reflection.
    let spec: UpstreamSpec = format!("a=2.0.0@{}", a.port.addr).parse().unwrap();
    let b_gateway = port::upstream::gateway(&[spec], &[], None).await.unwrap();
    let b = start_layout(
        "127.0.0.1:0".parse().unwrap(),
        Layout::Routed(b_gateway.table),
        "gateway b",
    )
    .await
    .unwrap();
    // A then routes increment.v2 to B at a higher version, so unpinned v2 calls go to B.
    let mut client = a.client().await;
    add(&mut client, &format!("b=2.5.0@{}", b.addr))
        .await
        .expect("B is a reachable gateway serving increment.v2");
    let mut v2 =
        v2::incrementer_client::IncrementerClient::new(client::connect(a.port.addr).await.unwrap());
    let call = v2.increment(crate::common::v2_request(1, Some(2), 1));
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), call)
        .await
        .expect("the loop is answered, not nested until it hangs")
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("routing loop"), "{status:?}");
    assert!(status.message().contains(&a.port.instance), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_waiting_on_a_silent_upstream_holds_up_no_other_change() {
    let gateway = Gateway::start().await;
    // Accepts connections and never answers: reflection waits for its timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let (accepted, mut first) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
            let _ = accepted.try_send(());
        }
    });
    let mut slow_client = gateway.client().await;
    let slow =
        tokio::spawn(
            async move { add(&mut slow_client, &format!("silent=3.0.0@{silent_addr}")).await },
        );
    first
        .recv()
        .await
        .expect("the slow Add reaches the silent upstream");
    // Meanwhile another Add and a Remove go through.
    let mut client = gateway.client().await;
    add(&mut client, &format!("v2b=2.1.0@{}", gateway.v2.addr))
        .await
        .expect("an Add beside a slow one");
    client
        .remove(port::admin::pb::RemoveRequest {
            name: "v2b".into(),
            force: false,
        })
        .await
        .expect("a Remove beside a slow Add");
    assert!(
        !slow.is_finished(),
        "the slow Add ended before the others: nothing was shown"
    );
    let result = slow.await.unwrap();
    assert_refused(result, Code::FailedPrecondition, &["silent"]);
}

#[tokio::test]
async fn bad_names_and_addresses_are_refused_saying_what_is_wrong() {
    let gateway = Gateway::start().await;
    let before = gateway.table().await;
    let mut client = gateway.client().await;
    let v2 = gateway.v2.addr;
    let long = "n".repeat(10 * 1024);
    for (upstream, says) in [
        (format!("x\nINFO forged=2.9.0@{v2}"), "holds '\\n'"),
        (format!("x\u{1b}[31m=2.9.0@{v2}"), "holds '\\u{1b}'"),
        (format!("{long}=2.9.0@{v2}"), "at most 64"),
        (format!("j=2.9.1@{v2}/:17099"), "no path"),
        ("j=2.9.1@127.0.0.1:0".into(), "from 1 to 65535"),
        ("j=2.9.1@::1:7001".into(), "in brackets"),
        (
            format!("j=2.9.1@{v2}+increment.v1\u{1b}[0m"),
            "not a protobuf package",
        ),
    ] {
        let status = add(&mut client, &upstream).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{upstream:?}: {status:?}"
        );
        assert!(status.message().contains(says), "{upstream:?}: {status:?}");
        assert!(
            !status.message().contains('\n') && !status.message().contains('\u{1b}'),
            "{status:?}"
        );
        assert!(status.message().len() < 1024, "{}", status.message().len());
    }
    // Drain and Remove take NAME or NAME/PACKAGE, no more.
    let status = client
        .remove(port::admin::pb::RemoveRequest {
            name: format!("v1\u{1b}[2J{long}"),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().len() < 1024, "{}", status.message().len());
    assert_eq!(gateway.table().await, before);
}

#[tokio::test]
async fn a_version_differing_only_in_build_metadata_is_the_same_version() {
    let gateway = Gateway::start().await;
    let mut client = gateway.client().await;
    assert_refused(
        add(
            &mut client,
            &format!("v2b=2.0.0+build5@{}", gateway.v2.addr),
        )
        .await,
        Code::FailedPrecondition,
        &["both serve increment.v2", "build metadata"],
    );
    // A higher version is still added beside it.
    add(
        &mut client,
        &format!("v2c=2.0.1+build5@{}", gateway.v2.addr),
    )
    .await
    .unwrap();
}

/// A descriptor set declaring `package` with one service (`Pinger.Ping`) and `padding` more
/// messages (work for the catalog, which widens the window two racing Adds meet in).
fn package_set(package: &str, padding: usize) -> Vec<u8> {
    use prost_types::{
        DescriptorProto, FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto,
        ServiceDescriptorProto,
    };
    let message = format!(".{package}.Ping");
    let file = FileDescriptorProto {
        name: Some(format!("{}.proto", package.replace('.', "/"))),
        package: Some(package.into()),
        message_type: std::iter::once("Ping".to_string())
            .chain((0..padding).map(|i| format!("Pad{i}")))
            .map(|name| DescriptorProto {
                name: Some(name),
                ..Default::default()
            })
            .collect(),
        service: vec![ServiceDescriptorProto {
            name: Some("Pinger".into()),
            method: vec![MethodDescriptorProto {
                name: Some("Ping".into()),
                input_type: Some(message.clone()),
                output_type: Some(message),
                ..Default::default()
            }],
            ..Default::default()
        }],
        syntax: Some("proto3".into()),
        ..Default::default()
    };
    FileDescriptorSet { file: vec![file] }.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_of_new_packages_all_succeed() {
    let gateway = Gateway::start().await;
    // Something listens there (the Adds send their descriptors; nothing is called).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at: SocketAddr = listener.local_addr().unwrap();
    let mut adds = tokio::task::JoinSet::new();
    let racers = 16;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(racers));
    // One connection carries every racer's call (the server serves its streams concurrently),
    // so the admin listener's per-peer share of connections plays no part.
    let shared = gateway.client().await;
    for i in 0..racers {
        let mut client = shared.clone();
        let start = start.clone();
        adds.spawn(async move {
            let package = format!("racer{i}.v1");
            let descriptor_set = package_set(&package, 500);
            start.wait().await;
            client
                .add(AddRequest {
                    upstream: format!("racer{i}=1.0.0@{at}"),
                    descriptor_set,
                })
                .await
                .map(|_| package)
        });
    }
    let mut added = Vec::new();
    while let Some(result) = adds.join_next().await {
        added.push(result.unwrap().expect("every Add succeeds"));
    }
    let packages = shared
        .clone()
        .list(ListRequest {})
        .await
        .unwrap()
        .into_inner()
        .packages;
    for package in &added {
        assert!(packages.contains(package), "{package}: {packages:?}");
    }
    assert_eq!(added.len(), racers);
}

#[tokio::test]
async fn adds_past_max_upstreams_are_refused_naming_the_flag() {
    let gateway = Gateway::start().await;
    let v2 = gateway.v2.addr.to_string();
    let addresses = HashMap::from([
        ("v1".to_string(), "elsewhere".to_string()),
        ("v2".to_string(), v2.clone()),
    ]);
    let tokens = Tokens::single("ops", TOKEN).unwrap();
    let config =
        AdminConfig::plaintext("127.0.0.1:0".parse().unwrap(), tokens).with_max_upstreams(3);
    let handle = gateway.port.router.clone().expect("a router");
    let admin = port::admin::start_guarding(config, handle, addresses, None, &[])
        .await
        .expect("the admin API starts");
    let mut client = port::admin::connect(admin.addr, TOKEN).await.unwrap();
    add(&mut client, &format!("v2b=2.1.0@{v2}"))
        .await
        .expect("the third upstream fits");
    let before = gateway.table().await;
    assert_refused(
        add(&mut client, &format!("v2c=2.2.0@{v2}")).await,
        Code::ResourceExhausted,
        &["holds 3 upstreams", "--max-upstreams 3", "--fd-reserve"],
    );
    assert_eq!(gateway.table().await, before);
}

#[tokio::test]
async fn route_list_escapes_control_characters() {
    // A table built in-process holds any name; what `testbed route list` prints must not
    // carry its control characters to the terminal.
    let evil = "evil\u{1b}[31m\nforged";
    let backend = Backend::in_process(
        evil,
        semver::Version::new(1, 1, 0),
        "increment.v1",
        port::deployment::v1_server(1024),
    );
    let catalog = port::deployment::catalog().unwrap();
    let table = RouteTable::new(catalog, vec![port::deployment::v1_backend(), backend]).unwrap();
    let server = start_layout(
        "127.0.0.1:0".parse().unwrap(),
        Layout::Routed(table),
        "evil",
    )
    .await
    .unwrap();
    let admin = admin_over(&server, HashMap::new()).await;
    let dir = temp_dir("routes-escape");
    let token = token_file(dir.path(), TOKEN);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args([
            "route",
            "list",
            "--admin",
            &admin.addr.to_string(),
            "--token-file",
        ])
        .arg(&token)
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{:?}", output.stderr);
    assert!(stdout.contains("evil\\u{1b}[31m\\nforged"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|line| line.contains("forged") && !line.contains("evil"))
    );
}

#[tokio::test]
async fn serve_refuses_its_own_port_as_an_upstream() {
    // Held (bound, not listening) so that no other test takes the port meanwhile; the
    // refusal comes before `serve` binds it.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let own = held.local_addr().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["serve", "--addr", &own.to_string()])
        .args(["--upstream", &format!("self=2.0.0@{own}")])
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("own listener"), "{stderr}");
}
