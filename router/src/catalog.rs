//! What the router knows about the APIs it manages, read from their protobuf descriptors.
//!
//! The catalog answers one question the route table depends on: may a backend implementing
//! package `newer` serve requests sent to package `older`? The `compat` crate answers it, the
//! one place where two API versions are compared: only when it finds no breaking `WIRE` or
//! `GRPC` change from `older` to `newer` (every service, method and field present with the same
//! numbers, wire types, cardinality, enum numbering and streaming shape), so that `older`
//! request bytes mean the same thing to the newer implementation. The answer is derived from the
//! descriptors, not declared, so a proto change that breaks compatibility breaks the route table
//! at build time instead of answering wrongly at runtime, and the refusal quotes the findings
//! with what each does on the wire.
//!
//! A catalog grows when an upstream added at runtime brings packages it did not manage
//! ([`ApiCatalog::grown`]) and shrinks again when the last backend routed such a package leaves
//! ([`ApiCatalog::retaining`]): the packages it was first built with (at start) stay, the rest
//! live only as long as a backend routes them, so removing a backend frees the descriptors only
//! it brought. [`ApiCatalog::encoded_len`] is what it holds, in encoded descriptor bytes, for
//! the gateway's `--max-catalog-bytes`.

use prost::Message;
use prost_reflect::{DescriptorPool, FileDescriptor};
use prost_types::ServiceDescriptorProto;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Why a catalog could not be built or a compatibility check failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The encoded descriptor set did not decode.
    #[error("the file descriptor set does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The descriptor set decoded but does not hang together (a type it names is missing).
    #[error("the file descriptor set is not consistent: {0}")]
    Descriptors(Box<prost_reflect::DescriptorError>),
    /// A managed package has no file in the descriptor set.
    #[error("package {0} is not in the file descriptor set")]
    UnknownPackage(String),
    /// `newer` lacks something `older` has, or has it in another shape.
    #[error("{newer} is not a wire-compatible superset of {older}: {reason}")]
    Incompatible {
        /// The package that would serve the requests.
        newer: String,
        /// The package the requests are written against.
        older: String,
        /// What breaks, one finding a line, each with its wire confirmation.
        reason: String,
    },
}

/// The API packages a router manages, with their services and message types.
#[derive(Debug, Clone, Default)]
pub struct ApiCatalog {
    services: HashMap<String, Vec<ServiceDescriptorProto>>,
    /// Every descriptor, for the compatibility checks.
    pool: DescriptorPool,
    /// `/package.Service/Method` of every managed method.
    paths: HashSet<String>,
    /// Of those, the methods whose client sends exactly one message (unary, server-streaming).
    one_message: HashSet<String>,
    /// The packages kept whether or not a backend routes them: those of the first catalog (the
    /// start's), of which later ones are grown.
    pinned: Arc<BTreeSet<String>>,
    /// The files kept likewise: every file of the first catalog's pool.
    pinned_files: Arc<BTreeSet<String>>,
    /// The encoded size of every file in `pool`.
    encoded_len: usize,
    /// Which catalog this is: every catalog built gets a new one, its clones share it.
    generation: u64,
    /// Shared by this catalog's clones and dropped after their `pool`s (fields drop in order):
    /// hands the heap's free pages back once the last clone of a large catalog is gone.
    _release: Arc<ReleaseOnDrop>,
}

/// One method of an older package (`Service/Method`) and whether a newer package's
/// implementation can serve it (else compat's findings, as one line).
pub type MethodServed = (String, Result<(), String>);

/// The next catalog's [`ApiCatalog::generation`].
static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Catalogs smaller than this (encoded) are dropped without trimming the heap: what they free
/// is not worth a walk through it.
const TRIM_FROM_BYTES: usize = 256 * 1024;

/// Trims the heap when dropped, if it guards a catalog of [`TRIM_FROM_BYTES`] or more.
#[derive(Debug, Default)]
struct ReleaseOnDrop {
    large: bool,
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if self.large {
            release_freed_memory();
        }
    }
}

