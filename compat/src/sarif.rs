//! `--format sarif`: the report as a SARIF 2.1.0 log for code scanning (GitHub's
//! upload-sarif, GitLab). Breaking and accepted findings are `error` results (accepted ones
//! carry an `external` suppression with the reason), additions are `note`s; warnings about
//! the accept file are tool execution notifications.

use crate::model::{Bump, Category, Finding, Report};
use crate::render::under_root;
use serde_json::{Value, json};
use std::io::Write;

/// The published schema the output follows.
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// buf's documentation of its breaking rules; each rule has an anchor of its id in lowercase.
const BUF_RULES_DOC: &str = "https://buf.build/docs/breaking/rules/";

fn rule(info: &crate::RuleInfo) -> Value {
    let mut r = json!({
        "id": info.id,
        "name": info.id,
        "shortDescription": { "text": info.summary },
        "properties": {
            "categories": info.categories.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        },
    });
    if !info.categories.contains(&Category::Grpc) {
        r["helpUri"] = json!(format!("{BUF_RULES_DOC}#{}", info.id.to_ascii_lowercase()));
    }
    r
}

fn result(f: &Finding, index: Option<usize>, prefix: &str) -> Option<Value> {
    let level = if f.breaking || f.accepted.is_some() {
        "error"
    } else if f.semver == Bump::Minor {
        "note"
    } else {
        return None;
    };
    let mut text = f.message.clone();
    if let Some(c) = &f.confirmation {
        text.push_str(&format!(" ({}: {})", c.outcome.as_str(), c.effect));
    }
    let mut r = json!({
        "ruleId": f.rule,
        "level": level,
        "message": { "text": text },
        "properties": { "element": f.element, "category": f.category.as_str(), "semver": f.semver },
    });
    if let Some(i) = index {
        r["ruleIndex"] = json!(i);
    }
    if !f.path.is_empty() {
        let mut physical = json!({ "artifactLocation": { "uri": under_root(prefix, &f.path) } });
        if let Some(line) = f.line {
            physical["region"] = json!({ "startLine": line });
            if let Some(column) = f.column {
                physical["region"]["startColumn"] = json!(column);
            }
        }
        r["locations"] = json!([{
            "physicalLocation": physical,
            "logicalLocations": [{ "fullyQualifiedName": f.element }],
        }]);
    } else {
        r["locations"] = json!([{ "logicalLocations": [{ "fullyQualifiedName": f.element }] }]);
    }
    if let Some(a) = &f.accepted {
        r["suppressions"] = json!([{
            "kind": "external",
            "status": "accepted",
            "justification": a.reason,
            "location": { "message": { "text": a.source } },
        }]);
    }
    Some(r)
}

/// Writes the SARIF log; file URIs are the findings' paths under the NEW input's root
/// `prefix`, relative to the directory the check ran in (the repository root in CI).
pub fn write(report: &Report, prefix: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let rules = crate::RULES;
    let results: Vec<Value> = report
        .findings
        .iter()
        .filter_map(|f| result(f, rules.iter().position(|r| r.id == f.rule), prefix))
        .collect();
    let notifications: Vec<Value> = report
        .warnings
        .iter()
        .map(|w| json!({ "level": "warning", "message": { "text": w } }))
        .collect();
    let log = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "testbed check",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.iter().map(rule).collect::<Vec<_>>(),
            }},
            "invocations": [{
                "executionSuccessful": true,
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }],
    });
    serde_json::to_writer_pretty(&mut *out, &log)?;
    writeln!(out)
}
