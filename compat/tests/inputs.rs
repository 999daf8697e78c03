//! Inputs: descriptor-set files, reflection (v1 and v1alpha), and bad input of every kind.

use crate::common::{corpus_dir, fds_bytes, load};
use crate::project::args;
use compat::{Category, CheckOptions, Outcome, Source};
use std::net::SocketAddr;

#[tokio::test]
async fn descriptor_set_input_equals_directory_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (
        load("broken_increment", "old"),
        load("broken_increment", "new"),
    );
    let (po, pn) = (tmp.path().join("old.binpb"), tmp.path().join("new.binpb"));
    std::fs::write(&po, fds_bytes(&old)).unwrap();
    std::fs::write(&pn, fds_bytes(&new)).unwrap();
    let fo = Source::parse(po.to_str().unwrap()).load(&[]).await.unwrap();
    let fnew = Source::parse(pn.to_str().unwrap()).load(&[]).await.unwrap();
    let opts = CheckOptions::default();
    let a = compat::check(&old, &new, &opts);
    let b = compat::check(&fo, &fnew, &opts);
    assert_eq!(a.findings, b.findings);
    assert!(b.is_breaking());
}

async fn run_err(list: &[&str]) -> String {
    let mut out = Vec::new();
    match compat::cli::run(&args(list), &mut out).await {
        Ok(code) => panic!(
            "expected an error, got exit {code}: {}",
            String::from_utf8_lossy(&out)
        ),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn bad_input_is_an_error_never_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("broken.proto"),
        "syntax = \"proto3\";\n\nmessage Item {\n  int64 id = ;\n}\n",
    )
    .unwrap();
    let good = corpus_dir().join("identical/old").display().to_string();
    let e = run_err(&[&good, bad.to_str().unwrap()]).await;
    assert!(e.contains("broken.proto:4:"), "file and line: {e}");
    let unresolved = tmp.path().join("unresolved");
    std::fs::create_dir_all(&unresolved).unwrap();
    std::fs::write(
        unresolved.join("u.proto"),
        "syntax = \"proto3\";\n\nmessage Item {\n  Missing m = 1;\n}\n",
    )
    .unwrap();
    let e = run_err(&[&good, unresolved.to_str().unwrap()]).await;
    assert!(e.contains("u.proto") && e.contains("Missing"), "{e}");
    let e = run_err(&[&good, "/nonexistent/api.binpb"]).await;
    assert!(e.contains("/nonexistent/api.binpb"), "{e}");
    let junk = tmp.path().join("junk.binpb");
    std::fs::write(&junk, b"\xff\xff\xff not protobuf").unwrap();
    let e = run_err(&[&good, junk.to_str().unwrap()]).await;
    assert!(e.contains("not a FileDescriptorSet"), "{e}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = run_err(&[&good, empty.to_str().unwrap()]).await;
    assert!(e.contains("no .proto files"), "{e}");
    // Nothing listens on port 1.
    let e = run_err(&[&good, "grpc://127.0.0.1:1"]).await;
    assert!(
        e.contains("grpc://127.0.0.1:1") && e.contains("is the server running"),
        "{e}"
    );
}

async fn serve(router: tonic::transport::server::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

fn leaked_fds(case: &str, side: &str) -> &'static [u8] {
    Box::leak(fds_bytes(&load(case, side)).into_boxed_slice())
}

#[tokio::test]
async fn server_without_reflection_names_the_fix() {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let addr = serve(tonic::transport::Server::builder().add_service(health)).await;
    let good = corpus_dir().join("identical/old").display().to_string();
    let e = run_err(&[&good, &format!("grpc://{addr}")]).await;
    assert!(
        e.contains(&format!("grpc://{addr}")) && e.contains("does not offer gRPC reflection"),
        "{e}"
    );
}

#[tokio::test]
async fn reflection_input_confirms_methods_with_live_calls() {
    // A server that offers reflection for broken_increment/new but serves none of its methods:
    // the deleted streaming method gets UNIMPLEMENTED for real.
    let fds = leaked_fds("broken_increment", "new");
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fds)
        .build_v1()
        .unwrap();
    let addr = serve(tonic::transport::Server::builder().add_service(v1)).await;
    let old = load("broken_increment", "old");
    let new = Source::parse(&format!("grpc://{addr}"))
        .load(&[])
        .await
        .unwrap();
    assert_eq!(new.live.as_deref(), Some(addr.to_string().as_str()));
    let report = compat::check_live(
        &old,
        &new,
        &CheckOptions {
            categories: vec![Category::Grpc, Category::Wire],
            ..Default::default()
        },
    )
    .await;
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "GRPC_RPC_NO_DELETE")
        .expect("deleted method");
    let c = f.confirmation.as_ref().unwrap();
    assert_eq!(c.outcome, Outcome::Confirmed);
    assert!(
        c.effect.contains("Unimplemented") && c.runtime.contains("live server"),
        "{c:?}"
    );
    // Field-level findings are confirmed with bytes as for any input.
    assert!(
        report
            .breaking()
            .any(|f| f.rule == "GRPC_FIELD_SAME_VALUE_RANGE")
    );
}

