//! The HTTP bindings of a descriptor pool's methods: each method's `google.api.http` rule and
//! its `additional_bindings` (read as the `google.api.http` extension of its options, when the
//! pool defines it), and for every method without a rule the default
//! `POST /package.Service/Method` with the whole message as its JSON body.

use super::template::Template;
use http::Method;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};

/// Where a request's JSON body goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyTarget {
    /// No body: every field not in the path comes from the query.
    None,
    /// `body: "*"`: the body is the message (less what the path sets).
    Whole,
    /// `body: "field"`: the body is that field; the query sets the others.
    Field(String),
}

/// One way to call a method over HTTP.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub(crate) verb: Method,
    pub(crate) template: Template,
    pub(crate) body: BodyTarget,
    /// `response_body`: the reply field the JSON reply is, when not the whole reply.
    pub(crate) response_body: Option<String>,
    pub(crate) method: MethodDescriptor,
}

/// Every binding of every method in `pool`, the rules' first; rules that do not parse are
/// logged and left out.
pub(crate) fn bindings(pool: &DescriptorPool) -> Vec<Binding> {
    let extension = pool.get_extension_by_name("google.api.http");
    let mut out = Vec::new();
    let mut defaults = Vec::new();
    for service in pool.services() {
        for method in service.methods() {
            if let Some(extension) = &extension {
                let options = method.options();
                if options.has_extension(extension)
                    && let Value::Message(rule) = options.get_extension(extension).as_ref()
                {
                    rule_bindings(&method, rule, &mut out);
                    // As Envoy's transcoder and grpc-gateway do: a method with a rule is
                    // called by its rule's bindings only.
                    continue;
                }
            }
            let path = format!("/{}/{}", service.full_name(), method.name());
            if let Ok(template) = Template::parse(&path) {
                defaults.push(Binding {
                    verb: Method::POST,
                    template,
                    body: BodyTarget::Whole,
                    response_body: None,
                    method,
                });
            }
        }
    }
    out.extend(defaults);
    out
}

fn text(rule: &DynamicMessage, field: &str) -> String {
    match rule.get_field_by_name(field).as_deref() {
        Some(Value::String(text)) => text.clone(),
        _ => String::new(),
    }
}

fn rule_bindings(method: &MethodDescriptor, rule: &DynamicMessage, out: &mut Vec<Binding>) {
    let mut pattern = ["get", "put", "post", "delete", "patch"]
        .into_iter()
        .map(|verb| (verb.to_uppercase(), text(rule, verb)))
        .find(|(_, path)| !path.is_empty());
    if pattern.is_none()
        && let Some(Value::Message(custom)) = rule.get_field_by_name("custom").as_deref()
    {
        pattern = Some((text(custom, "kind"), text(custom, "path")));
    }
    if let Some((verb, path)) = pattern {
        let parsed = Method::from_bytes(verb.as_bytes())
            .map_err(|err| format!("HTTP method {verb:?}: {err}"))
            .and_then(|verb| Ok((verb, Template::parse(&path)?)));
        match parsed {
            Ok((verb, template)) => {
                let body = match text(rule, "body").as_str() {
                    "" => BodyTarget::None,
                    "*" => BodyTarget::Whole,
                    field => BodyTarget::Field(field.to_string()),
                };
                let response_body = Some(text(rule, "response_body")).filter(|f| !f.is_empty());
                out.push(Binding {
                    verb,
                    template,
                    body,
                    response_body,
                    method: method.clone(),
                });
            }
            Err(why) => tracing::warn!(
                method = method.full_name(),
                why,
                "a google.api.http rule is left out of JSON transcoding"
            ),
        }
    }
    if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
        for binding in more {
            if let Value::Message(binding) = binding {
                rule_bindings(method, binding, out);
            }
        }
    }
}
