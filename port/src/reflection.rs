//! gRPC server reflection (`grpc.reflection.v1` and `v1alpha`) that lists what the port serves
//! now, not every service it could describe, and describes the build a caller's
//! `x-api-version` selects.
//!
//! tonic-reflection lists a fixed set of services, chosen when it is built. A port with a router
//! serves whatever its route table says at the moment (the rollout adds v2 while clients run),
//! so this service asks which services are served at each reflection call and rebuilds the
//! reflection services when that set has changed. Reflection calls are rare (a client lists
//! once), so the rebuild costs nothing on the request path. Every file stays describable; only
//! the listing follows the table, as health does. Behind a router the describable files are the
//! route table's catalog (the union of what its upstreams declare) besides the port's own.
//!
//! Two builds of one package side by side (1.0.0, and 1.1.0 with a field added) declare the
//! same files differently. A reflection stream is answered from the build of the backend a call
//! with the stream's `x-api-version` would prefer (`RouteTable::build_for`: the highest
//! satisfying version; without the header, the highest stable one), its files ahead of the
//! catalog's, so `grpcurl -H 'x-api-version: =1.0.0' describe` shows what 1.0.0 serves.
//! The reflection services built for each build are kept, a few at a time.

use anyhow::Context;
use http::{Request, Response};
use router::{BoxFuture, RouterHandle};
use semver::VersionReq;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
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

/// The reflection services built for one set of listed services, over one catalog and build.
#[derive(Clone)]
struct Built {
    listed: Vec<String>,
    /// The catalog's generation they describe (0 without a router).
    catalog: u64,
    /// The build they describe first, if any: held, so that its address names it while cached.
    view: Option<Arc<[u8]>>,
    v1: Boxed,
    v1alpha: Boxed,
}

/// Both reflection versions, answering with the services served at the time of each call.
#[derive(Clone)]
pub(crate) struct Reflection {
    served: Served,
    also: Vec<String>,
    descriptor_sets: Arc<[Cow<'static, [u8]>]>,
    /// Built for the builds and catalog the table holds, at most `max_views`
    /// (`--max-reflection-views`): past it the oldest goes.
    built: Arc<Mutex<Vec<Built>>>,
    max_views: usize,
}

/// The descriptors of the build a reflection call is to describe, if any.
struct View {
    descriptors: Arc<[u8]>,
    /// Package → the full names of its services, as the build declares them.
    declares: BTreeMap<String, Vec<String>>,
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
        max_views: usize,
    ) -> anyhow::Result<Self> {
        let reflection = Self {
            served,
            also,
            descriptor_sets: descriptor_sets.into(),
            built: Arc::default(),
            max_views: max_views.max(1),
        };
        // Built once now, so that bad descriptors fail the start, not the first client.
        reflection.current(None)?;
        Ok(reflection)
    }

    fn current(&self, requirement: Option<&VersionReq>) -> anyhow::Result<Built> {
        let (view, generation, live) = match &self.served {
            Served::Router(handle) => {
                let table = handle.table();
                let live: Vec<Arc<[u8]>> = table.builds().map(|b| b.descriptors.clone()).collect();
                let view = table
                    .build_for(requirement)
                    .map(|(_, build)| View::of(build));
                (view, table.catalog().generation(), live)
            }
            Served::Fixed(_) => (None, 0, Vec::new()),
        };
        let same = |a: &Option<Arc<[u8]>>, b: Option<&Arc<[u8]>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        // What describes a removed build or an earlier catalog goes, and its copies with it.
        built.retain(|b| {
            b.catalog == generation
                && b.view
                    .as_ref()
                    .is_none_or(|v| live.iter().any(|l| Arc::ptr_eq(l, v)))
        });
        let served = self.served.names();
        let listed = self.listing(&served, view.as_ref());
        let wanted = view.as_ref().map(|v| &v.descriptors);
        if let Some(current) = built
            .iter()
            .find(|b| same(&b.view, wanted) && b.listed == listed)
        {
            return Ok(current.clone());
        }
        // Behind a router, its catalog as it is now, so that packages added at runtime (the
        // admin API) are describable too; the build asked for comes first, then the sets given
        // at start: the first to hold a file wins.
        let catalog = match &self.served {
            Served::Router(handle) => Some(handle.table().catalog().pool().encode_to_vec()),
            Served::Fixed(_) => None,
        };
        let sets = || {
            view.iter()
                .map(|v| v.descriptors.as_ref())
                .chain(self.descriptor_sets.iter().map(AsRef::as_ref))
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
            catalog: generation,
            view: view.map(|v| v.descriptors),
        };
        built.retain(|b| !same(&b.view, fresh.view.as_ref()));
        while built.len() >= self.max_views {
            built.remove(0);
        }
        built.push(fresh.clone());
        Ok(fresh)
    }

    /// The services listed: health, reflection, the ones mounted beside the API, and those
    /// `served`; of a package the `view`'s build declares, the services it declares.
    fn listing(&self, served: &[String], view: Option<&View>) -> Vec<String> {
        let mut listed: Vec<String> = ALWAYS.iter().map(|s| s.to_string()).collect();
        listed.extend(self.also.iter().cloned());
        let Some(view) = view else {
            listed.extend(served.iter().cloned());
            return listed;
        };
        let package = |name: &str| {
            name.rsplit_once('.')
                .map_or(String::new(), |(p, _)| p.to_string())
        };
        let served_packages: BTreeSet<String> = served.iter().map(|n| package(n)).collect();
        listed.extend(
            served
                .iter()
                .filter(|name| !view.declares.contains_key(&package(name)))
                .cloned(),
        );
        listed.extend(
            view.declares
                .iter()
                .filter(|(package, _)| served_packages.contains(*package))
                .flat_map(|(_, services)| services.iter().cloned()),
        );
        listed
    }
}

impl View {
    /// The view of `build`.
    fn of(build: &router::Build) -> Self {
        let mut declares: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for service in build.services.iter() {
            let package = service.rsplit_once('.').map_or("", |(p, _)| p);
            declares
                .entry(package.to_string())
                .or_default()
                .push(service.clone());
        }
        Self {
            descriptors: build.descriptors.clone(),
            declares,
        }
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
        let requirement = match router::parse_requirement(request.headers()) {
            Ok(requirement) => requirement,
            Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
        };
        let built = match self.current(requirement.as_ref()) {
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
