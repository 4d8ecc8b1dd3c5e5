//! `kaiju-bench http`: JSON-RPC calls/s over HTTP (keep-alive, 64 clients) through kaiju-http
//! into a `kaiju_rpc::Server`, beside a minimal hyper server that echoes the same JSON, in the
//! same run: the ratio is what the front and the RPC server cost over bare HTTP and JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kaiju_core::{AppSettings, Value};
use kaiju_http::{HttpFront, HttpSettings};
use kaiju_rpc::{RequestContext, RpcError, RpcModule, Scope, Server, ServerSettings};
use tokio::net::{TcpListener, TcpStream};

use crate::{BoxError, median, record};

const CLIENTS: usize = 64;
const RUN: Duration = Duration::from_secs(2);
const BODY: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"bench.echo","params":{"n":42,"s":"hello"}}"#;

pub(crate) async fn run() -> Result<(), BoxError> {
    let mut module = RpcModule::new("bench").permissions([("*", Scope::Guest)]);
    module.method("echo", |_, p: Value, _: RequestContext| async move {
        Ok::<_, RpcError>(p)
    })?;
    let server = Server::new(&AppSettings::default(), ServerSettings::default(), module)?;
    let front = HttpFront::new(HttpSettings::default(), server)
        .serve()
        .await?;
    let bare = bare_server().await?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        ours.push(calls_per_second(front.local_addr()).await?);
        theirs.push(calls_per_second(bare).await?);
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!("| server ({CLIENTS} keep-alive clients) | calls/s |");
    println!("|---|---:|");
    println!("| kaiju-http → kaiju_rpc::Server | {ours:.0} |");
    println!("| bare hyper JSON echo | {theirs:.0} |");
    println!("\nkaiju-http / bare hyper: {:.2}", ours / theirs);
    record("http_calls_per_s", ours, "calls/s");
    record("http_bare_calls_per_s", theirs, "calls/s");
    front.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// A hyper http1 server answering every POST with the JSON-RPC result of its body's params.
async fn bare_server() -> Result<std::net::SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let call: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let answer = serde_json::json!({"jsonrpc": "2.0", "id": call["id"], "result": call["params"]});
                        let mut response =
                            Response::new(Full::new(Bytes::from(answer.to_string())));
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, hyper::Error>(response)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Calls/s of `CLIENTS` clients, each on its own keep-alive connection, for `RUN`.
async fn calls_per_second(addr: std::net::SocketAddr) -> Result<f64, BoxError> {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let (done, count) = (done.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let request = Request::post("/public/rpc")
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(BODY.as_bytes())))?;
                let response = send.send_request(request).await?;
                if !response.status().is_success() {
                    return Err::<(), BoxError>(format!("status {}", response.status()).into());
                }
                response.into_body().collect().await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(RUN).await;
    done.store(true, Ordering::Relaxed);
    let n = count.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / elapsed)
}
