//! Which `grpc-encoding`s a remote backend accepts, learned from the `grpc-accept-encoding`
//! header of its replies, so that the gateway forwards a compressed request as it is only
//! when the backend can read it, and otherwise answers `UNIMPLEMENTED` naming what it accepts
//! (as compression.md asks of the server itself). The gateway never decompresses: the
//! backend does. Until a reply has named its encodings, requests pass on and the backend's
//! own answer (and its header) decides.

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderValue};
use std::sync::Arc;
use tonic::Status;

/// The header a request's compression is named in.
const ENCODING: &str = "grpc-encoding";
/// The header a peer names the encodings it decodes in.
const ACCEPT_ENCODING: &str = "grpc-accept-encoding";

/// The last `grpc-accept-encoding` a backend sent, if it sent one. Read and compared with one
/// atomic load per call; written only when a backend changes what it says.
#[derive(Debug, Default, Clone)]
pub(crate) struct AcceptedEncodings {
    last: Arc<ArcSwapOption<HeaderValue>>,
}

impl AcceptedEncodings {
    /// Remembers what `headers` (a reply's) say the backend accepts; a reply without the
    /// header leaves what was learned as it is (the header is optional on replies).
    pub(crate) fn learn(&self, headers: &HeaderMap) {
        let Some(value) = headers.get(ACCEPT_ENCODING) else {
            return;
        };
        if self.last.load().as_deref() != Some(value) {
            self.last.store(Some(Arc::new(value.clone())));
        }
    }

    /// `Ok` when the request is uncompressed, the backend has named nothing yet, or it named
    /// the request's encoding; else the `UNIMPLEMENTED` reply's status, naming `label`'s
    /// encodings, and the header to send with it.
    pub(crate) fn check(
        &self,
        request: &HeaderMap,
        label: &str,
    ) -> Result<(), (Status, HeaderValue)> {
        let Some(encoding) = request.get(ENCODING) else {
            return Ok(());
        };
        if encoding == "identity" {
            return Ok(());
        }
        let last = self.last.load();
        let Some(accepted) = last.as_deref() else {
            return Ok(());
        };
        let names = String::from_utf8_lossy(accepted.as_bytes()).into_owned();
        if names
            .split(',')
            .any(|name| name.trim().as_bytes() == encoding.as_bytes())
        {
            return Ok(());
        }
        let status = Status::unimplemented(format!(
            "grpc-encoding {} is not accepted by {label}, which accepts {}; the gateway passes compressed messages on as they are",
            crate::quote(&String::from_utf8_lossy(encoding.as_bytes())),
            crate::quote(&names)
        ));
        Err((status, accepted.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn a_compressed_request_passes_until_the_backend_names_its_encodings_then_only_those() {
        let accepted = AcceptedEncodings::default();
        let snappy = headers(&[("grpc-encoding", "snappy")]);
        let gzip = headers(&[("grpc-encoding", "gzip")]);
        assert!(accepted.check(&snappy, "b").is_ok(), "nothing learned yet");
        accepted.learn(&headers(&[]));
        assert!(
            accepted.check(&snappy, "b").is_ok(),
            "a reply without the header"
        );
        accepted.learn(&headers(&[(
            "grpc-accept-encoding",
            "identity, deflate, gzip",
        )]));
        assert!(accepted.check(&gzip, "b").is_ok());
        assert!(accepted.check(&headers(&[]), "b").is_ok());
        assert!(
            accepted
                .check(&headers(&[("grpc-encoding", "identity")]), "b")
                .is_ok()
        );
        let (status, header) = accepted.check(&snappy, "backend b").unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(
            status.message().contains("\"snappy\"")
                && status.message().contains("backend b")
                && status.message().contains("identity, deflate, gzip"),
            "{status:?}"
        );
        assert_eq!(header, "identity, deflate, gzip");
    }
}
