//! The router: `/public/rpc`, `/health`, `/ready`, `/metrics`, kaiju's JSON bodies for 404
//! and 405, and the middleware that counts answers and refuses requests while stopping.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::{http_error, json, unavailable};
use crate::metrics::{count, route_label};
use crate::ready;
use crate::state::Shared;

/// The front's routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/public/rpc",
            post(crate::rpc::handle)
                .head(|| async { StatusCode::OK })
                .fallback(not_allowed),
        )
        .route("/health", get(health).fallback(not_allowed_get))
        .route("/ready", get(readiness).fallback(not_allowed_get))
        .route("/metrics", get(metrics).fallback(not_allowed_get))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), outer))
        .with_state(shared)
}

/// Counts every answer by route and status; while stopping, answers 503 to everything but
/// `/health` (the process is still alive) and closes the connection.
async fn outer(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let route = route_label(request.uri().path());
    let mut response = if shared.closing.load(Ordering::Acquire) && route != "/health" {
        let mut r = unavailable("the server is stopping", request.uri().path());
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    } else {
        next.run(request).await
    };
    count(route, response.status().as_u16());
    if shared.closing.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn not_found(request: Request) -> Response {
    http_error(StatusCode::NOT_FOUND, "Not Found", request.uri().path())
}

async fn not_allowed(request: Request) -> Response {
    allow(request, "POST, HEAD")
}

async fn not_allowed_get(request: Request) -> Response {
    allow(request, "GET, HEAD")
}

fn allow(request: Request, methods: &'static str) -> Response {
    let message = format!("Method {} Not Allowed", request.method());
    let mut r = http_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &message,
        request.uri().path(),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(methods));
    r
}

/// `GET /health`: the process answers.
async fn health() -> Response {
    json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

/// `GET /ready`: 200 when every check passed, else 503 naming the failing parts.
async fn readiness(State(shared): State<Arc<Shared>>) -> Response {
    let results = ready::run(&shared.checks, shared.settings.ready_timeout).await;
    let mut failing = serde_json::Map::new();
    for (name, result) in results {
        if let Err(why) = result {
            failing.insert(name, serde_json::Value::String(why));
        }
    }
    let (status, body) = if failing.is_empty() {
        (StatusCode::OK, serde_json::json!({"status": "ok"}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "failing": failing}),
        )
    };
    json(status, body.to_string().into_bytes())
}

/// `GET /metrics`: the Prometheus text, or 404 without a handle.
async fn metrics(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    match &shared.metrics {
        Some(handle) => {
            let mut r = handle.render().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        None => not_found(request).await,
    }
}
