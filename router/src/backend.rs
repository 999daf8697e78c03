//! A backend: one versioned implementation the router can send requests to, in-process or
//! over a pool of tonic `Channel`s to another process.

use crate::BoxFuture;
use crate::build::Build;
use crate::encoding::AcceptedEncodings;
use crate::pool::{Slot, UpstreamPool};
use crate::replicas::Replicas;
use http::{Request, Response};
use semver::Version;
use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::{Status, body::Body};
use tower::{Service, ServiceExt, util::BoxCloneSyncService};

/// The type-erased HTTP service a backend runs: a tonic server or a forwarding channel.
pub type BackendService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// A named, versioned implementation of one API package.
#[derive(Clone)]
pub struct Backend {
    /// Unique name in the route table, such as `v1` or `v2-canary`.
    pub name: String,
    /// The implementation's version; requests' `x-api-version` requirements match against it.
    pub version: Version,
    /// The API package the implementation speaks, such as `increment.v2`.
    pub api: String,
    /// Every package the router sends to this backend: `api` itself, plus older packages whose
    /// requests `api` can serve (the route table checks that they are wire-compatible).
    pub serves: Vec<String>,
    /// The service requests are forwarded to.
    pub service: BackendService,
    /// For a remote backend, its replicas' connections, over which an `UpstreamProbe` checks
    /// it too.
    pub(crate) replicas: Option<Replicas>,
    /// The percentage of the requests it can serve that it takes (`;weight=N`); `None`: the
    /// highest version without a weight takes what weighted backends leave (see `weights`).
    pub weight: Option<u8>,
    /// The descriptors its own process declares, when known (a remote backend read by
    /// reflection or from a file); see [`Build`].
    pub build: Option<Build>,
    /// Of the older packages in `serves`, those of which it takes only some methods (see
    /// [`Methods`]); the table resolves which when the backend joins.
    pub partial: HashMap<String, Methods>,
}

