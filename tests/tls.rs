//! TLS and mutual TLS on the port, with certificates made on the fly ([`port::tls::TestPki`]):
//! the Rust clients, grpcurl and Python grpcio are served over TLS (health and reflection
//! included); a client without a certificate, with one from another CA or with an expired one
//! is refused at the handshake, plaintext to a TLS port is refused, and the server keeps
//! serving. A router reaches an `https://` upstream with a CA file.

use crate::common::credentials::pki;
use crate::common::{temp_dir, tool};
use client::IncrementerClient;
use port::deployment::Deployment;
use port::server::{self, RunningServer, ServeOptions};
use port::tls::{ClientTls, PkiFiles, TestPki};
use services::Api;
use std::process::Command;
use std::time::Duration;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

async fn start_tls(files: &PkiFiles, mutual: bool) -> RunningServer {
    let options = ServeOptions {
        tls: TestPki::options(files, mutual),
        ..ServeOptions::default()
    };
    let deployment = Deployment::SideBySide;
    let layout = deployment.layout(options.max_message_bytes).unwrap();
    server::start_with("127.0.0.1:0".parse().unwrap(), layout, "tls", &options)
        .await
        .expect("the TLS server starts")
}

/// A v1 and a v2 call, health and reflection, over TLS with `tls`.
async fn served_over_tls(server: &RunningServer, tls: &ClientTls) {
    let channel = port::tls::channel(server.addr, tls)
        .await
        .expect("a TLS client connects");
    let v1 = IncrementerClient::new(Api::V1, channel.clone());
    assert_eq!(v1.increment(41, None, 0).await.unwrap().value, 42);
    let v2 = IncrementerClient::new(Api::V2, channel.clone());
    let replies = v2.increment_stream(&[1, 2, 3], Some(2)).await.unwrap();
    let values: Vec<i64> = replies.iter().map(|r| r.value).collect();
    assert_eq!(values, [3, 4, 5]);
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers over TLS")
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection answers over TLS")
        .into_inner();
    let listed = format!("{:?}", replies.message().await.unwrap());
    assert!(listed.contains("increment.v2.Incrementer"), "{listed}");
}

/// Whether a call with `tls` fails (at connect or at the first call).
async fn refused(server: &RunningServer, tls: &ClientTls) -> bool {
    let Ok(channel) = port::tls::channel(server.addr, tls).await else {
        return true;
    };
    let client = IncrementerClient::new(Api::V1, channel);
    tokio::time::timeout(Duration::from_secs(30), client.increment(1, None, 0))
        .await
        .expect("the refusal is prompt, not a hang")
        .is_err()
}

