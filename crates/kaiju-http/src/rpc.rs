//! `POST /public/rpc`: shed or admit, check the content type, authenticate, read the body
//! within its limits, call the server, and answer kaiju's JSON.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use kaiju_core::Value;
use kaiju_rpc::{ReplyBody, Response as RpcResponse, RpcError, Via, codes};
use kaiju_streams::Headers;

use crate::auth::RequestView;
use crate::error::{http_error, json, rpc_error, unavailable};
use crate::state::Shared;

/// Headers not passed to the RPC server (and so never to methods or their logs).
const PRIVATE_HEADERS: [header::HeaderName; 3] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
];

/// Content types a browser may send cross-site without a CORS preflight: refusing them
/// refuses the CSRF "simple request".
const SIMPLE_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
];

pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let Ok(_permit) = Arc::clone(&shared.permits).try_acquire_owned() else {
        crate::metrics::shed();
        tracing::debug!("shed a request: max_concurrent_requests are in flight");
        return unavailable("too many requests in flight, retry later", &path);
    };
    if let Some(kind) = simple_content_type(request.headers()) {
        let message = format!(
            "the content type {kind} is not accepted: send the JSON body as application/json"
        );
        return http_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &message, &path);
    }
    let max = shared.settings.max_body_bytes;
    if content_length(request.headers()).is_some_and(|n| n > max as u64) {
        return too_large(max, &path);
    }
    let (parts, body) = request.into_parts();
    let caller = shared
        .auth
        .authenticate(RequestView {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
        })
        .await;
    let bytes = match tokio::time::timeout(
        shared.settings.body_read_timeout,
        read_limited(body, max, content_length(&parts.headers)),
    )
    .await
    {
        Err(_) => {
            return http_error(
                StatusCode::REQUEST_TIMEOUT,
                "the request body was not received in time",
                &path,
            );
        }
        Ok(Err(BodyError::TooLarge)) => return too_large(max, &path),
        Ok(Err(BodyError::Read(e))) => {
            tracing::debug!(error = %e, "reading a request body failed");
            return http_error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
                &path,
            );
        }
        Ok(Ok(bytes)) => bytes,
    };
    let parsed = serde_json::from_slice(&bytes);
    // The bytes are not held while the call runs: a request holds its parsed body only.
    drop(bytes);
    let body: Value = match parsed {
        Ok(v) => v,
        Err(e) => {
            let error = RpcError::custom(
                "JSONParseError",
                "ClientError",
                codes::PARSE_ERROR,
                format!("the body is not JSON: {e}"),
            );
            return rpc_error(StatusCode::BAD_REQUEST, &error);
        }
    };
    let headers = to_headers(&parts.headers);
    let left = shared
        .settings
        .request_timeout
        .saturating_sub(started.elapsed());
    // The call runs in a task of its own: a client that goes away (or a shutdown past its
    // grace) drops only the answer, never a method halfway through its work.
    let server = shared.server.clone();
    let scope = caller.scope;
    let call = tokio::spawn(async move { server.call_via(body, &headers, scope, Via::Http).await });
    let reply = match tokio::time::timeout(left, call).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "an HTTP request's call task failed");
            return rpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &RpcError::internal("Internal error"),
            );
        }
        Err(_) => {
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs();
            tracing::debug!(user = ?caller.user, "an HTTP request ran past request_timeout");
            return rpc_error(StatusCode::OK, &RpcError::request_timeout(deadline));
        }
    };
    let encoded = match &reply.body {
        ReplyBody::Single(r) if answered(r) => serde_json::to_vec(r),
        ReplyBody::Single(_) => Ok(b"null".to_vec()),
        ReplyBody::Batch(rs) => {
            let kept: Vec<&RpcResponse> = rs.iter().filter(|r| answered(r)).collect();
            if kept.is_empty() {
                Ok(b"null".to_vec())
            } else {
                serde_json::to_vec(&kept)
            }
        }
    };
    let mut response = match encoded {
        Ok(bytes) => json(StatusCode::OK, bytes),
        Err(e) => {
            tracing::error!(error = %e, "a reply could not be encoded as JSON");
            rpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &RpcError::internal("the reply could not be encoded as JSON"),
            )
        }
    };
    if let Ok(v) = HeaderValue::from_str(&reply.correlation_id) {
        response.headers_mut().insert("Correlation-Id", v);
    }
    response
}

/// kaiju's rule (KAIJU-TOOLS §1.10): a response is sent when its request had an id, or when
/// it is an error (a notification's errors are answered too).
fn answered(r: &RpcResponse) -> bool {
    !matches!(r.id, Value::Nil) || r.result.is_err()
}

fn too_large(max: usize, path: &str) -> Response {
    let message = format!("the request body is over {max} bytes");
    http_error(StatusCode::PAYLOAD_TOO_LARGE, &message, path)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The refused content type, if the request has one of [`SIMPLE_TYPES`]. No content type, or
/// any other (Python's client sends `application/octet-stream` for bytes), is read as JSON.
fn simple_content_type(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or("").trim();
    SIMPLE_TYPES
        .into_iter()
        .find(|t| t.eq_ignore_ascii_case(essence))
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Reads the body, refusing it once past `max` bytes (never holding more than `max`). A
/// declared length sizes the first buffer up to 64 KiB (never more: a length read from the
/// wire is not trusted with memory before the bytes arrive).
async fn read_limited(
    mut body: Body,
    max: usize,
    declared: Option<u64>,
) -> Result<Bytes, BodyError> {
    let capacity = declared.map_or(0, |n| {
        usize::try_from(n).unwrap_or(max).min(max).min(64 << 10)
    });
    let mut buf = BytesMut::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        if let Ok(data) = frame.into_data() {
            if data.len() > max - buf.len() {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// The HTTP headers as kaiju headers (names as sent; the server reads them in any case),
/// minus [`PRIVATE_HEADERS`] and values that are not text.
fn to_headers(map: &HeaderMap) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in map {
        if PRIVATE_HEADERS.contains(name) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            headers.insert(name.as_str(), v);
        }
    }
    headers
}
