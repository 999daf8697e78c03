//! The port's open connections, so that a shutdown can close them.
//!
//! tonic serves each connection in a task of its own, out of reach of the accept loop: stopping
//! the accept loop leaves every connection (and a stream on it) served. Each accepted socket is
//! therefore wrapped in a [`Tracked`] that registers its file descriptor here until it drops,
//! and [`Connections::close_all`] shuts the sockets down, which wakes and ends every
//! connection task through the kernel. Nothing is added to the read or write path.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The connections a port has open.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, RawFd>>,
}

impl Connections {
    /// Registers `stream` until the returned wrapper drops.
    pub(crate) fn track(self: &Arc<Self>, stream: TcpStream) -> Tracked {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, stream.as_raw_fd());
        }
        Tracked {
            stream,
            id,
            connections: self.clone(),
        }
    }

    /// Connections open now.
    pub(crate) fn count(&self) -> usize {
        self.open.lock().map_or(0, |open| open.len())
    }

    /// Shuts every open connection down (both directions): their tasks see the connection end
    /// and finish, whatever they were waiting for.
    pub(crate) fn close_all(&self) {
        let Ok(open) = self.open.lock() else { return };
        for &fd in open.values() {
            // The fd stays registered only while its `Tracked` (and so its `TcpStream`) is
            // alive: `Tracked::drop` unregisters it under this same lock before the socket is
            // closed, so the fd cannot belong to anything else. A socket the peer already closed
            // reports ENOTCONN; it is ending anyway.
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
        }
    }
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
