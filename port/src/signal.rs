//! The shutdown signal: Ctrl-C or SIGTERM, whichever comes first.

use anyhow::Context;

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}