/// Which methods of an older package a backend takes, when not all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    /// Every method compat finds it can serve (`+PACKAGE/*`); the rest stay with the
    /// backends of the older package.
    Safe,
    /// These (`Service/Method`), each of which compat must find it can serve
    /// (`+PACKAGE/Service.Method`).
    Only(BTreeSet<String>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("api", &self.api)
            .field("serves", &self.serves)
            .field(
                "replicas",
                &self.replicas.as_ref().map_or(0, |r| r.pools().len()),
            )
            .field("weight", &self.weight)
            .field("breaks", &self.breaks())
            .field("partial", &self.partial)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// A backend running `service` (a generated tonic server, say) in this process.
    pub fn in_process<S>(name: &str, version: Version, api: &str, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Self::new(name, version, api, BoxCloneSyncService::new(service), None)
    }

    /// A backend in another process, reached over `pool`. Transport failures become
    /// `UNAVAILABLE` replies naming the backend (and mark it unreachable at once), so a dead
    /// upstream never hangs or panics; a saturated pool answers `RESOURCE_EXHAUSTED`, a call
    /// past the pool's timeout `DEADLINE_EXCEEDED`. Those replies carry no `x-api-version`
    /// header, since no version served them. Compressed messages pass as they are, both ways;
    /// a `grpc-encoding` the backend's replies say it does not accept gets `UNIMPLEMENTED`
    /// naming the ones it does.
    pub fn remote(name: &str, version: Version, api: &str, pool: UpstreamPool) -> Self {
        Self::replicated(name, version, api, Replicas::one(pool))
    }

    /// A backend in several processes, its `replicas` (one pool per endpoint), each call going
    /// to one of them as [`Replicas`] chooses; otherwise as [`Backend::remote`].
    pub fn replicated(name: &str, version: Version, api: &str, replicas: Replicas) -> Self {
        let service = Upstream {
            label: format!("backend {name} ({api} {version})").into(),
            replicas: replicas.clone(),
            accepted: AcceptedEncodings::default(),
        };
        Self::new(
            name,
            version,
            api,
            BoxCloneSyncService::new(service),
            Some(replicas),
        )
    }

    fn new(
        name: &str,
        version: Version,
        api: &str,
        service: BackendService,
        replicas: Option<Replicas>,
    ) -> Self {
        Self {
            name: name.to_string(),
            version,
            api: api.to_string(),
            serves: vec![api.to_string()],
            service,
            replicas,
            weight: None,
            build: None,
            partial: HashMap::new(),
        }
    }

    /// Gives the backend its `build`; a build that breaks an older one, or drifted, is
    /// pinned-only, weight 0 (see [`Build`]).
    pub fn with_build(mut self, build: Build) -> Self {
        if build.pinned_only_because().is_some() {
            self.weight = Some(0);
        }
        self.build = Some(build);
        self
    }

    /// What its build breaks, when it is pinned-only for breaking an older build or drifting.
    pub fn breaks(&self) -> Option<String> {
        self.build.as_ref().and_then(Build::pinned_only_because)
    }

    /// Whether its build drifted (see [`Build::drift`]).
    pub fn is_drifted(&self) -> bool {
        self.build.as_ref().is_some_and(|b| b.drift.is_some())
    }

    /// Whether it can serve `service` of `package`: always for a package routed to it with
    /// `+PACKAGE` (the catalog vouches) or without a known build; else when its build declares
    /// the service.
    pub fn declares(&self, package: &str, service: &str) -> bool {
        package != self.api
            || self
                .build
                .as_ref()
                .is_none_or(|build| build.services.contains(service))
    }

    /// For a remote backend, how many times it became reachable again (see
    /// [`UpstreamPool::recoveries`]); 0 for one in this process.
    pub fn recoveries(&self) -> u64 {
        self.replicas.as_ref().map_or(0, Replicas::recoveries)
    }

    /// For a remote backend, a channel to its upstream that carries no calls (the health
    /// checks'), over which its descriptors can be read again.
    pub fn upstream_channel(&self) -> Option<tonic::transport::Channel> {
        self.replicas
            .as_ref()
            .map(|r| r.first_reachable().probe_channel())
    }

    /// Gives the backend `weight` (see [`Backend::weight`]).
    pub fn with_weight(mut self, weight: Option<u8>) -> Self {
        self.weight = weight;
        self
    }

    /// Whether the backend is in another process (made by [`Backend::remote`]).
    pub fn is_remote(&self) -> bool {
        self.replicas.is_some()
    }

    /// Whether the backend is remote and its connection pools are saturated (see
    /// [`UpstreamPool::is_saturated`]; every reachable replica's).
    pub fn is_saturated(&self) -> bool {
        self.replicas.as_ref().is_some_and(Replicas::is_saturated)
    }

    /// Its replicas, when remote.
    pub fn replicas(&self) -> Option<&Replicas> {
        self.replicas.as_ref()
    }

    /// Also route requests for `package` to this backend (for example, v2 serving v1 paths once
    /// v1 is retired). Whether that is safe is checked when the route table is built.
    pub fn also_serving(mut self, package: &str) -> Self {
        if !self.serves.iter().any(|p| p == package) {
            self.serves.push(package.to_string());
        }
        self
    }

    /// Also route `methods` of the older `package` to this backend, the rest of its calls
    /// staying with the package's own backends. Checked when the route table is built, as
    /// [`also_serving`](Self::also_serving) is, method by method.
    pub fn also_serving_methods(mut self, package: &str, methods: Methods) -> Self {
        self = self.also_serving(package);
        self.partial.insert(package.to_string(), methods);
        self
    }
}

/// Marks a reply the router made up itself (no backend produced it), so the router does not
/// label it with the `x-api-version` of a backend that never answered. Kept in the response's
/// extensions, which do not go on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouterMade;

/// `status` as a trailers-only reply marked [`RouterMade`].
pub(crate) fn router_reply(status: Status) -> Response<Body> {
    let mut response = status.into_http();
    response.extensions_mut().insert(RouterMade);
    response
}

/// Forwards to a remote backend, turning transport failures into `UNAVAILABLE` replies.
#[derive(Clone)]
struct Upstream {
    label: Arc<str>,
    replicas: Replicas,
    accepted: AcceptedEncodings,
}

