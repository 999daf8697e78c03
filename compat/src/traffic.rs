//! Traffic files: recorded gRPC calls and hand-written scenarios in one format, JSON lines, one
//! call per line. The gateway writes them (`serve --record FILE`), `testbed replay` reads them.
//!
//! ```text
//! {"name": "place", "method": "shop.v1.Shop/PlaceOrder", "requests": [{"lines": [{"sku": "book-1", "quantity": 1}], "card_token": "t"}]}
//! {"method": "shop.v1.Shop/WatchOrder", "metadata": {"x-tenant": "a"}, "requests": [{"order_id": "${place.order_id}"}]}
//! ```
//!
//! Messages are protobuf JSON (proto field names or JSON names). A string `${NAME.PATH}`, where
//! NAME is the `name` of an earlier line, is replaced by that call's first reply's field at
//! PATH (`order_id`, `lines[0].sku`) on each server the replay calls, so create-then-get works;
//! any other `${...}` is kept as text. Blank lines and lines starting with `#` are skipped. The
//! recorder's extra fields (`code`, `responses`, `at`, ...) describe what happened when the
//! call was recorded; the replay compares live servers and reads them only for the report.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

/// One call of a traffic file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// A name later lines refer to (`${NAME.field}`); scenarios set it, recordings do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `pkg.Service/Method`.
    pub method: String,
    /// The call's metadata (text values), secrets left out (see `redacted`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Metadata names the recorder left out because their values are secrets or binary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// The request messages, protobuf JSON (one for unary and server-streaming methods).
    #[serde(default)]
    pub requests: Vec<serde_json::Value>,
    /// The status the call ended with when recorded (`OK`, `NOT_FOUND`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The status message when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The reply messages when recorded, protobuf JSON.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<serde_json::Value>,
    /// When the call started (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// How long the call took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// The version that served it (the gateway's `x-api-version` reply header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The backend that served it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// What the recorder left out of the messages (a cap reached), if anything: such a call's
    /// requests are incomplete and the replay does not send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
}

/// A call read from a file, with where it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// `FILE:LINE`, for messages.
    pub at: String,
    /// The call.
    pub call: Call,
}

/// Caps on what [`read`] takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct ReadLimits {
    /// Longest line read from a traffic file, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub max_line_bytes: usize,
    /// Most calls read from the traffic files together.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_calls: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_line_bytes: 4 << 20,
            max_calls: 100_000,
        }
    }
}

/// Reads the calls of `files`, in order, within `limits`. Errors name the file and line: a line
/// that is not a call, a method not written `pkg.Service/Method`, a name used twice, a file
/// past a cap.
pub fn read(files: &[impl AsRef<Path>], limits: ReadLimits) -> anyhow::Result<Vec<Line>> {
    let mut out: Vec<Line> = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for file in files {
        let file = file.as_ref();
        let handle = std::fs::File::open(file)
            .with_context(|| format!("cannot open the traffic file {}", file.display()))?;
        let mut reader = std::io::BufReader::new(handle);
        let mut number = 0;
        let mut text = Vec::new();
        loop {
            text.clear();
            number += 1;
            let at = format!("{}:{number}", file.display());
            let cap = u64::try_from(limits.max_line_bytes.saturating_add(1)).unwrap_or(u64::MAX);
            let read = std::io::Read::take(&mut reader, cap)
                .read_until(b'\n', &mut text)
                .with_context(|| format!("cannot read {at}"))?;
            if read == 0 {
                break;
            }
            if text.len() > limits.max_line_bytes {
                bail!(
                    "{at}: the line is longer than {} bytes (--max-line-bytes)",
                    limits.max_line_bytes
                );
            }
            let line = std::str::from_utf8(&text).with_context(|| format!("{at}: not UTF-8"))?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let call: Call = serde_json::from_str(line).with_context(|| {
                format!("{at}: not a call (a JSON object with \"method\" and \"requests\")")
            })?;
            check_method(&call.method).with_context(|| format!("{at}: \"method\""))?;
            if let Some(name) = &call.name {
                if name.is_empty() || name.contains(['.', '[', '}', '$']) {
                    bail!("{at}: name {name:?} must be non-empty, without . [ }} or $");
                }
                if let Some(first) = names.insert(name.clone(), at.clone()) {
                    bail!("{at}: name {name:?} is already the name of the call at {first}");
                }
            }
            if out.len() >= limits.max_calls {
                bail!(
                    "{at}: more than {} calls in the traffic files (--max-calls)",
                    limits.max_calls
                );
            }
            out.push(Line { at, call });
        }
    }
    if out.is_empty() {
        bail!("the traffic files hold no calls");
    }
    Ok(out)
}

