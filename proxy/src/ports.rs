//! Free loopback ports for proxies, which need a port number in their configuration.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A port on 127.0.0.1 that was free a moment ago: the OS picks it (bind port 0), and the
/// socket is closed again. Another socket may take it before the proxy binds it (the OS hands
/// out the same ephemeral range to outgoing connections), so the caller retries on a bind
/// failure.
pub(crate) fn free_loopback_port() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    listener.local_addr()
}
