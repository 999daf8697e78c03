//! The plan as Gateway API configuration: a GRPCRoute (gateway.networking.k8s.io/v1, standard
//! channel) per package, attached to the `--host` Service (the mesh profile), each backend
//! its own Service. Rules with the same number of header matches are taken in order, so the
//! catch-all that refuses other `x-api-version` values comes after the pins; the rule without
//! a header match is taken only when none with one matched.

use super::{ExportArgs, HEADER, HeaderMatch, MeshPlan, dns_part, metadata, rewrite_of};
use anyhow::bail;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The most rules a GRPCRoute may hold (the CRD's `maxItems`).
const MAX_RULES: usize = 16;

/// A GRPCRoute per package, as JSON values.
pub fn documents(plan: &MeshPlan, args: &ExportArgs) -> anyhow::Result<Vec<Value>> {
    // Without subsets a Service is one version.
    let mut versions: BTreeMap<&str, (&str, String)> = BTreeMap::new();
    for d in &plan.destinations {
        match versions.get(d.host.as_str()) {
            Some((other, version)) if *version != d.label() => bail!(
                "backends {other} ({version}) and {} ({}) are both on Service {}: Gateway API \
                 has no subsets, so give each version its own Service with --service-host",
                d.backend,
                d.label(),
                d.host
            ),
            _ => {
                versions.insert(&d.host, (&d.backend, d.label()));
            }
        }
    }
    let mut documents = Vec::new();
    for package in &plan.packages {
        let service = format!(
            r"^{}\.[A-Za-z_][A-Za-z0-9_]*$",
            package.package.replace('.', r"\.")
        );
        let mut rules = Vec::new();
        for rule in &package.rules {
            if let Some(api) = rewrite_of(&package.package, rule)? {
                bail!(
                    "{}, {}: the router rewrites these calls to {api} (a retired package); a \
                     GRPCRoute of the standard channel has no path rewrite. Export --format \
                     istio, or serve {} from a backend that implements it",
                    package.package,
                    rule.why,
                    package.package
                );
            }
            let mut matched = json!({"method": {"type": "RegularExpression", "service": service}});
            let header =
                |kind: &str, value: &str| json!([{"type": kind, "name": HEADER, "value": value}]);
            match &rule.header {
                HeaderMatch::Exact(value) => matched["headers"] = header("Exact", value),
                HeaderMatch::Regex(regex) => {
                    matched["headers"] = header("RegularExpression", regex)
                }
                HeaderMatch::Any => matched["headers"] = header("RegularExpression", ".*"),
                HeaderMatch::Absent => {}
            }
            let mut out = json!({"matches": [matched]});
            // No backendRefs: the rule forwards nowhere, and its calls are refused.
            if !rule.split.is_empty() {
                let refs: Vec<Value> = rule
                    .split
                    .iter()
                    .map(|(d, share)| {
                        let mut backend = json!({
                            "group": "",
                            "kind": "Service",
                            "name": d.host,
                            "port": args.service_port,
                        });
                        // A lone backend takes everything whatever its weight (the default, 1).
                        if rule.split.len() > 1 {
                            backend["weight"] = (*share).into();
                        }
                        backend
                    })
                    .collect();
                out["backendRefs"] = Value::Array(refs);
            }
            rules.push(out);
        }
        if rules.len() > MAX_RULES {
            bail!(
                "{} needs {} rules, more than the {MAX_RULES} a GRPCRoute may hold",
                package.package,
                rules.len()
            );
        }
        documents.push(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GRPCRoute",
            "metadata": metadata(&format!("{}-{}", args.host, dns_part(&package.package)), args),
            "spec": {
                "parentRefs": [{"group": "", "kind": "Service", "name": args.host}],
                "rules": rules,
            },
        }));
    }
    Ok(documents)
}
