//! Hand-written HTTP/2 frames, for what the `h2` crate will not send: floods of malformed
//! requests, resets, CONTINUATION frames, streams past the advertised limit. Header blocks use
//! HPACK literals only (no indexing, no Huffman), which every decoder must accept. Replies are
//! read as frames; header blocks from the server are not decoded.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The client connection preface.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types.
pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PING: u8 = 0x6;
pub(crate) const GOAWAY: u8 = 0x7;
pub(crate) const CONTINUATION: u8 = 0x9;

/// Flags.
pub(crate) const END_STREAM: u8 = 0x1;
pub(crate) const ACK: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;

/// Error codes.
pub(crate) const CANCEL: u32 = 0x8;
pub(crate) const REFUSED_STREAM: u32 = 0x7;
pub(crate) const ENHANCE_YOUR_CALM: u32 = 0xb;

/// SETTINGS_MAX_CONCURRENT_STREAMS.
pub(crate) const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// SETTINGS_MAX_HEADER_LIST_SIZE.
pub(crate) const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// One frame: 9-byte header, then the payload.
pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A header block of HPACK literals (without indexing, new names, no Huffman).
pub(crate) fn header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The headers of a well-formed gRPC POST to `path`.
pub(crate) fn grpc_headers(path: &str) -> Vec<u8> {
    header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ])
}

/// A SETTINGS frame with these (identifier, value) pairs.
pub(crate) fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in pairs {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

/// RST_STREAM with `code`.
pub(crate) fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// One frame read back.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a GOAWAY or RST_STREAM.
    pub(crate) fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            GOAWAY => 4,
            RST_STREAM => 0,
            _ => return None,
        };
        let bytes = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    }

    /// The (identifier, value) pairs of a SETTINGS frame.
    pub(crate) fn settings(&self) -> Vec<(u16, u32)> {
        self.payload
            .chunks_exact(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect()
    }
}

/// A raw HTTP/2 connection: bytes out, frames in.
#[derive(Debug)]
pub(crate) struct RawConn {
    pub read: OwnedReadHalf,
    pub write: OwnedWriteHalf,
}

impl RawConn {
    /// Connects and sends the preface and an empty SETTINGS frame.
    pub(crate) async fn open(addr: SocketAddr) -> Self {
        let mut conn = Self::connect(addr).await;
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(&[]));
        conn.send(&hello).await.unwrap();
        conn
    }

    /// Connects and sends nothing.
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (read, write) = tcp.into_split();
        Self { read, write }
    }

    /// Writes `bytes`.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await
    }

    /// The next frame, `None` at end of connection (or a reset), or after `wait` without one.
    pub(crate) async fn next_frame(&mut self, wait: Duration) -> Option<Frame> {
        tokio::time::timeout(wait, read_frame(&mut self.read))
            .await
            .ok()
            .flatten()
    }

    /// Reads frames until a GOAWAY (returned) or the end of the connection (`None`), for at
    /// most `wait`; ACKs nothing.
    pub(crate) async fn until_goaway(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            if frame.kind == GOAWAY {
                return Some(frame);
            }
        }
    }

    /// Whether the server closes the connection within `wait` (frames before the end are
    /// skipped).
    pub(crate) async fn closed_within(&mut self, wait: Duration) -> bool {
        closed_within(&mut self.read, wait).await
    }
}

/// Whether the other end closes `read` (a connection, TLS or not) within `wait`; what it sends
/// before is skipped.
pub(crate) async fn closed_within(
    read: &mut (impl tokio::io::AsyncRead + Unpin),
    wait: Duration,
) -> bool {
    let mut sink = vec![0u8; 64 * 1024];
    tokio::time::timeout(wait, async {
        loop {
            match read.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn read_frame(read: &mut OwnedReadHalf) -> Option<Frame> {
    let mut head = [0u8; 9];
    read.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    read.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// Resident memory of process `pid`: (now, peak) in KiB, from `/proc/PID/status`.
pub(crate) fn resident_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A SETTINGS ACK.
pub(crate) fn settings_ack() -> Vec<u8> {
    frame(SETTINGS, ACK, 0, &[])
}
