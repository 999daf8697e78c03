//! A gRPC reply as the JSON caller's reply: each length-prefixed protobuf message read as it
//! arrives and written as proto3 JSON. A unary call answers its one message with HTTP 200; a
//! server stream writes one JSON object a line (`application/x-ndjson`) or, when the client
//! accepts `text/event-stream`, one Server-Sent Event each (`data: {...}`). A status other than
//! OK before any message is the reply's HTTP status and `google.rpc.Status` JSON; after the
//! first message of a stream (HTTP 200 is sent by then) it is the stream's last line,
//! `{"error":{...}}` (an `event: error` in SSE).

use super::status::{reply as status_reply, status_json};
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::BodyExt;
use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};
use tokio::sync::mpsc;
use tonic::Status;
use tonic::body::Body;

/// How a server stream's messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One message: the reply body is its JSON.
    Unary,
    /// Newline-delimited JSON.
    Lines,
    /// Server-Sent Events.
    Events,
}

impl Framing {
    fn content_type(self) -> &'static str {
        match self {
            Framing::Unary => "application/json",
            Framing::Lines => "application/x-ndjson",
            Framing::Events => "text/event-stream",
        }
    }

    fn message(self, json: &str) -> Bytes {
        match self {
            Framing::Unary => Bytes::from(json.to_string()),
            Framing::Lines => Bytes::from(format!("{json}\n")),
            Framing::Events => Bytes::from(format!("data: {json}\n\n")),
        }
    }

    fn error(self, status: &Status) -> Bytes {
        let error = status_json(status);
        match self {
            Framing::Events => Bytes::from(format!("event: error\ndata: {error}\n\n")),
            _ => Bytes::from(format!("{}\n", serde_json::json!({ "error": error }))),
        }
    }
}

/// What the reply messages are and how they are written.
pub(crate) struct Shape {
    pub(crate) output: MessageDescriptor,
    /// `response_body`: only this field of each reply is written.
    pub(crate) response_body: Option<String>,
    pub(crate) framing: Framing,
    /// Largest reply message read.
    pub(crate) max_message_bytes: usize,
}

/// Reads the gRPC messages of a reply body one at a time.
struct Messages {
    body: Body,
    buffer: BytesMut,
    trailers: Option<HeaderMap>,
    /// The status in the reply's headers, if any: a trailers-only reply (an OK one too, as for
    /// a stream of no messages) has its status there and no trailers.
    in_headers: Option<Status>,
    max_message_bytes: usize,
}

enum Next {
    Message(Bytes),
    /// The end, with the status the trailers give.
    End(Status),
}

impl Messages {
    async fn next(&mut self) -> Next {
        loop {
            if self.buffer.len() >= 5 {
                let compressed = self.buffer[0];
                let len = u32::from_be_bytes([
                    self.buffer[1],
                    self.buffer[2],
                    self.buffer[3],
                    self.buffer[4],
                ]) as usize;
                if compressed != 0 {
                    return Next::End(Status::internal(
                        "the reply is compressed, which JSON transcoding does not read (it asks for none)",
                    ));
                }
                if len > self.max_message_bytes {
                    return Next::End(Status::resource_exhausted(format!(
                        "a reply message of {len} bytes is over the limit of {} bytes (--max-message-bytes)",
                        self.max_message_bytes
                    )));
                }
                if self.buffer.len() >= 5 + len {
                    self.buffer.advance(5);
                    return Next::Message(self.buffer.split_to(len).freeze());
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => self.trailers = frame.into_trailers().ok(),
                },
                Some(Err(status)) => return Next::End(status),
                None => {
                    if !self.buffer.is_empty() {
                        return Next::End(Status::internal("the reply ended inside a message"));
                    }
                    let status = self
                        .trailers
                        .as_ref()
                        .and_then(Status::from_header_map)
                        .or_else(|| self.in_headers.take())
                        .unwrap_or_else(|| {
                            Status::internal("the reply ended without a grpc-status")
                        });
                    return Next::End(status);
                }
            }
        }
    }
}

