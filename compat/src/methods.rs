//! Per-method verdicts: which methods of an older package a newer package's implementation can
//! serve, when it cannot serve them all. [`crate::wire_compatible`]'s findings are attributed
//! to the methods they touch: a finding about a method (`pkg.Service.Method`) to that method, one
//! about a service to each of its methods, one about a message, field or enum to every method
//! whose request or response reaches that type through its fields (in either package's naming),
//! and one about anything else (a file, the package) to every method.

use crate::Finding;
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};
use std::collections::BTreeSet;

/// One method of the older package, and what keeps the newer package from serving it.
#[derive(Debug, Clone)]
pub struct MethodVerdict {
    /// `Service/Method`, as in a gRPC path.
    pub method: String,
    /// The breaking findings that touch it: none when the newer package can serve it.
    pub findings: Vec<Finding>,
}

/// For each method of `older` (in `pool`, beside `newer`), whether an implementation of `newer`
/// can serve its calls, by [`crate::wire_compatible`]'s rules.
pub fn per_method(pool: &DescriptorPool, older: &str, newer: &str) -> Vec<MethodVerdict> {
    let findings = crate::wire_compatible(pool, older, newer)
        .err()
        .unwrap_or_default();
    let renamed = |name: &str| match name.strip_prefix(older) {
        Some(rest) if rest.starts_with('.') => format!("{newer}{rest}"),
        _ => name.to_string(),
    };
    // Every message and enum either package declares, once: what tells a finding about a type
    // from one about a file or the package.
    let type_names: Vec<String> = pool
        .all_messages()
        .map(|m| m.full_name().to_string())
        .chain(pool.all_enums().map(|e| e.full_name().to_string()))
        .collect();
    let mut verdicts = Vec::new();
    for service in pool.services().filter(|s| s.package_name() == older) {
        for method in service.methods() {
            let full = method.full_name().to_string();
            let mut types: BTreeSet<String> = BTreeSet::new();
            reach(&method.input(), &mut types);
            reach(&method.output(), &mut types);
            let names: BTreeSet<String> =
                types.iter().flat_map(|t| [t.clone(), renamed(t)]).collect();
            let service_names = [
                service.full_name().to_string(),
                renamed(service.full_name()),
            ];
            let method_names = [full.clone(), renamed(&full)];
            let touches = |finding: &Finding| {
                let element = finding.element.as_str();
                let within = |name: &str| {
                    element == name
                        || element
                            .strip_prefix(name)
                            .is_some_and(|rest| rest.starts_with('.'))
                };
                if method_names.iter().any(|m| within(m)) {
                    return true;
                }
                if service_names.iter().any(|s| element == s) {
                    return true;
                }
                let in_service = service_names.iter().any(|s| within(s));
                if in_service {
                    // Another method of this service.
                    return false;
                }
                let about_a_type = type_names.iter().any(|t| within(t))
                    || element.starts_with(&format!("{newer}."));
                // A type's finding touches the methods that reach it; anything else, them all.
                !about_a_type || names.iter().any(|t| within(t))
            };
            verdicts.push(MethodVerdict {
                method: format!("{}/{}", service.name(), method.name()),
                findings: findings.iter().filter(|f| touches(f)).cloned().collect(),
            });
        }
    }
    verdicts
}

/// Adds `message` and every message and enum its fields reach to `types`, by full name.
fn reach(message: &MessageDescriptor, types: &mut BTreeSet<String>) {
    if !types.insert(message.full_name().to_string()) {
        return;
    }
    for field in message.fields() {
        match field.kind() {
            Kind::Message(inner) => reach(&inner, types),
            Kind::Enum(inner) => {
                types.insert(inner.full_name().to_string());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_narrowed_field_keeps_only_the_methods_that_reach_it() {
        let files = [
            (
                "shop/v1/shop.proto",
                "syntax = \"proto3\"; package shop.v1;
                 service Shop { rpc GetProduct(Get) returns (Product); rpc Place(Order) returns (Order); }
                 message Get { string sku = 1; }
                 message Product { int64 price = 1; }
                 message Order { string id = 1; }",
            ),
            (
                "shop/v2/shop.proto",
                "syntax = \"proto3\"; package shop.v2;
                 service Shop { rpc GetProduct(Get) returns (Product); rpc Place(Order) returns (Order); }
                 message Get { string sku = 1; }
                 message Product { int32 price = 1; }
                 message Order { string id = 1; int32 lines = 2; }",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let names = files.map(|(name, _)| name);
        let set = protox::compile(names, [dir.path()]).unwrap();
        let pool = DescriptorPool::from_file_descriptor_set(set).unwrap();
        let verdicts = per_method(&pool, "shop.v1", "shop.v2");
        let served: Vec<(&str, bool)> = verdicts
            .iter()
            .map(|v| (v.method.as_str(), v.findings.is_empty()))
            .collect();
        assert_eq!(served, [("Shop/GetProduct", false), ("Shop/Place", true)]);
        assert!(
            verdicts[0]
                .findings
                .iter()
                .any(|f| f.rule == "GRPC_FIELD_SAME_VALUE_RANGE"),
            "{:?}",
            verdicts[0].findings
        );
    }
}
