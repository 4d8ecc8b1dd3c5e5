//! Errors of the front itself, and kaiju's JSON error bodies for HTTP-level failures.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kaiju_rpc::RpcError;

/// Why [`HttpFront::serve`](crate::HttpFront::serve) could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The TCP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `host:port`.
        addr: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The Unix socket could not be bound.
    #[error("cannot listen on the unix socket {path}: {source}")]
    BindUnix {
        /// The socket's path.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// kaiju's `error_middleware` body for an HTTP-level failure (404, 405, 413, ...):
/// `{"jsonrpc":"2.0","id":null,"error":{"code":<status>,"message":..,"data":{"uri":..,"type":"ClientError","base_type":"APIException"}}}`.
pub(crate) fn http_error(status: StatusCode, message: &str, uri: &str) -> Response {
    let error = RpcError::custom(
        "ClientError",
        "APIException",
        i64::from(status.as_u16()),
        message,
    )
    .with_data("uri", uri);
    rpc_error(status, &error)
}

/// A JSON-RPC error object with `id: null` as the whole body, with the given HTTP status.
pub(crate) fn rpc_error(status: StatusCode, error: &RpcError) -> Response {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        jsonrpc: &'static str,
        id: (),
        error: &'a RpcError,
    }
    let body = Body {
        jsonrpc: "2.0",
        id: (),
        error,
    };
    match serde_json::to_vec(&body) {
        Ok(bytes) => json(status, bytes),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A JSON body with a status.
pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 503 with `Retry-After: 1`: shed, or shutting down.
pub(crate) fn unavailable(message: &str, uri: &str) -> Response {
    let mut response = http_error(StatusCode::SERVICE_UNAVAILABLE, message, uri);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
