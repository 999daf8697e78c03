//! The API itself, for the report's page: each version as `testbed docs` documents it
//! ([`crate::docs::model`], from the compiled-in descriptors' source info), and the changelog
//! from v1 to v2 with its semver verdict from `compat`, the same check `testbed check proto/v1
//! proto/v2` runs.

use crate::docs::model::VersionDoc;
use serde::Serialize;

/// The API section of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ApiSection {
    /// Each version, oldest first.
    pub versions: Vec<VersionDoc>,
    /// v1 → v2 as `compat` sees it.
    pub changelog: compat::Report,
}

/// The API section from the compiled-in descriptors of both versions.
pub fn section() -> anyhow::Result<ApiSection> {
    let api = compat::Api::from_descriptor_set_bytes(services::FILE_DESCRIPTOR_SET, "testbed")?;
    let versions = crate::docs::model::versions(&api)
        .into_iter()
        .filter(|v| services::API_PACKAGES.contains(&v.package.as_str()))
        .collect();
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
