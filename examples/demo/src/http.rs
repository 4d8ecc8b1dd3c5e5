//! Step 8 of the driver: the app's HTTP front, called as any HTTP client would (a plain
//! HTTP/1.1 exchange on a TCP socket, so that what goes over the wire is in plain sight).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request with `Connection: close`: the status code and the body.
async fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String), String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("cannot connect to the HTTP front at {addr}: {e}"))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| format!("{method} {path}: no answer within 10 s"))?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: not an HTTP answer: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Calls `/public/rpc` without and with a token, then `/ready` and `/metrics`.
pub(crate) async fn show(addr: &str, token: &str) -> Result<(), String> {
    let json = [("Content-Type", "application/json")];
    let batch = r#"[{"id": 1, "method": "inventory.stock", "params": {"item": "apple"}}, {"id": 2, "method": "rpc.status"}]"#;
    println!("   POST /public/rpc {batch}");
    let (status, body) = exchange(addr, "POST", "/public/rpc", &json, batch).await?;
    println!("   -> {status} {body}");
    println!(
        "      (no token: the caller is GUEST, and rpc.status (SYSTEM) looks like an unknown method)"
    );

    let bearer = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", bearer.as_str()),
    ];
    let single = r#"{"id": 3, "method": "rpc.status"}"#;
    println!(
        "   POST /public/rpc {single}  (Authorization: Bearer <the ops token of etc.http.tokens>)"
    );
    let (status, body) = exchange(addr, "POST", "/public/rpc", &headers, single).await?;
    println!("   -> {status} {body}");

    let (status, body) = exchange(addr, "GET", "/ready", &[], "").await?;
    println!("   GET /ready -> {status} {body}");

    let (status, body) = exchange(addr, "GET", "/metrics", &[], "").await?;
    println!(
        "   GET /metrics -> {status}, {} lines; a few of them:",
        body.lines().count()
    );
    for line in body
        .lines()
        .filter(|l| l.starts_with("kaiju_rpc_requests_total") && l.contains("inventory"))
        .take(4)
    {
        println!("     {line}");
    }
    Ok(())
}
