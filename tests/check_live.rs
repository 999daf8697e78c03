//! `testbed check` against real servers (issue 24): the testbed's own `testbed serve` and the
//! shop example's Python grpcio server, each compared with the proto folder it was built from,
//! say "no change" (their health and reflection services and reflection's missing comments are
//! no findings); and the exit code survives a reader that closes stdout early.

use crate::common::shop::{shop, shop_python};
use port::child::ChildServer;
use std::path::Path;
use std::process::{Output, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_testbed");

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

async fn check(list: &[&str]) -> Output {
    tokio::process::Command::new(EXE)
        .arg("check")
        .args(list)
        .kill_on_drop(true)
        .output()
        .await
        .expect("testbed check runs")
}

/// Exit code and stdout, both ways round.
async fn both_ways(dir: &str, server: &str) -> Vec<(Option<i32>, String)> {
    let mut out = Vec::new();
    for (old, new) in [(dir, server), (server, dir)] {
        let o = check(&[old, new]).await;
        assert!(
            o.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out.push((
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        ));
    }
    out
}

#[tokio::test]
async fn check_of_testbed_serve_against_its_protos_says_no_change() {
    let server = ChildServer::testbed(
        Path::new(EXE),
        &["serve", "--addr", "127.0.0.1:0", "--deployment", "v1-only"],
    )
    .await
    .expect("testbed serve starts");
    let addr = format!("grpc://{}", server.addr);
    let no_change = (Some(0), "Verdict: no change\n".to_string());
    assert_eq!(
        both_ways(&repo("proto/v1"), &addr).await,
        vec![no_change.clone(), no_change]
    );
    // Its health service is there, and counted when asked for.
    let o = check(&[&repo("proto/v1"), &addr, "--include-grpc-services"]).await;
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Service \"grpc.health.v1.Health\" was added"),
        "{text}"
    );
}

#[tokio::test]
async fn check_of_the_python_shop_server_against_its_protos_says_no_change() {
    let Some(python) = shop_python() else {
        return;
    };
    let server = shop(&python, "v1", &[]).await;
    let addr = format!("grpc://{}", server.addr);
    let no_change = (Some(0), "Verdict: no change\n".to_string());
    assert_eq!(
        both_ways(&repo("examples/shop/proto/shop/v1"), &addr).await,
        vec![no_change.clone(), no_change]
    );
    // v2 narrows price_cents: breaking, confirmed against the live v1 descriptors.
    let o = check(&[&addr, &repo("examples/shop/proto/shop/v2")]).await;
    assert_eq!(o.status.code(), Some(100), "{o:?}");
}

/// `testbed check ... | head -1`: stdout closed before the report is written keeps exit 100.
#[tokio::test]
async fn a_closed_stdout_keeps_exit_100() {
    let mut child = tokio::process::Command::new(EXE)
        .args(["check", &repo("proto/v2"), &repo("proto/v1")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("testbed check starts");
    // Closed before the check has compiled anything, so every write meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().await.expect("testbed check ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(100), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// An `https://` input is read over TLS with --ca (as the probe reaches one), and without
/// --ca the refusal says what is missing.
#[tokio::test]
async fn check_of_an_https_server_uses_the_tls_flags() {
    let (_, files, _dir) = crate::common::credentials::pki();
    let text = |p: &Path| p.display().to_string();
    let (cert, key, ca) = (
        text(&files.server_cert),
        text(&files.server_key),
        text(&files.ca_cert),
    );
    let server = ChildServer::testbed(
        Path::new(EXE),
        &[
            "serve",
            "--backend",
            "v1",
            "--addr",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    )
    .await
    .expect("testbed serve starts");
    let addr = format!("https://localhost:{}", server.addr.port());
    let o = check(&[&repo("proto/v1"), &addr, "--ca", &ca]).await;
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stdout).as_ref()),
        (Some(0), "Verdict: no change\n"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = check(&[&repo("proto/v1"), &addr]).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs --ca FILE"), "{stderr}");
}