/// The JSON reply for the gRPC `response` of a call shaped as `shape`.
pub(crate) async fn translate(response: Response<Body>, shape: Shape) -> Response<Body> {
    let (parts, body) = response.into_parts();
    // Trailers-only: the status is in the headers (an OK one is read at the body's end).
    let in_headers = Status::from_header_map(&parts.headers);
    if let Some(status) = &in_headers
        && (status.code() != tonic::Code::Ok || parts.status != StatusCode::OK)
    {
        return with_headers(status_reply(status, None), &parts.headers);
    }
    if parts.status != StatusCode::OK {
        let status = Status::unavailable(format!(
            "the gRPC service answered HTTP {} without a grpc-status",
            parts.status
        ));
        return status_reply(&status, Some(StatusCode::BAD_GATEWAY));
    }
    let mut messages = Messages {
        body,
        buffer: BytesMut::new(),
        trailers: None,
        in_headers,
        max_message_bytes: shape.max_message_bytes,
    };
    let first = match messages.next().await {
        Next::Message(bytes) => match to_json(&shape, bytes) {
            Ok(json) => json,
            Err(status) => return with_headers(status_reply(&status, None), &parts.headers),
        },
        Next::End(status)
            if status.code() == tonic::Code::Ok && shape.framing != Framing::Unary =>
        {
            return with_headers(ok(shape.framing, Body::empty()), &parts.headers);
        }
        Next::End(status) if status.code() == tonic::Code::Ok => {
            let status = Status::internal("the unary reply has no message");
            return with_headers(status_reply(&status, None), &parts.headers);
        }
        Next::End(status) => return with_headers(status_reply(&status, None), &parts.headers),
    };
    if shape.framing == Framing::Unary {
        return match messages.next().await {
            Next::End(status) if status.code() == tonic::Code::Ok => with_headers(
                ok(
                    shape.framing,
                    Body::new(http_body_util::Full::new(Bytes::from(first))),
                ),
                &parts.headers,
            ),
            Next::End(status) => with_headers(status_reply(&status, None), &parts.headers),
            Next::Message(_) => {
                let status = Status::internal("the unary reply has more than one message");
                with_headers(status_reply(&status, None), &parts.headers)
            }
        };
    }
    // The stream's frames are written by a task, one message at a time; a client that goes
    // away drops the receiver, which ends the task and with it the gRPC call.
    let (sender, receiver) = mpsc::channel::<Result<Frame<Bytes>, Status>>(4);
    let framing = shape.framing;
    tokio::spawn(async move {
        if sender
            .send(Ok(Frame::data(framing.message(&first))))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let frame = match messages.next().await {
                Next::Message(bytes) => match to_json(&shape, bytes) {
                    Ok(json) => framing.message(&json),
                    Err(status) => {
                        let _ = sender.send(Ok(Frame::data(framing.error(&status)))).await;
                        return;
                    }
                },
                Next::End(status) if status.code() == tonic::Code::Ok => return,
                Next::End(status) => {
                    let _ = sender.send(Ok(Frame::data(framing.error(&status)))).await;
                    return;
                }
            };
            if sender.send(Ok(Frame::data(frame))).await.is_err() {
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    with_headers(
        ok(framing, Body::new(http_body_util::StreamBody::new(stream))),
        &parts.headers,
    )
}

fn ok(framing: Framing, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(framing.content_type()),
    );
    response
}

/// `response` with the gRPC reply's headers that mean something to an HTTP client
/// (`x-api-version`, the retirement headers, custom metadata); not gRPC's own.
fn with_headers(mut response: Response<Body>, grpc: &HeaderMap) -> Response<Body> {
    for (name, value) in grpc {
        let name_text = name.as_str();
        let skip = name_text.starts_with("grpc-")
            || name_text.ends_with("-bin")
            || name == header::CONTENT_TYPE
            || name == header::CONTENT_LENGTH
            || name == header::TRAILER
            || name == header::TE;
        if !skip {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

/// One reply message as JSON (proto3 JSON mapping: lowerCamelCase names, enums by name, 64-bit
/// integers as strings, default values left out; what Envoy's transcoder prints by default).
fn to_json(shape: &Shape, bytes: Bytes) -> Result<String, Status> {
    let message = DynamicMessage::decode(shape.output.clone(), bytes).map_err(|err| {
        Status::internal(format!(
            "a reply message does not decode as {}: {err}",
            shape.output.full_name()
        ))
    })?;
    let options = SerializeOptions::new();
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    let written = match &shape.response_body {
        None => message.serialize_with_options(&mut serializer, &options),
        Some(field) => match message.get_field_by_name(field) {
            Some(value) => match value.as_ref() {
                prost_reflect::Value::Message(inner) => {
                    inner.serialize_with_options(&mut serializer, &options)
                }
                _ => {
                    return Err(Status::unimplemented(format!(
                        "response_body {field:?} is not a message field; only message fields are written"
                    )));
                }
            },
            None => {
                return Err(Status::internal(format!(
                    "response_body names {field:?}, which {} has no field of",
                    shape.output.full_name()
                )));
            }
        },
    };
    written.map_err(|err| {
        Status::internal(format!("a reply message cannot be written as JSON: {err}"))
    })?;
    String::from_utf8(out)
        .map_err(|err| Status::internal(format!("reply JSON is not UTF-8: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_trailers_only_ok_stream_of_no_messages_is_an_empty_200() {
        let pool = super::super::request::tests::library();
        let output = pool
            .all_messages()
            .next()
            .expect("the test API has messages");
        let mut response = Response::new(Body::empty());
        response
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("0"));
        let shape = Shape {
            output,
            response_body: None,
            framing: Framing::Lines,
            max_message_bytes: 1024,
        };
        let reply = translate(response, shape).await;
        assert_eq!(reply.status(), StatusCode::OK);
        let body = reply.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "{body:?}");
    }
}
