//! The gateway's catalog and its memory (issue 22, item 3): descriptors added at runtime are
//! freed when the last backend routed their package is removed, and `--max-catalog-bytes`
//! bounds what the catalog may hold.
//!
//! - Backends whose upstreams bring large descriptors (about 0.8 MB encoded, each a package of
//!   its own) are added and removed in turn to a `testbed serve` gateway: after each Remove
//!   the catalog's bytes (`route list`'s `catalog_bytes`) are back to what they were at start,
//!   the package is no longer managed, health no longer knows its service, and the gateway's
//!   resident memory stays within a bound that the descriptors kept would exceed.
//! - An Add that would take the catalog past `--max-catalog-bytes` is refused with
//!   RESOURCE_EXHAUSTED naming the flag and the sizes, and the table is unchanged; one that
//!   fits is taken.
//! - A start whose upstreams' descriptors come to more than the flag fails with exit 1.

use crate::common::credentials::token_file;
use crate::common::{start, temp_dir};
use port::admin::AdminClient;
use port::admin::pb::{AddRequest, ListReply, ListRequest, RemoveRequest};
use port::child::ChildServer;
use port::deployment::Deployment;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    MethodDescriptorProto, ServiceDescriptorProto,
};
use std::path::Path;
use std::time::Duration;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const TOKEN: &str = "catalog-token-0123456789";
/// Messages of 100 string fields each in one large descriptor set: about 0.8 MB encoded.
const MESSAGES: usize = 200;
/// Growth of the gateway's resident memory allowed over the whole add-and-remove run. One
/// such set held costs about 25 MiB (prost-reflect keeps it decoded and indexed), so keeping
/// the four of the run would pass it by far.
const RSS_GROWTH_BOUND_KIB: u64 = 48 * 1024;
/// Peak resident memory allowed over the start's: one Add's working copies, generously.
const PEAK_GROWTH_BOUND_KIB: u64 = 400 * 1024;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_testbed"))
}

