//! The HTTP front of an app run from YAML (`run: {host, port}`), against the xtask Redis.

use std::time::Duration;

use kaiju_app::{App, Registry};
use kaiju_tests::{Target, settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1.1 exchange (`Connection: close`): the status and the body.
async fn exchange(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_serves_json_rpc_over_http_from_its_run_section() {
    let Some(redis) = settings(Target::Single) else {
        return;
    };
    let url = redis.url.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ns = kaiju_tests::namespace();
    let (env, name) = ns.prefix().split_once('.').unwrap();
    let layer = format!(
        "run:\n  host: 127.0.0.1\n  port: {port}\netc:\n  http:\n    tokens:\n      - {{token: sys-token-42, user: ops, scope: SYSTEM}}\n"
    );
    let config = kaiju_tests::seed_server_config(url.expose(), env, name, &layer);
    assert_eq!(config.project.run.port, Some(port));
    let app = App::build(&config, &Registry::builtin()).unwrap();
    // Nothing listens before the start.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    app.start().await.unwrap();

    let (status, body) = exchange(port, "GET", "/ready", "", "").await;
    assert_eq!(
        (status, json(&body)),
        (200, serde_json::json!({"status": "ok"}))
    );

    let call = r#"{"id": 1, "method": "rpc.status"}"#;
    // rpc.status is SYSTEM: a guest does not see it ...
    let (status, body) = exchange(port, "POST", "/public/rpc", "", call).await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["error"]["code"], -32601, "{body}");
    // ... the token from etc.http.tokens does.
    let (status, body) = exchange(
        port,
        "POST",
        "/public/rpc",
        "authorization: Bearer sys-token-42\r\n",
        call,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["result"]["app"], name, "{body}");

    let errors = app.stop().await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the front stopped with the app"
    );
}
