//! `google.api.http` path templates (`/v1/{name=shelves/*}/books/{book}:publish`): parsed once
//! from a method's rule, matched against request paths, the variables' values (percent-decoded)
//! given back by field path.
//!
//! The grammar is googleapis' (`google/api/http.proto`): segments are literals, `*` (one
//! segment), `**` (any number, only last) or variables `{field.path}` / `{field.path=segments}`;
//! a `:verb` may end the template.

use percent_encoding::percent_decode_str;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: the rest of the path, possibly nothing.
    Rest,
}

/// A variable: which field it sets, and which of the template's segments it spans.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variable {
    field: String,
    start: usize,
    end: usize,
}

/// The values a path gives a template's variables, by field path: each decoded, or why it
/// cannot be (an INVALID_ARGUMENT message naming the path).
pub(crate) type Variables = Vec<(String, Result<String, String>)>;

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

impl Template {
    /// Parses `text`; the error says what is wrong and where.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| format!("path template {text:?} does not start with /"))?;
        let (body, verb) = split_verb(rest);
        let mut template = Template {
            segments: Vec::new(),
            variables: Vec::new(),
            verb: verb.map(str::to_string),
        };
        let mut chars = body;
        while !chars.is_empty() {
            if let Some(inner) = chars.strip_prefix('{') {
                let close = inner
                    .find('}')
                    .ok_or_else(|| format!("path template {text:?} has an unclosed {{"))?;
                let (field, pattern) = match inner[..close].split_once('=') {
                    Some((field, pattern)) => (field, pattern),
                    None => (&inner[..close], "*"),
                };
                if field.is_empty() {
                    return Err(format!(
                        "path template {text:?} has a variable without a field"
                    ));
                }
                let start = template.segments.len();
                for part in pattern.split('/') {
                    template.segments.push(segment(part, text)?);
                }
                template.variables.push(Variable {
                    field: field.to_string(),
                    start,
                    end: template.segments.len(),
                });
                chars = &inner[close + 1..];
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                template.segments.push(segment(&chars[..end], text)?);
                chars = &chars[end..];
            }
            chars = match chars.strip_prefix('/') {
                Some("") => {
                    return Err(format!("path template {text:?} ends with /"));
                }
                Some(next) => next,
                None if chars.is_empty() => chars,
                None => return Err(format!("path template {text:?} has text after a }}")),
            };
        }
        if let Some(i) = template.segments.iter().position(|s| *s == Segment::Rest)
            && i + 1 != template.segments.len()
        {
            return Err(format!(
                "path template {text:?} has ** before its last segment"
            ));
        }
        Ok(template)
    }

    /// The variables' values when `path` (as sent, percent-encoded) matches, by field path.
    pub(crate) fn matches(&self, path: &str) -> Option<Variables> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => rest.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        // Where each template segment's match starts in `parts`, and one past the last.
        let mut starts = Vec::with_capacity(self.segments.len() + 1);
        let mut at = 0;
        for segment in &self.segments {
            starts.push(at);
            match segment {
                Segment::Literal(literal) => {
                    let part = parts.get(at)?;
                    if decode(part).ok().as_deref() != Some(literal.as_str()) {
                        return None;
                    }
                    at += 1;
                }
                Segment::One => {
                    if parts.get(at)?.is_empty() {
                        return None;
                    }
                    at += 1;
                }
                Segment::Rest => at = parts.len(),
            }
        }
        starts.push(at);
        if at != parts.len() {
            return None;
        }
        let values = self
            .variables
            .iter()
            .map(|v| {
                // http.proto: a variable of more than one segment keeps `%2F` as sent, so
                // that an encoded slash stays apart from the segments' own.
                let multi = v.end - v.start > 1 || matches!(self.segments[v.start], Segment::Rest);
                let value = parts[starts[v.start]..starts[v.end]]
                    .iter()
                    .map(|part| {
                        if multi {
                            decode_keeping_slashes(part)
                        } else {
                            decode(part)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|parts| parts.join("/"))
                    .map_err(|err| {
                        format!(
                            "the path {} is not UTF-8 once decoded: {err}",
                            crate::guard::quote(path)
                        )
                    });
                (v.field.clone(), value)
            })
            .collect();
        Some(values)
    }

    /// The field paths its variables set.
    pub(crate) fn fields(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(|v| v.field.as_str())
    }
}

/// `rest` without its `:verb`, and the verb: a colon in the last segment, outside braces.
fn split_verb(rest: &str) -> (&str, Option<&str>) {
    let last = rest.rfind(['/', '}']).map_or(0, |i| i + 1);
    match rest[last..].rfind(':') {
        Some(i) => (&rest[..last + i], Some(&rest[last + i + 1..])),
        None => (rest, None),
    }
}

