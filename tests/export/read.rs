//! What exported mesh configuration does with one request, read back from its YAML the way
//! each API's documentation says: Istio takes the first HTTP route whose match holds (prefix,
//! header exact or RE2 regex over the whole value); a GRPCRoute takes, among the rules whose
//! service matches, the one with the most header matches, the first on ties.

use regex::Regex;
use serde_json::Value;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Refused by the mesh (an abort, or a rule without backends).
    Refused,
    /// To these versions, each with its weight, the path rewritten to this package if so.
    Split {
        to: Vec<(String, u64)>,
        rewrite: Option<String>,
    },
}

fn full_match(regex: &str, text: &str) -> Result<bool, String> {
    Regex::new(&format!("^(?:{regex})$"))
        .map(|re| re.is_match(text))
        .map_err(|err| format!("regex {regex:?}: {err}"))
}

fn string_match(matcher: &Value, text: &str) -> Result<bool, String> {
    if let Some(exact) = matcher.get("exact").and_then(Value::as_str) {
        return Ok(text == exact);
    }
    if let Some(prefix) = matcher.get("prefix").and_then(Value::as_str) {
        return Ok(text.starts_with(prefix));
    }
    match matcher.get("regex").and_then(Value::as_str) {
        Some(regex) => full_match(regex, text),
        None => Err(format!(
            "a string match without exact, prefix or regex: {matcher}"
        )),
    }
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

/// What the VirtualService and DestinationRules in `documents` do with a call to `path` with
/// `header` as its x-api-version.
pub(crate) fn istio(
    documents: &[Value],
    path: &str,
    header: Option<&str>,
) -> Result<Outcome, String> {
    let [service] = of_kind(documents, "VirtualService")[..] else {
        return Err("not one VirtualService".into());
    };
    let routes = service["spec"]["http"].as_array().ok_or("no spec.http")?;
    for route in routes {
        let mut matched = false;
        for condition in route["match"].as_array().ok_or("a route without match")? {
            let uri = string_match(&condition["uri"], path)?;
            let headers = match condition.get("headers").and_then(Value::as_object) {
                None => true,
                Some(headers) => {
                    let mut all = true;
                    for (name, matcher) in headers {
                        if name != "x-api-version" {
                            return Err(format!("a match on header {name}"));
                        }
                        all &= match header {
                            Some(value) => string_match(matcher, value)?,
                            None => false,
                        };
                    }
                    all
                }
            };
            matched |= uri && headers;
        }
        if !matched {
            continue;
        }
        if route.get("fault").is_some() {
            return Ok(Outcome::Refused);
        }
        let destinations = route["route"]
            .as_array()
            .ok_or("a route without destinations")?;
        let mut to = Vec::new();
        for destination in destinations {
            let host = destination["destination"]["host"]
                .as_str()
                .ok_or("no host")?;
            let subset = destination["destination"]["subset"]
                .as_str()
                .ok_or("no subset")?;
            let weight = match destination.get("weight") {
                Some(weight) => weight.as_u64().ok_or("a weight that is not a number")?,
                None if destinations.len() == 1 => 100,
                None => return Err("a split without weights".into()),
            };
            to.push((subset_version(documents, host, subset)?, weight));
        }
        let rewrite = route["rewrite"]["uri"].as_str().map(|uri| {
            uri.trim_start_matches('/')
                .trim_end_matches('.')
                .to_string()
        });
        return Ok(Outcome::Split { to, rewrite });
    }
    Err(format!("no route takes {path} with {header:?}"))
}

fn subset_version(documents: &[Value], host: &str, subset: &str) -> Result<String, String> {
    of_kind(documents, "DestinationRule")
        .into_iter()
        .filter(|rule| rule["spec"]["host"] == host)
        .flat_map(|rule| {
            rule["spec"]["subsets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|s| s["name"] == subset)
        .and_then(|s| s["labels"]["version"].as_str().map(str::to_string))
        .ok_or_else(|| format!("no DestinationRule subset {subset} of {host}"))
}

/// What the GRPCRoutes in `documents` do with a call to `path` with `header`; `services`
/// names each backend Service's version (Gateway API has no subsets).
pub(crate) fn gateway_api(
    documents: &[Value],
    services: &[(&str, &str)],
    path: &str,
    header: Option<&str>,
) -> Result<Outcome, String> {
    let service_name = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    // (header matches, order) of the best rule so far, and the rule.
    let mut best: Option<(usize, usize, &Value)> = None;
    let mut order = 0;
    for route in of_kind(documents, "GRPCRoute") {
        for rule in route["spec"]["rules"].as_array().ok_or("no rules")? {
            order += 1;
            for condition in rule["matches"].as_array().ok_or("a rule without matches")? {
                let method = &condition["method"];
                let service = method["service"].as_str().ok_or("no method.service")?;
                let service_ok = match method["type"].as_str() {
                    Some("RegularExpression") => full_match(service, service_name)?,
                    _ => service == service_name,
                };
                let headers = condition["headers"].as_array().cloned().unwrap_or_default();
                let mut headers_ok = true;
                for matcher in &headers {
                    if matcher["name"] != "x-api-version" {
                        return Err(format!("a match on header {}", matcher["name"]));
                    }
                    let value = matcher["value"].as_str().ok_or("no header value")?;
                    headers_ok &= match (header, matcher["type"].as_str()) {
                        (None, _) => false,
                        (Some(h), Some("RegularExpression")) => full_match(value, h)?,
                        (Some(h), _) => h == value,
                    };
                }
                if service_ok && headers_ok && best.is_none_or(|(n, _, _)| headers.len() > n) {
                    best = Some((headers.len(), order, rule));
                }
            }
        }
    }
    let (_, _, rule) = best.ok_or_else(|| format!("no rule takes {path} with {header:?}"))?;
    let Some(refs) = rule.get("backendRefs").and_then(Value::as_array) else {
        return Ok(Outcome::Refused);
    };
    let mut to = Vec::new();
    for backend in refs {
        let name = backend["name"]
            .as_str()
            .ok_or("a backendRef without name")?;
        let version = services
            .iter()
            .find(|(service, _)| *service == name)
            .map(|(_, version)| version.to_string())
            .ok_or_else(|| format!("no Service {name}"))?;
        to.push((version, backend["weight"].as_u64().unwrap_or(1)));
    }
    Ok(Outcome::Split { to, rewrite: None })
}