#[tokio::test]
async fn reflection_falls_back_to_v1alpha() {
    let fds = leaked_fds("field_added", "new");
    let alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fds)
        .build_v1alpha()
        .unwrap();
    let addr = serve(tonic::transport::Server::builder().add_service(alpha)).await;
    // field_added has no service: reflection lists nothing to read.
    let e = Source::parse(&format!("grpc://{addr}"))
        .load(&[])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("lists no services"), "{e}");
    let fds = leaked_fds("rpc_added", "new");
    let alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fds)
        .build_v1alpha()
        .unwrap();
    let addr = serve(tonic::transport::Server::builder().add_service(alpha)).await;
    let new = Source::parse(&format!("grpc://{addr}"))
        .load(&[])
        .await
        .unwrap();
    let report = compat::check(&load("rpc_added", "old"), &new, &CheckOptions::default());
    assert!(!report.is_breaking(), "{:#?}", report.findings);
    assert!(report.findings.iter().any(|f| f.rule == "RPC_ADDED"));
}

/// Imports of well-known types resolve without -I; Timestamp → Duration is the same bytes but
/// another JSON form.
#[test]
fn well_known_types_keep_their_json_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (dir, ty, file) in [(&a, "Timestamp", "timestamp"), (&b, "Duration", "duration")] {
        std::fs::create_dir_all(dir).unwrap();
        let text = format!(
            "syntax = \"proto3\";\npackage w.v1;\nimport \"google/protobuf/{file}.proto\";\nmessage E {{\n  google.protobuf.{ty} at = 1;\n}}\n"
        );
        std::fs::write(dir.join("e.proto"), text).unwrap();
    }
    let load = |d: &std::path::Path| {
        let (pool, names) = compat::source::compile_dir(d, &[]).unwrap();
        compat::Api {
            pool,
            files: names.into_iter().collect(),
            label: String::new(),
            live: None,
            editions: Default::default(),
        }
    };
    let report = compat::check(&load(&a), &load(&b), &CheckOptions::default());
    let f = report
        .breaking()
        .find(|f| f.rule == "FIELD_WIRE_JSON_COMPATIBLE_TYPE")
        .expect("JSON break");
    let c = f.confirmation.as_ref().unwrap();
    assert_eq!(c.outcome, Outcome::JsonOnly, "{c:?}");
    assert!(c.effect.contains("1970-01-01T00:00:01.500Z"), "{c:?}");
    let wire = compat::check(
        &load(&a),
        &load(&b),
        &CheckOptions {
            categories: vec![Category::Wire],
            ..Default::default()
        },
    );
    assert!(!wire.is_breaking(), "identical bytes: {:#?}", wire.findings);
}