fn segment(part: &str, template: &str) -> Result<Segment, String> {
    match part {
        "" => Err(format!("path template {template:?} has an empty segment")),
        "*" => Ok(Segment::One),
        "**" => Ok(Segment::Rest),
        literal if literal.contains(['{', '}', '=']) => Err(format!(
            "path template {template:?} has a malformed segment {literal:?}"
        )),
        literal => Ok(Segment::Literal(literal.to_string())),
    }
}

/// `part` percent-decoded; an error when the bytes are not UTF-8 (never replaced silently).
fn decode(part: &str) -> Result<String, std::str::Utf8Error> {
    percent_decode_str(part)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
}

/// `part` percent-decoded except `%2F`/`%2f`, left as sent (http.proto's rule for variables of
/// more than one segment).
fn decode_keeping_slashes(part: &str) -> Result<String, std::str::Utf8Error> {
    let mut out = String::new();
    let mut rest = part;
    while let Some(at) = rest
        .as_bytes()
        .windows(3)
        .position(|w| w[0] == b'%' && w[1] == b'2' && (w[2] | 0x20) == b'f')
    {
        out.push_str(&decode(&rest[..at])?);
        out.push_str(&rest[at..at + 3]);
        rest = &rest[at + 3..];
    }
    out.push_str(&decode(rest)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        let found = Template::parse(template).expect("parses").matches(path)?;
        Some(
            found
                .into_iter()
                .map(|(field, value)| (field, value.expect("UTF-8")))
                .collect(),
        )
    }

    fn pair(field: &str, value: &str) -> (String, String) {
        (field.to_string(), value.to_string())
    }

    #[test]
    fn multi_segment_variables_keep_encoded_slashes_and_bad_utf8_is_an_error() {
        assert_eq!(
            vars("/v1/{name=shelves/**}", "/v1/shelves/a%2Fb/c%20d%2f"),
            Some(vec![pair("name", "shelves/a%2Fb/c d%2f")])
        );
        assert_eq!(
            vars("/v1/{name}", "/v1/a%2Fb"),
            Some(vec![pair("name", "a/b")])
        );
        let found = Template::parse("/v1/{name}")
            .expect("parses")
            .matches("/v1/%FF")
            .expect("matches");
        let why = found[0].1.as_ref().expect_err("not UTF-8");
        assert!(why.contains("\"/v1/%FF\""), "{why}");
    }

    #[test]
    fn variables_take_one_segment_or_their_pattern() {
        assert_eq!(
            vars(
                "/v1/{name=shelves/*}/books/{book}",
                "/v1/shelves/7/books/a%20b"
            ),
            Some(vec![pair("name", "shelves/7"), pair("book", "a b")])
        );
        assert_eq!(
            vars("/v1/{name=shelves/*}/books/{book}", "/v1/shelves/7/books"),
            None
        );
        assert_eq!(vars("/v1/{name=shelves/*}", "/v1/racks/7"), None);
    }

    #[test]
    fn a_double_star_takes_the_rest() {
        assert_eq!(
            vars("/v1/{path=files/**}", "/v1/files/a/b/c"),
            Some(vec![pair("path", "files/a/b/c")])
        );
        assert_eq!(
            vars("/v1/{path=files/**}", "/v1/files"),
            Some(vec![pair("path", "files")])
        );
        assert_eq!(vars("/static/**", "/static/x/y"), Some(vec![]));
    }

    #[test]
    fn verbs_end_the_path() {
        assert_eq!(
            vars("/v1/{name=orders/*}:cancel", "/v1/orders/9:cancel"),
            Some(vec![pair("name", "orders/9")])
        );
        assert_eq!(vars("/v1/{name=orders/*}:cancel", "/v1/orders/9"), None);
        assert_eq!(
            vars("/v1/{name=orders/*}:cancel", "/v1/orders/9:undo"),
            None
        );
    }

    #[test]
    fn nested_field_paths_and_literals() {
        assert_eq!(
            vars("/v1/{order.id}/lines/{line.sku}", "/v1/o1/lines/s2"),
            Some(vec![pair("order.id", "o1"), pair("line.sku", "s2")])
        );
        assert_eq!(vars("/v1/x", "/v1/x/"), None);
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in ["v1/x", "/v1/{x", "/v1/**/x", "/v1//x", "/v1/{=a}", "/v1/x/"] {
            assert!(Template::parse(bad).is_err(), "{bad} parsed");
        }
    }
}
