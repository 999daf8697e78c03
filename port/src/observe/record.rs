//! One call as the port saw it: the record both sinks (metrics, access log) are fed from, and
//! the gRPC message framing counted as bytes pass, without buffering.

use http::HeaderValue;
use http::uri::PathAndQuery;
use router::Routed;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use tonic::Code;

/// What one call was and how it ended.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// When its request arrived.
    pub start: SystemTime,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// Its `user-agent` header.
    pub user_agent: Option<HeaderValue>,
    /// Its `:authority` (or `host`).
    pub authority: Option<String>,
    /// The gRPC path, `/package.Service/Method`.
    pub path: Option<PathAndQuery>,
    /// Who the caller is: its client certificate's name (mutual TLS), else the
    /// `--usage-identity-header` value; only while the usage table is kept.
    pub identity: Option<HeaderValue>,
    /// Its `x-api-version` header, as sent.
    pub requirement: Option<HeaderValue>,
    /// The backend the router sent it to, if any.
    pub routed: Option<Routed>,
    /// The gRPC status it ended with.
    pub code: Code,
    /// From arrival until the last byte of the reply (or the client went away).
    pub duration: Duration,
    /// Request body bytes (gRPC framing included).
    pub bytes_in: u64,
    /// Reply body bytes (gRPC framing included).
    pub bytes_out: u64,
    /// Request messages.
    pub messages_in: u64,
    /// Reply messages.
    pub messages_out: u64,
}

/// The messages of a sampled or recorded call, kept for decoding, within caps.
#[derive(Debug, Default, Clone)]
pub(crate) struct Capture {
    /// The most payload bytes kept, all messages together; a message that would pass it is
    /// not kept, nor any after it.
    limit: usize,
    /// Payload bytes kept so far.
    kept: usize,
    /// The most messages kept.
    max_messages: usize,
    /// The message being read, when it is kept: its payload so far and whether compressed.
    pending: Option<(Vec<u8>, bool)>,
    /// The whole messages kept, in order: payload and whether it is compressed.
    pub(crate) messages: Vec<(Vec<u8>, bool)>,
    /// Why a message was not kept (longer than the limit, past the most messages), if any:
    /// `messages` is then not the whole stream.
    pub(crate) cut: Option<String>,
}

impl Capture {
    /// The first message, when it is whole and uncompressed.
    pub(crate) fn first(&self) -> Option<&[u8]> {
        match self.messages.first() {
            Some((payload, false)) => Some(payload),
            _ => None,
        }
    }

    /// A message of `len` bytes begins.
    fn begin(&mut self, index: u64, len: u64, compressed: bool) {
        if self.cut.is_some() {
            return;
        }
        if self.messages.len() >= self.max_messages {
            self.cut = Some(format!("more than {} messages", self.max_messages));
        } else if self.kept as u64 + len > self.limit as u64 {
            self.cut = Some(format!(
                "message {index} ({len} bytes) would pass the {} bytes kept",
                self.limit
            ));
        } else if len == 0 {
            self.messages.push((Vec::new(), compressed));
        } else {
            self.kept += len as usize;
            self.pending = Some((Vec::with_capacity(len as usize), compressed));
        }
    }

    /// Payload bytes of the current message; `done` when they end it.
    fn extend(&mut self, bytes: &[u8], done: bool) {
        if let Some((payload, _)) = &mut self.pending {
            payload.extend_from_slice(bytes);
        }
        if done && let Some(message) = self.pending.take() {
            self.messages.push(message);
        }
    }
}

/// Counts gRPC messages in a byte stream by their 5-byte prefixes (flag, 4-byte length).
#[derive(Debug, Default, Clone)]
pub(crate) struct Framing {
    /// Prefix bytes of the current message read so far (0..5).
    prefix: [u8; 5],
    prefix_len: usize,
    /// Payload bytes of the current message still to come.
    remaining: u64,
    /// Messages whose prefix was read.
    pub(crate) messages: u64,
    /// Every byte seen.
    pub(crate) bytes: u64,
    /// The messages kept, when the call is sampled or recorded.
    pub(crate) capture: Option<Capture>,
}

impl Framing {
    /// A framing that also keeps the first `max_messages` messages, as long as they come to at
    /// most `limit` bytes.
    pub(crate) fn capturing(limit: usize, max_messages: usize) -> Self {
        Self {
            capture: Some(Capture {
                limit,
                max_messages,
                ..Capture::default()
            }),
            ..Self::default()
        }
    }

    /// Takes the next chunk of the stream.
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(chunk.len() as u64);
                self.remaining -= take;
                if let Some(capture) = &mut self.capture {
                    capture.extend(&chunk[..take as usize], self.remaining == 0);
                }
                chunk = &chunk[take as usize..];
                continue;
            }
            let take = (5 - self.prefix_len).min(chunk.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&chunk[..take]);
            self.prefix_len += take;
            chunk = &chunk[take..];
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                self.messages += 1;
                let [flag, a, b, c, d] = self.prefix;
                self.remaining = u64::from(u32::from_be_bytes([a, b, c, d]));
                if let Some(capture) = &mut self.capture {
                    capture.begin(self.messages, self.remaining, flag != 0);
                }
            }
        }
    }
}

/// A code's name as grpc-go spells it (`codes.Code.String()`), which go-grpc-prometheus puts in
/// `grpc_code`, so that dashboards written for it work here.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The gRPC status of a reply that carries none, from its HTTP status, as gRPC's
/// http-grpc-status-mapping.md says a client must read it.
pub(crate) fn code_of_http(status: http::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// The `grpc-status` in `headers` (trailers, or the headers of a trailers-only reply).
pub(crate) fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from_i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_counted_whatever_the_chunks() {
        let mut stream = Vec::new();
        for payload in [&b"abc"[..], b"", &[7u8; 300]] {
            stream.push(0);
            stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            stream.extend_from_slice(payload);
        }
        for size in [1, 2, 3, 5, 7, 64, stream.len()] {
            let mut framing = Framing::default();
            stream.chunks(size).for_each(|chunk| framing.feed(chunk));
            assert_eq!(framing.messages, 3, "chunks of {size}");
            assert_eq!(framing.bytes, stream.len() as u64);
            let mut kept = Framing::capturing(303, 3);
            stream.chunks(size).for_each(|chunk| kept.feed(chunk));
            let capture = kept.capture.expect("a capture");
            let payloads: Vec<&[u8]> = capture.messages.iter().map(|(p, _)| &p[..]).collect();
            assert_eq!(
                payloads,
                [&b"abc"[..], b"", &[7u8; 300]],
                "chunks of {size}"
            );
            assert_eq!((capture.first(), &capture.cut), (Some(&b"abc"[..]), &None));
            let mut tight = Framing::capturing(302, 3);
            stream.chunks(size).for_each(|chunk| tight.feed(chunk));
            let capture = tight.capture.expect("a capture");
            assert_eq!(capture.messages.len(), 2, "the third would pass 302 bytes");
            let mut first = Framing::capturing(300, 1);
            stream.chunks(size).for_each(|chunk| first.feed(chunk));
            let capture = first.capture.expect("a capture");
            assert_eq!(capture.messages.len(), 1);
            assert_eq!(capture.cut.as_deref(), Some("more than 1 messages"));
            let mut short = Framing::capturing(2, 3);
            stream.chunks(size).for_each(|chunk| short.feed(chunk));
            let capture = short.capture.expect("a capture");
            assert_eq!(
                capture.cut.as_deref(),
                Some("message 1 (3 bytes) would pass the 2 bytes kept")
            );
            assert!(capture.first().is_none());
        }
    }
}
