//! The tower layer that observes every call on the port, outermost, so that the guard's
//! refusals are seen as clients see them: it counts the request's and the reply's bytes and
//! messages as they pass, reads the status from the trailers (or a trailers-only reply's
//! headers), takes the backend from the router's [`Routed`], and hands one [`CallRecord`] to
//! the observer when the reply ends or is dropped (the client went away: `CANCELLED`). Both
//! bodies are watched with the router's [`InspectedBody`], as the guard watches them.

use super::message_json::encoding;
use super::methods::Method;
use super::record::{CallRecord, Framing, code_of_http, grpc_status};
use super::recorder::{Ended, Recording};
use super::{Kept, Observer};
use crate::PeerInfo;
use crate::shadow::Shadowing;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body::{Body as HttpBody, Frame};
use router::{BoxFuture, Inspect, InspectedBody, Routed};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service, ServiceExt};

/// The longest first message kept of a sampled call (a longer one is counted as not decoded).
const MAX_SAMPLE_BYTES: usize = 64 * 1024;

/// Puts an [`Observe`] in front of a service.
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    observer: Arc<Observer>,
}

impl ObserveLayer {
    /// Observes calls for `observer`.
    pub fn new(observer: Arc<Observer>) -> Self {
        Self { observer }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            observer: self.observer.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    observer: Arc<Observer>,
}

impl<S> Observe<S> {
    /// Who the caller is: the name of the client certificate its connection presented (mutual
    /// TLS: the handshake verified it, so a header cannot override it), else the
    /// `--usage-identity-header` value it sent (what it claims: behind a proxy that terminates
    /// TLS, the proxy's word). Only the usage table keeps it.
    fn identity(&self, headers: &http::HeaderMap, peer: Option<&PeerInfo>) -> Option<HeaderValue> {
        let usage = self.observer.usage()?;
        let verified = peer
            .and_then(|peer| peer.certificate_name.as_deref())
            .and_then(|name| HeaderValue::from_str(name).ok());
        verified.or_else(|| {
            usage
                .identity_header()
                .and_then(|name| headers.get(name))
                .cloned()
        })
    }
}

/// A call being observed: what is known at arrival, and the request's counts as they come.
struct Call {
    observer: Arc<Observer>,
    method: Method,
    record: CallRecord,
    started: Instant,
    request: Arc<Mutex<Framing>>,
    /// When the call is recorded: its metadata and descriptor.
    recording: Option<Recording>,
    /// When the call is shadowed: what the copy needs.
    shadowing: Option<Shadowing>,
}

impl Call {
    /// Whether the call's messages, status message and encodings are kept.
    fn kept(&self) -> bool {
        self.recording.is_some() || self.shadowing.is_some()
    }
}

/// How a reply ended, as the layer read it.
#[derive(Default)]
struct Reply {
    framing: Framing,
    /// The status message (recorded or shadowed calls only).
    message: Option<String>,
    /// The reply's `grpc-encoding` (recorded or shadowed calls only).
    encoding: Option<String>,
}

impl Call {
    /// Ends the call with `code`: the record goes to the sinks.
    fn finish(mut self, code: Code, reply: &mut Reply) {
        // Taken, not copied: a sampled first message may be 64 KiB; whatever of the request
        // still passes is counted into an empty framing no one reads.
        let mut request =
            std::mem::take(&mut *self.request.lock().unwrap_or_else(|e| e.into_inner()));
        self.record.code = code;
        self.record.duration = self.started.elapsed();
        self.record.bytes_in = request.bytes;
        self.record.messages_in = request.messages;
        self.record.bytes_out = reply.framing.bytes;
        self.record.messages_out = reply.framing.messages;
        let kept = self.kept().then(|| Kept {
            recording: self.recording.take(),
            shadowing: self.shadowing.take(),
            ended: Ended {
                start: self.record.start,
                duration: self.record.duration,
                code,
                message: reply.message.take(),
                routed: self.record.routed.clone(),
                request: None,
                reply: reply.framing.capture.take(),
                reply_encoding: reply.encoding.take(),
            },
        });
        self.observer
            .finish(&self.method, self.record, request.capture.take(), kept);
    }
}

impl<S> Service<Request<Body>> for Observe<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path();
        let method = self.observer.started(path);
        let headers = request.headers();
        let logging = self.observer.logs();
        // Only the log shows it, and it costs an allocation.
        let authority = if logging {
            request
                .uri()
                .authority()
                .map(|a| a.to_string())
                .or_else(|| {
                    headers
                        .get(header::HOST)
                        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
                })
        } else {
            None
        };
        let peer = request.extensions().get::<PeerInfo>();
        let record = CallRecord {
            start: SystemTime::now(),
            peer: peer.and_then(PeerInfo::remote_addr),
            user_agent: headers.get(header::USER_AGENT).cloned(),
            identity: self.identity(headers, peer),
            authority,
            path: request.uri().path_and_query().cloned(),
            requirement: headers.get(router::API_VERSION_HEADER).cloned(),
            routed: None,
            code: Code::Unknown,
            duration: Default::default(),
            bytes_in: 0,
            bytes_out: 0,
            messages_in: 0,
            messages_out: 0,
        };
        let recorder = self.observer.recorder();
        let recording = recorder.and_then(|r| r.begin(&method, request.headers()));
        let shadow = self.observer.shadow();
        let shadowing = shadow.and_then(|s| s.begin(&method, request.headers()));
        // A call both recorded and shadowed is kept within the larger caps of the two.
        let caps = [
            recorder.filter(|_| recording.is_some()).map(|r| r.caps()),
            shadow.filter(|_| shadowing.is_some()).map(|s| s.caps()),
        ]
        .into_iter()
        .flatten()
        .reduce(|a, b| (a.0.max(b.0), a.1.max(b.1)));
        let framing = match caps {
            Some((bytes, messages)) => Framing::capturing(bytes, messages),
            None if self.observer.samples(&method) => Framing::capturing(MAX_SAMPLE_BYTES, 1),
            None => Framing::default(),
        };
        let reply_framing = match caps {
            Some((bytes, messages)) => Framing::capturing(bytes, messages),
            None => Framing::default(),
        };
        let framing = Arc::new(Mutex::new(framing));
        let request = request
            .map(|body| Body::new(InspectedBody::new(body, RequestCounter(framing.clone()))));
        let mut call = Call {
            observer: self.observer.clone(),
            method,
            record,
            started,
            request: framing,
            recording,
            shadowing,
        };
        let inner = self.inner.clone().oneshot(request);
        Box::pin(async move {
            let response = inner.await?;
            call.record.routed = response.extensions().get::<Routed>().cloned();
            let headers_status = grpc_status(response.headers()).or_else(|| {
                (response.status() != http::StatusCode::OK).then(|| code_of_http(response.status()))
            });
            let recorded = call.kept();
            let mut reply = Reply {
                framing: reply_framing,
                message: recorded
                    .then(|| status_message(response.headers()))
                    .flatten(),
                encoding: recorded.then(|| encoding(response.headers())).flatten(),
            };
            if HttpBody::is_end_stream(response.body()) {
                // A trailers-only reply: its status went out with the headers, and the body
                // must stay finished so that it does.
                call.finish(headers_status.unwrap_or(Code::Unknown), &mut reply);
                return Ok(response);
            }
            let counter = ReplyCounter {
                reply,
                status: headers_status,
                call: Some(call),
            };
            Ok(response.map(|body| Body::new(InspectedBody::new(body, counter))))
        })
    }
}

