//! The admin API's TLS listener (`serve --admin-tls-cert`). Each accepted connection's
//! handshake runs in a task of its own with a deadline, so a slow or silent client holds up
//! nobody; a refused handshake (a client certificate from another CA, an expired one, none
//! where one is required, plaintext) is logged and the connection closed before any call is
//! read. Tonic gets the finished TLS streams, whose connect info carries the client's
//! certificates (`Request::peer_certs`) for [`super::auth`] to name the caller.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts on `listener` until the returned stream is dropped (tonic drops it when it stops
/// serving), yielding the connections whose handshake under `config` succeeded.
pub(crate) fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let acceptor = TlsAcceptor::from(config);
    let (ready, out) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = ready.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: wait a little instead of spinning.
                    tracing::warn!(%err, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (acceptor, ready) = (acceptor.clone(), ready.clone());
            tokio::spawn(async move {
                if let Some(tls) = handshake(&acceptor, stream, peer).await {
                    // The receiver is gone only when the server stopped.
                    let _ = ready.send(Ok(tls)).await;
                }
            });
        }
    });
    ReceiverStream::new(out)
}

/// The TLS stream of `stream` once its handshake succeeded within [`HANDSHAKE_TIMEOUT`];
/// `None`, logged, when it did not.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(err)) => {
            tracing::warn!(
                %peer,
                %err,
                "admin API: TLS handshake refused; the route table is unchanged"
            );
            None
        }
        Err(_) => {
            tracing::warn!(
                %peer,
                timeout_s = HANDSHAKE_TIMEOUT.as_secs(),
                "admin API: TLS handshake not finished in time; closed"
            );
            None
        }
    }
}
