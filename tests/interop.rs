//! grpc's interop cases that need `grpc.testing.TestService` (`testbed serve --interop`):
//! status_code_and_message (with a non-ASCII, whitespace-laden message as special_status_message
//! sends) and custom_metadata, unary and full-duplex, each checked with the tonic client, with
//! a raw HTTP/2 client for where each echo travels, and judged by outside clients: Python grpcio
//! and grpcurl. The other interop cases are in tests/abuse.rs ("interop") and tests/hardening.rs.

use crate::common::raw::{frame, send_with};
use crate::common::{probe, probe_addr, temp_dir, tool};
use port::deployment::Deployment;
use port::server::{self, RunningServer, ServeOptions};
use prost::Message;
use services::interop::pb::test_service_client::TestServiceClient;
use services::interop::pb::{
    EchoStatus, Empty, Payload, ResponseParameters, SimpleRequest, StreamingOutputCallRequest,
};
use services::interop::{ECHO_INITIAL, ECHO_TRAILING_BIN, TEST_SERVICE};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// The interop description's status message.
const STATUS_MESSAGE: &str = "test status message";
/// special_status_message's: whitespace, a BMP and a non-BMP character, all to come back exactly.
const SPECIAL_MESSAGE: &str = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n";
/// custom_metadata's values.
const INITIAL_VALUE: &str = "test_initial_metadata_value";
const TRAILING_VALUE: [u8; 3] = [0xab, 0xab, 0xab];
/// The request and response payload sizes custom_metadata uses.
const REQUEST_BYTES: usize = 271_828;
const RESPONSE_BYTES: i32 = 314_159;

const UNARY_CALL: &str = "/grpc.testing.TestService/UnaryCall";

/// `deployment` with `--interop`, on 127.0.0.1 with an OS-chosen port.
async fn start_interop(deployment: Deployment) -> RunningServer {
    let options = ServeOptions {
        interop: true,
        ..ServeOptions::default()
    };
    let layout = deployment.layout(options.max_message_bytes).unwrap();
    server::start_with("127.0.0.1:0".parse().unwrap(), layout, "interop", &options)
        .await
        .expect("the interop server starts")
}

async fn interop_client(server: &RunningServer) -> TestServiceClient<Channel> {
    TestServiceClient::new(crate::common::channel(server).await)
}

fn status_request(message: &str) -> EchoStatus {
    EchoStatus {
        code: Code::Unknown as i32,
        message: message.to_string(),
    }
}

/// The status a full-duplex call ends with, wherever it arrives (at the call, or on the stream).
async fn full_duplex_status(
    client: &mut TestServiceClient<Channel>,
    request: StreamingOutputCallRequest,
) -> Status {
    let mut replies = match client.full_duplex_call(tokio_stream::iter([request])).await {
        Err(status) => return status,
        Ok(response) => response.into_inner(),
    };
    match replies.message().await {
        Ok(Some(reply)) => panic!("no reply was asked for, got {reply:?}"),
        Ok(None) => panic!("the call ended OK; a status was asked for"),
        Err(status) => status,
    }
}

fn with_echo_metadata<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert(ECHO_INITIAL, MetadataValue::from_static(INITIAL_VALUE));
    metadata.insert_bin(
        ECHO_TRAILING_BIN,
        MetadataValue::from_bytes(&TRAILING_VALUE),
    );
    request
}

fn zeros(size: usize) -> Option<Payload> {
    Some(Payload {
        r#type: 0,
        body: vec![0; size],
    })
}

fn assert_echoed(metadata: &MetadataMap, initial: bool, trailing: bool, what: &str) {
    let got_initial = metadata.get(ECHO_INITIAL).map(|v| v.as_bytes().to_vec());
    let want_initial = initial.then(|| INITIAL_VALUE.as_bytes().to_vec());
    assert_eq!(got_initial, want_initial, "{what}: {metadata:?}");
    let got_trailing = metadata
        .get_bin(ECHO_TRAILING_BIN)
        .map(|v| v.to_bytes().expect("valid base64").to_vec());
    assert_eq!(
        got_trailing,
        trailing.then(|| TRAILING_VALUE.to_vec()),
        "{what}: {metadata:?}"
    );
}

