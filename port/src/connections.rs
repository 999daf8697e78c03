//! The port's open connections, so that a shutdown can close them.
//!
//! tonic serves each connection in a task of its own, out of reach of the accept loop: stopping
//! the accept loop leaves every connection (and a stream on it) served. Each accepted socket is
//! therefore wrapped in a [`Tracked`] that registers its file descriptor here until it drops,
//! and [`Connections::close_all`] shuts the sockets down, which wakes and ends every
//! connection task through the kernel. Nothing is added to the read or write path.
//!
//! The same registry decides who may take a slot ([`Connections::admit`]): the port refuses
//! connections past its cap; the admin API's listener also caps each peer (an IPv4 address, or
//! the /64 of an IPv6 one) and makes room by closing a connection that never authenticated,
//! taken from the peer that holds the most, so that idle unauthenticated connections never lock
//! out an operator and one peer's churn falls on that peer.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The connections a port has open.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Entry>>,
}

/// One open connection.
#[derive(Debug)]
struct Entry {
    fd: RawFd,
    peer: SocketAddr,
    /// When it was accepted: within [`GRACE`] of it, the only connection of its peer is not
    /// closed to make room for another peer's.
    since: Instant,
    /// Whether a call on it authenticated (the admin API's listener only): it is never closed
    /// to make room.
    authenticated: bool,
    /// Whether it was shut down to make room; it counts no more, though its task may not have
    /// dropped it yet.
    closing: bool,
}

/// Who may take a connection slot ([`Connections::admit`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admission {
    /// Connections open at once.
    pub(crate) max_connections: usize,
    /// Connections open at once from one IP address, and whether a connection that has not
    /// authenticated is closed to make room for a new one (the admin API's listener), instead
    /// of the new one being refused (the port: nothing there authenticates).
    pub(crate) per_peer: Option<usize>,
}

/// Why [`Connections::admit`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_connections` are open, none of them closable.
    Full,
    /// The peer holds its `per_peer` share, all of it authenticated.
    PeerFull,
}

impl Connections {
    /// Registers `stream`, from `peer`, until the returned wrapper drops.
    pub(crate) fn track(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) -> Tracked {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut open) = self.open.lock() {
            let entry = Entry {
                fd: stream.as_raw_fd(),
                peer,
                since: Instant::now(),
                authenticated: false,
                closing: false,
            };
            open.insert(id, entry);
        }
        Tracked {
            stream,
            id,
            connections: self.clone(),
        }
    }

    /// Connections open now.
    pub(crate) fn count(&self) -> usize {
        self.open
            .lock()
            .map_or(0, |open| open.values().filter(|e| !e.closing).count())
    }

    /// Whether a new connection from `peer` may be served under `admission`, making room for
    /// it if need be. With `per_peer` set: a peer at its share gets room by its own oldest
    /// connection that has not authenticated being shut down (so a peer competes only with
    /// itself, and an operator on the same address as idle connections still gets in), and is
    /// refused when all of its share authenticated. A full listener gets room by a connection
    /// that has not authenticated being shut down, taken from the peer that holds the most
    /// (its oldest past [`GRACE`] first), so that churn from some peers never closes another
    /// peer's connection before its first call; it refuses when every connection
    /// authenticated or is the only one of its peer and within its grace. Without `per_peer`,
    /// a full listener refuses.
    pub(crate) fn admit(&self, peer: SocketAddr, admission: Admission) -> Result<(), Refused> {
        let Ok(mut open) = self.open.lock() else {
            return Err(Refused::Full);
        };
        if let Some(per_peer) = admission.per_peer {
            let key = peer_key(peer.ip());
            let same_peer = |entry: &Entry| peer_key(entry.peer.ip()) == key;
            let held = open.values().filter(|e| !e.closing && same_peer(e)).count();
            if held >= per_peer && !make_room(&mut open, same_peer) {
                return Err(Refused::PeerFull);
            }
        }
        let total = open.values().filter(|e| !e.closing).count();
        if total < admission.max_connections {
            return Ok(());
        }
        // A peer with an authenticated connection open is an operator's: its new connection
        // may also take the place of another peer's only one within its grace, so that a flood
        // of single connections from many addresses never keeps it out.
        let key = peer_key(peer.ip());
        let trusted = open
            .values()
            .any(|e| !e.closing && e.authenticated && peer_key(e.peer.ip()) == key);
        if admission.per_peer.is_some() && make_room_from_the_largest_peer(&mut open, trusted) {
            return Ok(());
        }
        Err(Refused::Full)
    }

    /// Marks the connection from `peer` as authenticated: [`admit`](Self::admit) never closes
    /// it to make room.
    pub(crate) fn authenticated(&self, peer: SocketAddr) {
        if let Ok(mut open) = self.open.lock()
            && let Some(entry) = open.values_mut().find(|e| e.peer == peer && !e.closing)
        {
            entry.authenticated = true;
        }
    }

    /// Shuts every open connection down (both directions): their tasks see the connection end
    /// and finish, whatever they were waiting for.
    pub(crate) fn close_all(&self) {
        let Ok(open) = self.open.lock() else { return };
        for entry in open.values() {
            shut_down(entry.fd);
        }
    }
}

