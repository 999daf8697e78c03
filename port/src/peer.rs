//! What the port's services learn of the connection a request came on, beside its HTTP: the
//! extension the accept loop's connections give each request.

use std::sync::Arc;
use tonic::transport::server::TcpConnectInfo;

/// What the port's services learn of a connection (each request carries it as an extension):
/// its addresses and, over mutual TLS (`--tls-client-ca`), the name its verified client
/// certificate gives its holder, read once per connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The connection's addresses.
    pub tcp: TcpConnectInfo,
    /// The client certificate's subject common name (`alice`), or for one without, its first
    /// DNS name (`dns:alice`), as the admin API names certificate holders
    /// ([`certificate_name`](crate::admin::auth::certificate_name)); `None` in plaintext, and
    /// for a certificate that names nobody usable.
    pub certificate_name: Option<Arc<str>>,
}

impl PeerInfo {
    /// The client's address.
    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp.remote_addr()
    }
}