#[tokio::test]
async fn rust_clients_are_served_over_tls_and_plaintext_is_refused() {
    let (pki, files, _dir) = pki();
    let server = start_tls(&files, false).await;
    served_over_tls(&server, &pki.client(None)).await;

    // Plaintext h2c to the TLS port.
    let plaintext = match client::connect(server.addr).await {
        Err(_) => true,
        Ok(channel) => IncrementerClient::new(Api::V1, channel)
            .increment(1, None, 0)
            .await
            .is_err(),
    };
    assert!(plaintext, "plaintext was served on a TLS port");
    // A client that does not trust the server's CA.
    let other = TestPki::generate().unwrap();
    assert!(refused(&server, &other.client(None)).await);
    served_over_tls(&server, &pki.client(None)).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_good_certificate() {
    let (pki, files, _dir) = pki();
    let server = start_tls(&files, true).await;
    let good = pki.client(Some((&pki.client_cert, &pki.client_key)));
    served_over_tls(&server, &good).await;
    let cases = [
        ("no certificate", pki.client(None)),
        (
            "a certificate from another CA",
            pki.client(Some((&pki.stranger_cert, &pki.stranger_key))),
        ),
        (
            "an expired certificate",
            pki.client(Some((&pki.expired_cert, &pki.expired_key))),
        ),
    ];
    for (case, tls) in cases {
        assert!(refused(&server, &tls).await, "{case} was served");
        // The server keeps serving good clients.
        served_over_tls(&server, &good).await;
    }
    server.shutdown().await.unwrap();
}

fn grpcurl(args: &[&str]) -> std::process::Output {
    let path = tool(client::tools::grpcurl()).expect("checked by the caller");
    Command::new(path).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_calls_and_reflects_over_tls_and_mutual_tls() {
    if tool(client::tools::grpcurl()).is_none() {
        return;
    }
    let (_, files, _dir) = pki();
    let ca = files.ca_cert.to_str().unwrap();
    let cert = files.client_cert.to_str().unwrap();
    let key = files.client_key.to_str().unwrap();
    for mutual in [false, true] {
        let server = start_tls(&files, mutual).await;
        let addr = server.addr.to_string();
        let mut trust = vec!["-cacert", ca];
        if mutual {
            trust.extend(["-cert", cert, "-key", key]);
        }
        let call = |extra: &[&str]| {
            let mut args = trust.clone();
            args.extend_from_slice(extra);
            tokio::task::block_in_place(|| grpcurl(&args))
        };
        let list = call(&[addr.as_str(), "list"]);
        let listed = String::from_utf8_lossy(&list.stdout);
        assert!(list.status.success(), "{list:?}");
        assert!(listed.contains("increment.v1.Incrementer"), "{listed}");
        assert!(listed.contains("grpc.health.v1.Health"), "{listed}");
        let reply = call(&[
            "-d",
            r#"{"value": 41}"#,
            addr.as_str(),
            "increment.v1.Incrementer/Increment",
        ]);
        assert!(reply.status.success(), "{reply:?}");
        assert!(
            String::from_utf8_lossy(&reply.stdout).contains("42"),
            "{reply:?}"
        );
        let health = call(&[addr.as_str(), "grpc.health.v1.Health/Check"]);
        assert!(
            String::from_utf8_lossy(&health.stdout).contains("SERVING"),
            "{health:?}"
        );
        if mutual {
            // Without its certificate grpcurl is refused.
            let bare = tokio::task::block_in_place(|| grpcurl(&["-cacert", ca, &addr, "list"]));
            assert!(!bare.status.success(), "{bare:?}");
        }
        // Plaintext grpcurl to the TLS port.
        let plain = tokio::task::block_in_place(|| grpcurl(&["-plaintext", &addr, "list"]));
        assert!(!plain.status.success(), "{plain:?}");
        server.shutdown().await.unwrap();
    }
}

/// Python grpcio over TLS: one raw v1 Increment (value 41), printing the reply as hex, or the
/// status code's name when refused.
const PYTHON_TLS_CALL: &str = r#"
import sys, grpc
addr, ca, cert, key = sys.argv[1:5]
read = lambda path: open(path, "rb").read() if path else None
creds = grpc.ssl_channel_credentials(
    root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert))
channel = grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", "localhost")])
call = channel.unary_unary("/increment.v1.Incrementer/Increment")
try:
    print(call(b"\x08\x29", timeout=20).hex())
except grpc.RpcError as err:
    print(err.code().name)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn python_grpcio_is_served_over_tls_and_mutual_tls() {
    let Some(python) = tool(client::tools::python()) else {
        return;
    };
    let (_, files, _dir) = pki();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let python_call = |addr: &str, cert: &str, key: &str| {
        let output = Command::new(&python)
            .args([
                "-c",
                PYTHON_TLS_CALL,
                addr,
                &path(&files.ca_cert),
                cert,
                key,
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    for mutual in [false, true] {
        let server = start_tls(&files, mutual).await;
        let addr = server.addr.to_string();
        let (cert, key) = (path(&files.client_cert), path(&files.client_key));
        let reply = tokio::task::block_in_place(|| python_call(&addr, &cert, &key));
        assert_eq!(reply, "082a", "mutual={mutual}");
        if mutual {
            let bare = tokio::task::block_in_place(|| python_call(&addr, "", ""));
            assert_eq!(bare, "UNAVAILABLE", "served without a client certificate");
            let (cert, key) = (path(&files.expired_cert), path(&files.expired_key));
            let expired = tokio::task::block_in_place(|| python_call(&addr, &cert, &key));
            assert_eq!(expired, "UNAVAILABLE", "served with an expired certificate");
        }
        server.shutdown().await.unwrap();
    }
}

/// `testbed serve --backend v2` over TLS with `files`' server certificate, on a free port.
async fn tls_backend(files: &PkiFiles) -> port::child::ChildServer {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let args = [
        "serve",
        "--backend",
        "v2",
        "--addr",
        "127.0.0.1:0",
        "--tls-cert",
        files.server_cert.to_str().unwrap(),
        "--tls-key",
        files.server_key.to_str().unwrap(),
    ];
    port::child::ChildServer::testbed(exe, &args)
        .await
        .expect("the TLS backend starts")
}

/// A router port in this process over `table`, on a free port.
async fn routed(table: router::RouteTable) -> RunningServer {
    server::start_layout(
        "127.0.0.1:0".parse().unwrap(),
        port::Layout::Routed(table),
        "router",
    )
    .await
    .unwrap()
}

/// What a v2 client gets for `increment(1, step 2, id 7)` through `server`.
async fn increment_through(server: &RunningServer) -> Result<(i64, u64), tonic::Status> {
    let client = IncrementerClient::connect(Api::V2, server.addr)
        .await
        .unwrap();
    let reply = client.increment(1, Some(2), 7).await?;
    Ok((reply.value, reply.request_id))
}

/// The files of a CA nobody here trusts, in a folder of their own (kept while it lives).
fn foreign_ca() -> (PkiFiles, tempfile::TempDir) {
    let dir = temp_dir("tls-other");
    let files = TestPki::generate().unwrap().write_to(dir.path()).unwrap();
    (files, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_reaches_an_https_upstream_with_a_ca_file() {
    let (_, files, _dir) = pki();
    let backend = tls_backend(&files).await;
    let spec: port::upstream::UpstreamSpec = format!("v2=2.0.0@https://{}", backend.addr)
        .parse()
        .unwrap();
    assert!(spec.backend_with_ca(None).is_err(), "https needs a CA");
    let catalog = || port::deployment::catalog().unwrap();
    let upstream = spec.backend_with_ca(Some(&files.ca_cert)).unwrap();
    let server = routed(router::RouteTable::new(catalog(), vec![upstream]).unwrap()).await;
    assert_eq!(increment_through(&server).await.unwrap(), (3, 7));

    // Trusting another CA, the upstream is refused: UNAVAILABLE, not a wrong answer.
    let (other, _other_dir) = foreign_ca();
    let distrusting = spec.backend_with_ca(Some(&other.ca_cert)).unwrap();
    let refusing = routed(router::RouteTable::new(catalog(), vec![distrusting]).unwrap()).await;
    let status = increment_through(&refusing).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    refusing.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstreams_descriptors_are_read_by_reflection_over_tls() {
    use port::upstream::DescriptorOrigin;
    let (_, files, _dir) = pki();
    let backend = tls_backend(&files).await;
    let spec: port::upstream::UpstreamSpec = format!("v2=2.0.0@https://{}", backend.addr)
        .parse()
        .unwrap();
    let gateway = port::upstream::gateway(std::slice::from_ref(&spec), &[], Some(&files.ca_cert))
        .await
        .expect("the upstream's descriptors are read over TLS");
    let upstream = &gateway.upstreams[0];
    assert_eq!(upstream.origin, DescriptorOrigin::Reflection);
    assert_eq!(upstream.packages, ["increment.v2"]);
    let server = routed(gateway.table).await;
    assert_eq!(increment_through(&server).await.unwrap(), (3, 7));
    server.shutdown().await.unwrap();

    // Without a CA the setting to fix is named, not hidden behind advice about reflection.
    let err = port::upstream::gateway(std::slice::from_ref(&spec), &[], None)
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("needs --upstream-ca"), "{err}");
    assert!(!err.contains("must serve gRPC reflection"), "{err}");

    // Trusting another CA, the upstream answers but cannot be read: refused at start, not
    // taken at its version's word.
    let (other, _other_dir) = foreign_ca();
    let err = port::upstream::gateway(&[spec], &[], Some(&other.ca_cert))
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("cannot learn which API upstream v2"), "{err}");
    assert!(err.contains("https://"), "{err}");
}
