//! The port the latency examples (`grpc_web_latency`, `json_latency`) measure: the default
//! deployment (v1 and v2 behind the router) on a runtime of its own with one worker, so that
//! the clients, on the calling thread, do not share the server's.

use port::deployment::Deployment;
use port::server::{self, ServeOptions};
use std::future::Future;
use std::net::SocketAddr;

/// Starts the port with `options` (`label` names it in logs), runs `measure` against its
/// address on a current-thread runtime, stops the port, and gives `measure`'s result.
pub fn measure_on_port<F, Fut>(
    options: &ServeOptions,
    label: &str,
    measure: F,
) -> anyhow::Result<()>
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let server = server_runtime.block_on(async {
        let layout = Deployment::SideBySide.layout(options.max_message_bytes)?;
        server::start_with("127.0.0.1:0".parse()?, layout, label, options).await
    })?;
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = client_runtime.block_on(measure(server.addr));
    server_runtime.block_on(async { drop(server) });
    result
}
