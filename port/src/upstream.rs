//! `--upstream NAME=VERSION@ADDR[+PACKAGE...]`: a backend in another process, for the router.
//!
//! Which API an upstream implements is read from the upstream itself, off the request path:
//! [`discover`] reads its descriptors by gRPC reflection (`grpc.reflection.v1`, falling back to
//! `v1alpha`, with `compat`'s reader) or from a file given with `--descriptors NAME=FILE`, and
//! takes every package that declares a service (`grpc.*` aside) as one it implements.
//! `+PACKAGE` also routes requests for an older package to it, allowed only when compat finds no
//! breaking `WIRE` or `GRPC` change from that package to the upstream's (checked when the table
//! is built). [`gateway`] builds the route table whose catalog is the union of what the
//! upstreams declare. Example:
//! `--upstream v1=1.0.0@127.0.0.1:7001 --upstream v2=2.0.0@127.0.0.1:7002+increment.v1`.
//! `ADDR` may start with `https://` (TLS, the upstream's certificate checked against
//! `--upstream-ca`, reflection read over TLS too) or `http://` (plaintext h2c, the default).
//! An upstream added at runtime through the admin API may bring its descriptors with the call
//! ([`declared_in`]). The `--upstream` and `--descriptors` values themselves are parsed in
//! [`spec`].
//!
//! The increment shortcut: an upstream that implements `increment.v{N}`, or that cannot be read
//! by reflection and has no descriptors file while `increment.v{MAJOR}` of its VERSION is one of
//! the testbed's own APIs, is routed as before: the catalog then holds both increment versions
//! from the compiled-in descriptors. ([`UpstreamSpec::backend`] builds such a backend without
//! reading anything.)

use anyhow::{Context, bail};
use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;
use router::{ApiCatalog, Backend, Build, RouteTable};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

mod builds;
mod spec;

pub(crate) use builds::{Joining, combined, joining, routed_build, superset};

pub use spec::{DescriptorsSpec, MAX_REPLICAS, UPSTREAM_SPEC_HELP, UpstreamSpec};

/// Encoded descriptor bytes a gateway's catalog holds at most by default
/// (`--max-catalog-bytes`), across every upstream. The catalog holds its descriptors decoded
/// and indexed by prost-reflect, about 30 times their encoded size (50 MiB resident for the
/// 1.7 MB set of issue 22), so 16 MiB is about half a GiB: room for ten such sets, and for
/// APIs far larger than real services' (the shop example's are 3 KB).
pub const MAX_CATALOG_BYTES: usize = 16 * 1024 * 1024;
/// How long connecting to an upstream may take before the call fails `UNAVAILABLE`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Interval of the HTTP/2 pings that find an upstream that stopped answering (a stopped or
/// partitioned process keeps its connection open, so without them a call would wait forever).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a ping may go unanswered before the upstream connection is given up.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where an upstream's descriptors came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptorOrigin {
    /// Read from the running upstream by gRPC reflection.
    Reflection,
    /// Read from a file given with `--descriptors`.
    File(PathBuf),
    /// A descriptor set sent with the admin API's Add or Replace (`testbed route add
    /// --descriptors`).
    Sent,
    /// The testbed's own compiled-in increment descriptors (the upstream could not be read and
    /// its VERSION names one of the testbed's increment APIs).
    BuiltIn,
}

impl std::fmt::Display for DescriptorOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DescriptorOrigin::Reflection => f.write_str("reflection"),
            DescriptorOrigin::File(path) => write!(f, "{}", path.display()),
            DescriptorOrigin::Sent => f.write_str("the descriptor set sent with the call"),
            DescriptorOrigin::BuiltIn => f.write_str("the built-in increment descriptors"),
        }
    }
}

