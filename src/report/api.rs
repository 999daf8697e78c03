//! The API itself, for the report's page: each version's services, methods and messages with
//! the comments of its `.proto` (read from the compiled-in descriptors' source info, as
//! protoc-gen-doc does), and the changelog from v1 to v2 with its semver verdict from `compat`,
//! the same check `testbed check proto/v1 proto/v2` runs.

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet, SourceCodeInfo};
use serde::Serialize;

/// The API section of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ApiSection {
    /// Each version, oldest first.
    pub versions: Vec<VersionDoc>,
    /// v1 → v2 as `compat` sees it.
    pub changelog: compat::Report,
}

/// One API version, as its `.proto` declares it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionDoc {
    /// The protobuf package.
    pub package: String,
    /// Services with their methods.
    pub services: Vec<ServiceDoc>,
    /// Messages with their fields.
    pub messages: Vec<MessageDoc>,
}

/// A service and its methods.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceDoc {
    /// Full name.
    pub name: String,
    /// Its comment in the `.proto`.
    pub comment: String,
    /// Its methods.
    pub methods: Vec<MethodDoc>,
}

/// One method.
#[derive(Debug, Clone, Serialize)]
pub struct MethodDoc {
    /// Name.
    pub name: String,
    /// `rpc Name (stream Request) returns (Reply)`, as declared.
    pub signature: String,
    /// Its comment.
    pub comment: String,
}

/// A message and its fields.
#[derive(Debug, Clone, Serialize)]
pub struct MessageDoc {
    /// Full name.
    pub name: String,
    /// Its comment.
    pub comment: String,
    /// Its fields, in declaration order.
    pub fields: Vec<FieldDoc>,
}

/// One field.
#[derive(Debug, Clone, Serialize)]
pub struct FieldDoc {
    /// Name.
    pub name: String,
    /// Number.
    pub number: i32,
    /// Type and label as written, e.g. `optional int64`.
    pub kind: String,
    /// Its comment.
    pub comment: String,
}

/// The API section from the compiled-in descriptors of both versions.
pub fn section() -> anyhow::Result<ApiSection> {
    let set = FileDescriptorSet::decode(services::FILE_DESCRIPTOR_SET)?;
    let versions = services::API_PACKAGES
        .iter()
        .filter_map(|package| set.file.iter().find(|f| f.package() == *package))
        .map(version_doc)
        .collect();
    let api = compat::Api::from_descriptor_set_bytes(services::FILE_DESCRIPTOR_SET, "testbed")?;
    let [v1, v2] = services::API_PACKAGES;
    let options = compat::CheckOptions {
        map: vec![(v1.to_string(), v2.to_string())],
        auto_pair: false,
        ..compat::CheckOptions::default()
    };
    let changelog = compat::check(
        &compat::Api::package_view(&api.pool, v1),
        &compat::Api::package_view(&api.pool, v2),
        &options,
    );
    Ok(ApiSection {
        versions,
        changelog,
    })
}

fn version_doc(file: &FileDescriptorProto) -> VersionDoc {
    let comments = Comments(file.source_code_info.as_ref());
    let package = file.package().to_string();
    let services = file
        .service
        .iter()
        .zip(0..)
        .map(|(service, s)| ServiceDoc {
            name: format!("{package}.{}", service.name()),
            comment: comments.at(&[6, s]),
            methods: service
                .method
                .iter()
                .zip(0..)
                .map(|(method, m)| MethodDoc {
                    name: method.name().to_string(),
                    signature: format!(
                        "rpc {} ({}{}) returns ({}{})",
                        method.name(),
                        if method.client_streaming() {
                            "stream "
                        } else {
                            ""
                        },
                        short(method.input_type()),
                        if method.server_streaming() {
                            "stream "
                        } else {
                            ""
                        },
                        short(method.output_type())
                    ),
                    comment: comments.at(&[6, s, 2, m]),
                })
                .collect(),
        })
        .collect();
    let messages = file
        .message_type
        .iter()
        .zip(0..)
        .map(|(message, i)| MessageDoc {
            name: format!("{package}.{}", message.name()),
            comment: comments.at(&[4, i]),
            fields: message
                .field
                .iter()
                .zip(0..)
                .map(|(field, f)| FieldDoc {
                    name: field.name().to_string(),
                    number: field.number(),
                    kind: field_kind(field),
                    comment: comments.at(&[4, i, 2, f]),
                })
                .collect(),
        })
        .collect();
    VersionDoc {
        package,
        services,
        messages,
    }
}

/// A type name without its leading dot and package, as a `.proto` writes it in its own file.
fn short(type_name: &str) -> &str {
    type_name.rsplit('.').next().unwrap_or(type_name)
}

fn field_kind(field: &prost_types::FieldDescriptorProto) -> String {
    use prost_types::field_descriptor_proto::{Label, Type};
    let label = match field.label() {
        Label::Repeated => "repeated ",
        _ if field.proto3_optional() => "optional ",
        _ => "",
    };
    let kind = match field.r#type() {
        Type::Message | Type::Enum => short(field.type_name()).to_string(),
        other => other
            .as_str_name()
            .trim_start_matches("TYPE_")
            .to_lowercase(),
    };
    format!("{label}{kind}")
}

/// A file's comments, looked up by descriptor path (`[4, i]` is message `i`, `[4, i, 2, j]`
/// its field `j`, `[6, i]` service `i`, `[6, i, 2, j]` its method `j`).
struct Comments<'a>(Option<&'a SourceCodeInfo>);

impl Comments<'_> {
    fn at(&self, path: &[i32]) -> String {
        let Some(location) = self
            .0
            .and_then(|info| info.location.iter().find(|l| l.path == path))
        else {
            return String::new();
        };
        [location.leading_comments(), location.trailing_comments()]
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_are_documented_with_their_comments_and_v2_is_a_minor_change() {
        let api = section().unwrap();
        let packages: Vec<&str> = api.versions.iter().map(|v| v.package.as_str()).collect();
        assert_eq!(packages, ["increment.v1", "increment.v2"]);
        let v2 = &api.versions[1];
        let request = v2
            .messages
            .iter()
            .find(|m| m.name == "increment.v2.IncrementRequest")
            .unwrap();
        let step = request.fields.iter().find(|f| f.name == "step").unwrap();
        assert_eq!((step.number, step.kind.as_str()), (2, "optional int64"));
        assert!(!step.comment.is_empty(), "the proto's comment on step");
        let methods = &v2.services[0].methods;
        assert!(methods.iter().any(|m| m.signature
            == "rpc IncrementStream (stream IncrementRequest) returns (stream IncrementReply)"));
        assert_eq!(api.changelog.verdict, Some(compat::Bump::Minor));
        assert!(
            api.changelog
                .findings
                .iter()
                .any(|f| f.rule == "FIELD_ADDED" && f.element.ends_with("IncrementRequest.step")),
            "{:?}",
            api.changelog.findings
        );
    }
}
