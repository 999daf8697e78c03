//! gRPC's interop test service, `grpc.testing.TestService` (the protos in `proto/grpc/testing`,
//! vendored from gRPC), as grpc's interop-test-descriptions describe the server side: the cases
//! that need a service echoing what the client asked for (`status_code_and_message`,
//! `custom_metadata`) run against it. `testbed serve --interop` mounts it beside the API, behind
//! the same guard; without the flag the port does not serve it.
//!
//! Server features implemented: EmptyCall, UnaryCall, CacheableUnaryCall, StreamingOutputCall,
//! StreamingInputCall and FullDuplexCall, with Echo Status (`response_status`), Echo Metadata
//! ([`EchoMetadata`]) and `interval_us`. Not implemented, each answering `UNIMPLEMENTED` with a
//! message saying so: HalfDuplexCall (it buffers a whole stream) and compressed responses (the
//! port speaks identity only). The auth echoes (`fill_username`, `fill_oauth_scope`) stay
//! empty, as the description says for a call that was not authenticated.

use crate::stream::ReplyStream;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status, Streaming};

/// Code generated from `proto/grpc/testing` by tonic-prost-build: messages, clients, servers.
#[allow(missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("grpc.testing");
}

use pb::test_service_server::{TestService, TestServiceServer};
use pb::{
    EchoStatus, Empty, Payload, PayloadType, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};

/// The encoded `FileDescriptorSet` of the interop protos, for reflection when mounted.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/interop_descriptor.bin"));

/// Full gRPC name of the interop service.
pub const TEST_SERVICE: &str = "grpc.testing.TestService";

/// Request metadata the server echoes in its response headers (Echo Metadata).
pub const ECHO_INITIAL: &str = "x-grpc-test-echo-initial";
/// Request metadata the server echoes in its trailers (Echo Metadata).
pub const ECHO_TRAILING_BIN: &str = "x-grpc-test-echo-trailing-bin";

/// The interop service, mounted as [`server`] builds it.
#[derive(Debug, Clone)]
pub struct Interop {
    max_message_bytes: usize,
}

/// The interop service ready to mount: its tonic server limited to messages of
/// `max_message_bytes`, inside [`EchoMetadata`].
pub fn server(max_message_bytes: usize) -> EchoMetadata<TestServiceServer<Interop>> {
    EchoMetadata {
        inner: TestServiceServer::new(Interop { max_message_bytes })
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes),
    }
}

impl Interop {
    /// A payload of `size` zero bytes (COMPRESSABLE, the only type the protos define).
    fn payload(&self, response_type: i32, size: i32) -> Result<Payload, Status> {
        if PayloadType::try_from(response_type).is_err() {
            return Err(Status::invalid_argument(format!(
                "response_type {response_type} is not a PayloadType; this server sends \
                 COMPRESSABLE (0)"
            )));
        }
        let size = usize::try_from(size)
            .map_err(|_| Status::invalid_argument(format!("payload size {size} is negative")))?;
        // The framing and the message's own fields need a few bytes beside the body.
        if size > self.max_message_bytes.saturating_sub(16) {
            return Err(Status::resource_exhausted(format!(
                "a payload of {size} bytes does not fit this server's message limit of {} bytes",
                self.max_message_bytes
            )));
        }
        Ok(Payload {
            r#type: PayloadType::Compressable.into(),
            body: vec![0; size],
        })
    }

    /// One streamed response per parameter, after its `interval_us`.
    async fn respond(
        &self,
        response_type: i32,
        parameters: &ResponseParameters,
    ) -> Result<StreamingOutputCallResponse, Status> {
        refuse_compression(
            parameters.compressed.as_ref(),
            "response_parameters.compressed",
        )?;
        let interval = u64::try_from(parameters.interval_us).map_err(|_| {
            Status::invalid_argument(format!(
                "response_parameters.interval_us {} is negative",
                parameters.interval_us
            ))
        })?;
        if interval > 0 {
            tokio::time::sleep(Duration::from_micros(interval)).await;
        }
        Ok(StreamingOutputCallResponse {
            payload: Some(self.payload(response_type, parameters.size)?),
        })
    }

