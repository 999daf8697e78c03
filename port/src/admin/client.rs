//! A client of the admin API that sends its bearer token with every call: what `testbed route`
//! and `testbed rollout --processes` use.

use super::pb::routes_client::RoutesClient;
use anyhow::Context;
use std::net::SocketAddr;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Adds `authorization: Bearer TOKEN` to every call.
#[derive(Clone)]
pub struct Bearer(AsciiMetadataValue);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.write_str("Bearer(..)")
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The generated `Routes` client, every call carrying the token.
pub type AdminClient = RoutesClient<InterceptedService<Channel, Bearer>>;

/// Connects to the admin API at `addr` (within 2 s) with `token`.
pub async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<AdminClient> {
    let token = token.trim();
    let value: AsciiMetadataValue = format!("Bearer {token}")
        .parse()
        .context("the admin token must be visible ASCII characters")?;
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .connect()
        .await
        .with_context(|| format!("cannot connect to the admin API at {addr}"))?;
    Ok(RoutesClient::with_interceptor(channel, Bearer(value)))
}