/// What one upstream declares: the API packages it implements and their descriptors.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The upstream.
    pub spec: UpstreamSpec,
    /// The packages it implements, sorted: every package with a service, except `grpc.*` and
    /// the older packages its spec routes to it with `+PACKAGE`.
    pub packages: Vec<String>,
    /// The files of those packages (and of its `+PACKAGE`s, when it declares them), with their
    /// imports.
    pub pool: DescriptorPool,
    /// Where the descriptors came from.
    pub origin: DescriptorOrigin,
    /// How long reading them took.
    pub took: Duration,
}

/// Whether `package` is infrastructure every gRPC server may carry (health, reflection), not an
/// API the gateway routes.
fn is_grpc_infrastructure(package: &str) -> bool {
    package == "grpc" || package.starts_with("grpc.")
}

/// The upstream a backend belongs to: `NAME` of `NAME/PACKAGE` (an upstream implementing
/// several packages), `NAME` of `NAME`.
pub fn upstream_of(backend: &str) -> &str {
    backend
        .split_once('/')
        .map_or(backend, |(upstream, _)| upstream)
}

/// `shop` for `shop.v2` or `shop.v2beta1`: the package up to its version component.
fn package_stem(package: &str) -> &str {
    match package.rsplit_once('.') {
        Some((stem, last))
            if last.starts_with('v') && last[1..].starts_with(|c: char| c.is_ascii_digit()) =>
        {
            stem
        }
        _ => package,
    }
}

/// Whether [`discover`] may take an upstream that nothing answers for to be the testbed's own
/// API of its version's major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// At start: the router may start before the testbed's own backends (with a warning).
    BuiltIn,
    /// At runtime (admin Add and Replace): an upstream whose descriptors cannot be read is
    /// refused, even if it stopped answering between the reachability check and reflection.
    None,
}

/// Reads what `spec` declares: from `descriptors` when given, else by reflection (v1, falling
/// back to v1alpha) over the upstream's own channel, so an `https://` upstream is read over TLS
/// and checked against `ca` as its calls will be. When there is no file, VERSION's
/// `increment.v{MAJOR}` is one of the testbed's own APIs and nothing listens at the upstream's
/// address yet, the compiled-in descriptors stand in (with a warning; [`Fallback::BuiltIn`]
/// only), so a router can still start before a testbed upstream is up. An upstream that answers but serves no reflection
/// needs its descriptors file.
pub async fn discover(
    spec: &UpstreamSpec,
    descriptors: Option<&Path>,
    ca: Option<&Path>,
    fallback: Fallback,
) -> anyhow::Result<Discovered> {
    let started = Instant::now();
    let loaded = match descriptors {
        Some(path) => {
            let pool = read_descriptors(path, &[])
                .await
                .with_context(|| format!("the descriptors of upstream {}", spec.name))?;
            Ok((pool, DescriptorOrigin::File(path.to_path_buf())))
        }
        None => {
            // A setting to fix (an https:// upstream without --upstream-ca) is said as it is,
            // not taken as a reason to fall back.
            let mut read = Err(anyhow::anyhow!("upstream {} has no address", spec.name));
            // Replicas of one build: the first that answers tells.
            for (endpoint, channel) in spec.endpoints.iter().zip(spec.channels_with_ca(ca)?) {
                read = by_reflection(spec, endpoint, &channel).await;
                if read.is_ok() {
                    break;
                }
            }
            read.map(|pool| (pool, DescriptorOrigin::Reflection))
        }
    };
    // Only an upstream nobody can ask is taken at its version's word.
    let unaskable = fallback == Fallback::BuiltIn
        && loaded.is_err()
        && descriptors.is_none()
        && services::API_PACKAGES.contains(&spec.api().as_str())
        && crate::route_checks::reachable(&spec.name, spec.host_port())
            .await
            .is_err();
    let (pool, origin) = match loaded {
        Ok(found) => found,
        Err(err) if unaskable => {
            tracing::warn!(
                upstream = %spec.name,
                api = %spec.api(),
                "cannot read the upstream's descriptors ({err:#}); taking it to be the testbed's {}, \
                 as its version says",
                spec.api()
            );
            (built_in_pool()?, DescriptorOrigin::BuiltIn)
        }
        Err(err) if descriptors.is_none() => {
            return Err(err.context(format!(
                "cannot learn which API upstream {} ({}) serves: it must serve gRPC reflection \
                 (grpc.reflection.v1 or v1alpha), or give its descriptors with --descriptors \
                 {}=FILE at start or `testbed route add ... --descriptors FILE` at runtime (a \
                 FileDescriptorSet from `protoc --include_imports -o FILE` or `buf build -o \
                 FILE`, or a directory of .proto files)",
                spec.name, spec.addr, spec.name
            )));
        }
        Err(err) => return Err(err),
    };
    declared_in(spec, pool, origin, started)
}

