//! The port's accept loop, ahead of tonic: it bounds what a connection may cost before it is
//! served.
//!
//! - Connections in total: past `max_connections` open at once, a new connection is accepted
//!   and closed at once (the kernel's backlog is not left to fill up), and the others go on.
//!   With `per_peer` (the admin API), each IP address gets at most that many, and a connection
//!   that never authenticated is closed to make room instead ([`Connections::admit`]).
//! - Accept errors: out of file descriptors (EMFILE, ENFILE) or memory, accepting is retried
//!   after a pause that doubles from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`], with one warning
//!   when such a burst starts and one line when it ends, not one per failure. A connection
//!   reset or aborted before it was accepted is skipped at once.
//! - The handshake: each connection has `handshake_timeout` to finish its TLS handshake (when
//!   the port speaks TLS) and to send the HTTP/2 preface and its first frame (SETTINGS); a
//!   silent or half-sent connection is closed then. Handshakes run in tasks of their own, so
//!   a slow one holds up nobody. (Once the preface is in, HTTP/2 keep-alive pings find a peer
//!   that goes silent.)
//!
//! Connections come out of [`incoming`] (the port; the admin API in plaintext) or
//! [`incoming_tls`] (the admin API over TLS, whose calls need the client's certificates) as a
//! stream, for `serve_with_incoming`. A refused or unfinished handshake is logged at debug
//! level only: anyone can connect, and a log line at warn for each would let them flood it.

pub(crate) use crate::connections::Admission;
use crate::connections::{Connections, Refused, Tracked};
use crate::peer::PeerInfo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// The HTTP/2 client connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the accept loop enforces.
#[derive(Debug, Clone)]
pub(crate) struct AcceptLimits {
    /// Who may take a connection slot.
    pub(crate) admission: Admission,
    pub(crate) handshake_timeout: Duration,
    /// Which listener this is, in its log lines (`port`, `admin API`).
    pub(crate) listener: &'static str,
}

