//! The real curl, as the JSON tests call it: one call of a method, path, headers and body, and
//! the reply it printed (status, headers, body).

use client::tools::MissingTool;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// curl from `PATH`.
pub(super) fn curl_binary() -> Result<PathBuf, MissingTool> {
    crate::web::on_path("curl").ok_or_else(|| MissingTool {
        tool: "curl",
        looked: "PATH".into(),
        fix: "apt-get install curl",
    })
}

/// An HTTP reply as curl saw it.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
    pub(super) body: String,
}

impl Reply {
    /// The value of header `name`, if it came.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON: one value, or for a stream its lines' values in an array.
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| {
            let lines: Result<Vec<Value>, _> = self
                .body
                .lines()
                .filter(|l| !l.is_empty())
                .map(serde_json::from_str)
                .collect();
            Value::Array(lines.unwrap_or_else(|err| panic!("{err}: {:?}", self.body)))
        })
    }
}

/// One call: method, path and query, request headers, body.
#[derive(Debug, Clone, Copy)]
pub(super) struct Call<'a> {
    pub(super) method: &'a str,
    pub(super) path: &'a str,
    pub(super) headers: &'a [&'a str],
    pub(super) body: Option<&'a str>,
}

/// A POST of `body` as JSON.
pub(super) const fn post<'a>(path: &'a str, body: &'a str) -> Call<'a> {
    Call {
        method: "POST",
        path,
        headers: &["content-type: application/json"],
        body: Some(body),
    }
}

/// `call` sent by curl to `addr` (`--http2-prior-knowledge` when `http2`).
pub(super) fn send(curl: &Path, addr: std::net::SocketAddr, http2: bool, call: Call<'_>) -> Reply {
    let mut command = std::process::Command::new(curl);
    command
        .args(["-sS", "-i", "--max-time", "20", "-X", call.method])
        .arg(if http2 {
            "--http2-prior-knowledge"
        } else {
            "--http1.1"
        });
    for header in call.headers {
        command.args(["-H", header]);
    }
    if let Some(body) = call.body {
        command.args(["--data-binary", body]);
    }
    let out = command
        .arg(format!("http://{addr}{}", call.path))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {call:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}