impl Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness of the channel is awaited per call, where its error can become a reply.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if let Err((status, header)) = self.accepted.check(request.headers(), &self.label) {
            let mut reply = router_reply(status);
            reply.headers_mut().insert("grpc-accept-encoding", header);
            return Box::pin(std::future::ready(Ok(reply)));
        }
        let pool = self.replicas.pick().clone();
        let label = self.label.clone();
        let accepted = self.accepted.clone();
        Box::pin(async move {
            let timeout = pool.limits().timeout;
            let call = async {
                let slot = pool.slot(&label).await?;
                let response = slot.channel().oneshot(request).await;
                Ok::<_, Status>((slot, response))
            };
            Ok(match tokio::time::timeout(timeout, call).await {
                Ok(Ok((slot, Ok(response)))) => {
                    accepted.learn(response.headers());
                    response.map(|body| {
                        Body::new(UpstreamBody {
                            inner: Some(body),
                            label,
                            pool: pool.clone(),
                            _slot: slot,
                        })
                    })
                }
                Ok(Ok((_slot, Err(err)))) => match stream_reset(&err) {
                    // The backend reset this one stream (at its own deadline, say): it is up.
                    Some(reason) => router_reply(Status::new(
                        reset_code(reason),
                        format!("{label} reset the stream: {reason}"),
                    )),
                    // The call's own deadline (its grpc-timeout, which the channel enforces)
                    // passed: the backend is slow to answer this call, not unreachable.
                    None if deadline_passed(&err) => router_reply(Status::deadline_exceeded(
                        format!("{label} did not answer within the call's grpc-timeout"),
                    )),
                    None => {
                        pool.failed();
                        router_reply(Status::unavailable(format!(
                            "{label} is unreachable: {err}"
                        )))
                    }
                },
                Ok(Err(refused)) => router_reply(refused),
                Err(_elapsed) => router_reply(Status::deadline_exceeded(format!(
                    "{label} did not answer within {} ms (--upstream-timeout-ms)",
                    timeout.as_millis()
                ))),
            })
        })
    }
}

/// The reason of the `RST_STREAM` the peer sent, when that is what ended `err`'s request; a
/// connection failure (refused, closed, `GOAWAY`) is `None`.
fn stream_reset(err: &(dyn std::error::Error + 'static)) -> Option<h2::Reason> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return (h2.is_reset() && h2.is_remote())
                .then(|| h2.reason())
                .flatten();
        }
        cause = e.source();
    }
    None
}

/// Whether `err` is the channel's enforcement of the request's `grpc-timeout`.
fn deadline_passed(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The gRPC code of a stream reset by its HTTP/2 reason, as gRPC's HTTP/2 mapping gives it.
fn reset_code(reason: h2::Reason) -> tonic::Code {
    match reason {
        h2::Reason::REFUSED_STREAM => tonic::Code::Unavailable,
        h2::Reason::CANCEL => tonic::Code::Cancelled,
        h2::Reason::ENHANCE_YOUR_CALM => tonic::Code::ResourceExhausted,
        h2::Reason::INADEQUATE_SECURITY => tonic::Code::PermissionDenied,
        _ => tonic::Code::Internal,
    }
}

/// A remote backend's response body. If the backend dies mid-stream, the body fails with a
/// transport error, which would make the server reset the client's stream (`INTERNAL` at best);
/// instead the stream ends cleanly with `UNAVAILABLE` trailers naming the backend.
struct UpstreamBody {
    inner: Option<Body>,
    label: Arc<str>,
    pool: UpstreamPool,
    /// The stream's place on its connection, given back when the body is done or dropped.
    _slot: Slot,
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Err(err))) => {
                self.inner = None;
                self.pool.failed();
                let status = Status::unavailable(format!(
                    "{} failed mid-stream: {}",
                    self.label,
                    err.message()
                ));
                Poll::Ready(Some(crate::status_trailers(status)))
            }
            Poll::Ready(None) => {
                self.inner = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }
}
