//! `testbed pki DIR`: the files it writes serve the README's TLS recipes as they are written
//! there: the port over mutual TLS judged by grpcurl, and the admin API over https taking
//! alice's client certificate by its name, refusing bob's (same CA) and another CA's alice.

use crate::common::{temp_dir, tool};
use port::child::ChildServer;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn testbed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("the testbed binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn pki_writes_a_ca_a_server_and_named_clients_with_private_keys_and_keeps_existing_files() {
    let dir = temp_dir("pki-files");
    let out = dir.path().join("certs");
    let out_s = out.to_str().unwrap();
    let made = testbed(&["pki", out_s, "--client", "alice", "--client", "bob"]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    for name in ["ca", "server", "alice", "bob"] {
        let pem = std::fs::read_to_string(out.join(format!("{name}.pem"))).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{name}");
        let key = out.join(format!("{name}.key"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}.key");
        assert!(text(&made.stdout).contains(&format!("{name}.key")));
    }
    assert!(
        !out.join("client.pem").exists(),
        "--client replaces the default client"
    );
    let again = testbed(&["pki", out_s]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("exists already") && text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    let forced = testbed(&["pki", out_s, "--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert!(out.join("client.pem").exists());
    let bad = testbed(&["pki", out_s, "--force", "--client", "../x"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    let twice = testbed(&["pki", out_s, "--force", "--client", "server"]);
    assert!(!twice.status.success());
    assert!(text(&twice.stderr).contains("named twice"));
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_files_serve_mutual_tls_to_grpcurl_and_name_admin_callers() {
    let Some(grpcurl) = tool(client::tools::grpcurl()) else {
        return;
    };
    let dir = temp_dir("pki-serve");
    let d = dir.path();
    let made = testbed(&[
        "pki",
        d.to_str().unwrap(),
        "--client",
        "alice",
        "--client",
        "bob",
    ]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let (ca, server_pem, server_key) = (
        path(d, "ca.pem"),
        path(d, "server.pem"),
        path(d, "server.key"),
    );
    let (alice, alice_key) = (path(d, "alice.pem"), path(d, "alice.key"));
    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let args = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--tls-cert",
        &server_pem,
        "--tls-key",
        &server_key,
        "--tls-client-ca",
        &ca,
    ];
    let server = ChildServer::testbed(exe, &args)
        .await
        .expect("serves over mutual TLS");
    let addr = server.addr.to_string();
    let grpcurl_run = |extra: &[&str]| {
        let mut command = Command::new(&grpcurl);
        command
            .args(["-cacert", &ca])
            .args(extra)
            .args([&addr, "list"]);
        command.output().expect("grpcurl runs")
    };
    let listed =
        tokio::task::block_in_place(|| grpcurl_run(&["-cert", &alice, "-key", &alice_key]));
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(
        text(&listed.stdout).contains("increment.v1.Incrementer"),
        "{}",
        text(&listed.stdout)
    );
    let bare = tokio::task::block_in_place(|| grpcurl_run(&[]));
    assert!(
        !bare.status.success(),
        "served without a client certificate"
    );

    // The admin API over https, for alice's certificate only.
    let other = testbed(&[
        "pki",
        d.join("other").to_str().unwrap(),
        "--client",
        "alice",
    ]);
    assert!(other.status.success());
    let mut command = tokio::process::Command::new(exe);
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--deployment", "v1-only"])
        .args([
            "--admin-addr",
            "127.0.0.1:0",
            "--admin-tls-cert",
            &server_pem,
        ])
        .args(["--admin-tls-key", &server_key, "--admin-client-ca", &ca])
        .args(["--admin-client-name", "alice"])
        .env("RUST_LOG", "error");
    let mut router = ChildServer::spawn(command, "the router")
        .await
        .expect("starts");
    let line = router.next_line().await.unwrap();
    let admin = line.rsplit(' ').next().unwrap().to_string();
    assert!(admin.starts_with("https://127.0.0.1:"), "{line}");
    let list = |cert: &str, key: &str| {
        testbed(&[
            "route", "list", "--admin", &admin, "--ca", &ca, "--cert", cert, "--key", key,
        ])
    };
    let by_alice = tokio::task::block_in_place(|| list(&alice, &alice_key));
    assert!(by_alice.status.success(), "{}", text(&by_alice.stderr));
    assert!(
        text(&by_alice.stdout).contains("v1"),
        "{}",
        text(&by_alice.stdout)
    );
    // Signed by the same CA, but named bob: not a name --admin-client-name allows.
    let by_bob = tokio::task::block_in_place(|| list(&path(d, "bob.pem"), &path(d, "bob.key")));
    assert!(!by_bob.status.success(), "bob was let in");
    assert!(
        text(&by_bob.stderr).contains("bob"),
        "{}",
        text(&by_bob.stderr)
    );
    // Another CA's certificate, of the same name: refused at the handshake.
    let stranger = tokio::task::block_in_place(|| {
        list(&path(d, "other/alice.pem"), &path(d, "other/alice.key"))
    });
    assert!(
        !stranger.status.success(),
        "another CA's certificate was let in"
    );
    router.kill().await.unwrap();
    server.kill().await.unwrap();
}
