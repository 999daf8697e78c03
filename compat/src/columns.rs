//! Columns for findings. The rules record the line of the element a finding points at; buf
//! also prints the column: where the element's declaration starts, or for some rules the
//! token that changed (a field's type, a renamed name, an RPC's request type). The outermost
//! source location starting on the finding's line is the element's declaration; a rule's
//! token is a child location of it ([`TOKENS`]).

use crate::model::Report;
use crate::source::Api;
use std::collections::HashMap;

/// Rules whose finding buf points at a part of the declaration: the descriptor field
/// numbers (below the element's path) of the parts tried in order.
const TOKENS: &[(&[&str], &[&[i32]])] = &[
    (&["FIELD_SAME_NAME"], &[&[1]]),
    // The number: the value that now has another name.
    (&["ENUM_VALUE_SAME_NAME"], &[&[2]]),
    (
        &[
            "FIELD_SAME_TYPE",
            "FIELD_WIRE_COMPATIBLE_TYPE",
            "FIELD_WIRE_JSON_COMPATIBLE_TYPE",
            "GRPC_FIELD_SAME_VALUE_RANGE",
        ],
        // type_name, then the scalar type.
        &[&[6], &[5]],
    ),
    (
        &["RPC_SAME_REQUEST_TYPE", "GRPC_RPC_SAME_REQUEST_TYPE"],
        &[&[2]],
    ),
    (
        &["RPC_SAME_RESPONSE_TYPE", "GRPC_RPC_SAME_RESPONSE_TYPE"],
        &[&[3]],
    ),
    (&["FIELD_SAME_JSON_NAME"], &[&[10]]),
    (&["FIELD_SAME_JSTYPE"], &[&[8, 6]]),
];

/// One file's locations: by path the 1-based (line, column), and by line the path of the
/// outermost location starting there.
#[derive(Default)]
struct Index {
    at: HashMap<Vec<i32>, (u32, u32)>,
    outermost: HashMap<u32, Vec<i32>>,
}

fn index(new: &Api, file: &str) -> Index {
    let mut idx = Index::default();
    let Some(info) = new
        .pool
        .get_file_by_name(file)
        .and_then(|f| f.file_descriptor_proto().source_code_info.clone())
    else {
        return idx;
    };
    // The file's own location (empty path) spans it all; it is no declaration.
    for loc in info.location.iter().filter(|l| !l.path.is_empty()) {
        let (Some(line), Some(col)) = (loc.span.first(), loc.span.get(1)) else {
            continue;
        };
        let (Ok(line), Ok(col)) = (u32::try_from(*line + 1), u32::try_from(*col + 1)) else {
            continue;
        };
        idx.at.entry(loc.path.clone()).or_insert((line, col));
        let outer = idx
            .outermost
            .entry(line)
            .or_insert_with(|| loc.path.clone());
        if loc.path.len() < outer.len() {
            *outer = loc.path.clone();
        }
    }
    idx
}

/// Fills `column` for every finding with a file and line in NEW's source info.
pub fn fill(report: &mut Report, new: &Api) {
    let mut files: HashMap<String, Index> = HashMap::new();
    for f in report.findings.iter_mut() {
        let Some(line) = f.line else { continue };
        let idx = files
            .entry(f.path.clone())
            .or_insert_with(|| index(new, &f.path));
        let Some(element) = idx.outermost.get(&line) else {
            continue;
        };
        let tokens = TOKENS
            .iter()
            .find(|(rules, _)| rules.contains(&f.rule.as_str()))
            .map(|(_, t)| *t)
            .unwrap_or(&[]);
        let token = tokens.iter().find_map(|sub| {
            let path = [element.as_slice(), sub].concat();
            idx.at.get(&path).filter(|(l, _)| *l == line)
        });
        f.column = token.or_else(|| idx.at.get(element)).map(|(_, c)| *c);
    }
}
