//! Reading a JSON request's body, which must be whole before it can become a gRPC message:
//! within `--json-max-body-bytes` (HTTP 413), charged to the port's body budgets as its bytes
//! arrive (the same budgets, per connection and in total, that the guard charges gRPC messages
//! to; past one, `RESOURCE_EXHAUSTED`, HTTP 429), and within `--json-body-timeout-ms` (HTTP 408),
//! so that a client sending slowly or not at all cannot hold a buffer (and its charge) forever.

use super::status;
use crate::guard::{BodyBudget, Charge};
use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;
use tonic::body::Body;

/// The bounds a JSON request body is read within.
pub(super) struct BodyBounds {
    /// `--json-max-body-bytes`.
    pub(super) max_bytes: usize,
    /// `--json-body-timeout-ms`.
    pub(super) timeout: Duration,
    /// The port's body budgets, shared with the guard.
    pub(super) budget: Arc<BodyBudget>,
}

/// A body read whole, and its charge to the budgets: held until the body is no longer needed
/// (the gRPC message made of it is charged by the guard in its place).
#[derive(Debug)]
pub(super) struct Read {
    pub(super) bytes: Bytes,
    /// Never read: held so that the bytes count against the budgets until the read is dropped.
    _charge: Charge,
}

/// Reads `body`, from the client at `connection`, within `bounds`; the error is the answer.
pub(super) async fn read(
    body: Body,
    bounds: &BodyBounds,
    connection: Option<SocketAddr>,
) -> Result<Read, Response<Body>> {
    let mut charge = bounds
        .budget
        .charge(connection, 0)
        .map_err(|status| status::reply(&status, None))?;
    let collect = collect(body, bounds.max_bytes, &mut charge);
    let bytes = match tokio::time::timeout(bounds.timeout, collect).await {
        Ok(read) => read?,
        Err(_) => {
            let status = Status::deadline_exceeded(format!(
                "the request body did not arrive within {} ms (--json-body-timeout-ms)",
                bounds.timeout.as_millis()
            ));
            return Err(status::reply(&status, Some(StatusCode::REQUEST_TIMEOUT)));
        }
    };
    Ok(Read {
        bytes,
        _charge: charge,
    })
}

/// The whole of `body`, each chunk charged to `charge` before it is kept.
async fn collect(
    mut body: Body,
    max_bytes: usize,
    charge: &mut Charge,
) -> Result<Bytes, Response<Body>> {
    let mut kept = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            let status = Status::cancelled(format!("the request body was not read: {err}"));
            status::reply(&status, Some(StatusCode::BAD_REQUEST))
        })?;
        // Trailers carry nothing a JSON call reads.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if kept.len() + data.len() > max_bytes {
            let status = Status::resource_exhausted(format!(
                "the request body is over this port's limit of {max_bytes} bytes \
                 (--json-max-body-bytes)"
            ));
            return Err(status::reply(&status, Some(StatusCode::PAYLOAD_TOO_LARGE)));
        }
        charge
            .grow(data.len() as u64)
            .map_err(|status| status::reply(&status, None))?;
        kept.extend_from_slice(&data);
    }
    Ok(kept.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::BodyLimits;
    use http_body_util::{Full, StreamBody};

    fn bounds(budget: u64) -> BodyBounds {
        BodyBounds {
            max_bytes: 100,
            timeout: Duration::from_millis(50),
            budget: Arc::new(BodyBudget::new(BodyLimits {
                body_budget_bytes: budget,
                connection_body_budget_bytes: budget,
            })),
        }
    }

    fn body(text: &'static str) -> Body {
        Body::new(Full::new(Bytes::from_static(text.as_bytes())))
    }

    #[tokio::test]
    async fn a_body_is_charged_while_held_and_refused_past_the_budget() {
        let bounds = bounds(10);
        let held = read(body("123456"), &bounds, None).await.ok().unwrap();
        assert_eq!(&held.bytes[..], b"123456");
        let refused = read(body("12345"), &bounds, None).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        drop(held);
        assert!(read(body("12345"), &bounds, None).await.is_ok());
    }

    #[tokio::test]
    async fn a_body_past_the_size_limit_gets_413() {
        let large: &'static str = Box::leak("x".repeat(101).into_boxed_str());
        let refused = read(body(large), &bounds(1000), None).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_stalled_body_gets_408() {
        let stalled = tokio_stream::pending::<Result<http_body::Frame<Bytes>, Status>>();
        let body = Body::new(StreamBody::new(stalled));
        let refused = read(body, &bounds(1000), None).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::REQUEST_TIMEOUT);
    }
}