/// `pkg.Service/Method` (a leading `/` allowed).
fn check_method(method: &str) -> anyhow::Result<()> {
    let trimmed = method.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, name))
            if service.contains('.') && !name.is_empty() && !name.contains('/') =>
        {
            Ok(())
        }
        _ => bail!("expected pkg.Service/Method, got {method:?}"),
    }
}

impl Call {
    /// `pkg.Service/Method`, without a leading `/`.
    pub fn method_name(&self) -> &str {
        self.method.trim_start_matches('/')
    }

    /// One line of a traffic file (no newline).
    pub fn to_line(&self) -> String {
        // A struct of strings, numbers and JSON values always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, text).expect("written");
        (dir, path)
    }

    #[test]
    fn calls_are_read_in_order_and_round_trip() {
        let (_dir, path) = file(
            "# a scenario\n\n{\"name\": \"a\", \"method\": \"p.S/M\", \"requests\": [{\"x\": 1}]}\n\
             {\"method\": \"/p.S/N\", \"metadata\": {\"k\": \"v\"}, \"requests\": [{\"id\": \"${a.id}\"}]}\n",
        );
        let lines = read(&[&path], ReadLimits::default()).expect("it reads");
        assert_eq!(lines.len(), 2);
        assert!(lines[0].at.ends_with("t.jsonl:3"), "{}", lines[0].at);
        assert_eq!(lines[1].call.method_name(), "p.S/N");
        let again: Call = serde_json::from_str(&lines[1].call.to_line()).expect("it parses");
        assert_eq!(again, lines[1].call);
    }

    #[test]
    fn bad_lines_are_refused_naming_the_line() {
        let cases = [
            (
                "{\"method\": \"p.S/M\"}\nnot json\n",
                "t.jsonl:2: not a call",
            ),
            ("{\"method\": \"M\"}\n", "expected pkg.Service/Method"),
            (
                "{\"method\": \"p.S/M\", \"reqests\": []}\n",
                "t.jsonl:1: not a call",
            ),
            (
                "{\"name\": \"a\", \"method\": \"p.S/M\"}\n{\"name\": \"a\", \"method\": \"p.S/M\"}\n",
                "already the name of the call at",
            ),
            ("", "hold no calls"),
        ];
        for (text, says) in cases {
            let (_dir, path) = file(text);
            let err = read(&[&path], ReadLimits::default()).expect_err(text);
            assert!(format!("{err:#}").contains(says), "{text}: {err:#}");
        }
        let (_dir, path) = file(&format!(
            "{{\"method\": \"p.S/M\", \"requests\": [\"{}\"]}}\n",
            "x".repeat(100)
        ));
        let small = ReadLimits {
            max_line_bytes: 50,
            max_calls: 10,
        };
        let err = read(&[&path], small).expect_err("too long");
        assert!(format!("{err:#}").contains("--max-line-bytes"), "{err:#}");
        let (_dir, path) = file("{\"method\": \"p.S/M\"}\n{\"method\": \"p.S/M\"}\n");
        let one = ReadLimits {
            max_line_bytes: 1000,
            max_calls: 1,
        };
        let err = read(&[&path], one).expect_err("too many");
        assert!(format!("{err:#}").contains("--max-calls"), "{err:#}");
    }
}