/// The status message in `headers` (trailers, or a trailers-only reply's headers), decoded.
fn status_message(headers: &http::HeaderMap) -> Option<String> {
    Status::from_header_map(headers).map(|status| status.message().to_string())
}

/// Counts the request body as it passes.
struct RequestCounter(Arc<Mutex<Framing>>);

impl Inspect for RequestCounter {
    fn frame(&mut self, frame: &Frame<Bytes>) -> Result<(), Status> {
        if let Some(data) = frame.data_ref() {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).feed(data);
        }
        Ok(())
    }
}

/// Counts the reply body as it passes; the call ends with its trailers, or when the body is
/// dropped before them (the client went away, or the reply failed: `CANCELLED` either way,
/// unless its headers carried a status).
struct ReplyCounter {
    reply: Reply,
    /// The status its headers carried, if any (an HTTP error, say).
    status: Option<Code>,
    call: Option<Call>,
}

impl ReplyCounter {
    fn finish(&mut self, code: Code) {
        if let Some(call) = self.call.take() {
            call.finish(code, &mut self.reply);
        }
    }
}

impl Inspect for ReplyCounter {
    fn frame(&mut self, frame: &Frame<Bytes>) -> Result<(), Status> {
        if let Some(data) = frame.data_ref() {
            self.reply.framing.feed(data);
        } else if let Some(trailers) = frame.trailers_ref() {
            if self.call.as_ref().is_some_and(Call::kept) {
                self.reply.message = status_message(trailers);
            }
            let code = grpc_status(trailers)
                .or(self.status)
                .unwrap_or(Code::Unknown);
            self.finish(code);
        }
        Ok(())
    }
}

impl Drop for ReplyCounter {
    fn drop(&mut self) {
        self.finish(self.status.unwrap_or(Code::Cancelled));
    }
}
