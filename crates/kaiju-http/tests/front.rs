//! `POST /public/rpc` and the bad HTTP input it must refuse cleanly (real sockets).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{ADMIN_TOKEN, Http, default_front, front, server};
use hyper::{Method, StatusCode};
use kaiju_http::HttpSettings;
use kaiju_rpc::ServerSettings;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_call_answers_its_result_and_correlation_id() {
    let running = default_front().await;
    let http = Http::new(running.local_addr());
    let a = http
        .rpc(
            json!({"id": 7, "method": "t.echo", "params": {"x": 1}}),
            &[("correlation-id", "abc123")],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        json!({"jsonrpc": "2.0", "id": 7, "result": {"x": 1}})
    );
    assert_eq!(a.headers["correlation-id"], "abc123");
    assert_eq!(a.headers["content-type"], "application/json");
}

#[tokio::test]
async fn a_notification_answers_null() {
    let running = default_front().await;
    let http = Http::new(running.local_addr());
    let a = http
        .rpc(json!({"id": null, "method": "t.echo", "params": {}}), &[])
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"null");
    // A notification's error is still answered (kaiju's rule).
    let a = http.rpc(json!({"id": null, "method": "t.nope"}), &[]).await;
    assert_eq!(a.json()["error"]["code"], -32601);
}

#[tokio::test]
async fn a_batch_answers_without_its_notifications() {
    let running = default_front().await;
    let http = Http::new(running.local_addr());
    let a = http
        .rpc(
            json!([
                {"id": 1, "method": "t.echo", "params": {"n": 1}},
                {"id": null, "method": "t.echo", "params": {"n": 2}},
                {"id": 3, "method": "t.echo", "params": {"n": 3}},
            ]),
            &[],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let ids: Vec<_> = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(1), json!(3)]);
    // Only notifications, all succeeding: `null` (Python answered 500 here).
    let a = http
        .rpc(
            json!([{"id": null, "method": "t.echo"}, {"id": null, "method": "t.echo"}]),
            &[],
        )
        .await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"null"[..]));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_parse_error() {
    let running = default_front().await;
    let http = Http::new(running.local_addr());
    let a = http
        .send(
            Method::POST,
            "/public/rpc",
            &[("content-type", "application/json")],
            "{not json",
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let body = a.json();
    assert_eq!(body["id"], json!(null));
    assert_eq!(body["error"]["code"], -32700);
    assert_eq!(body["error"]["data"]["type"], "JSONParseError");
    assert_eq!(body["error"]["data"]["base_type"], "ClientError");
}

#[tokio::test]
async fn content_types_python_sends_are_read_and_form_types_refused() {
    let running = default_front().await;
    let http = Http::new(running.local_addr());
    let call = json!({"id": 1, "method": "t.echo", "params": {}}).to_string();
    for ct in [
        None,
        Some("application/octet-stream"),
        Some("application/json; charset=utf-8"),
    ] {
        let headers: Vec<_> = ct.iter().map(|c| ("content-type", *c)).collect();
        let a = http
            .send(Method::POST, "/public/rpc", &headers, call.clone())
            .await;
        assert_eq!(a.status, StatusCode::OK, "{ct:?}");
        assert_eq!(a.json()["result"], json!({}));
    }
    for ct in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
    ] {
        let a = http
            .send(
                Method::POST,
                "/public/rpc",
                &[("content-type", ct)],
                call.clone(),
            )
            .await;
        assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
        let body = a.json();
        assert_eq!(body["error"]["code"], 415);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("application/json")
        );
    }
}

#[tokio::test]
async fn other_methods_and_paths_answer_kaiju_json_errors() {
    let running = default_front().await;
    let http = Http::new(running.local_addr());
    let a = http.send(Method::GET, "/public/rpc", &[], "").await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.headers["allow"], "POST, HEAD");
    assert_eq!(
        a.json(),
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": 405, "message": "Method GET Not Allowed",
            "data": {"uri": "/public/rpc", "type": "ClientError", "base_type": "APIException"}}})
    );
    let a = http.get("/nowhere").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"]["data"]["uri"], "/nowhere");
    let a = http.send(Method::HEAD, "/public/rpc", &[], "").await;
    assert_eq!(a.status, StatusCode::OK);
}

