//! Which version served a call: one Increment of the v1 or v2 path with an optional
//! `x-api-version`, read back from the reply's `x-api-version` label (empty when nothing
//! labelled it).

use services::pb::{v1, v2};
use tonic::transport::Channel;

/// The v1 unary path.
pub(crate) const V1_PATH: &str = "/increment.v1.Incrementer/Increment";
/// The v2 unary path.
pub(crate) const V2_PATH: &str = "/increment.v2.Incrementer/Increment";

/// The version that served a call to `path` (`V1_PATH`, else v2's) with `header` over
/// `channel`, or the status.
pub(crate) async fn served(
    channel: Channel,
    path: &str,
    header: Option<&str>,
) -> Result<String, tonic::Status> {
    let set = |metadata: &mut tonic::metadata::MetadataMap| {
        if let Some(value) = header {
            metadata.insert("x-api-version", value.parse().expect("a header value"));
        }
    };
    let metadata = if path == V1_PATH {
        let mut request = tonic::Request::new(v1::IncrementRequest { value: 1 });
        set(request.metadata_mut());
        v1::incrementer_client::IncrementerClient::new(channel)
            .increment(request)
            .await
            .map(|reply| reply.metadata().clone())
    } else {
        let mut request = tonic::Request::new(super::v2_request(1, Some(1), 1));
        set(request.metadata_mut());
        v2::incrementer_client::IncrementerClient::new(channel)
            .increment(request)
            .await
            .map(|reply| reply.metadata().clone())
    }?;
    Ok(metadata
        .get("x-api-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string())
}
