//! The rule list: buf's 64 breaking-change rules (ids and categories as buf prints them)
//! and this crate's `GRPC` rules, each with a one-line summary.

use super::*;

/// One rule: its id, the categories it belongs to, and whether this crate implements it.
#[derive(Debug, Clone, Copy)]
pub struct RuleInfo {
    /// buf's id, or this crate's `GRPC_*` id.
    pub id: &'static str,
    /// The categories the rule is part of (buf's, or `GRPC`).
    pub categories: &'static [Category],
    /// `None` when implemented; otherwise why not.
    pub not_implemented: Option<&'static str>,
    /// One line on what it checks.
    pub summary: &'static str,
}

pub(super) const fn r(
    id: &'static str,
    categories: &'static [Category],
    summary: &'static str,
) -> RuleInfo {
    RuleInfo {
        id,
        categories,
        not_implemented: None,
        summary,
    }
}

/// buf's 64 breaking rules (categories as `buf config ls-breaking-rules` prints them for buf
/// 1.75, without buf's CSR category) followed by the `GRPC` rules.
pub const RULES: &[RuleInfo] = &[
    r("ENUM_NO_DELETE", &[F], "an enum is deleted from a file"),
    r(
        "ENUM_SAME_JSON_FORMAT",
        &[F, P, WJ],
        "an enum's JSON format (proto3/editions ALLOW vs proto2 LEGACY_BEST_EFFORT) changes",
    ),
    r(
        "ENUM_SAME_TYPE",
        &[F, P],
        "an enum changes between open (proto3) and closed (proto2)",
    ),
    r("ENUM_VALUE_NO_DELETE", &[F, P], "an enum value is deleted"),
    r(
        "ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED",
        &[WJ],
        "an enum value is deleted without reserving its name",
    ),
    r(
        "ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED",
        &[WJ, W],
        "an enum value is deleted without reserving its number",
    ),
    r(
        "ENUM_VALUE_SAME_NAME",
        &[F, P, WJ],
        "an enum number gets another name",
    ),
    r(
        "EXTENSION_MESSAGE_NO_DELETE",
        &[F, P],
        "a message's extension range is deleted",
    ),
    r(
        "EXTENSION_NO_DELETE",
        &[F],
        "an extension is deleted from a file",
    ),
    r("FIELD_NO_DELETE", &[F, P], "a field is deleted"),
    r(
        "FIELD_NO_DELETE_UNLESS_NAME_RESERVED",
        &[WJ],
        "a field is deleted without reserving its name",
    ),
    r(
        "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
        &[WJ, W],
        "a field is deleted without reserving its number",
    ),
    r(
        "FIELD_SAME_CPP_STRING_TYPE",
        &[F, P],
        "a string field's C++ representation (ctype / editions feature pb.cpp.string_type) changes",
    ),
    r(
        "FIELD_SAME_CARDINALITY",
        &[F, P],
        "a field's cardinality (implicit/explicit presence, repeated, map, required) changes",
    ),
    r(
        "FIELD_SAME_DEFAULT",
        &[F, P, WJ, W],
        "a field's default value changes",
    ),
    r(
        "FIELD_SAME_JAVA_UTF8_VALIDATION",
        &[F, P],
        "a string field's Java UTF-8 validation (file option java_string_check_utf8, or proto3) changes",
    ),
    r(
        "FIELD_SAME_JSON_NAME",
        &[F, P, WJ],
        "a field's JSON name changes",
    ),
    r(
        "FIELD_SAME_JSTYPE",
        &[F, P],
        "a field's jstype option changes",
    ),
    r(
        "FIELD_SAME_NAME",
        &[F, P, WJ],
        "a field number gets another name",
    ),
    r(
        "FIELD_SAME_ONEOF",
        &[F, P, WJ, W],
        "a field moves into, out of or between oneofs",
    ),
    r("FIELD_SAME_TYPE", &[F, P], "a field's type changes"),
    r(
        "FIELD_SAME_UTF8_VALIDATION",
        &[F, P],
        "a string field's UTF-8 validation (proto3 verifies, proto2 does not) changes",
    ),
    r(
        "FIELD_WIRE_COMPATIBLE_CARDINALITY",
        &[W],
        "a field changes between singular, repeated/map and required",
    ),
    r(
        "FIELD_WIRE_COMPATIBLE_TYPE",
        &[W],
        "a field's type changes to one with another wire encoding",
    ),
    r(
        "FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY",
        &[WJ],
        "a field changes between singular, repeated, map and required",
    ),
    r(
        "FIELD_WIRE_JSON_COMPATIBLE_TYPE",
        &[WJ],
        "a field's type changes to one with another wire or JSON encoding",
    ),
    r("FILE_NO_DELETE", &[F], "a file is deleted"),
    r(
        "FILE_SAME_CC_ENABLE_ARENAS",
        &[F, P],
        "file option cc_enable_arenas changes",
    ),
    r(
        "FILE_SAME_CC_GENERIC_SERVICES",
        &[F, P],
        "file option cc_generic_services changes",
    ),
    r(
        "FILE_SAME_CSHARP_NAMESPACE",
        &[F, P],
        "file option csharp_namespace changes",
    ),
    r(
        "FILE_SAME_GO_PACKAGE",
        &[F, P],
        "file option go_package changes",
    ),
    r(
        "FILE_SAME_JAVA_GENERIC_SERVICES",
        &[F, P],
        "file option java_generic_services changes",
    ),
    r(
        "FILE_SAME_JAVA_MULTIPLE_FILES",
        &[F, P],
        "file option java_multiple_files changes",
    ),
    r(
        "FILE_SAME_JAVA_OUTER_CLASSNAME",
        &[F, P],
        "file option java_outer_classname changes",
    ),
    r(
        "FILE_SAME_JAVA_PACKAGE",
        &[F, P],
        "file option java_package changes",
    ),
    r(
        "FILE_SAME_OBJC_CLASS_PREFIX",
        &[F, P],
        "file option objc_class_prefix changes",
    ),
    r(
        "FILE_SAME_OPTIMIZE_FOR",
        &[F, P],
        "file option optimize_for changes",
    ),
    r(
        "FILE_SAME_PACKAGE",
        &[F, P, WJ, W],
        "a file's package changes (after --map pairing)",
    ),
    r(
        "FILE_SAME_PHP_CLASS_PREFIX",
        &[F, P],
        "file option php_class_prefix changes",
    ),
    r(
        "FILE_SAME_PHP_METADATA_NAMESPACE",
        &[F, P],
        "file option php_metadata_namespace changes",
    ),
    r(
        "FILE_SAME_PHP_NAMESPACE",
        &[F, P],
        "file option php_namespace changes",
    ),
    r(
        "FILE_SAME_PY_GENERIC_SERVICES",
        &[F, P],
        "file option py_generic_services changes",
    ),
    r(
        "FILE_SAME_RUBY_PACKAGE",
        &[F, P],
        "file option ruby_package changes",
    ),
    r(
        "FILE_SAME_SWIFT_PREFIX",
        &[F, P],
        "file option swift_prefix changes",
    ),
    r("FILE_SAME_SYNTAX", &[F, P], "a file's syntax changes"),
    r(
        "MESSAGE_NO_DELETE",
        &[F],
        "a message is deleted from a file",
    ),
    r(
        "MESSAGE_NO_REMOVE_STANDARD_DESCRIPTOR_ACCESSOR",
        &[F, P],
        "option no_standard_descriptor_accessor is turned on",
    ),
    r(
        "MESSAGE_SAME_JSON_FORMAT",
        &[F, P, WJ],
        "a message's JSON format (ALLOW vs LEGACY_BEST_EFFORT) changes",
    ),
    r(
        "MESSAGE_SAME_REQUIRED_FIELDS",
        &[F, P, WJ, W],
        "a required field is added or removed",
    ),
    r("ONEOF_NO_DELETE", &[F, P], "a oneof is deleted"),
    r(
        "PACKAGE_ENUM_NO_DELETE",
        &[P],
        "an enum is deleted from a package",
    ),
    r(
        "PACKAGE_EXTENSION_NO_DELETE",
        &[P],
        "an extension is deleted from a package",
    ),
    r(
        "PACKAGE_MESSAGE_NO_DELETE",
        &[P],
        "a message is deleted from a package",
    ),
    r("PACKAGE_NO_DELETE", &[P], "a package is deleted"),
    r(
        "PACKAGE_SERVICE_NO_DELETE",
        &[P],
        "a service is deleted from a package",
    ),
    r(
        "RESERVED_ENUM_NO_DELETE",
        &[F, P, WJ, W],
        "an enum's reserved number or name is removed",
    ),
    r(
        "RESERVED_MESSAGE_NO_DELETE",
        &[F, P, WJ, W],
        "a message's reserved number or name is removed",
    ),
    r("RPC_NO_DELETE", &[F, P], "an RPC is deleted"),
    r(
        "RPC_SAME_CLIENT_STREAMING",
        &[F, P, WJ, W],
        "an RPC's client streaming changes",
    ),
    r(
        "RPC_SAME_IDEMPOTENCY_LEVEL",
        &[F, P, WJ, W],
        "an RPC's idempotency_level changes",
    ),
    r(
        "RPC_SAME_REQUEST_TYPE",
        &[F, P, WJ, W],
        "an RPC's request type changes (under WIRE/WIRE_JSON: to one not identical on the wire)",
    ),
    r(
        "RPC_SAME_RESPONSE_TYPE",
        &[F, P, WJ, W],
        "an RPC's response type changes (under WIRE/WIRE_JSON: to one not identical on the wire)",
    ),
    r(
        "RPC_SAME_SERVER_STREAMING",
        &[F, P, WJ, W],
        "an RPC's server streaming changes",
    ),
    r(
        "SERVICE_NO_DELETE",
        &[F],
        "a service is deleted from a file",
    ),
    // This crate's own rules: what a live gRPC client notices.
    r(
        "GRPC_SERVICE_NO_DELETE",
        &[G],
        "a service is gone: every call of an old client gets UNIMPLEMENTED",
    ),
    r(
        "GRPC_RPC_NO_DELETE",
        &[G],
        "a method is gone: old clients calling it get UNIMPLEMENTED",
    ),
    r(
        "GRPC_RPC_SAME_STREAMING",
        &[G],
        "a method's streaming shape (unary, client, server, bidi) changes",
    ),
    r(
        "GRPC_RPC_SAME_REQUEST_TYPE",
        &[G],
        "a method's request type changes to one that is not identical on the wire",
    ),
    r(
        "GRPC_RPC_SAME_RESPONSE_TYPE",
        &[G],
        "a method's response type changes to one that is not identical on the wire",
    ),
    r(
        "GRPC_FIELD_SAME_VALUE_RANGE",
        &[G],
        "a field keeps its wire type but narrows or changes sign (int64 → int32, int32 → uint32, … → bool), so values are truncated or reinterpreted",
    ),
    r(
        "GRPC_ENUM_VALUE_SAME_NUMBER",
        &[G],
        "an enum value name moves to another number, so the old number means something else",
    ),
    r(
        "GRPC_FIELD_SAME_DEFAULT",
        &[G],
        "the value a reader assumes for an absent field changes (proto2 default, or an enum's default value gets another name)",
    ),
];

/// The rule's entry in [`RULES`].
pub fn rule_info(id: &str) -> Option<&'static RuleInfo> {
    RULES.iter().find(|r| r.id == id)
}