    /// The responses to one streaming request, in order, ending with its `response_status`
    /// when it asks for one.
    fn responses(
        &self,
        request: StreamingOutputCallRequest,
    ) -> ReplyStream<StreamingOutputCallResponse> {
        let this = self.clone();
        Box::pin(async_stream::try_stream! {
            echo_status(request.response_status.as_ref())?;
            check_plan(&request.response_parameters)?;
            for parameters in &request.response_parameters {
                yield this.respond(request.response_type, parameters).await?;
            }
        })
    }
}

/// The longest a streaming request may ask the server to wait in all (the sum of its
/// `interval_us`): one small request must not hold a stream for half an hour.
const MAX_TOTAL_INTERVAL_US: i64 = 10_000_000;

/// The most responses one streaming request may ask for: it must not make the server stream
/// gigabytes.
const MAX_RESPONSES: usize = 1_000;

/// Refuses a streaming request whose responses would take too long or be too many, before
/// any is sent.
fn check_plan(parameters: &[ResponseParameters]) -> Result<(), Status> {
    if parameters.len() > MAX_RESPONSES {
        return Err(Status::resource_exhausted(format!(
            "{} response_parameters asked for; this server sends at most {MAX_RESPONSES} per request",
            parameters.len()
        )));
    }
    let total: i64 = parameters
        .iter()
        .map(|p| i64::from(p.interval_us.max(0)))
        .sum();
    if total > MAX_TOTAL_INTERVAL_US {
        return Err(Status::invalid_argument(format!(
            "the response_parameters' interval_us add up to {total} µs; this server waits at \
             most {MAX_TOTAL_INTERVAL_US} µs per request"
        )));
    }
    Ok(())
}

/// Echo Status: a `response_status` with a non-zero code ends the call with that code and
/// message, exactly; code 0 asks for nothing.
fn echo_status(status: Option<&EchoStatus>) -> Result<(), Status> {
    let Some(status) = status.filter(|s| s.code != 0) else {
        return Ok(());
    };
    if !(1..=16).contains(&status.code) {
        return Err(Status::invalid_argument(format!(
            "response_status.code {} is not a gRPC status code (0 to 16)",
            status.code
        )));
    }
    Err(Status::new(Code::from_i32(status.code), &status.message))
}

/// Compressed responses are not sent: the port speaks identity only.
fn refuse_compression(flag: Option<&pb::BoolValue>, field: &str) -> Result<(), Status> {
    if flag.is_some_and(|f| f.value) {
        return Err(Status::unimplemented(format!(
            "{field} asks for a compressed response; this server sends identity only"
        )));
    }
    Ok(())
}