#[tokio::test]
async fn interop_status_code_and_message() {
    let server = start_interop(Deployment::SideBySide).await;
    let mut client = interop_client(&server).await;
    for message in [STATUS_MESSAGE, SPECIAL_MESSAGE] {
        let request = SimpleRequest {
            response_status: Some(status_request(message)),
            ..SimpleRequest::default()
        };
        let status = client.unary_call(request).await.expect_err("a status");
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unknown, message),
            "unary"
        );
        let request = StreamingOutputCallRequest {
            response_status: Some(status_request(message)),
            ..StreamingOutputCallRequest::default()
        };
        let status = full_duplex_status(&mut client, request).await;
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unknown, message),
            "full duplex"
        );
    }
    // A code that is no gRPC status is refused, not passed on.
    let request = SimpleRequest {
        response_status: Some(EchoStatus {
            code: 99,
            message: "x".into(),
        }),
        ..SimpleRequest::default()
    };
    let status = client.unary_call(request).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("99"), "{status:?}");
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn interop_custom_metadata() {
    let server = start_interop(Deployment::SideBySide).await;
    let mut client = interop_client(&server).await;

    let request = with_echo_metadata(SimpleRequest {
        response_size: RESPONSE_BYTES,
        payload: zeros(REQUEST_BYTES),
        ..SimpleRequest::default()
    });
    let response = client.unary_call(request).await.expect("the call succeeds");
    // tonic merges a unary call's trailers into its metadata; the raw client below tells
    // headers from trailers.
    assert_echoed(response.metadata(), true, true, "unary");
    let body = response.into_inner().payload.expect("a payload").body;
    assert_eq!(body.len(), RESPONSE_BYTES as usize);

    let request = with_echo_metadata(tokio_stream::iter([StreamingOutputCallRequest {
        response_parameters: vec![ResponseParameters {
            size: RESPONSE_BYTES,
            ..ResponseParameters::default()
        }],
        payload: zeros(REQUEST_BYTES),
        ..StreamingOutputCallRequest::default()
    }]));
    let response = client
        .full_duplex_call(request)
        .await
        .expect("the call opens");
    assert_echoed(response.metadata(), true, false, "full-duplex headers");
    let mut replies = response.into_inner();
    let reply = replies
        .message()
        .await
        .expect("a reply")
        .expect("one reply");
    assert_eq!(reply.payload.unwrap().body.len(), RESPONSE_BYTES as usize);
    assert!(replies.message().await.expect("ends OK").is_none());
    let trailers = replies.trailers().await.expect("trailers").expect("some");
    assert_echoed(&trailers, false, true, "full-duplex trailers");

    // Where each echo travels in a unary call, byte for byte: the initial one in the headers,
    // the -bin one (base64 on the wire, unpadded here) in the trailers.
    let message = SimpleRequest {
        response_size: 3,
        ..SimpleRequest::default()
    }
    .encode_to_vec();
    let reply = send_with(
        server.addr,
        UNARY_CALL,
        &[
            ("content-type", "application/grpc"),
            (ECHO_INITIAL, INITIAL_VALUE),
            (ECHO_TRAILING_BIN, "q6ur"),
        ],
        frame(false, message.len() as u32, &message),
    )
    .await;
    assert_eq!(reply.grpc_status, Some(0), "{reply:?}");
    assert_eq!(reply.headers.get(ECHO_INITIAL).unwrap(), INITIAL_VALUE);
    assert!(reply.headers.get(ECHO_TRAILING_BIN).is_none(), "{reply:?}");
    assert_eq!(reply.trailers.get(ECHO_TRAILING_BIN).unwrap(), "q6ur");
    assert!(reply.trailers.get(ECHO_INITIAL).is_none(), "{reply:?}");
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn interop_service_is_served_and_listed_only_with_the_flag() {
    let plain = crate::common::start(Deployment::SideBySide).await;
    let reply = send_with(
        plain.addr,
        UNARY_CALL,
        &[("content-type", "application/grpc")],
        frame(false, 0, &[]),
    )
    .await;
    assert_eq!(reply.grpc_status, Some(Code::Unimplemented as i32));
    assert!(!listed(&plain).await.contains(&TEST_SERVICE.to_string()));
    plain.shutdown().await.unwrap();

    // Routed (the router passes grpc.testing to the port's own routes) and mounted directly.
    for deployment in [Deployment::SideBySide, Deployment::Direct] {
        let server = start_interop(deployment).await;
        let mut client = interop_client(&server).await;
        client
            .empty_call(Empty {})
            .await
            .expect("EmptyCall answers");
        let streamed = client
            .streaming_output_call(StreamingOutputCallRequest {
                response_parameters: [1, 2, 3]
                    .map(|size| ResponseParameters {
                        size,
                        ..ResponseParameters::default()
                    })
                    .to_vec(),
                ..StreamingOutputCallRequest::default()
            })
            .await
            .expect("the call opens")
            .into_inner();
        let sizes: Vec<usize> = tokio_stream::StreamExt::collect::<Vec<_>>(streamed)
            .await
            .into_iter()
            .map(|reply| reply.expect("a reply").payload.unwrap().body.len())
            .collect();
        assert_eq!(sizes, [1, 2, 3], "{deployment}");
        let status = client.unimplemented_call(Empty {}).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{deployment}");
        assert!(listed(&server).await.contains(&TEST_SERVICE.to_string()));
        // The guard knows UnaryCall is unary: two request messages are refused.
        let two = [frame(false, 0, &[]), frame(false, 0, &[])].concat();
        let reply = send_with(
            server.addr,
            UNARY_CALL,
            &[("content-type", "application/grpc")],
            two,
        )
        .await;
        assert_eq!(reply.grpc_status, Some(Code::Internal as i32), "{reply:?}");
        assert!(reply.grpc_message.contains("exactly one"), "{reply:?}");
        probe(&server).await;
        server.shutdown().await.unwrap();
    }
}

/// Every service the port's reflection lists.
async fn listed(server: &RunningServer) -> Vec<String> {
    let mut client =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            crate::common::channel(server).await,
        );
    let MessageResponse::ListServicesResponse(list) =
        crate::reflection_health::reflect(&mut client, MessageRequest::ListServices(String::new()))
            .await
    else {
        panic!("expected a service list")
    };
    list.service.into_iter().map(|s| s.name).collect()
}