/// The upstream's descriptors, read by reflection from its replica at `endpoint` over
/// `channel`, the one its calls will use (TLS and its CA included), within
/// [`compat::REFLECTION_TIMEOUT`].
async fn by_reflection(
    spec: &UpstreamSpec,
    endpoint: &str,
    channel: &Channel,
) -> anyhow::Result<DescriptorPool> {
    let label = match spec.tls() {
        true => endpoint.to_string(),
        false => format!("grpc://{endpoint}"),
    };
    Ok(
        compat::load_over(channel, &label, compat::REFLECTION_TIMEOUT)
            .await?
            .pool,
    )
}

/// The descriptors in `path`: a binary `FileDescriptorSet` (`protoc --include_imports -o`,
/// `buf build -o`), or a directory of `.proto` files compiled with `includes` as further import
/// paths. What `serve --descriptors` and `testbed route add --descriptors` read.
pub async fn read_descriptors(path: &Path, includes: &[PathBuf]) -> anyhow::Result<DescriptorPool> {
    let api = compat::Source::from_path(path)
        .load(includes)
        .await
        .with_context(|| format!("cannot read descriptors from {}", path.display()))?;
    Ok(api.pool)
}

/// What `spec` declares in `pool` (descriptors from `origin`, read since `started`): the
/// packages with a service it implements, and the files of those and of its `+PACKAGE`s.
pub fn declared_in(
    spec: &UpstreamSpec,
    pool: DescriptorPool,
    origin: DescriptorOrigin,
    started: Instant,
) -> anyhow::Result<Discovered> {
    let packages: Vec<String> = if origin == DescriptorOrigin::BuiltIn {
        vec![spec.api()]
    } else {
        let declared: BTreeSet<String> = pool
            .services()
            .map(|service| service.package_name().to_string())
            .filter(|package| !is_grpc_infrastructure(package))
            .collect();
        if declared.contains("") {
            tracing::warn!(upstream = %spec.name, "services without a package are not routed");
        }
        declared
            .into_iter()
            .filter(|package| !package.is_empty() && !spec.also_serving.contains(package))
            .collect()
    };
    if packages.is_empty() {
        bail!(
            "upstream {} declares no API service of its own in {origin} (only grpc.* or the \
             packages given with +PACKAGE); nothing to route to it",
            spec.name
        );
    }
    let wanted: Vec<&str> = packages
        .iter()
        .chain(&spec.also_serving)
        .map(String::as_str)
        .collect();
    let pool = restricted(&pool, &wanted)
        .with_context(|| format!("the descriptors of upstream {} do not link", spec.name))?;
    Ok(Discovered {
        spec: spec.clone(),
        packages,
        pool,
        origin,
        took: started.elapsed(),
    })
}

/// The testbed's own API descriptors.
fn built_in_pool() -> anyhow::Result<DescriptorPool> {
    DescriptorPool::decode(services::FILE_DESCRIPTOR_SET)
        .context("the built-in descriptors do not decode")
}

