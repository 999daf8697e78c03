//! A JSON call's request message, from what the binding says goes where: the JSON body (the
//! whole message or one field), the path template's variables, and the query parameters
//! (`a.b=1`, a repeated field once per value) for the fields neither of those sets. Everything is
//! gathered into one protobuf-JSON object and read by prost-reflect once, so the proto3 JSON
//! mapping decides every field's form.

use super::rules::{Binding, BodyTarget};
use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

/// The request message for `binding`, or why it cannot be made (an INVALID_ARGUMENT message).
pub(crate) fn message(
    binding: &Binding,
    variables: &[(String, Result<String, String>)],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, String> {
    let input = binding.method.input();
    let mut object = Map::new();
    let body_json = || -> Result<Value, String> {
        serde_json::from_slice(body).map_err(|err| format!("the request body is not JSON: {err}"))
    };
    match &binding.body {
        BodyTarget::Whole if !body.is_empty() => match body_json()? {
            Value::Object(fields) => object = fields,
            other => {
                return Err(format!(
                    "the request body must be a JSON object (a {}), not {}",
                    input.full_name(),
                    kind_of(&other)
                ));
            }
        },
        BodyTarget::Field(field) if !body.is_empty() => {
            let path: Vec<&str> = field.split('.').collect();
            set(&mut object, &path, body_json()?);
        }
        _ => {}
    }
    let mut bound: Vec<&str> = binding.template.fields().collect();
    if let BodyTarget::Field(field) = &binding.body {
        bound.push(field);
    }
    if binding.body != BodyTarget::Whole {
        for (name, value) in query
            .into_iter()
            .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        {
            let covered = bound
                .iter()
                .any(|b| name == *b || name.starts_with(&format!("{b}.")));
            if covered {
                continue;
            }
            let (path, field) = resolve(&input, &name)?;
            let value = scalar(&field, &value);
            let names: Vec<&str> = path.iter().map(String::as_str).collect();
            if field.is_list() {
                push(&mut object, &names, value);
            } else {
                set(&mut object, &names, value);
            }
        }
    }
    for (name, value) in variables {
        let value = value.as_ref().map_err(Clone::clone)?;
        let (path, field) = resolve(&input, name)?;
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        set(&mut object, &names, scalar(&field, value));
    }
    let options = DeserializeOptions::new();
    DynamicMessage::deserialize_with_options(input.clone(), Value::Object(object), &options)
        .map_err(|err| format!("the request is not a valid {}: {err}", input.full_name()))
}

/// `name` (`a.b`, each part a field's proto or JSON name) as proto field names from `message`,
/// and the last field.
fn resolve(
    message: &MessageDescriptor,
    name: &str,
) -> Result<(Vec<String>, FieldDescriptor), String> {
    let mut current = message.clone();
    let mut names = Vec::new();
    let parts: Vec<&str> = name.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))
            .ok_or_else(|| {
                format!(
                    "{} has no field {part:?} (from the parameter {name:?})",
                    current.full_name()
                )
            })?;
        names.push(field.name().to_string());
        if i + 1 == parts.len() {
            return Ok((names, field));
        }
        match field.kind() {
            Kind::Message(inner) if !field.is_list() && !field.is_map() => current = inner,
            _ => {
                return Err(format!(
                    "{name:?}: {} is not a singular message field, so it has no field {:?}",
                    field.full_name(),
                    parts[i + 1]
                ));
            }
        }
    }
    Err(format!("the parameter name {name:?} is empty"))
}

/// A path or query value as the JSON the field's proto3 mapping reads: booleans and enum
/// numbers as such, everything else as the string (numbers are read from strings too).
fn scalar(field: &FieldDescriptor, text: &str) -> Value {
    match field.kind() {
        Kind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text.to_string()),
        },
        Kind::Enum(_) => text
            .parse::<i32>()
            .map_or_else(|_| Value::String(text.to_string()), Value::from),
        _ => Value::String(text.to_string()),
    }
}