/// One line of what tests/python/interop_client.py observed.
#[derive(Debug, serde::Deserialize)]
struct Observed {
    case: String,
    code: i32,
    sent: Option<String>,
    message: Option<String>,
    payload_bytes: Option<serde_json::Value>,
    #[serde(default)]
    initial: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    trailing: std::collections::BTreeMap<String, String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn interop_status_and_metadata_judged_by_python_grpcio() {
    let Some(python) = tool(client::tools::python()) else {
        return;
    };
    let server = start_interop(Deployment::SideBySide).await;
    let out = temp_dir("interop-py");
    let root = env!("CARGO_MANIFEST_DIR");
    let output = tokio::process::Command::new(python)
        .arg(format!("{root}/tests/python/interop_client.py"))
        .args(["--addr", &server.addr.to_string()])
        .args(["--protos", &format!("{root}/proto")])
        .arg("--out")
        .arg(out.path())
        .args(["--message", STATUS_MESSAGE, "--message", SPECIAL_MESSAGE])
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let observed: Vec<Observed> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let cases: Vec<&str> = observed.iter().map(|o| o.case.as_str()).collect();
    assert_eq!(
        cases,
        [
            "status/unary",
            "status/full_duplex",
            "status/unary",
            "status/full_duplex",
            "metadata/unary",
            "metadata/full_duplex"
        ]
    );
    for seen in &observed[..4] {
        assert_eq!(seen.code, Code::Unknown as i32, "{seen:?}");
        assert_eq!(seen.message, seen.sent, "{seen:?}");
    }
    assert_eq!(observed[2].sent.as_deref(), Some(SPECIAL_MESSAGE));
    let trailing_hex = "ababab".to_string();
    for (seen, payload) in observed[4..].iter().zip([
        serde_json::json!(RESPONSE_BYTES),
        serde_json::json!([RESPONSE_BYTES]),
    ]) {
        assert_eq!(seen.code, 0, "{seen:?}");
        assert_eq!(seen.payload_bytes.as_ref(), Some(&payload), "{seen:?}");
        assert_eq!(
            seen.initial.get(ECHO_INITIAL).map(String::as_str),
            Some(INITIAL_VALUE)
        );
        assert_eq!(seen.trailing.get(ECHO_TRAILING_BIN), Some(&trailing_hex));
        assert!(!seen.initial.contains_key(ECHO_TRAILING_BIN), "{seen:?}");
        assert!(!seen.trailing.contains_key(ECHO_INITIAL), "{seen:?}");
    }
    probe(&server).await;
    server.shutdown().await.unwrap();
}

/// grpcurl's `-v` output of one call of `method` of the interop service: (stdout, stderr).
fn grpcurl(flags: &[&str], addr: &str, method: &str) -> Option<(String, String)> {
    let path = tool(client::tools::grpcurl())?;
    let output = std::process::Command::new(path)
        .args(["-plaintext", "-v"])
        .args(flags)
        .arg(addr)
        .arg(format!("{TEST_SERVICE}/{method}"))
        .output()
        .expect("grpcurl runs");
    Some((
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn interop_status_and_metadata_judged_by_grpcurl() {
    if tool(client::tools::grpcurl()).is_none() {
        return;
    }
    let server = start_interop(Deployment::SideBySide).await;
    let addr = server.addr.to_string();
    for message in [STATUS_MESSAGE, SPECIAL_MESSAGE] {
        for method in ["UnaryCall", "FullDuplexCall"] {
            let data = serde_json::json!({"response_status": {"code": 2, "message": message}});
            let (_, stderr) =
                tokio::task::block_in_place(|| grpcurl(&["-d", &data.to_string()], &addr, method))
                    .unwrap();
            let want = format!("  Code: Unknown\n  Message: {message}\n");
            assert!(stderr.contains(&want), "{method} {message:?}: {stderr}");
        }
    }
    for method in ["UnaryCall", "FullDuplexCall"] {
        let data = if method == "UnaryCall" {
            serde_json::json!({"response_size": 7})
        } else {
            serde_json::json!({"response_parameters": [{"size": 7}]})
        };
        let (stdout, stderr) = tokio::task::block_in_place(|| {
            grpcurl(
                &[
                    "-rpc-header",
                    &format!("{ECHO_INITIAL}: {INITIAL_VALUE}"),
                    // grpcurl decodes a -bin value from base64 before sending it.
                    "-rpc-header",
                    &format!("{ECHO_TRAILING_BIN}: q6ur"),
                    "-d",
                    &data.to_string(),
                ],
                &addr,
                method,
            )
        })
        .unwrap();
        let (headers, trailers) = stdout
            .split_once("Response trailers received:")
            .unwrap_or_else(|| panic!("{method}: no trailers in {stdout}\n{stderr}"));
        let headers = headers
            .split_once("Response headers received:")
            .unwrap_or_else(|| panic!("{method}: no headers in {stdout}"))
            .1;
        assert!(
            headers.contains(&format!("{ECHO_INITIAL}: {INITIAL_VALUE}\n")),
            "{method}: {stdout}"
        );
        assert!(!headers.contains(ECHO_TRAILING_BIN), "{method}: {stdout}");
        assert!(
            trailers.contains(&format!("{ECHO_TRAILING_BIN}: q6ur\n")),
            "{method}: {stdout}"
        );
        assert!(!trailers.contains(ECHO_INITIAL), "{method}: {stdout}");
    }
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn testbed_serve_mounts_the_interop_service_with_its_flag() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let args = ["serve", "--interop", "--addr", "127.0.0.1:0"];
    let child = port::child::ChildServer::testbed(exe, &args)
        .await
        .expect("testbed serve --interop starts");
    let channel = client::connect(child.addr).await.expect("connects");
    let mut client = TestServiceClient::new(channel);
    let request = SimpleRequest {
        response_status: Some(status_request(SPECIAL_MESSAGE)),
        ..SimpleRequest::default()
    };
    let status = client.unary_call(request).await.expect_err("a status");
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unknown, SPECIAL_MESSAGE)
    );
    probe_addr(child.addr).await;
}

/// One small streaming request cannot make the server wait half an hour or stream without end:
/// too long a wait in all is `INVALID_ARGUMENT`, too many responses `RESOURCE_EXHAUSTED`, each
/// before anything is sent, and the server keeps serving.
#[tokio::test]
async fn interop_streams_the_server_would_hold_too_long_are_refused() {
    let server = start_interop(Deployment::Direct).await;
    let mut client = interop_client(&server).await;
    let asking = |count: usize, interval_us: i32| StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: 1,
                interval_us,
                ..ResponseParameters::default()
            };
            count
        ],
        ..StreamingOutputCallRequest::default()
    };
    for (request, code) in [
        (asking(3, i32::MAX), Code::InvalidArgument),
        (asking(1_001, 0), Code::ResourceExhausted),
    ] {
        let status = match client.streaming_output_call(request).await {
            Err(status) => status,
            Ok(reply) => tokio_stream::StreamExt::next(&mut reply.into_inner())
                .await
                .expect("the stream ends with a status")
                .expect_err("nothing is streamed"),
        };
        assert_eq!(status.code(), code, "{status:?}");
    }
    let sizes = client
        .streaming_output_call(asking(2, 1))
        .await
        .expect("still serving");
    let replies: Vec<_> = tokio_stream::StreamExt::collect::<Vec<_>>(sizes.into_inner()).await;
    assert_eq!(replies.len(), 2);
}