/// Hands the heap's free pages back to the system: glibc keeps freed memory in its arenas, so
/// without this a gateway's resident size would stay at its peak after a large catalog (or
/// the copies made while reading one) is gone.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims glibc's own arenas, under their locks; it takes
    // no pointer and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl ApiCatalog {
    /// Builds a catalog of `packages` from an encoded `FileDescriptorSet`.
    pub fn from_encoded(fds: &[u8], packages: &[&str]) -> Result<Self, CatalogError> {
        let pool =
            DescriptorPool::decode(fds).map_err(|e| CatalogError::Descriptors(Box::new(e)))?;
        Self::from_pool(pool, packages)
    }

    /// Builds a catalog of `packages` from the descriptors in `pool` (the union of what a
    /// gateway's upstreams declare, say). Every package must have a file in the pool. These
    /// packages and files stay in every catalog grown from this one ([`retaining`]).
    ///
    /// [`retaining`]: Self::retaining
    pub fn from_pool(pool: DescriptorPool, packages: &[&str]) -> Result<Self, CatalogError> {
        let mut catalog = Self::indexed(pool, packages)?;
        catalog.pinned = Arc::new(packages.iter().map(|p| p.to_string()).collect());
        catalog.pinned_files = Arc::new(
            catalog
                .pool
                .files()
                .map(|file| file.name().to_string())
                .collect(),
        );
        Ok(catalog)
    }

    /// This catalog grown to `packages` (every one it manages, and more), read from `pool` (its
    /// own pool with further files): what it pins stays pinned, the new packages stay only
    /// while a backend routes them ([`retaining`](Self::retaining)).
    pub fn grown(&self, pool: DescriptorPool, packages: &[&str]) -> Result<Self, CatalogError> {
        if let Some(missing) = self
            .services
            .keys()
            .find(|p| !packages.contains(&p.as_str()))
        {
            return Err(CatalogError::UnknownPackage(missing.clone()));
        }
        Ok(Self::indexed(pool, packages)?.pinning_as(self))
    }

    /// This catalog pinning what `other` pins.
    fn pinning_as(mut self, other: &Self) -> Self {
        self.pinned = other.pinned.clone();
        self.pinned_files = other.pinned_files.clone();
        self
    }

    /// The catalog without the packages that neither are pinned (managed since the first
    /// catalog) nor in `routed` (the packages some backend is routed), and without the files
    /// only they needed; `None` when it would drop nothing. How removing the last backend of
    /// a package added at runtime frees its descriptors.
    pub fn retaining<'a>(
        &self,
        routed: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Self>, CatalogError> {
        let routed: HashSet<&str> = routed.into_iter().collect();
        let keep: Vec<&str> = self
            .packages()
            .into_iter()
            .filter(|p| self.pinned.contains(*p) || routed.contains(p))
            .collect();
        if keep.len() == self.services.len() {
            return Ok(None);
        }
        let mut files: HashSet<String> = HashSet::new();
        let mut todo: Vec<FileDescriptor> = self
            .pool
            .files()
            .filter(|f| self.pinned_files.contains(f.name()) || keep.contains(&f.package_name()))
            .collect();
        while let Some(file) = todo.pop() {
            if files.insert(file.name().to_string()) {
                todo.extend(file.dependencies());
            }
        }
        let mut pool = DescriptorPool::new();
        // In the pool's order, which has every file after its imports.
        pool.add_file_descriptor_protos(
            self.pool
                .file_descriptor_protos()
                .filter(|f| files.contains(f.name()))
                .cloned(),
        )
        .map_err(|e| CatalogError::Descriptors(Box::new(e)))?;
        Ok(Some(Self::indexed(pool, &keep)?.pinning_as(self)))
    }

    /// The catalog of `packages` over `pool`, pinning nothing.
    fn indexed(pool: DescriptorPool, packages: &[&str]) -> Result<Self, CatalogError> {
        let mut services: HashMap<String, Vec<ServiceDescriptorProto>> = HashMap::new();
        for file in pool.file_descriptor_protos() {
            let package = file.package();
            if packages.contains(&package) {
                services
                    .entry(package.to_string())
                    .or_default()
                    .extend(file.service.iter().cloned());
            }
        }
        for package in packages {
            if !services.contains_key(*package) {
                return Err(CatalogError::UnknownPackage(package.to_string()));
            }
        }
        let mut paths = HashSet::new();
        let mut one_message = HashSet::new();
        for (package, services) in &services {
            for service in services {
                for method in &service.method {
                    let path = format!("/{package}.{}/{}", service.name(), method.name());
                    if !method.client_streaming() {
                        one_message.insert(path.clone());
                    }
                    paths.insert(path);
                }
            }
        }
        let encoded_len = pool
            .file_descriptor_protos()
            .map(Message::encoded_len)
            .sum();
        Ok(Self {
            services,
            pool,
            paths,
            one_message,
            pinned: Arc::default(),
            pinned_files: Arc::default(),
            encoded_len,
            generation: NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            _release: Arc::new(ReleaseOnDrop {
                large: encoded_len >= TRIM_FROM_BYTES,
            }),
        })
    }

    /// The encoded size in bytes of every descriptor the catalog holds (its files as a
    /// `FileDescriptorSet` would carry them, less a few bytes of framing each): what
    /// `--max-catalog-bytes` bounds.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    /// Which catalog this is: the same for its clones, another for every catalog built since
    /// (grown, shrunk, a build's files swapped in), so that what was derived from one (the
    /// reflection services) can tell it is out of date.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every descriptor the catalog was built from (managed packages, their imports, and
    /// whatever else the pool held), for reflection and the compatibility checks.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// Whether `package` is one of the managed API packages.
    pub fn manages(&self, package: &str) -> bool {
        self.services.contains_key(package)
    }

    /// Whether `path` (`/package.Service/Method`) names a method of a managed package.
    pub fn has_method(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    /// Whether `path` names a managed method whose client sends exactly one message (unary or
    /// server-streaming): the port's guard refuses zero or two messages for it.
    pub fn takes_one_message(&self, path: &str) -> bool {
        self.one_message.contains(path)
    }

    /// The methods of the managed packages, sorted, as `package.Service/Method`.
    pub fn methods(&self) -> Vec<&str> {
        let mut methods: Vec<&str> = self.paths.iter().map(|p| &p[1..]).collect();
        methods.sort_unstable();
        methods
    }

    /// The methods of managed package `package`, sorted, as `package.Service/Method` (none when
    /// the package is not managed).
    pub fn methods_of(&self, package: &str) -> Vec<String> {
        let mut methods: Vec<String> =
            self.services
                .get(package)
                .into_iter()
                .flatten()
                .flat_map(|service| {
                    service.method.iter().map(move |method| {
                        format!("{package}.{}/{}", service.name(), method.name())
                    })
                })
                .collect();
        methods.sort_unstable();
        methods
    }

    /// The managed packages, sorted.
    pub fn packages(&self) -> Vec<&str> {
        let mut packages: Vec<&str> = self.services.keys().map(String::as_str).collect();
        packages.sort_unstable();
        packages
    }

    /// Full names (`package.Service`) of every managed service in `package`.
    pub fn service_names(&self, package: &str) -> Vec<String> {
        self.services
            .get(package)
            .into_iter()
            .flatten()
            .map(|service| format!("{package}.{}", service.name()))
            .collect()
    }

    /// Of `older`'s methods (`Service/Method`), those an implementation of `newer` can serve
    /// (`Ok`), and each of the others with compat's findings as one line (`Err`).
    pub fn methods_served(
        &self,
        newer: &str,
        older: &str,
    ) -> Result<Vec<MethodServed>, CatalogError> {
        for package in [newer, older] {
            if !self.manages(package) {
                return Err(CatalogError::UnknownPackage(package.to_string()));
            }
        }
        Ok(compat::methods::per_method(&self.pool, older, newer)
            .into_iter()
            .map(|verdict| {
                let outcome = match verdict.findings.is_empty() {
                    true => Ok(()),
                    false => Err(compat::refusal_text(&verdict.findings)),
                };
                (verdict.method, outcome)
            })
            .collect())
    }

    /// `Ok` when an implementation of `newer` can serve requests written for `older`; else the
    /// breaking findings `compat` reports, with their wire confirmations.
    pub fn check_superset(&self, newer: &str, older: &str) -> Result<(), CatalogError> {
        for package in [newer, older] {
            if !self.manages(package) {
                return Err(CatalogError::UnknownPackage(package.to_string()));
            }
        }
        compat::wire_compatible(&self.pool, older, newer).map_err(|findings| {
            CatalogError::Incompatible {
                newer: newer.to_string(),
                older: older.to_string(),
                reason: compat::refusal_text(&findings),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{V1, V2, catalog};

    #[test]
    fn methods_of_lists_one_package() {
        let catalog = catalog();
        assert_eq!(catalog.methods_of(V1), ["demo.v1.Counter/Add"]);
        assert_eq!(
            catalog.methods_of(V2),
            ["demo.v2.Counter/Add", "demo.v2.Counter/Reset"]
        );
        assert!(catalog.methods_of("demo").is_empty());
        assert_eq!(catalog.methods().len(), 3);
    }

    #[test]
    fn methods_whose_client_sends_one_message_are_told_apart() {
        use prost_types::{
            DescriptorProto, FileDescriptorProto, MethodDescriptorProto, ServiceDescriptorProto,
        };
        let method =
            |name: &str, client_streaming: bool, server_streaming: bool| MethodDescriptorProto {
                name: Some(name.into()),
                input_type: Some(".s.v1.M".into()),
                output_type: Some(".s.v1.M".into()),
                client_streaming: Some(client_streaming),
                server_streaming: Some(server_streaming),
                ..Default::default()
            };
        let file = FileDescriptorProto {
            name: Some("s/v1/s.proto".into()),
            package: Some("s.v1".into()),
            syntax: Some("proto3".into()),
            message_type: vec![DescriptorProto {
                name: Some("M".into()),
                ..Default::default()
            }],
            service: vec![ServiceDescriptorProto {
                name: Some("S".into()),
                method: vec![
                    method("Unary", false, false),
                    method("ServerStream", false, true),
                    method("ClientStream", true, false),
                    method("Bidi", true, true),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut pool = prost_reflect::DescriptorPool::new();
        pool.add_file_descriptor_proto(file).unwrap();
        let catalog = super::ApiCatalog::from_pool(pool, &["s.v1"]).unwrap();
        let one = |method: &str| catalog.takes_one_message(&format!("/s.v1.S/{method}"));
        assert!(one("Unary") && one("ServerStream"));
        assert!(!one("ClientStream") && !one("Bidi"));
        assert!(!one("Missing"));
        assert!(!catalog.takes_one_message("/other.v1.S/Unary"));
    }
}