/// Sets `path` in `object` to `value`, making the objects on the way.
fn set(object: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = object;
    for name in parents {
        let entry = current
            .entry(name.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.to_string(), value);
}

/// Appends `value` to the list at `path` in `object`.
fn push(object: &mut Map<String, Value>, path: &[&str], value: Value) {
    let mut list = match pointer(object, path) {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    list.push(value);
    set(object, path, Value::Array(list));
}

fn pointer<'a>(object: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(object.get(*first)?, |value, name| value.get(name))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::rules::bindings;
    use super::*;
    use prost_reflect::DescriptorPool;

    /// The annotated test API (`port/testdata/library/v1/library.proto`).
    pub(crate) fn library() -> DescriptorPool {
        let testdata = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
        let mut compiler = protox::Compiler::new([testdata]).expect("the include path exists");
        compiler.include_imports(true);
        compiler
            .open_file("library/v1/library.proto")
            .expect("the test API compiles");
        compiler.descriptor_pool()
    }

    fn json(binding: &Binding, path: &str, query: Option<&str>, body: &str) -> Value {
        let variables = binding.template.matches(path).expect("the path matches");
        let message = message(binding, &variables, query, body.as_bytes()).expect("a message");
        serde_json::to_value(&message).expect("serializes")
    }

    #[test]
    fn a_body_field_with_path_variables_and_nested_repeated_query_parameters() {
        let all = bindings(&library());
        let patch = &all[0];
        assert_eq!(patch.verb, http::Method::PATCH);
        let got = json(
            patch,
            "/v1/shelves/1/books/2",
            Some("page.size=10&page.token=a%20b&ids=1&ids=2&dryRun=true"),
            r#"{"title":"T","tags":["x"]}"#,
        );
        assert_eq!(
            got,
            serde_json::json!({
                "name": "shelves/1/books/2",
                "book": {"title": "T", "tags": ["x"]},
                "page": {"size": 10, "token": "a b"},
                "ids": [1, 2],
                "dryRun": true,
            })
        );
    }

    #[test]
    fn additional_bindings_and_the_default_post() {
        let all = bindings(&library());
        assert_eq!(
            all.len(),
            4,
            "three bindings of UpdateBook, Upload's default"
        );
        assert_eq!(all[2].verb.as_str(), "LOCK");
        let custom = &all[1];
        let got = json(
            custom,
            "/v1/shelves/1/books/2:update",
            Some("ignored=1"),
            r#"{"book":{"pages":"300"}}"#,
        );
        assert_eq!(
            got,
            serde_json::json!({"name": "shelves/1/books/2", "book": {"pages": "300"}})
        );
        let default = &all[3];
        assert_eq!(default.method.name(), "Upload");
        assert_eq!(
            default.template.matches("/library.v1.Library/Upload"),
            Some(vec![])
        );
        assert!(
            all.iter().all(|b| b
                .template
                .matches("/library.v1.Library/UpdateBook")
                .is_none()),
            "a method with a rule has no default binding"
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let all = bindings(&library());
        let whole = &all[1];
        let err = |query: Option<&str>, body: &str| {
            message(whole, &[], query, body.as_bytes()).expect_err("refused")
        };
        assert!(err(None, "{").contains("not JSON"), "{}", err(None, "{"));
        assert!(err(None, "[1]").contains("must be a JSON object"));
        let unknown = err(None, r#"{"nope":1}"#);
        assert!(
            unknown.contains("library.v1.UpdateBookRequest") && unknown.contains("nope"),
            "{unknown}"
        );
        let patch = &all[0];
        let query = message(patch, &[], Some("missing=1"), b"").expect_err("refused");
        assert!(query.contains("has no field \"missing\""), "{query}");
        let nested = message(patch, &[], Some("name.x=1"), b"");
        assert!(
            nested.is_ok(),
            "the path binds name, so its query value is ignored"
        );
        let deep = message(patch, &[], Some("ids.x=1"), b"").expect_err("refused");
        assert!(deep.contains("not a singular message field"), "{deep}");
    }
}
