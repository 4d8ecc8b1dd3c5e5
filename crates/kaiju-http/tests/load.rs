//! Load shedding, graceful shutdown, `/health`, `/ready` and `/metrics` (real sockets).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Http, default_front, front, server};
use hyper::{Method, StatusCode};
use kaiju_http::{Flag, HttpFront, HttpSettings};
use kaiju_rpc::ServerSettings;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_shed_with_503_and_health_stays_fast() {
    let settings = HttpSettings {
        max_concurrent_requests: 64,
        ..HttpSettings::default()
    };
    let running = front(settings, server(ServerSettings::default())).await;
    let addr = running.local_addr();
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let http = Http::new(addr);
            tokio::spawn(async move {
                http.rpc(
                    json!({"id": i, "method": "t.sleep", "params": {"ms": 2000}}),
                    &[],
                )
                .await
            })
        })
        .collect();
    // Once the front is full (and the connection storm of this same process has passed),
    // /health answers at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    while running.in_flight() < 64 {
        assert!(
            Instant::now() < deadline,
            "only {} in flight",
            running.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = Http::new(addr);
    for _ in 0..5 {
        let started = Instant::now();
        let a = health.get("/health").await;
        let took = started.elapsed();
        assert_eq!(a.status, StatusCode::OK);
        assert!(took < Duration::from_millis(250), "/health took {took:?}");
        assert_eq!(running.in_flight(), 64, "the calls still run");
    }
    let (mut ok, mut shed) = (0, 0);
    for call in calls {
        let a = call.await.unwrap();
        match a.status {
            StatusCode::OK => {
                assert_eq!(a.json()["result"], 2000);
                ok += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(a.headers["retry-after"], "1");
                assert_eq!(a.json()["error"]["code"], 503);
                shed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok + shed, 1000);
    assert!(ok >= 64, "{ok} answered");
    assert!(shed > 0, "nothing was shed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_answers_every_accepted_request() {
    let running = default_front().await;
    let addr = running.local_addr();
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let http = Http::new(addr);
            tokio::spawn(async move {
                http.rpc(
                    json!({"id": i, "method": "t.sleep", "params": {"ms": 500}}),
                    &[],
                )
                .await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while running.in_flight() < 100 {
        assert!(
            Instant::now() < deadline,
            "only {} in flight",
            running.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let stopping = tokio::spawn(running.shutdown(Duration::from_secs(10)));
    // New requests: refused (the listener is closed) or 503, never queued.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = tokio::spawn(async move {
        let body = json!({"id": 1, "method": "t.echo"}).to_string();
        let request = hyper::Request::post(format!("http://{addr}/public/rpc"))
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        client.request(request).await.map(|r| r.status())
    });
    for call in calls {
        let a = call.await.unwrap();
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json()["result"], 500);
    }
    assert!(stopping.await.unwrap(), "shutdown did not finish in time");
    assert!(started.elapsed() < Duration::from_secs(5));
    match late.await.unwrap() {
        Ok(status) => assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE),
        Err(e) => assert!(e.is_connect(), "{e:?}"),
    }
    // The port is closed after shutdown.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn health_and_ready_answer_get_and_head() {
    let started = Flag::new("services");
    let running = HttpFront::new(HttpSettings::default(), server(ServerSettings::default()))
        .readiness(started.clone())
        .serve()
        .await
        .unwrap();
    let http = Http::new(running.local_addr());
    let a = http.get("/health").await;
    assert_eq!(
        (a.status, a.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let a = http.get("/ready").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        a.json(),
        json!({"status": "unavailable", "failing": {"services": "not started"}})
    );
    assert_eq!(
        http.send(Method::HEAD, "/ready", &[], "").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    started.set(true);
    let a = http.get("/ready").await;
    assert_eq!(
        (a.status, a.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    for path in ["/health", "/ready"] {
        let a = http.send(Method::HEAD, path, &[], "").await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        let a = http.send(Method::POST, path, &[], "").await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(a.headers["allow"], "GET, HEAD");
    }
}

#[tokio::test]
async fn ready_pings_redis() {
    let Some(url) = std::env::var("KAIJU_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("KAIJU_REQUIRE_REDIS").as_deref() != Ok("1"),
            "KAIJU_REDIS_URL is not set but KAIJU_REQUIRE_REDIS=1"
        );
        eprintln!("skipped: KAIJU_REDIS_URL is not set (run `cargo xtask test`)");
        return;
    };
    let transport = kaiju_transport::Transport::connect(&kaiju_core::RedisSettings::from_url(url))
        .await
        .unwrap();
    let running = HttpFront::new(HttpSettings::default(), server(ServerSettings::default()))
        .readiness(kaiju_http::TransportPing::new("redis", transport))
        .serve()
        .await
        .unwrap();
    let a = Http::new(running.local_addr()).get("/ready").await;
    assert_eq!(
        (a.status, a.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let handle = kaiju_http::install_metrics().unwrap();
    let again = kaiju_http::install_metrics().unwrap();
    let running = HttpFront::new(HttpSettings::default(), server(ServerSettings::default()))
        .metrics(handle)
        .serve()
        .await
        .unwrap();
    let http = Http::new(running.local_addr());
    http.rpc(json!({"id": 1, "method": "t.echo"}), &[]).await;
    http.get("/nowhere/at/all").await;
    let a = http.get("/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        text.contains(r#"kaiju_http_requests_total{route="/public/rpc",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"kaiju_http_requests_total{route="other",status="404"}"#),
        "{text}"
    );
    metrics::histogram!("kaiju_test_call_seconds").record(0.003);
    assert!(
        again
            .render()
            .contains(r#"kaiju_test_call_seconds_bucket{le="0.005"} 1"#)
    );
}

#[tokio::test]
async fn metrics_without_a_handle_is_404() {
    let running = default_front().await;
    let a = Http::new(running.local_addr()).get("/metrics").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}