/// Shuts down the oldest connection (the lowest id) of those `which` picks that has not
/// authenticated, if there is one.
fn make_room(open: &mut HashMap<u64, Entry>, which: impl Fn(&Entry) -> bool) -> bool {
    let oldest = open
        .iter_mut()
        .filter(|(_, e)| !e.closing && !e.authenticated && which(e))
        .min_by_key(|(id, _)| **id);
    let Some((_, entry)) = oldest else {
        return false;
    };
    tracing::debug!(
        peer = %entry.peer,
        "closing a connection that never authenticated, to make room"
    );
    entry.closing = true;
    shut_down(entry.fd);
    true
}

/// How long a new connection that is its peer's only one cannot be closed to make room for
/// another peer's: time for its handshake and first call, so that a connect flood from other
/// addresses cannot close it before it authenticates.
pub(crate) const GRACE: Duration = Duration::from_millis(500);

/// Who counts as one peer for the admin listener's shares: an IPv4 address (an IPv4-mapped
/// IPv6 address counts as its IPv4 one), or the /64 of an IPv6 address, which one host is
/// usually given whole.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

/// Shuts down a connection that has not authenticated of the peer holding the most
/// connections (its oldest past [`GRACE`] first), if there is one that may be closed: the only
/// connection of its peer yet to authenticate is kept within its grace, unless the room is
/// `for_trusted` (a peer that has authenticated).
fn make_room_from_the_largest_peer(open: &mut HashMap<u64, Entry>, for_trusted: bool) -> bool {
    let mut held: HashMap<IpAddr, usize> = HashMap::new();
    let mut pending: HashMap<IpAddr, usize> = HashMap::new();
    for entry in open.values().filter(|e| !e.closing) {
        *held.entry(peer_key(entry.peer.ip())).or_default() += 1;
        if !entry.authenticated {
            *pending.entry(peer_key(entry.peer.ip())).or_default() += 1;
        }
    }
    let now = Instant::now();
    let victim = open
        .iter_mut()
        .filter(|(_, e)| !e.closing && !e.authenticated)
        .map(|(id, e)| {
            let key = peer_key(e.peer.ip());
            let count = held.get(&key).copied().unwrap_or(0);
            // Its peer's only connection yet to authenticate (the ones that did, an operator's
            // earlier calls still closing, say, do not count against it).
            let alone = pending.get(&key).copied().unwrap_or(0) <= 1;
            let in_grace = now.duration_since(e.since) < GRACE;
            (count, in_grace && alone, *id, e)
        })
        .filter(|(_, kept, _, _)| for_trusted || !*kept)
        .min_by_key(|(count, in_grace, id, _)| (std::cmp::Reverse(*count), *in_grace, *id));
    let Some((_, _, _, entry)) = victim else {
        return false;
    };
    tracing::debug!(
        peer = %entry.peer,
        "closing a connection that never authenticated, of the peer holding the most, to make room"
    );
    entry.closing = true;
    shut_down(entry.fd);
    true
}

/// Shuts a registered connection's socket down, which wakes and ends its task.
fn shut_down(fd: RawFd) {
    // The fd stays registered only while its `Tracked` (and so its `TcpStream`) is alive:
    // `Tracked::drop` unregisters it under the same lock as every caller holds, before the
    // socket is closed, so the fd cannot belong to anything else. A socket the peer already
    // closed reports ENOTCONN; it is ending anyway.
    let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
}

/// An accepted TCP connection that stays registered in [`Connections`] while it lives.
#[derive(Debug)]
pub(crate) struct Tracked {
    stream: TcpStream,
    id: u64,
    connections: Arc<Connections>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Ok(mut open) = self.connections.open.lock() {
            open.remove(&self.id);
        }
    }
}

impl Connected for Tracked {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