/// Sends `head` (and then `body`, ignoring a reset) on a raw connection and reads the answer.
async fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_the_server_stays_up() {
    let running = default_front().await;
    let addr = running.local_addr();
    // Declared too large: refused before reading.
    let head = "POST /public/rpc HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10485760\r\nconnection: close\r\n\r\n";
    let answer = raw(addr, head, &[]).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":413"), "{answer}");
    // Streamed (chunked) past the limit: refused once past it.
    let chunk = vec![b' '; 64 * 1024];
    let mut body = Vec::new();
    for _ in 0..160 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /public/rpc HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let answer = raw(addr, head, &body).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let http = Http::new(addr);
    assert_eq!(http.get("/health").await.status, StatusCode::OK);
    let a = http.rpc(json!({"id": 1, "method": "t.echo"}), &[]).await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_body_is_408_and_the_server_stays_up() {
    let settings = HttpSettings {
        body_read_timeout: Duration::from_millis(300),
        ..HttpSettings::default()
    };
    let running = front(settings, server(ServerSettings::default())).await;
    let addr = running.local_addr();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = "POST /public/rpc HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id\":";
    s.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut out = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut out))
        .await
        .expect("the server answers a slow body")
        .unwrap();
    let answer = String::from_utf8_lossy(&out[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let http = Http::new(addr);
    assert_eq!(http.get("/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_batch_of_ten_thousand_is_the_servers_batch_length_error() {
    let running = default_front().await;
    let http = Http::new(running.local_addr());
    let batch: Vec<_> = (0..10_000)
        .map(|i| json!({"id": i, "method": "t.echo", "params": {}}))
        .collect();
    let a = http.rpc(json!(batch), &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let body = a.json();
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert_eq!(body["error"]["data"]["max_batch_length"], 100);
}

#[tokio::test]
async fn unknown_methods_and_methods_above_guest_are_not_found() {
    let running = default_front().await;
    let http = Http::new(running.local_addr());
    for method in ["t.nope", "adm.secret"] {
        let a = http.rpc(json!({"id": 1, "method": method}), &[]).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json()["error"]["code"], -32601, "{method}");
    }
}

#[tokio::test]
async fn a_token_gives_its_scope_and_a_missing_or_wrong_one_guest() {
    let running = default_front().await;
    let http = Http::new(running.local_addr());
    let call = json!({"id": 1, "method": "adm.secret"});
    let right = format!("Bearer {ADMIN_TOKEN}");
    let a = http.rpc(call.clone(), &[("authorization", &right)]).await;
    assert_eq!(a.json()["result"], "s3cret");
    let lower = format!("bearer {ADMIN_TOKEN}");
    let a = http.rpc(call.clone(), &[("authorization", &lower)]).await;
    assert_eq!(a.json()["result"], "s3cret");
    for wrong in [
        "Bearer admin-token-0123456788",
        "Bearer ",
        "Basic YTpi",
        "garbage",
    ] {
        let a = http.rpc(call.clone(), &[("authorization", wrong)]).await;
        assert_eq!(a.json()["error"]["code"], -32601, "{wrong}");
        // ... and a guest method still runs.
        let a = http
            .rpc(
                json!({"id": 2, "method": "t.echo"}),
                &[("authorization", wrong)],
            )
            .await;
        assert_eq!(a.json()["id"], 2, "{wrong}");
    }
}

#[tokio::test]
async fn the_request_timeout_bounds_the_exchange() {
    let settings = HttpSettings {
        request_timeout: Duration::from_millis(300),
        ..HttpSettings::default()
    };
    let running = front(settings, server(ServerSettings::default())).await;
    let http = Http::new(running.local_addr());
    let a = http
        .rpc(
            json!({"id": 1, "method": "t.sleep", "params": {"ms": 5000}}),
            &[],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["error"]["code"], -32002);
}

#[tokio::test]
async fn http_headers_reach_the_server() {
    let running = default_front().await;
    let http = Http::new(running.local_addr());
    // `Timeout` is read by the server: 1 s cuts a 3 s method.
    let started = std::time::Instant::now();
    let a = http
        .rpc(
            json!({"id": 1, "method": "t.sleep", "params": {"ms": 3000}}),
            &[("timeout", "1")],
        )
        .await;
    assert_eq!(a.json()["error"]["code"], -32002);
    assert!(started.elapsed() < Duration::from_millis(2500));
}

#[cfg(unix)]
#[tokio::test]
async fn the_unix_socket_serves_too() {
    let path = std::env::temp_dir().join(format!("kaiju-http-{}.sock", std::process::id()));
    let settings = HttpSettings {
        path: Some(path.clone()),
        ..HttpSettings::default()
    };
    let running = front(settings, server(ServerSettings::default())).await;
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with(r#"{"status":"ok"}"#), "{out}");
    running.shutdown(Duration::from_secs(5)).await;
    let _ = std::fs::remove_file(path);
}
