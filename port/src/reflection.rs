//! gRPC server reflection (`grpc.reflection.v1` and `v1alpha`) that lists what the port serves
//! now, not every service it could describe.
//!
//! tonic-reflection lists a fixed set of services, chosen when it is built. A port with a router
//! serves whatever its route table says at the moment (the rollout adds v2 while clients run),
//! so this service asks which services are served at each reflection call and rebuilds the
//! reflection services when that set has changed. Reflection calls are rare (a client lists
//! once), so the rebuild costs nothing on the request path. Every file stays describable; only
//! the listing follows the table, as health does. Behind a router the describable files are the
//! route table's catalog (the union of what its upstreams declare) besides the port's own.

use anyhow::Context;
use http::{Request, Response};
use router::{BoxFuture, RouterHandle};
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use tonic::body::Body;
use tonic::server::NamedService;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

type Boxed = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Which API services a port serves.
#[derive(Debug, Clone)]
pub(crate) enum Served {
    /// These, for as long as the port runs (services mounted directly).
    Fixed(Vec<String>),
    /// Whatever the router's table routes at the moment.
    Router(RouterHandle),
}

impl Served {
    fn names(&self) -> Vec<String> {
        match self {
            Served::Fixed(names) => names.clone(),
            Served::Router(handle) => {
                let table = handle.table();
                let catalog = table.catalog();
                catalog
                    .packages()
                    .into_iter()
                    .filter(|package| table.is_served(package))
                    .flat_map(|package| catalog.service_names(package))
                    .collect()
            }
        }
    }
}

/// The services the port always serves beside the API: health and reflection.
const ALWAYS: [&str; 3] = [
    <tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService> as NamedService>::NAME,
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The reflection services built for one set of listed services.
#[derive(Clone)]
struct Built {
    listed: Vec<String>,
    v1: Boxed,
    v1alpha: Boxed,
}

/// Both reflection versions, answering with the services served at the time of each call.
#[derive(Clone)]
pub(crate) struct Reflection {
    served: Served,
    also: Vec<String>,
    descriptor_sets: Arc<[Cow<'static, [u8]>]>,
    built: Arc<Mutex<Option<Built>>>,
}

impl std::fmt::Debug for Reflection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reflection")
            .field("served", &self.served)
            .finish_non_exhaustive()
    }
}

impl Reflection {
    /// Reflection over `descriptor_sets` (encoded `FileDescriptorSet`s; where two hold a file
    /// of the same name, the first wins), listing what `served` says plus health, reflection
    /// and the services in `also` (mounted beside the API for as long as the port runs). A
    /// router's port passes its catalog's descriptors too, so the services its upstreams
    /// declare are describable.
    pub(crate) fn new(
        served: Served,
        also: Vec<String>,
        descriptor_sets: Vec<Cow<'static, [u8]>>,
    ) -> anyhow::Result<Self> {
        let reflection = Self {
            served,
            also,
            descriptor_sets: descriptor_sets.into(),
            built: Arc::default(),
        };
        // Built once now, so that bad descriptors fail the start, not the first client.
        reflection.current()?;
        Ok(reflection)
    }

    fn current(&self) -> anyhow::Result<Built> {
        let mut listed: Vec<String> = ALWAYS.iter().map(|s| s.to_string()).collect();
        listed.extend(self.also.iter().cloned());
        listed.extend(self.served.names());
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(current) = built.as_ref().filter(|b| b.listed == listed) {
            return Ok(current.clone());
        }
        // Behind a router, its catalog as it is now, so that packages added at runtime (the
        // admin API) are describable too; the sets given at start come first and win.
        let catalog = match &self.served {
            Served::Router(handle) => Some(handle.table().catalog().pool().encode_to_vec()),
            Served::Fixed(_) => None,
        };
        let sets = || {
            self.descriptor_sets
                .iter()
                .map(AsRef::as_ref)
                .chain(catalog.as_deref())
        };
        let builder = || {
            listed.iter().fold(
                sets().fold(
                    tonic_reflection::server::Builder::configure()
                        .include_reflection_service(false),
                    |builder, set| builder.register_encoded_file_descriptor_set(set),
                ),
                |builder, name| builder.with_service_name(name.clone()),
            )
        };
        let fresh = Built {
            v1: BoxCloneSyncService::new(compat::accept_compressed!(
                builder()
                    .build_v1()
                    .context("cannot build the grpc.reflection.v1 service")?
            )),
            v1alpha: BoxCloneSyncService::new(compat::accept_compressed!(
                builder()
                    .build_v1alpha()
                    .context("cannot build the grpc.reflection.v1alpha service")?
            )),
            listed,
        };
        *built = Some(fresh.clone());
        Ok(fresh)
    }
}

impl Service<Request<Body>> for Reflection {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let built = match self.current() {
            Ok(built) => built,
            Err(err) => {
                let status = tonic::Status::internal(format!("{err:#}"));
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        };
        let service = if request
            .uri()
            .path()
            .starts_with("/grpc.reflection.v1alpha.")
        {
            built.v1alpha
        } else {
            built.v1
        };
        Box::pin(service.oneshot(request))
    }
}
