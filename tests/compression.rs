//! Compressed messages through the gateway and on the port (issue 23): Python grpcio clients
//! sending gzip and deflate through `testbed serve --upstream` to a Python grpcio upstream, and
//! to the port's own Incrementer; tonic clients sending zstd, gzip and deflate; an encoding the
//! upstream does not accept refused by the gateway with the ones it does; and an upstream that
//! compresses its replies read by reflection and by `testbed check grpc://`.

use crate::common::raw::{frame, send_with};
use crate::common::shop::{gateway, shop, shop_python};
use crate::common::{channel, start};
use port::deployment::Deployment;
use serde_json::Value;
use services::pb::v1;
use std::net::SocketAddr;
use std::path::Path;
use tonic::Code;
use tonic::codec::CompressionEncoding;

/// `tests/python/compressed_client.py`.
const CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/compressed_client.py"
);

/// `shop.v1.GetProductRequest { sku: "book-1" }`, encoded.
const GET_BOOK: &str = "0a06626f6f6b2d31";
/// "The Pragmatic Programmer", the book's name, as hex (it is in every reply about it).
const BOOK_NAME: &str = "54686520507261676d617469632050726f6772616d6d6572";
const GET_PRODUCT: &str = "/shop.v1.Shop/GetProduct";
const INCREMENT: &str = "/increment.v1.Incrementer/Increment";

