//! Comment ignores: `// testbed:breaking:ignore RULE reason` in the leading or trailing
//! comment of an element of the NEW version accepts that rule's findings on the element and
//! on everything declared inside it (a message's fields, an enum's values, a service's
//! methods). buf breaking has no such comment; its lint has `buf:lint:ignore`.

use crate::model::{Acceptance, Report};
use crate::source::Api;
use prost_reflect::{EnumDescriptor, FileDescriptor, MessageDescriptor};
use std::collections::HashMap;

/// The comment directive.
pub const DIRECTIVE: &str = "testbed:breaking:ignore";

/// One comment ignore found in the NEW version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignore {
    /// The rule id it accepts.
    pub rule: String,
    /// The full name of the element the comment is on.
    pub element: String,
    /// The reason written after the rule id.
    pub reason: String,
    /// `FILE:LINE` of the element the comment is attached to.
    pub at: String,
}

/// Every comment ignore in the version's own files. A directive without a rule or a reason,
/// or naming an unknown rule, is an error naming the file (under the input root `prefix`)
/// and line.
pub fn collect(api: &Api, prefix: &str) -> anyhow::Result<Vec<Ignore>> {
    let mut out = Vec::new();
    for name in &api.files {
        let Some(file) = api.pool.get_file_by_name(name) else {
            continue;
        };
        let comments = comments_by_path(&file);
        if comments.is_empty() {
            continue;
        }
        let mut elements: Vec<(String, Vec<i32>)> = Vec::new();
        for m in file.messages() {
            message_elements(&m, &mut elements);
        }
        for e in file.enums() {
            enum_elements(&e, &mut elements);
        }
        for s in file.services() {
            elements.push((s.full_name().to_string(), s.path().to_vec()));
            for m in s.methods() {
                elements.push((m.full_name().to_string(), m.path().to_vec()));
            }
        }
        for (element, path) in elements {
            let Some((line, text)) = comments.get(&path) else {
                continue;
            };
            let at = format!("{}:{line}", crate::render::under_root(prefix, name));
            for directive in text
                .lines()
                .filter_map(|l| l.trim().strip_prefix(DIRECTIVE))
            {
                let mut words = directive.trim().splitn(2, char::is_whitespace);
                let rule = words.next().unwrap_or_default().trim();
                let reason = words.next().unwrap_or_default().trim();
                if rule.is_empty() || reason.is_empty() {
                    anyhow::bail!(
                        "{at}: `{DIRECTIVE}` on {element} needs a rule id and a reason, e.g. `// {DIRECTIVE} FIELD_SAME_TYPE clients send values below 2^31`"
                    );
                }
                if crate::rules::rule_info(rule).is_none() {
                    anyhow::bail!(
                        "{at}: `{DIRECTIVE}` on {element} names an unknown rule {rule:?}"
                    );
                }
                out.push(Ignore {
                    rule: rule.to_string(),
                    element: element.clone(),
                    reason: reason.to_string(),
                    at: at.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Marks the breaking findings the ignores match (same rule; the element itself or one
/// declared inside it) as accepted.
pub fn apply(ignores: &[Ignore], report: &mut Report) {
    for ig in ignores {
        let inside = format!("{}.", ig.element);
        for f in report.findings.iter_mut().filter(|f| {
            f.breaking
                && f.rule == ig.rule
                && (f.element == ig.element || f.element.starts_with(&inside))
        }) {
            crate::accept::accept(
                f,
                Acceptance {
                    reason: ig.reason.clone(),
                    source: format!("comment at {}", ig.at),
                    expires: None,
                },
            );
        }
    }
    report.verdict = report.findings.iter().map(|f| f.semver).max();
}

/// Source path → (1-based line, leading and trailing comments joined).
fn comments_by_path(file: &FileDescriptor) -> HashMap<Vec<i32>, (u32, String)> {
    let mut map = HashMap::new();
    let Some(info) = &file.file_descriptor_proto().source_code_info else {
        return map;
    };
    for loc in &info.location {
        let text = format!("{}\n{}", loc.leading_comments(), loc.trailing_comments());
        if !text.contains(DIRECTIVE) {
            continue;
        }
        let line = loc.span.first().map(|l| *l as u32 + 1).unwrap_or(1);
        map.entry(loc.path.clone()).or_insert((line, text));
    }
    map
}

fn message_elements(m: &MessageDescriptor, out: &mut Vec<(String, Vec<i32>)>) {
    out.push((m.full_name().to_string(), m.path().to_vec()));
    for f in m.fields() {
        out.push((f.full_name().to_string(), f.path().to_vec()));
    }
    for o in m.oneofs() {
        out.push((o.full_name().to_string(), o.path().to_vec()));
    }
    for c in m.child_messages() {
        message_elements(&c, out);
    }
    for e in m.child_enums() {
        enum_elements(&e, out);
    }
}

fn enum_elements(e: &EnumDescriptor, out: &mut Vec<(String, Vec<i32>)>) {
    out.push((e.full_name().to_string(), e.path().to_vec()));
    for v in e.values() {
        out.push((format!("{}.{}", e.full_name(), v.name()), v.path().to_vec()));
    }
}
