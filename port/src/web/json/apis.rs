//! Which descriptors a JSON call is read and answered with. Behind a router two builds of one
//! package may differ (1.1.0 added a field, or a binding), so a call is matched against the
//! build of the backend its `x-api-version` would select (`RouteTable::build_for`, as
//! reflection does) when that build declares the method, then the route table's catalog (the
//! routed build of each package), then the port's own services; its reply is read with the
//! build of the version that served it (the reply's `x-api-version`), so a field only that
//! build has is not lost. Each pool's bindings are worked out once and kept, a few at a time.

use super::rules::{Binding, bindings};
use http::Method;
use prost::Message;
use prost_reflect::{DescriptorPool, MessageDescriptor, MethodDescriptor};
use router::RouterHandle;
use semver::VersionReq;
use std::sync::{Arc, Mutex};

/// A build's descriptors (held, so that their address names the build) and their pool.
type KeptBuild = (Arc<[u8]>, Arc<Api>);

/// One descriptor pool and its bindings.
pub(crate) struct Api {
    pool: DescriptorPool,
    bindings: Vec<Binding>,
}

impl Api {
    fn of(pool: DescriptorPool) -> Arc<Self> {
        let bindings = bindings(&pool);
        Arc::new(Self { pool, bindings })
    }

    /// The first binding of `verb` whose template matches `path`, with its variables.
    fn find(&self, verb: &Method, path: &str) -> Option<(Binding, super::template::Variables)> {
        self.bindings
            .iter()
            .filter(|b| b.verb == *verb)
            .find_map(|b| Some((b.clone(), b.template.matches(path)?)))
    }

    /// Whether `verb` is the only thing wrong: some binding's template matches `path`.
    fn has_path(&self, path: &str) -> bool {
        self.bindings
            .iter()
            .any(|b| b.template.matches(path).is_some())
    }
}

/// The descriptor pools a port's JSON calls use.
pub(crate) struct Apis {
    own: Arc<Api>,
    router: Option<RouterHandle>,
    /// The catalog's pool, by catalog generation.
    catalog: Mutex<Option<(u64, Arc<Api>)>>,
    /// Builds' pools, by their descriptors (held, so that an address names one build).
    builds: Mutex<Vec<KeptBuild>>,
}

/// What a request's path and verb matched.
pub(crate) enum Found {
    Binding(Binding, super::template::Variables),
    /// A template matches the path but not with this verb.
    WrongVerb,
    Nothing,
}

impl Apis {
    /// Over the port's own encoded descriptor sets and, when it routes, its router's table.
    pub(crate) fn new(own: &[&[u8]], router: Option<RouterHandle>) -> anyhow::Result<Self> {
        let mut pool = DescriptorPool::new();
        for set in own {
            let set = prost_types::FileDescriptorSet::decode(*set)?;
            // Files served by more than one set (descriptor.proto) are added once.
            let files: Vec<_> = set
                .file
                .into_iter()
                .filter(|f| pool.get_file_by_name(f.name()).is_none())
                .collect();
            pool.add_file_descriptor_protos(files)?;
        }
        Ok(Self {
            own: Api::of(pool),
            router,
            catalog: Mutex::new(None),
            builds: Mutex::new(Vec::new()),
        })
    }

    /// The binding `verb` and `path` call, looked up in the pools in the order of the module
    /// documentation for a caller with `requirement`.
    pub(crate) fn find(
        &self,
        verb: &Method,
        path: &str,
        requirement: Option<&VersionReq>,
    ) -> Found {
        let pools = self.pools(requirement);
        if let Some((binding, variables)) = pools.iter().find_map(|api| api.find(verb, path)) {
            return Found::Binding(binding, variables);
        }
        if pools.iter().any(|api| api.has_path(path)) {
            Found::WrongVerb
        } else {
            Found::Nothing
        }
    }

    /// The reply type of `method` as the build of `version` (the one that served) declares it,
    /// when that build is known and declares the method; `method`'s own otherwise.
    pub(crate) fn reply_type(
        &self,
        method: &MethodDescriptor,
        version: Option<&str>,
    ) -> MessageDescriptor {
        let served = version
            .and_then(|v| VersionReq::parse(&format!("={v}")).ok())
            .and_then(|req| self.build(Some(&req)))
            .and_then(|api| {
                api.pool
                    .get_service_by_name(method.parent_service().full_name())
            })
            .and_then(|service| service.methods().find(|m| m.name() == method.name()));
        served.map_or_else(|| method.output(), |m| m.output())
    }

    fn pools(&self, requirement: Option<&VersionReq>) -> Vec<Arc<Api>> {
        let mut pools: Vec<Arc<Api>> = self.build(requirement).into_iter().collect();
        // A call no build satisfies is still bound (the router then refuses it as it refuses
        // the gRPC call): by any build's bindings, which the catalog may not carry.
        if let Some(router) = &self.router {
            let table = router.table();
            pools.extend(table.builds().filter_map(|build| self.kept(build)));
        }
        pools.extend(self.catalog());
        pools.push(self.own.clone());
        pools
    }

    fn catalog(&self) -> Option<Arc<Api>> {
        let table = self.router.as_ref()?.table();
        let catalog = table.catalog();
        let mut kept = self.catalog.lock().ok()?;
        match kept.as_ref() {
            Some((generation, api)) if *generation == catalog.generation() => Some(api.clone()),
            _ => {
                let api = Api::of(catalog.pool().clone());
                *kept = Some((catalog.generation(), api.clone()));
                Some(api)
            }
        }
    }

    /// The pool of the build a caller with `requirement` is served by, when it carries one.
    fn build(&self, requirement: Option<&VersionReq>) -> Option<Arc<Api>> {
        let table = self.router.as_ref()?.table();
        let (_, build) = table.build_for(requirement)?;
        self.kept(build)
    }

