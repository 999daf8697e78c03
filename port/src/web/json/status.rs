//! Errors of JSON calls as `google.rpc.Status` JSON (`{"code":5,"message":"...","details":[]}`)
//! with the HTTP status grpc-gateway's `HTTPStatusFromCode` gives the gRPC code.

use http::{HeaderValue, Response, StatusCode, header};
use tonic::body::Body;
use tonic::{Code, Status};

/// The HTTP status grpc-gateway (`runtime.HTTPStatusFromCode`) answers `code` with.
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // nginx's "client closed request", as grpc-gateway uses it.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `status` as `google.rpc.Status` JSON. Details are not translated (their `Any`s may name
/// types the port has no descriptors for): `details` is always empty.
pub(crate) fn status_json(status: &Status) -> serde_json::Value {
    serde_json::json!({
        "code": status.code() as i32,
        "message": status.message(),
        "details": [],
    })
}

/// `status` as a JSON reply, with its mapped HTTP status or `http` when given (a body too
/// large is 413 where RESOURCE_EXHAUSTED would be 429).
pub(crate) fn reply(status: &Status, http: Option<StatusCode>) -> Response<Body> {
    let mut response = Response::new(Body::new(http_body_util::Full::new(bytes::Bytes::from(
        status_json(status).to_string(),
    ))));
    *response.status_mut() = http.unwrap_or_else(|| http_status(status.code()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_as_grpc_gateway_maps_them() {
        let expected = [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, http) in expected {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }
}
