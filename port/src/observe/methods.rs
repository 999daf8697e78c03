//! The method labels of a call (`grpc_type`, `grpc_service`, `grpc_method`), for the methods
//! the port knows only: its own services' and the router's catalog as it is at each call.
//! Anything else is `unknown`, so a client sending made-up paths cannot grow the series.

use prometheus_client::encoding::EncodeLabelSet;
use prost::Message;
use router::RouterHandle;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Methods learned from the router's catalog that are remembered at most (the catalog is
/// bounded by the upstreams' descriptors; this bounds the memo whatever they declare).
const MAX_REMEMBERED: usize = 4096;

/// The labels go-grpc-prometheus puts on every series of a method.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MethodLabels {
    pub(crate) grpc_type: &'static str,
    pub(crate) grpc_service: Arc<str>,
    pub(crate) grpc_method: Arc<str>,
}

impl MethodLabels {
    fn new(service: &str, method: &str, client_streaming: bool, server_streaming: bool) -> Self {
        let grpc_type = match (client_streaming, server_streaming) {
            (false, false) => "unary",
            (true, false) => "client_stream",
            (false, true) => "server_stream",
            (true, true) => "bidi_stream",
        };
        Self {
            grpc_type,
            grpc_service: service.into(),
            grpc_method: method.into(),
        }
    }

    /// The labels of a path that names no known method.
    pub(crate) fn unknown() -> Self {
        Self {
            grpc_type: "unknown",
            grpc_service: "unknown".into(),
            grpc_method: "unknown".into(),
        }
    }
}

/// A known method: its labels, and whether its descriptor says `deprecated = true`.
#[derive(Debug, Clone)]
pub(crate) struct Method {
    pub(crate) labels: MethodLabels,
    pub(crate) deprecated: bool,
    /// Its descriptor, for decoding a sampled or recorded call (`None` for unknown paths).
    pub(crate) descriptor: Option<prost_reflect::MethodDescriptor>,
}

/// Which paths are methods, and their labels.
#[derive(Debug)]
pub(crate) struct KnownMethods {
    fixed: HashMap<String, Method>,
    router: Option<RouterHandle>,
    learned: RwLock<HashMap<String, Method>>,
    unknown: Method,
}

impl KnownMethods {
    /// The methods of `descriptor_sets` (what the port serves itself), and those of `router`'s
    /// catalog, looked up as calls come.
    pub(crate) fn new(
        descriptor_sets: &[&[u8]],
        router: Option<RouterHandle>,
    ) -> anyhow::Result<Self> {
        let mut fixed = HashMap::new();
        for encoded in descriptor_sets {
            let set = prost_types::FileDescriptorSet::decode(*encoded)
                .map_err(|err| anyhow::anyhow!("a served descriptor set does not decode: {err}"))?;
            let pool = prost_reflect::DescriptorPool::decode(*encoded).map_err(|err| {
                anyhow::anyhow!("a served descriptor set does not resolve: {err}")
            })?;
            for file in &set.file {
                for service in &file.service {
                    let full = format!("{}.{}", file.package(), service.name());
                    for method in &service.method {
                        let labels = MethodLabels::new(
                            &full,
                            method.name(),
                            method.client_streaming(),
                            method.server_streaming(),
                        );
                        let deprecated = method
                            .options
                            .as_ref()
                            .is_some_and(|options| options.deprecated());
                        let descriptor = pool
                            .get_service_by_name(&full)
                            .and_then(|s| s.methods().find(|m| m.name() == method.name()));
                        let known = Method {
                            labels,
                            deprecated,
                            descriptor,
                        };
                        fixed.insert(format!("/{full}/{}", method.name()), known);
                    }
                }
            }
        }
        Ok(Self {
            fixed,
            router,
            learned: RwLock::default(),
            unknown: Method {
                labels: MethodLabels::unknown(),
                deprecated: false,
                descriptor: None,
            },
        })
    }

    /// The method a call to `path` names (`unknown` for none the port knows).
    pub(crate) fn labels(&self, path: &str) -> Method {
        if let Some(labels) = self.fixed.get(path) {
            return labels.clone();
        }
        let Some(router) = &self.router else {
            return self.unknown.clone();
        };
        if let Some(labels) = read(&self.learned).get(path) {
            return labels.clone();
        }
        let table = router.table();
        let catalog = table.catalog();
        if !catalog.has_method(path) {
            return self.unknown.clone();
        }
        let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
            return self.unknown.clone();
        };
        let Some(descriptor) = catalog
            .pool()
            .get_service_by_name(service)
            .and_then(|s| s.methods().find(|m| m.name() == method))
        else {
            return self.unknown.clone();
        };
        let labels = Method {
            labels: MethodLabels::new(
                service,
                method,
                descriptor.is_client_streaming(),
                descriptor.is_server_streaming(),
            ),
            deprecated: descriptor
                .method_descriptor_proto()
                .options
                .as_ref()
                .is_some_and(|options| options.deprecated()),
            descriptor: Some(descriptor),
        };
        let mut learned = self.learned.write().unwrap_or_else(|e| e.into_inner());
        if learned.len() < MAX_REMEMBERED {
            learned.insert(path.to_string(), labels.clone());
        }
        labels
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A map of labels stays consistent whatever panicked while it was held.
    lock.read().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{
        FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto, MethodOptions,
        ServiceDescriptorProto,
    };

    #[test]
    fn a_method_declared_deprecated_is_known_as_such() {
        let method = |name: &str, deprecated: bool| MethodDescriptorProto {
            name: Some(name.into()),
            input_type: Some(".a.v1.E".into()),
            output_type: Some(".a.v1.E".into()),
            options: deprecated.then(|| MethodOptions {
                deprecated: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let set = FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("a.proto".into()),
                package: Some("a.v1".into()),
                message_type: vec![prost_types::DescriptorProto {
                    name: Some("E".into()),
                    ..Default::default()
                }],
                service: vec![ServiceDescriptorProto {
                    name: Some("S".into()),
                    method: vec![method("Old", true), method("New", false)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let encoded = set.encode_to_vec();
        let known = KnownMethods::new(&[&encoded], None).unwrap();
        assert!(known.labels("/a.v1.S/Old").deprecated);
        let old = known
            .labels("/a.v1.S/Old")
            .descriptor
            .expect("its descriptor");
        assert_eq!(old.input().full_name(), "a.v1.E");
        assert!(!known.labels("/a.v1.S/New").deprecated);
        assert_eq!(&*known.labels("/a.v1.S/New").labels.grpc_method, "New");
        assert_eq!(known.labels("/a.v1.S/Gone").labels.grpc_type, "unknown");
    }
}
