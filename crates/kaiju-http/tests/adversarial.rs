//! The HTTP front under the attacks and bad days an adversarial review tried (real sockets):
//! each test is a reproduction of a problem it found, kept as a regression test once fixed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Http;
use kaiju_core::AppSettings;
use kaiju_http::{HttpFront, HttpSettings};
use kaiju_rpc::{NoParams, RequestContext, RpcError, RpcModule, Scope, Server, ServerSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `w.work`: sleeps 500 ms, then counts one finished run.
fn counting_server(done: Arc<AtomicUsize>) -> Server {
    let mut w = RpcModule::new("w").permissions([("*", Scope::Guest)]);
    w.method("work", move |_, _: NoParams, _: RequestContext| {
        let done = Arc::clone(&done);
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            done.fetch_add(1, Ordering::SeqCst);
            Ok::<_, RpcError>(true)
        }
    })
    .unwrap();
    Server::new(&AppSettings::default(), ServerSettings::default(), w).unwrap()
}

/// Was: a client that disconnects while its method runs cancels the method at its next
/// await (hyper drops the handler future). Python kaiju (aiohttp >= 3.9, handler_cancellation
/// off) runs it to the end; a non-idempotent method cut half-way leaves partial writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disconnect_does_not_cancel_a_running_method() {
    let done = Arc::new(AtomicUsize::new(0));
    let running = HttpFront::new(HttpSettings::default(), counting_server(Arc::clone(&done)))
        .serve()
        .await
        .unwrap();
    let body = r#"{"id":1,"method":"w.work"}"#;
    let mut s = TcpStream::connect(running.local_addr()).await.unwrap();
    let head = format!(
        "POST /public/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        1,
        "the method was cancelled by the client's disconnect"
    );
}

/// Holds up: dropping `Running` drops its stop sender, so the accept loops end.
#[tokio::test]
async fn dropping_running_stops_accepting() {
    let running = common::default_front().await;
    let addr = running.local_addr();
    drop(running);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

async fn unix_health(path: &std::path::Path) -> std::io::Result<String> {
    let mut s = tokio::net::UnixStream::connect(path).await?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// Was: a second front given the same `path` removes the first front's live socket and binds
/// its own; the first app keeps running, unreachable on its socket, and nothing says so.
#[tokio::test]
async fn a_second_front_on_a_live_unix_path_is_refused() {
    let dir = std::env::temp_dir().join(format!("kaiju-r27a-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("two.sock");
    let settings = HttpSettings {
        path: Some(path.clone()),
        ..HttpSettings::default()
    };
    let first = common::front(settings.clone(), common::server(ServerSettings::default())).await;
    assert!(unix_health(&path).await.unwrap().contains("200 OK"));
    let second = HttpFront::new(settings, common::server(ServerSettings::default()))
        .serve()
        .await;
    let stolen = second.is_ok();
    if let Ok(second) = second {
        second.shutdown(Duration::from_secs(1)).await;
    }
    let first_reachable = unix_health(&path).await.is_ok();
    first.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !stolen && first_reachable,
        "second bind succeeded: {stolen}; first front still reachable on its socket: {first_reachable}"
    );
}

/// Was: the Unix socket file is left behind after a graceful shutdown.
#[tokio::test]
async fn shutdown_removes_the_unix_socket() {
    let dir = std::env::temp_dir().join(format!("kaiju-r27a-rm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("one.sock");
    let settings = HttpSettings {
        path: Some(path.clone()),
        ..HttpSettings::default()
    };
    let running = common::front(settings, common::server(ServerSettings::default())).await;
    assert!(unix_health(&path).await.unwrap().contains("200 OK"));
    running.shutdown(Duration::from_secs(1)).await;
    let left = path.exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!left, "the socket file is left behind after shutdown");
}

/// Holds up (documented bound), but shows the cost: max_concurrent_requests clients that send
/// a head and one body byte hold every permit for body_read_timeout; an authenticated caller is
/// shed with them (the permit is taken before authentication).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_shed_every_caller_including_tokens() {
    let settings = HttpSettings {
        max_concurrent_requests: 8,
        body_read_timeout: Duration::from_secs(5),
        ..HttpSettings::default()
    };
    let running = common::front(settings, common::server(ServerSettings::default())).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(running.local_addr()).await.unwrap();
        s.write_all(b"POST /public/rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            .await
            .unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let http = Http::new(running.local_addr());
    let auth = format!("Bearer {}", common::ADMIN_TOKEN);
    let a = http
        .rpc(
            serde_json::json!({"id": 1, "method": "adm.secret"}),
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_eq!(a.status, hyper::StatusCode::SERVICE_UNAVAILABLE);
    drop(held);
}

/// Was: `Running::shutdown` says it "drops what is left" after `within`; it aborts only the
/// accept tasks, and each connection runs in its own detached task, so a request past the grace
/// keeps running (and is answered) while the app goes on to close the services under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_its_grace_drops_the_requests_left() {
    let running = common::default_front().await;
    let addr = running.local_addr();
    let body = r#"{"id":1,"method":"t.sleep","params":{"ms":1500}}"#;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /public/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let finished = running.shutdown(Duration::from_millis(200)).await;
    assert!(!finished);
    let mut out = vec![0_u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut out))
        .await
        .unwrap()
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&out[..n]).into_owned();
    assert!(
        !answer.contains("200 OK"),
        "the request left after the grace still ran and was answered: {answer}"
    );
}
