//! What the router knows about the APIs it manages, read from their protobuf descriptors.
//!
//! The catalog answers one question the route table depends on: may a backend implementing
//! package `newer` serve requests sent to package `older`? Only when every service, method and
//! field that `older` declares exists in `newer` with the same shape and field numbers, so that
//! `older` request bytes mean the same thing to the newer implementation. The answer is derived
//! from the descriptors, not declared, so a proto change that breaks compatibility breaks the
//! route table at build time instead of answering wrongly at runtime.

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorSet, ServiceDescriptorProto};
use std::collections::{HashMap, HashSet};

/// Why a catalog could not be built or a compatibility check failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The encoded descriptor set did not decode.
    #[error("the file descriptor set does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
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
        /// The first difference found.
        reason: String,
    },
}

/// The API packages a router manages, with their services and message types.
#[derive(Debug, Clone, Default)]
pub struct ApiCatalog {
    services: HashMap<String, Vec<ServiceDescriptorProto>>,
    messages: HashMap<String, DescriptorProto>,
    /// `/package.Service/Method` of every managed method.
    paths: HashSet<String>,
}

impl ApiCatalog {
    /// Builds a catalog of `packages` from an encoded `FileDescriptorSet`.
    pub fn from_encoded(fds: &[u8], packages: &[&str]) -> Result<Self, CatalogError> {
        let fds = FileDescriptorSet::decode(fds)?;
        let mut catalog = Self::default();
        for file in &fds.file {
            let package = file.package();
            for message in &file.message_type {
                catalog.index_message(package, message);
            }
            if packages.contains(&package) {
                catalog
                    .services
                    .entry(package.to_string())
                    .or_default()
                    .extend(file.service.iter().cloned());
            }
        }
        for package in packages {
            if !catalog.services.contains_key(*package) {
                return Err(CatalogError::UnknownPackage(package.to_string()));
            }
        }
        for (package, services) in &catalog.services {
            for service in services {
                for method in &service.method {
                    let path = format!("/{package}.{}/{}", service.name(), method.name());
                    catalog.paths.insert(path);
                }
            }
        }
        Ok(catalog)
    }

    fn index_message(&mut self, scope: &str, message: &DescriptorProto) {
        let name = format!(".{scope}.{}", message.name()).replace("..", ".");
        for nested in &message.nested_type {
            self.index_message(&name[1..], nested);
        }
        self.messages.insert(name, message.clone());
    }

    /// Whether `package` is one of the managed API packages.
    pub fn manages(&self, package: &str) -> bool {
        self.services.contains_key(package)
    }

    /// Whether `path` (`/package.Service/Method`) names a method of a managed package.
    pub fn has_method(&self, path: &str) -> bool {
        self.paths.contains(path)
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

    /// `Ok` when an implementation of `newer` can serve requests written for `older`.
    pub fn check_superset(&self, newer: &str, older: &str) -> Result<(), CatalogError> {
        let incompatible = |reason: String| CatalogError::Incompatible {
            newer: newer.to_string(),
            older: older.to_string(),
            reason,
        };
        let newer_services = self
            .services
            .get(newer)
            .ok_or_else(|| CatalogError::UnknownPackage(newer.to_string()))?;
        let older_services = self
            .services
            .get(older)
            .ok_or_else(|| CatalogError::UnknownPackage(older.to_string()))?;
        for old in older_services {
            let new = newer_services
                .iter()
                .find(|s| s.name == old.name)
                .ok_or_else(|| incompatible(format!("service {} is missing", old.name())))?;
            for old_method in &old.method {
                let method = format!("{}/{}", old.name(), old_method.name());
                let new_method = new
                    .method
                    .iter()
                    .find(|m| m.name == old_method.name)
                    .ok_or_else(|| incompatible(format!("method {method} is missing")))?;
                if new_method.client_streaming != old_method.client_streaming
                    || new_method.server_streaming != old_method.server_streaming
                {
                    return Err(incompatible(format!("method {method} streams differently")));
                }
                self.check_message(new_method.input_type(), old_method.input_type())
                    .map_err(incompatible)?;
                self.check_message(new_method.output_type(), old_method.output_type())
                    .map_err(incompatible)?;
            }
        }
        Ok(())
    }

    /// Every field of `older` must exist in `newer` with the same number, type and label.
    fn check_message(&self, newer: &str, older: &str) -> Result<(), String> {
        let (newer_name, older_name) =
            (newer.trim_start_matches('.'), older.trim_start_matches('.'));
        let find = |name: &str| {
            self.messages
                .get(name)
                .ok_or_else(|| format!("message {name} is not in the descriptor set"))
        };
        let (new, old) = (find(newer)?, find(older)?);
        for field in &old.field {
            let same_number = new.field.iter().find(|f| f.number == field.number);
            let Some(new_field) = same_number else {
                return Err(format!(
                    "{newer_name} has no field number {} ({older_name}.{})",
                    field.number(),
                    field.name()
                ));
            };
            if new_field.r#type != field.r#type || new_field.label != field.label {
                return Err(format!(
                    "field number {} is {:?} {:?} in {newer_name} but {:?} {:?} in {older_name}",
                    field.number(),
                    new_field.label(),
                    new_field.r#type(),
                    field.label(),
                    field.r#type()
                ));
            }
            if field.r#type() == prost_types::field_descriptor_proto::Type::Message {
                self.check_message(new_field.type_name(), field.type_name())?;
            }
        }
        Ok(())
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
}