/// A pool of the files of `packages` in `pool` and everything they import.
pub(crate) fn restricted(
    pool: &DescriptorPool,
    packages: &[&str],
) -> anyhow::Result<DescriptorPool> {
    let mut keep: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<prost_reflect::FileDescriptor> = pool
        .files()
        .filter(|file| packages.contains(&file.package_name()))
        .collect();
    while let Some(file) = todo.pop() {
        if keep.insert(file.name().to_string()) {
            todo.extend(file.dependencies());
        }
    }
    // The usual case (an upstream's set holds its API and imports only): no copy.
    if keep.len() == pool.files().len() {
        return Ok(pool.clone());
    }
    let mut out = DescriptorPool::new();
    out.add_file_descriptor_protos(
        pool.file_descriptor_protos()
            .filter(|file| keep.contains(file.name()))
            .cloned(),
    )?;
    Ok(out)
}

/// `file` without what does not change its meaning (comments and positions), for comparing
/// two upstreams' copies of one file.
pub(crate) fn meaning(file: &FileDescriptorProto) -> FileDescriptorProto {
    FileDescriptorProto {
        source_code_info: None,
        ..file.clone()
    }
}

impl Discovered {
    /// This upstream's build: its own descriptors, encoded (what reflection asked for its
    /// version describes).
    pub fn build(&self) -> Build {
        let build = Build::of(&self.pool);
        match self.origin {
            // Read by reflection, it can be read again to find a drift.
            DescriptorOrigin::Reflection => build.refreshable(),
            _ => build,
        }
    }

    /// The router backends forwarding to this upstream over one connection pool: one backend
    /// named NAME when it implements one package; else one per package, named NAME/PACKAGE,
    /// each routed the `+PACKAGE`s that are older versions of its package. Each carries
    /// `build` ([`Discovered::build`], pinned-only when it breaks an older build).
    pub fn backends(&self, ca: Option<&Path>, build: Build) -> anyhow::Result<Vec<Backend>> {
        let spec = &self.spec;
        let replicas = spec.replicas_with_ca(ca)?;
        let single = self.packages.len() == 1;
        for older in &spec.also_serving {
            if !single
                && !self
                    .packages
                    .iter()
                    .any(|p| package_stem(p) == package_stem(older))
            {
                bail!(
                    "upstream {} implements several packages ({}); +{older} must be an older \
                     version of one of them (the same package up to its version, like shop.v1 \
                     for shop.v2)",
                    spec.name,
                    self.packages.join(", ")
                );
            }
        }
        Ok(self
            .packages
            .iter()
            .map(|package| {
                let name = match single {
                    true => spec.name.clone(),
                    false => format!("{}/{package}", spec.name),
                };
                let backend =
                    Backend::replicated(&name, spec.version.clone(), package, replicas.clone())
                        .with_weight(spec.weight)
                        .with_build(build.clone());
                spec.also_serving
                    .iter()
                    .filter(|older| single || package_stem(older) == package_stem(package))
                    .fold(backend, |backend, older| spec.retire(backend, older))
            })
            .collect())
    }

    /// Whether this upstream takes part in the testbed's own increment API.
    fn is_increment(&self) -> bool {
        self.packages
            .iter()
            .chain(&self.spec.also_serving)
            .any(|package| services::API_PACKAGES.contains(&package.as_str()))
    }
}

/// A gateway's route table over its upstreams, and what each declared.
#[derive(Debug)]
pub struct Gateway {
    /// The table: its catalog is the union of what the upstreams declare.
    pub table: RouteTable,
    /// What each upstream declared, in the order given.
    pub upstreams: Vec<Discovered>,
}

/// Reads what each upstream declares ([`discover`]; `descriptors` name files for some of them)
/// and builds the route table over them: the catalog holds every package they implement or
/// are routed with `+PACKAGE`, read from the union of their descriptors, and the table refuses
/// a `+PACKAGE` that compat finds breaking (quoting the findings). `ca` trusts `https://`
/// upstreams. The catalog may hold [`MAX_CATALOG_BYTES`]: see [`gateway_within`].
pub async fn gateway(
    specs: &[UpstreamSpec],
    descriptors: &[DescriptorsSpec],
    ca: Option<&Path>,
) -> anyhow::Result<Gateway> {
    gateway_within(specs, descriptors, ca, MAX_CATALOG_BYTES).await
}