/// Aborts the accept loop when dropped.
#[derive(Debug)]
pub(crate) struct AcceptLoop(JoinHandle<()>);

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Accepts on `listener` until the returned stream is dropped (tonic drops it when it stops
/// accepting), yielding connections that finished their TLS handshake, if any. Their connect
/// info is the TCP one, TLS or not.
pub(crate) fn incoming(
    listener: TcpListener,
    connections: Arc<Connections>,
    limits: AcceptLimits,
    tls: Option<TlsAcceptor>,
) -> (ReceiverStream<io::Result<Conn<Io>>>, AcceptLoop) {
    accept_with(listener, connections, limits, move |tracked| {
        let tls = tls.clone();
        async move {
            match tls {
                None => Ok(Io::Plain(tracked)),
                Some(acceptor) => acceptor
                    .accept(tracked)
                    .await
                    .map(|stream| Io::Tls(Box::new(stream))),
            }
        }
    })
}

/// [`incoming`] for a listener that speaks TLS only, whose connections carry tonic's
/// [`TlsConnectInfo`](tonic::transport::server::TlsConnectInfo): the client's certificates
/// reach each request (`Request::peer_certs`), as the admin API needs them to name its caller.
pub(crate) fn incoming_tls(
    listener: TcpListener,
    connections: Arc<Connections>,
    limits: AcceptLimits,
    acceptor: TlsAcceptor,
) -> (
    ReceiverStream<io::Result<Conn<TlsStream<Tracked>>>>,
    AcceptLoop,
) {
    accept_with(listener, connections, limits, move |tracked| {
        acceptor.accept(tracked)
    })
}

/// The accept loop: `handshake` turns each accepted connection within the limits into what is
/// served, by the connection's deadline, in a task of its own.
fn accept_with<S, H, F>(
    listener: TcpListener,
    connections: Arc<Connections>,
    limits: AcceptLimits,
    handshake: H,
) -> (ReceiverStream<io::Result<Conn<S>>>, AcceptLoop)
where
    S: Send + 'static,
    H: Fn(Tracked) -> F + Send + 'static,
    F: Future<Output = io::Result<S>> + Send + 'static,
{
    let (ready, out) = mpsc::channel(64);
    let listener_name = limits.listener;
    let task = tokio::spawn(async move {
        let admission = limits.admission;
        let mut failures = AcceptFailures::new(listener_name);
        let (mut refusals, mut last_warned) = (0u64, None);
        loop {
            let accepted = tokio::select! {
                _ = ready.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    failures.ended();
                    accepted
                }
                Err(err) if is_connection_error(&err) => {
                    tracing::debug!(
                        listener = listener_name,
                        %err,
                        "a connection ended before it was accepted"
                    );
                    continue;
                }
                Err(err) => {
                    let pause = failures.failed(&err);
                    tokio::select! {
                        _ = ready.closed() => break,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            if let Err(refused) = connections.admit(peer, admission) {
                let reason = match refused {
                    Refused::Full => "every connection slot is taken",
                    Refused::PeerFull => "this peer holds its share of connections",
                };
                // On the admin listener a refusal can lock an operator out: say so, at most
                // once per REFUSAL_WARNING_EVERY, with how many were refused meanwhile.
                refusals += 1;
                if admission.per_peer.is_some()
                    && last_warned.is_none_or(|at: Instant| at.elapsed() >= REFUSAL_WARNING_EVERY)
                {
                    tracing::warn!(
                        listener = listener_name,
                        %peer,
                        max = admission.max_connections,
                        per_peer = ?admission.per_peer,
                        refused = refusals,
                        "connection refused: {reason}, all of them authenticated or just opened \
                        (see --admin-max-connections and --admin-max-connections-per-peer)"
                    );
                    last_warned = Some(Instant::now());
                    refusals = 0;
                } else {
                    tracing::debug!(
                        listener = listener_name,
                        %peer,
                        max = admission.max_connections,
                        per_peer = ?admission.per_peer,
                        reason,
                        "connection limit reached; closing a new connection"
                    );
                }
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let deadline = Instant::now() + limits.handshake_timeout;
            let handshaking = handshake(connections.track(stream, peer));
            let ready = ready.clone();
            tokio::spawn(async move {
                // Only a TLS handshake can fail or take time; plaintext is ready at once.
                let io = match tokio::time::timeout_at(deadline, handshaking).await {
                    Ok(Ok(io)) => io,
                    Ok(Err(err)) => {
                        tracing::debug!(listener = listener_name, %peer, %err, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(
                            listener = listener_name,
                            %peer,
                            "TLS handshake not finished in time; closed"
                        );
                        return;
                    }
                };
                let _ = ready.send(Ok(Conn::new(io, deadline))).await;
            });
        }
    });
    (ReceiverStream::new(out), AcceptLoop(task))
}

/// How often, at most, the admin listener warns that it refused connections.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// The first pause after a failed accept.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between accepts that keep failing.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Errors of one connection (aborted or reset while it waited to be accepted), not of the
/// listener: nothing to wait for. Linux's accept(2) also passes on the network errors of the
/// new connection (ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP,
/// ENETUNREACH), to be treated as a retry.
fn is_connection_error(err: &io::Error) -> bool {
    use nix::errno::Errno;
    if matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return true;
    }
    err.raw_os_error().is_some_and(|code| {
        [
            Errno::ENETDOWN,
            Errno::EPROTO,
            Errno::ENOPROTOOPT,
            Errno::EHOSTDOWN,
            Errno::ENONET,
            Errno::EHOSTUNREACH,
            Errno::EOPNOTSUPP,
            Errno::ENETUNREACH,
        ]
        .contains(&Errno::from_raw(code))
    })
}

/// Whether a failed accept is for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
/// ENOMEM), which the warning then points at.
fn is_out_of_resources(err: &io::Error) -> bool {
    use nix::errno::Errno;
    err.raw_os_error().is_some_and(|code| {
        [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM]
            .contains(&Errno::from_raw(code))
    })
}

/// A burst of failed accepts: how long to pause after each, and its two log lines.
struct AcceptFailures {
    listener: &'static str,
    count: u64,
    pause: Duration,
    since: Option<Instant>,
}

impl AcceptFailures {
    fn new(listener: &'static str) -> Self {
        Self {
            listener,
            count: 0,
            pause: FIRST_BACKOFF,
            since: None,
        }
    }

    /// Counts a failure; the pause before the next accept ([`FIRST_BACKOFF`], doubling up to
    /// [`MAX_BACKOFF`]). Warns at the first failure of a burst only.
    fn failed(&mut self, err: &io::Error) -> Duration {
        if self.count == 0 {
            self.since = Some(Instant::now());
            self.pause = FIRST_BACKOFF;
            let hint = if is_out_of_resources(err) {
                " (out of file descriptors or memory: see --fd-reserve and ulimit -n)"
            } else {
                ""
            };
            tracing::warn!(
                listener = self.listener,
                %err,
                "accept failed: {err}{hint}; retrying with pauses up to 1 s, and saying so once \
                when it accepts again"
            );
        } else {
            self.pause = (self.pause * 2).min(MAX_BACKOFF);
        }
        self.count += 1;
        self.pause
    }

    /// Ends a burst, if one is on, with one line saying how long it lasted.
    fn ended(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                listener = self.listener,
                failures = self.count,
                lasted = ?since.elapsed(),
                "accepting again"
            );
            self.count = 0;
        }
    }
}

/// A connection of a listener that may speak TLS or not (the port's, `--tls-cert`).
#[derive(Debug)]
pub(crate) enum Io {
    Plain(Tracked),
    Tls(Box<TlsStream<Tracked>>),
}

impl Connected for Io {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Io::Plain(tracked) => PeerInfo {
                tcp: tracked.connect_info(),
                certificate_name: None,
            },
            Io::Tls(stream) => {
                let (tracked, session) = stream.get_ref();
                // Verified by the handshake against --tls-client-ca when one was asked for.
                let certificate_name = session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|der| crate::admin::auth::certificate_name(der).ok())
                    .map(Arc::from);
                PeerInfo {
                    tcp: tracked.connect_info(),
                    certificate_name,
                }
            }
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(io) => io.is_write_vectored(),
            Io::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_flush(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Where a connection is in its handshake: bytes of the preface and first frame still to come.
struct Handshake {
    deadline: Pin<Box<Sleep>>,
    seen: usize,
    need: usize,
    first_frame_len: [u8; 3],
}

impl Handshake {
    /// Takes `bytes` the client sent; true once the preface and a whole first frame are in
    /// (or the client is not speaking HTTP/2 with prior knowledge, which hyper answers itself).
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut rest = bytes;
        while self.seen < 27 {
            let Some((&byte, tail)) = rest.split_first() else {
                break;
            };
            rest = tail;
            let at = self.seen;
            if at < 24 {
                if byte != PREFACE[at] {
                    return true;
                }
            } else {
                self.first_frame_len[at - 24] = byte;
                if at == 26 {
                    let [a, b, c] = self.first_frame_len;
                    self.need = 24 + 9 + u32::from_be_bytes([0, a, b, c]) as usize;
                }
            }
            self.seen += 1;
        }
        self.seen += rest.len();
        self.seen >= self.need
    }
}

/// An accepted connection (`S`: plaintext or TLS) that is closed if its handshake is not done
/// by its deadline. Its connect info is `S`'s.
pub(crate) struct Conn<S> {
    io: S,
    handshake: Option<Handshake>,
}

impl<S> std::fmt::Debug for Conn<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("handshaking", &self.handshake.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> Conn<S> {
    fn new(io: S, deadline: Instant) -> Self {
        Self {
            io,
            handshake: Some(Handshake {
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                seen: 0,
                need: 24 + 9,
                first_frame_len: [0; 3],
            }),
        }
    }
}

impl<S: Connected> Connected for Conn<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> S::ConnectInfo {
        self.io.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(handshake) = this.handshake.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                if handshake.feed(&buf.filled()[before..]) {
                    this.handshake = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match handshake.deadline.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    tracing::debug!("HTTP/2 preface not received in time; closing");
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the HTTP/2 preface did not arrive before the handshake timeout",
                    )))
                }
            },
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake() -> Handshake {
        Handshake {
            deadline: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
            seen: 0,
            need: 33,
            first_frame_len: [0; 3],
        }
    }

    #[tokio::test]
    async fn the_handshake_ends_with_the_first_whole_frame() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend([0, 0, 6, 4, 0, 0, 0, 0, 0]);
        bytes.extend([0, 3, 0, 0, 0, 100]);
        for split in 1..bytes.len() {
            let mut h = handshake();
            assert!(!h.feed(&bytes[..split]), "done after {split} bytes");
            assert!(h.feed(&bytes[split..]), "not done after all ({split})");
        }
        let mut h = handshake();
        assert!(!h.feed(&bytes[..bytes.len() - 1]));
    }

    #[tokio::test]
    async fn failed_accepts_pause_longer_each_time_up_to_a_second_and_start_again_after_one() {
        let mut failures = AcceptFailures::new("test");
        let err = io::Error::from_raw_os_error(24);
        let pauses: Vec<Duration> = (0..10).map(|_| failures.failed(&err)).collect();
        assert_eq!(pauses[0], FIRST_BACKOFF);
        assert_eq!(pauses[1], FIRST_BACKOFF * 2);
        assert_eq!(pauses[9], MAX_BACKOFF);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        failures.ended();
        assert_eq!(failures.failed(&err), FIRST_BACKOFF);
        assert!(!is_connection_error(&err));
        assert!(is_connection_error(
            &io::ErrorKind::ConnectionAborted.into()
        ));
    }

    #[tokio::test]
    async fn http1_is_let_through_at_once() {
        assert!(handshake().feed(b"POST / HTTP/1.1\r\n"));
    }
}