    /// `build`'s pool and bindings, read once and kept while the table holds the build: the
    /// cache is as large as the table's builds (which the catalog bounds), so no build in use
    /// is evicted and read again at every request.
    fn kept(&self, build: &router::Build) -> Option<Arc<Api>> {
        let held = |descriptors: &Arc<[u8]>| Arc::ptr_eq(descriptors, &build.descriptors);
        if let Some((_, api)) = self.builds.lock().ok()?.iter().find(|(d, _)| held(d)) {
            return Some(api.clone());
        }
        // Decoded outside the lock, so that other calls' lookups do not wait for it.
        let pool = match DescriptorPool::decode(&build.descriptors[..]) {
            Ok(pool) => pool,
            Err(err) => {
                tracing::warn!(%err, "a build's descriptors do not decode; JSON calls use the catalog's");
                return None;
            }
        };
        let api = Api::of(pool);
        let mut kept = self.builds.lock().ok()?;
        if let Some(router) = &self.router {
            // Builds the table no longer holds are dropped.
            let table = router.table();
            kept.retain(|(d, _)| table.builds().any(|b| Arc::ptr_eq(&b.descriptors, d)));
        }
        if !kept.iter().any(|(d, _)| held(d)) {
            kept.push((build.descriptors.clone(), api.clone()));
        }
        Some(api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use router::{ApiCatalog, Backend, Build, RouteTable};
    use std::convert::Infallible;
    use tonic::body::Body;

    /// The test API, with `Book` given a field `isbn` and `UpdateBook` another binding when
    /// `newer`: the build 1.1.0 against 1.0.0.
    fn library(newer: bool) -> DescriptorPool {
        let testdata = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
        let source = include_str!("../../../testdata/library/v1/library.proto");
        let source = if newer {
            source
                .replace("int64 pages = 3;", "int64 pages = 3;\n  string isbn = 4;")
                .replace(
                    "additional_bindings { post:",
                    "additional_bindings { put: \"/v1/{name=shelves/*/books/*}:replace\" body: \"*\" }\n      additional_bindings { post:",
                )
        } else {
            source.to_string()
        };
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::create_dir_all(dir.path().join("library/v1")).expect("a folder");
        std::fs::write(dir.path().join("library/v1/library.proto"), source).expect("written");
        let mut compiler =
            protox::Compiler::new([dir.path(), std::path::Path::new(testdata)]).expect("paths");
        compiler.include_imports(true);
        compiler
            .open_file("library/v1/library.proto")
            .expect("the test API compiles");
        compiler.descriptor_pool()
    }

    async fn two_builds() -> Apis {
        let (old, new) = (library(false), library(true));
        let service = tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, Infallible>(tonic::Status::unimplemented("not called").into_http())
        });
        let backend = |name: &str, version: &str, pool: &DescriptorPool| {
            let version = version.parse().expect("a version");
            Backend::in_process(name, version, "library.v1", service).with_build(Build::of(pool))
        };
        let catalog = ApiCatalog::from_pool(new.clone(), &["library.v1"]).expect("a catalog");
        let backends = vec![backend("old", "1.0.0", &old), backend("new", "1.1.0", &new)];
        let table = RouteTable::new(catalog, backends).expect("a table");
        let handle = RouterHandle::new(table, None).await;
        Apis::new(&[], Some(handle)).expect("the pools")
    }

    #[tokio::test]
    async fn a_call_is_bound_by_the_build_it_asks_for_and_read_by_the_one_that_served() {
        let apis = two_builds().await;
        let put = Method::PUT;
        let replace = "/v1/shelves/1/books/2:replace";
        let pinned = VersionReq::parse("=1.0.0").expect("a requirement");
        let Found::Binding(binding, _) = apis.find(&put, replace, None) else {
            panic!("1.1.0, the highest, binds :replace");
        };
        // 1.0.0 has no such binding, but a call pinned to it is still bound (by 1.1.0's),
        // so that the router answers it as it answers the gRPC call.
        assert!(matches!(
            apis.find(&put, replace, Some(&pinned)),
            Found::Binding(..)
        ));
        let fields = |version| {
            let reply = apis.reply_type(&binding.method, version);
            reply
                .fields()
                .map(|f| f.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(Some("1.1.0")), ["title", "tags", "pages", "isbn"]);
        assert_eq!(fields(Some("1.0.0")), ["title", "tags", "pages"]);
        assert!(matches!(
            apis.find(&Method::GET, replace, None),
            Found::WrongVerb
        ));
        assert!(matches!(
            apis.find(&put, "/v1/nothing", None),
            Found::Nothing
        ));
    }

    #[tokio::test]
    async fn every_build_is_read_once_however_many_there_are() {
        let pool = library(false);
        let service = tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, Infallible>(tonic::Status::unimplemented("not called").into_http())
        });
        // More builds than the cache once held (8), each its own descriptors.
        let backends = (0..10)
            .map(|n| {
                let version = format!("1.{n}.0").parse().expect("a version");
                Backend::in_process(&format!("b{n}"), version, "library.v1", service)
                    .with_build(Build::of(&pool))
            })
            .collect();
        let catalog = ApiCatalog::from_pool(pool.clone(), &["library.v1"]).expect("a catalog");
        let table = RouteTable::new(catalog, backends).expect("a table");
        let apis = Apis::new(&[], Some(RouterHandle::new(table, None).await)).expect("pools");
        let first = apis.pools(None);
        let second = apis.pools(None);
        assert_eq!(first.len(), second.len());
        assert!(
            first.iter().zip(&second).all(|(a, b)| Arc::ptr_eq(a, b)),
            "a build was read again"
        );
    }
}