/// [`gateway`], refused when the catalog would hold more than `max_catalog_bytes` of encoded
/// descriptors (`--max-catalog-bytes`), the error saying how much it would hold.
pub async fn gateway_within(
    specs: &[UpstreamSpec],
    descriptors: &[DescriptorsSpec],
    ca: Option<&Path>,
    max_catalog_bytes: usize,
) -> anyhow::Result<Gateway> {
    if let Some(unknown) = descriptors
        .iter()
        .find(|d| !specs.iter().any(|s| s.name == d.name))
    {
        bail!(
            "--descriptors {}={}: no --upstream is named {:?}",
            unknown.name,
            unknown.path.display(),
            unknown.name
        );
    }
    let mut upstreams = Vec::with_capacity(specs.len());
    for spec in specs {
        let file = descriptors
            .iter()
            .rev()
            .find(|d| d.name == spec.name)
            .map(|d| d.path.as_path());
        let discovered = discover(spec, file, ca, Fallback::BuiltIn).await?;
        tracing::info!(
            upstream = %spec.name,
            packages = %discovered.packages.join(", "),
            from = %discovered.origin,
            took_ms = format_args!("{:.1}", discovered.took.as_secs_f64() * 1e3),
            "descriptors read"
        );
        upstreams.push(discovered);
    }
    let builds::Merged { mut pool, breaks } = builds::merged(&upstreams)?;
    let mut packages: BTreeSet<String> = BTreeSet::new();
    for upstream in &upstreams {
        packages.extend(upstream.packages.iter().cloned());
        packages.extend(upstream.spec.also_serving.iter().cloned());
    }
    if upstreams.iter().any(Discovered::is_increment) {
        // As before discovery: both increment versions are managed (health reports the one no
        // upstream serves NOT_SERVING), from the compiled-in descriptors where no upstream
        // declared them.
        let have: BTreeSet<String> = pool.files().map(|f| f.name().to_string()).collect();
        let built_in = built_in_pool()?;
        pool.add_file_descriptor_protos(
            built_in
                .file_descriptor_protos()
                .filter(|file| !have.contains(file.name()))
                .cloned(),
        )
        .context("the built-in descriptors do not link with the upstreams'")?;
        packages.extend(services::API_PACKAGES.iter().map(|p| p.to_string()));
    }
    let declared: BTreeSet<String> = pool.files().map(|f| f.package_name().to_string()).collect();
    for upstream in &upstreams {
        for older in &upstream.spec.also_serving {
            if !declared.contains(older) {
                bail!(
                    "upstream {} is to serve {older} (+{older}), but no upstream declares \
                     {older}: list an upstream that serves it, or give descriptors holding both \
                     versions with --descriptors {}=FILE, so that the gateway can check the two \
                     are wire-compatible",
                    upstream.spec.name,
                    upstream.spec.name
                );
            }
        }
    }
    let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
    let catalog = ApiCatalog::from_pool(pool, &packages)?;
    if catalog.encoded_len() > max_catalog_bytes {
        bail!(
            "the upstreams' descriptors come to {} bytes (encoded), past --max-catalog-bytes \
             {max_catalog_bytes}: raise --max-catalog-bytes, or give fewer or smaller \
             descriptors",
            catalog.encoded_len()
        );
    }
    let mut backends = Vec::new();
    for upstream in &upstreams {
        let build = match breaks.get(&upstream.spec.name) {
            Some(what) => upstream.build().breaking(what.as_str()),
            None => upstream.build(),
        };
        backends.extend(upstream.backends(ca, build)?);
    }
    let table = RouteTable::new(catalog, backends).context("cannot route to these upstreams")?;
    Ok(Gateway { table, upstreams })
}