/// An encoded `FileDescriptorSet` of package `package`: `messages` messages of 100 string
/// fields each and a service `Big` with one method per message.
fn large_set(package: &str, messages: usize) -> Vec<u8> {
    let message = |m: usize| DescriptorProto {
        name: Some(format!("Msg{m:04}")),
        field: (0..100)
            .map(|i| FieldDescriptorProto {
                name: Some(format!("field_{m:04}_{i:03}")),
                json_name: Some(format!("field{m:04}{i:03}")),
                number: Some(i + 1),
                label: Some(Label::Optional as i32),
                r#type: Some(Type::String as i32),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let method = |m: usize| MethodDescriptorProto {
        name: Some(format!("Call{m:04}")),
        input_type: Some(format!(".{package}.Msg{m:04}")),
        output_type: Some(format!(".{package}.Msg{m:04}")),
        ..Default::default()
    };
    let file = FileDescriptorProto {
        name: Some(format!("{}.proto", package.replace('.', "/"))),
        package: Some(package.to_string()),
        syntax: Some("proto3".to_string()),
        message_type: (0..messages).map(message).collect(),
        service: vec![ServiceDescriptorProto {
            name: Some("Big".to_string()),
            method: (0..messages).map(method).collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    FileDescriptorSet { file: vec![file] }.encode_to_vec()
}

/// The encoded size of the one file in the encoded set `set`.
fn file_len(set: &[u8]) -> usize {
    FileDescriptorSet::decode(set)
        .expect("a set")
        .file
        .iter()
        .map(Message::encoded_len)
        .sum()
}

/// `VmRSS` and `VmHWM` of process `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A gateway process over the upstream at `upstream` with its admin API, started with
/// `extra` flags; the admin client and the token files' folder (kept as long as the gateway).
async fn gateway(upstream: &str, extra: &[&str]) -> (ChildServer, AdminClient, tempfile::TempDir) {
    let dir = temp_dir("catalog");
    let tokens = token_file(dir.path(), &format!("ops {TOKEN}\n"));
    let spec = format!("v1=1.0.0@{upstream}");
    let tokens = tokens.to_string_lossy().into_owned();
    let mut args = vec![
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--upstream",
        &spec,
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token-file",
        &tokens,
    ];
    args.extend(extra);
    let mut gateway = ChildServer::testbed(exe(), &args)
        .await
        .expect("the gateway starts");
    let line = gateway.next_line().await.unwrap();
    let admin: std::net::SocketAddr = line
        .strip_prefix("testbed admin API on ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    let client = port::admin::connect(admin, TOKEN).await.unwrap();
    (gateway, client, dir)
}

async fn list(client: &mut AdminClient) -> ListReply {
    client.list(ListRequest {}).await.unwrap().into_inner()
}

async fn add(
    client: &mut AdminClient,
    upstream: &str,
    descriptor_set: Vec<u8>,
) -> Result<(), tonic::Status> {
    let request = AddRequest {
        upstream: upstream.to_string(),
        descriptor_set,
    };
    client.add(request).await.map(drop)
}

/// The health status code the gateway at `addr` answers for `service`.
async fn health_code(addr: std::net::SocketAddr, service: &str) -> Code {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    match HealthClient::new(channel).check(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_backends_with_large_descriptors_frees_them() {
    let upstream = start(Deployment::V1Only).await;
    let addr = upstream.addr.to_string();
    let (gateway, mut client, _dir) = gateway(&addr, &[]).await;
    let pid = gateway.pid().expect("the gateway runs");
    let baseline = list(&mut client).await;
    let (rss_at_start, peak_at_start) = memory_kib(pid);
    for round in 1..=4 {
        let package = format!("big{round}.v1");
        let set = large_set(&package, MESSAGES);
        let name = format!("big{round}");
        add(&mut client, &format!("{name}=1.0.0@{addr}"), set.clone())
            .await
            .unwrap_or_else(|status| panic!("round {round}: the Add failed: {status}"));
        let grown = list(&mut client).await;
        assert!(grown.packages.contains(&package), "{:?}", grown.packages);
        assert!(
            grown.catalog_bytes >= baseline.catalog_bytes + set.len() as u64 - 16,
            "round {round}: {} bytes after adding {} to {}",
            grown.catalog_bytes,
            set.len(),
            baseline.catalog_bytes
        );
        let service = format!("{package}.Big");
        assert_eq!(health_code(gateway.addr, &service).await, Code::Ok);
        client
            .remove(RemoveRequest { name, force: false })
            .await
            .unwrap_or_else(|status| panic!("round {round}: the Remove failed: {status}"));
        let after = list(&mut client).await;
        assert_eq!(after.packages, baseline.packages, "round {round}");
        assert_eq!(after.catalog_bytes, baseline.catalog_bytes, "round {round}");
        assert_eq!(
            health_code(gateway.addr, &service).await,
            Code::NotFound,
            "round {round}: health still knows {service}"
        );
    }
    let (rss, peak) = memory_kib(pid);
    eprintln!(
        "gateway VmRSS {rss_at_start} KiB at start, {rss} KiB after 4 adds and removes of \
         {MESSAGES}-message sets; VmHWM {peak_at_start} → {peak} KiB"
    );
    assert!(
        rss < rss_at_start + RSS_GROWTH_BOUND_KIB,
        "resident memory grew from {rss_at_start} KiB to {rss} KiB"
    );
    assert!(
        peak < peak_at_start + PEAK_GROWTH_BOUND_KIB,
        "peak resident memory grew from {peak_at_start} KiB to {peak} KiB"
    );
    gateway.kill().await.unwrap();
    upstream.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_past_max_catalog_bytes_are_refused_naming_the_flag() {
    let upstream = start(Deployment::V1Only).await;
    let addr = upstream.addr.to_string();
    let (gateway, mut client, _dir) = gateway(&addr, &["--max-catalog-bytes", "100000"]).await;
    let before = list(&mut client).await;
    assert_eq!(before.max_catalog_bytes, 100_000);
    let set = large_set("big.v1", MESSAGES);
    let refused = add(&mut client, &format!("big=1.0.0@{addr}"), set.clone())
        .await
        .expect_err("an Add past --max-catalog-bytes is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    for says in [
        "--max-catalog-bytes 100000".to_string(),
        format!("brings {} bytes", file_len(&set)),
        format!("the {} it holds", before.catalog_bytes),
    ] {
        assert!(refused.message().contains(&says), "{says}: {refused:?}");
    }
    assert_eq!(list(&mut client).await, before);
    // A set that fits is taken.
    add(
        &mut client,
        &format!("small=1.0.0@{addr}"),
        large_set("small.v1", 2),
    )
    .await
    .expect("an Add within the limit is taken");
    assert!(
        list(&mut client)
            .await
            .packages
            .contains(&"small.v1".into())
    );
    gateway.kill().await.unwrap();
    upstream.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_start_past_max_catalog_bytes_fails_saying_so() {
    let upstream = start(Deployment::V1Only).await;
    let spec = format!("v1=1.0.0@{}", upstream.addr);
    let run = tokio::process::Command::new(exe())
        .args(["serve", "--addr", "127.0.0.1:0", "--upstream", &spec])
        .args(["--max-catalog-bytes", "1000"])
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the start ends")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("past --max-catalog-bytes 1000"), "{stderr}");
    upstream.shutdown().await.unwrap();
}