/// CompressedRequest: a request the client says it compressed was not (the port accepts only
/// identity), which the interop description answers with INVALID_ARGUMENT.
fn expect_uncompressed(flag: Option<&pb::BoolValue>) -> Result<(), Status> {
    if flag.is_some_and(|f| f.value) {
        return Err(Status::invalid_argument(
            "expect_compressed is set, but the request was not compressed (this server \
             accepts identity only)",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl TestService for Interop {
    async fn empty_call(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let request = request.into_inner();
        echo_status(request.response_status.as_ref())?;
        expect_uncompressed(request.expect_compressed.as_ref())?;
        refuse_compression(request.response_compressed.as_ref(), "response_compressed")?;
        Ok(Response::new(SimpleResponse {
            payload: Some(self.payload(request.response_type, request.response_size)?),
            ..SimpleResponse::default()
        }))
    }

    async fn cacheable_unary_call(
        &self,
        _request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        // The request is ignored; the payload differs on every call, and proxies may cache it.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut response = Response::new(SimpleResponse {
            payload: Some(Payload {
                r#type: PayloadType::Compressable.into(),
                body: now.to_string().into_bytes(),
            }),
            ..SimpleResponse::default()
        });
        response.metadata_mut().insert(
            "cache-control",
            tonic::metadata::MetadataValue::from_static("max-age=60"),
        );
        Ok(response)
    }

    type StreamingOutputCallStream = ReplyStream<StreamingOutputCallResponse>;

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<Self::StreamingOutputCallStream>, Status> {
        Ok(Response::new(self.responses(request.into_inner())))
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let mut inbound = request.into_inner();
        let mut total: i32 = 0;
        while let Some(request) = inbound.message().await? {
            expect_uncompressed(request.expect_compressed.as_ref())?;
            let size = request.payload.map_or(0, |p| p.body.len());
            total = i32::try_from(size)
                .ok()
                .and_then(|size| total.checked_add(size))
                .ok_or_else(|| {
                    Status::out_of_range(
                        "the payloads add up to more than aggregated_payload_size (int32) holds",
                    )
                })?;
        }
        Ok(Response::new(StreamingInputCallResponse {
            aggregated_payload_size: total,
        }))
    }

    type FullDuplexCallStream = ReplyStream<StreamingOutputCallResponse>;

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::FullDuplexCallStream>, Status> {
        let mut inbound = request.into_inner();
        let this = self.clone();
        Ok(Response::new(Box::pin(async_stream::try_stream! {
            while let Some(request) = inbound.message().await? {
                echo_status(request.response_status.as_ref())?;
                check_plan(&request.response_parameters)?;
                for parameters in &request.response_parameters {
                    yield this.respond(request.response_type, parameters).await?;
                }
            }
        })))
    }

    type HalfDuplexCallStream = ReplyStream<StreamingOutputCallResponse>;

    async fn half_duplex_call(
        &self,
        _request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::HalfDuplexCallStream>, Status> {
        Err(Status::unimplemented(
            "grpc.testing.TestService/HalfDuplexCall is not implemented here: it would buffer \
             the whole request stream; FullDuplexCall answers each request as it comes",
        ))
    }

    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "grpc.testing.TestService/UnimplementedCall is unimplemented on purpose (the interop \
             case unimplemented_method)",
        ))
    }
}

/// Echo Metadata around a service: a request's `x-grpc-test-echo-initial` comes back in the
/// response headers and its `x-grpc-test-echo-trailing-bin` in the trailers, byte for byte.
/// tonic lets a handler set response headers but not trailers of a successful call, so this is
/// done at the HTTP level, as tonic's own interop server does.
#[derive(Debug, Clone)]
pub struct EchoMetadata<S> {
    inner: S,
}

impl<S: NamedService> NamedService for EchoMetadata<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for EchoMetadata<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let initial = request.headers().get(ECHO_INITIAL).cloned();
        let trailing = request.headers().get(ECHO_TRAILING_BIN).cloned();
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            if let Some(value) = initial {
                response.headers_mut().insert(ECHO_INITIAL, value);
            }
            let Some(value) = trailing else {
                return Ok(response);
            };
            // A trailers-only response (an error before any message) has its trailers in the
            // headers: the status is there, and the body is empty.
            if response.headers().contains_key("grpc-status") {
                response.headers_mut().insert(ECHO_TRAILING_BIN, value);
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(WithTrailer {
                    inner: body,
                    trailer: Some(value),
                })
            }))
        })
    }
}

/// A response body whose trailers get `x-grpc-test-echo-trailing-bin`.
struct WithTrailer {
    inner: Body,
    trailer: Option<HeaderValue>,
}

impl http_body::Body for WithTrailer {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(match frame {
            Some(Ok(frame)) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    if let Some(value) = self.trailer.take() {
                        trailers.insert(ECHO_TRAILING_BIN, value);
                    }
                    Some(Ok(Frame::trailers(trailers)))
                }
                Err(data) => Some(Ok(data)),
            },
            // tonic always ends a gRPC response with trailers; should a body end without
            // them, the echo still goes out as trailers of its own.
            None => self.trailer.take().map(|value| {
                let mut trailers = HeaderMap::new();
                trailers.insert(ECHO_TRAILING_BIN, value);
                Ok(Frame::trailers(trailers))
            }),
            other => other,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream() && self.trailer.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
