//! The plan as Istio configuration: one VirtualService (networking.istio.io/v1) on the
//! `--host` Service, its HTTP routes in the plan's order (Istio takes the first that
//! matches), and a DestinationRule per backend Service with a subset per version, selecting
//! pods labelled `version: X.Y.Z`.

use super::{ExportArgs, HEADER, HeaderMatch, MeshPlan, Rule, dns_part, metadata, rewrite_of};
use anyhow::bail;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The VirtualService, then the DestinationRules, as JSON values.
pub fn documents(plan: &MeshPlan, args: &ExportArgs) -> anyhow::Result<Vec<Value>> {
    let mut http = Vec::new();
    for package in &plan.packages {
        let prefix = format!("/{}.", package.package);
        // A refused rule still needs a route; the abort answers before it is taken.
        let fallback = package
            .rules
            .iter()
            .find_map(|rule| rule.split.first())
            .map(|(d, _)| destination(d, args));
        for (i, rule) in package.rules.iter().enumerate() {
            let mut matched = json!({"uri": {"prefix": prefix}});
            match &rule.header {
                HeaderMatch::Exact(value) => {
                    matched["headers"] = json!({HEADER: {"exact": value}});
                }
                HeaderMatch::Regex(regex) => {
                    matched["headers"] = json!({HEADER: {"regex": regex}});
                }
                HeaderMatch::Any => matched["headers"] = json!({HEADER: {"regex": ".*"}}),
                HeaderMatch::Absent => {}
            }
            let mut route = json!({
                "name": format!("{}-{i}", dns_part(&package.package)),
                "match": [matched],
            });
            if rule.split.is_empty() {
                let Some(fallback) = &fallback else {
                    bail!("{}: no backend serves it", package.package);
                };
                route["route"] = json!([{"destination": fallback}]);
                route["fault"] = json!({
                    "abort": {"grpcStatus": "UNIMPLEMENTED", "percentage": {"value": 100.0}}
                });
            } else {
                route["route"] = Value::Array(weighted(&package.package, rule, args)?);
                if let Some(api) = rewrite_of(&package.package, rule)? {
                    route["rewrite"] = json!({"uri": format!("/{api}.")});
                }
            }
            http.push(route);
        }
    }
    let mut documents = vec![json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": metadata(&args.host, args),
        "spec": {"hosts": [args.host], "http": http},
    })];
    // Host → subset name → version label, each once.
    let mut subsets: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for destination in &plan.destinations {
        subsets
            .entry(&destination.host)
            .or_default()
            .insert(destination.subset(), destination.label());
    }
    for (host, subsets) in subsets {
        let subsets: Vec<Value> = subsets
            .into_iter()
            .map(|(name, version)| json!({"name": name, "labels": {"version": version}}))
            .collect();
        documents.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": metadata(&dns_part(host), args),
            "spec": {"host": host, "subsets": subsets},
        }));
    }
    Ok(documents)
}

fn destination(d: &super::Destination, args: &ExportArgs) -> Value {
    json!({"host": d.host, "subset": d.subset(), "port": {"number": args.service_port}})
}

/// The rule's destinations with Istio weights: whole percentages adding up to 100, or an error
/// when the router's split has a share that is not a whole percentage.
fn weighted(package: &str, rule: &Rule, args: &ExportArgs) -> anyhow::Result<Vec<Value>> {
    if let [(only, _)] = rule.split.as_slice() {
        return Ok(vec![json!({"destination": destination(only, args)})]);
    }
    rule.split
        .iter()
        .map(|(d, share)| {
            if (share * 100) % rule.scale != 0 {
                bail!(
                    "{package}, {}: {} takes {share}/{} of the requests, which Istio's whole \
                     percentages cannot express (set weights that add up to 100 or less)",
                    rule.why,
                    d.backend,
                    rule.scale
                );
            }
            Ok(json!({"destination": destination(d, args), "weight": share * 100 / rule.scale}))
        })
        .collect()
}