/// One call of `method` with `request` (hex) by Python grpcio, its messages compressed with
/// `compression` (`gzip`, `deflate`, `none`): what the client printed.
fn grpcio(
    python: &Path,
    addr: SocketAddr,
    method: &str,
    request: &str,
    compression: &str,
) -> Value {
    let out = std::process::Command::new(python)
        .arg(CLIENT)
        .args(["--addr", &addr.to_string(), "--method", method])
        .args(["--request", request, "--compression", compression])
        .output()
        .expect("the Python client runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not the client's JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Asserts that `reply` is a success whose reply message contains `hex`.
fn served(reply: &Value, hex: &str, what: &str) {
    assert_eq!(reply["code"], 0, "{what}: {reply}");
    let message = reply["reply"].as_str().unwrap_or_default();
    assert!(message.contains(hex), "{what}: {reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_compressed_calls_pass_through_the_gateway_to_a_python_upstream() {
    let Some(python) = shop_python() else {
        return;
    };
    let upstream = shop(&python, "v1", &[]).await;
    let gw = gateway(&["--upstream".into(), format!("v1=1.0.0@{}", upstream.addr)]).await;
    tokio::task::block_in_place(|| {
        for compression in ["gzip", "deflate", "none"] {
            let direct = grpcio(&python, upstream.addr, GET_PRODUCT, GET_BOOK, compression);
            served(&direct, BOOK_NAME, &format!("{compression}, direct"));
            let through = grpcio(&python, gw.addr, GET_PRODUCT, GET_BOOK, compression);
            served(&through, BOOK_NAME, &format!("{compression}, gateway"));
            assert_eq!(through["initial"]["x-api-version"], "1.0.0", "{through}");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_compressed_calls_reach_the_ports_own_incrementer() {
    let Some(python) = shop_python() else {
        return;
    };
    for deployment in [Deployment::SideBySide, Deployment::Direct] {
        let server = start(deployment).await;
        tokio::task::block_in_place(|| {
            for compression in ["gzip", "deflate"] {
                // value: 41 in, 42 out.
                let reply = grpcio(&python, server.addr, INCREMENT, "0829", compression);
                served(&reply, "082a", &format!("{deployment}, {compression}"));
            }
        });
        server.shutdown().await.unwrap();
    }
}

/// A v1 request whose unknown field 15 pads it to `pad` zero bytes: small once compressed.
#[derive(Clone, PartialEq, prost::Message)]
struct Padded {
    #[prost(int64, tag = "1")]
    value: i64,
    #[prost(bytes = "vec", tag = "15")]
    pad: Vec<u8>,
}

#[tokio::test]
async fn tonic_zstd_gzip_and_deflate_requests_are_served_and_their_decompressed_size_is_bounded() {
    let server = start(Deployment::SideBySide).await;
    for encoding in [
        CompressionEncoding::Zstd,
        CompressionEncoding::Gzip,
        CompressionEncoding::Deflate,
    ] {
        let mut client = v1::incrementer_client::IncrementerClient::new(channel(&server).await)
            .send_compressed(encoding);
        let reply = client
            .increment(v1::IncrementRequest { value: 41 })
            .await
            .unwrap_or_else(|status| panic!("{encoding:?}: {status:?}"));
        assert_eq!(reply.into_inner().value, 42, "{encoding:?}");
    }
    // 5 MiB of zeros compress to a few KiB, under the guard's 4 MiB limit on what arrives;
    // tonic stops decompressing at the same 4 MiB.
    let mut grpc =
        tonic::client::Grpc::new(channel(&server).await).send_compressed(CompressionEncoding::Zstd);
    grpc.ready().await.unwrap();
    let request = Padded {
        value: 1,
        pad: vec![0; 5 * 1024 * 1024],
    };
    let status = grpc
        .unary(
            tonic::Request::new(request),
            http::uri::PathAndQuery::from_static(INCREMENT),
            tonic_prost::ProstCodec::<Padded, v1::IncrementReply>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("4194304"), "{status:?}");
    // Still serving.
    let mut client = v1::incrementer_client::IncrementerClient::new(channel(&server).await);
    assert_eq!(
        client
            .increment(v1::IncrementRequest { value: 1 })
            .await
            .unwrap()
            .into_inner()
            .value,
        2
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoding_the_upstream_does_not_accept_is_refused_by_the_gateway_naming_the_ones_it_does()
 {
    let Some(python) = shop_python() else {
        return;
    };
    let upstream = shop(&python, "v1", &[]).await;
    let gw = gateway(&["--upstream".into(), format!("v1=1.0.0@{}", upstream.addr)]).await;
    // A first reply tells the gateway what the upstream accepts (grpcio: identity, deflate, gzip).
    let first =
        tokio::task::block_in_place(|| grpcio(&python, gw.addr, GET_PRODUCT, GET_BOOK, "none"));
    served(&first, BOOK_NAME, "identity");
    for encoding in ["zstd", "snappy"] {
        let reply = send_with(
            gw.addr,
            GET_PRODUCT,
            &[
                ("content-type", "application/grpc"),
                ("grpc-encoding", encoding),
            ],
            frame(true, 8, &[0; 8]),
        )
        .await;
        assert_eq!(
            reply.grpc_status,
            Some(Code::Unimplemented as i32),
            "{reply:?}"
        );
        assert!(
            reply.grpc_message.contains(&format!("\"{encoding}\""))
                && reply.grpc_message.contains("not accepted by backend v1"),
            "the gateway's refusal, not the upstream's: {reply:?}"
        );
        let accepted = reply.headers["grpc-accept-encoding"].to_str().unwrap();
        assert!(
            accepted.contains("gzip") && !accepted.contains(encoding),
            "{reply:?}"
        );
    }
    // gzip, which it accepts, still passes.
    let gzip =
        tokio::task::block_in_place(|| grpcio(&python, gw.addr, GET_PRODUCT, GET_BOOK, "gzip"));
    served(&gzip, BOOK_NAME, "gzip after the refusals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_compresses_its_replies_is_read_by_reflection_and_by_check() {
    let Some(python) = shop_python() else {
        return;
    };
    let upstream = shop(&python, "v1", &["--compression", "gzip"]).await;
    // The gateway reads its descriptors by reflection at start (it exits 1 when it cannot).
    let gw = gateway(&["--upstream".into(), format!("v1=1.0.0@{}", upstream.addr)]).await;
    let reply =
        tokio::task::block_in_place(|| grpcio(&python, gw.addr, GET_PRODUCT, GET_BOOK, "none"));
    served(&reply, BOOK_NAME, "a gzip reply through the gateway");
    // Against itself: read twice by reflection, nothing breaks (exit 0; 1 when unreadable).
    let live = format!("grpc://{}", upstream.addr);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["check", &live, &live])
        .output()
        .await
        .expect("testbed check runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
