//! kaiju-rpc against the real Python kaiju-tools 2.4.26 / kaiju-redis 2.4.2, both ways:
//! a Rust client calling a running Python kaiju app, a Python `RedisStreamRPCClient` calling a
//! running Rust app, and Python rebuilding Rust error objects as exceptions.
//!
//! Runs when `KAIJU_PYTHON` names a Python with kaiju-redis installed (`cargo xtask interop`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kaiju_core::{AppSettings, Lifecycle};
use kaiju_rpc::{RpcClient, RpcError, Scope, codes};
use kaiju_tests::interop::{python, run_peer};
use kaiju_tests::rpc::{Seen, seen_len, serve};
use kaiju_tests::{Target, eventually};
use serde_json::json;

fn peer_script() -> String {
    format!("{}/interop/rpc_peer.py", env!("CARGO_MANIFEST_DIR"))
}

/// A running Python kaiju app (`rpc_peer.py serve`); stopped (EOF on stdin, then kill) on drop.
struct PythonApp {
    child: Child,
    record: std::path::PathBuf,
}

impl PythonApp {
    fn start(python: &str, url: &str, env: &str, app: &str) -> Self {
        let record = std::env::temp_dir().join(format!("kaiju-rpc-{app}.jsonl"));
        let mut child = Command::new(python)
            .arg(peer_script())
            .args(["serve", url, env, app])
            .arg(&record)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the Python app");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the Python app did not start");
        Self { child, record }
    }

    fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn wait_for(&self, n: usize) -> Vec<serde_json::Value> {
        eventually(
            &format!("{n} Python records"),
            Duration::from_secs(15),
            || {
                let len = self.records().len();
                async move { len >= n }
            },
        )
        .await;
        self.records()
    }
}

impl Drop for PythonApp {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.record);
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn names() -> (String, String) {
    let ns = kaiju_tests::namespace();
    let random = ns.prefix().split('.').nth(1).unwrap().to_owned();
    (
        format!("py{}", &random[..12]),
        format!("rs{}", &random[..12]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_client_calls_a_python_kaiju_app() {
    let Some(python) = python() else { return };
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let url = std::env::var("KAIJU_REDIS_URL").unwrap();
    let (py_app, rs_app) = names();
    let peer = PythonApp::start(&python, &url, "test", &py_app);
    let me = AppSettings {
        env: "test".into(),
        name: rs_app,
        ..AppSettings::default()
    };
    let client = RpcClient::new(t.clone(), &me);
    // A single call with headers: the method runs with the right params and context.
    client
        .call("ext.record", json!({"value": 1, "text": "héllo"}))
        .app(py_app.clone())
        .header("Correlation-Id", "rs-corr-1")
        .timeout(Duration::from_secs(7))
        .retries(2)
        .await
        .unwrap();
    let records = peer.wait_for(1).await;
    assert_eq!(records[0]["method"], "ext.record");
    assert_eq!(records[0]["params"], json!({"value": 1, "text": "héllo"}));
    assert_eq!(records[0]["correlation_id"], "rs-corr-1");
    let left = records[0]["deadline"].as_u64().unwrap() - records[0]["now"].as_u64().unwrap();
    assert!((7..=8).contains(&left), "Timeout 7 read by kaiju: {left}");
    // No params: kaiju calls the method without arguments.
    client
        .call("ext.echo", ())
        .app(py_app.clone())
        .await
        .unwrap();
    let records = peer.wait_for(2).await;
    assert_eq!(records[1]["params"], json!({}));
    assert_eq!(records[1]["correlation_id"].as_str().unwrap().len(), 10);
    // A batch (sent alone: a Python listener loses the rest of its read after a batch, D10).
    let calls = vec![
        ("ext.add".to_owned(), json!({"a": 1, "b": 2})),
        ("ext.add".to_owned(), json!({"a": 3, "b": 4})),
    ];
    client
        .call_multiple(calls)
        .app(py_app.clone())
        .await
        .unwrap();
    let records = peer.wait_for(4).await;
    assert_eq!(
        (records[2]["result"].as_i64(), records[3]["result"].as_i64()),
        (Some(3), Some(7))
    );
    assert_eq!(
        records[2]["correlation_id"], records[3]["correlation_id"],
        "one batch, one correlation id"
    );
    // A template batch: kaiju fills [0] from the first result.
    let calls = vec![
        ("ext.add".to_owned(), json!({"a": 1, "b": 2})),
        ("ext.add".to_owned(), json!({"a": "[0]", "b": 10})),
    ];
    client
        .call_multiple(calls)
        .template()
        .app(py_app.clone())
        .await
        .unwrap();
    let records = peer.wait_for(6).await;
    assert_eq!(records[5]["result"], 13);
    // call_each: N entries in one round trip, each run (the safe way to send many to Python).
    let calls: Vec<_> = (0..3)
        .map(|i| ("ext.add".to_owned(), json!({"a": i, "b": 100})))
        .collect();
    client.call_each(calls).app(&py_app).await.unwrap();
    let records = peer.wait_for(9).await;
    let mut sums: Vec<i64> = records[6..9]
        .iter()
        .map(|r| r["result"].as_i64().unwrap())
        .collect();
    sums.sort_unstable();
    assert_eq!(sums, [100, 101, 102]);
    // A request to a Python app is run as a notification (kaiju has no replies): it times out.
    let answer = client
        .request::<_, serde_json::Value>("ext.echo", json!({"r": 1}))
        .app(py_app.clone())
        .timeout(Duration::from_millis(500))
        .await;
    assert!(
        matches!(answer, Err(kaiju_rpc::CallError::Timeout(_))),
        "{answer:?}"
    );
    let records = peer.wait_for(10).await;
    assert_eq!(
        records[9]["params"],
        json!({"r": 1}),
        "the Python app ignored the reply headers and ran it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_calls_a_rust_app() {
    let Some(python) = python() else { return };
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let url = std::env::var("KAIJU_REDIS_URL").unwrap();
    let (_, rs_app) = names();
    let app = AppSettings {
        env: "test".into(),
        name: rs_app.clone(),
        ..AppSettings::default()
    };
    let seen = Seen::default();
    let mut listener = serve(&t, &app, &seen, Scope::System).await;
    let call = |case: &str| {
        let (ok, out) = run_peer(
            &python,
            "rpc_peer.py",
            &["call", &url, "test", &rs_app, case],
        );
        assert!(ok, "{case}: {out}");
    };
    call("single");
    seen_len(&seen, 1).await;
    let single = seen.lock().unwrap()[0].clone();
    assert_eq!(single["method"], "svc.echo");
    assert_eq!(single["params"], json!({"value": 1, "text": "héllo"}));
    assert_eq!(single["correlation_id"], "py-corr-1");
    assert_eq!(
        (single["timeout"].as_i64(), single["retries"].as_i64()),
        (Some(7), Some(2))
    );
    // kaiju's request_deadline for `Timeout: 7`: int(now) + 7 + 1, as the Python app above.
    let left = single["deadline"].as_u64().unwrap().saturating_sub(now());
    assert!((7..=8).contains(&left), "Timeout 7: {left}");
    call("none");
    seen_len(&seen, 2).await;
    assert_eq!(seen.lock().unwrap()[1]["params"], json!({}));
    call("batch");
    seen_len(&seen, 4).await;
    call("template");
    seen_len(&seen, 6).await;
    call("abort");
    // The abort case: svc.fail runs (NotFound), the add after it never does.
    call("single");
    seen_len(&seen, 7).await;
    let records = seen.lock().unwrap().clone();
    let adds: Vec<_> = records
        .iter()
        .filter(|r| r["method"] == "svc.add")
        .map(|r| r["params"].clone())
        .collect();
    assert_eq!(
        adds,
        [
            json!({"a": 1, "b": 2}),
            json!({"a": 3, "b": 4}),
            json!({"a": 1, "b": 2}),
            json!({"a": 3, "b": 10})
        ],
        "the template was filled from the first result, and the aborted add never ran"
    );
    let stats = listener.server().stats();
    assert_eq!((stats.client_errors, stats.aborted), (1, 1), "{stats:?}");
    // Headers Python sends and runs with, which kaiju-rs once ignored or dead-lettered
    // (issue 25 items 1-3): a float Timeout is truncated as Python truncates it (0.5 → 1 s,
    // 2.5 → 2 s, 7.0 → 7 s, not the 90 s default), and a header with an integer name or a
    // value above i64::MAX reaches the method.
    call("float_timeouts");
    seen_len(&seen, 10).await;
    call("odd_headers");
    seen_len(&seen, 11).await;
    let records = seen.lock().unwrap().clone();
    // Run in parallel: in any order.
    let timed = |t: f64| {
        records
            .iter()
            .find(|r| r["params"] == json!({"t": t}))
            .unwrap_or_else(|| panic!("the call with Timeout {t} did not run"))
    };
    for (timeout, expected_ms) in [(0.5, 1000), (2.5, 2000), (7.0, 7000)] {
        let record = timed(timeout);
        assert_eq!(
            record["headers"]["Timeout"],
            json!(timeout),
            "a msgpack float"
        );
        let left = record["remaining_ms"].as_u64().unwrap();
        assert!(
            left <= expected_ms && left + 1500 > expected_ms,
            "Timeout {timeout}: {left} ms left, Python gives {expected_ms} ms"
        );
    }
    let odd = &records[10];
    assert_eq!(odd["params"], json!({"value": 2}));
    assert_eq!(odd["correlation_id"], "py-odd");
    assert_eq!(odd["headers"]["Int(7)"], "v", "{odd}");
    assert_eq!(odd["headers"]["X-Big"], json!(1_u64 << 63), "{odd}");
    eventually("all acked", Duration::from_secs(5), || async {
        kaiju_tests::streams::pending_of(&t, listener.listener().stream_key(), &app.name).await == 0
    })
    .await;
    assert_eq!(listener.stats().await.unwrap().dead_lettered, 0);
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

/// Issue 26 item 9: a Python client's call read after its `Deadline` is a `RequestTimeout`
/// whose `data.request_deadline` is that `Deadline`, and Python rebuilds it with the very
/// deadline it sent; a call to a method the Rust app lacks expires the same way (kaiju answers
/// `MethodNotFound` there: its pre-check comes before the deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_gets_back_the_deadline_it_sent_in_a_request_timeout() {
    let Some(python) = python() else { return };
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let url = std::env::var("KAIJU_REDIS_URL").unwrap();
    let (_, rs_app) = names();
    let app = AppSettings {
        env: "test".into(),
        name: rs_app.clone(),
        ..AppSettings::default()
    };
    let seen = Seen::default();
    let mut listener = serve(&t, &app, &seen, Scope::System).await;
    let (ok, out) = run_peer(
        &python,
        "rpc_peer.py",
        &["call", &url, "test", &rs_app, "expired"],
    );
    assert!(ok, "{out}");
    let sent: i64 = out
        .lines()
        .find_map(|l| l.strip_prefix("deadline "))
        .and_then(|d| d.trim().parse().ok())
        .unwrap_or_else(|| panic!("no deadline printed: {out}"));
    let dead_key = listener.listener().dead_letter_key().to_owned();
    eventually("both dead-lettered", Duration::from_secs(10), || async {
        kaiju_tests::streams::dead_letters(&t, &dead_key)
            .await
            .len()
            == 2
    })
    .await;
    for letter in kaiju_tests::streams::dead_letters(&t, &dead_key).await {
        let reason = kaiju_tests::streams::field(&letter, "reason").unwrap();
        let error: serde_json::Value = serde_json::from_str(reason).unwrap();
        assert_eq!(error["data"]["request_deadline"], json!(sent), "{reason}");
        let (ok, out) = run_peer(&python, "rpc_peer.py", &["rebuild", reason, "--data"]);
        assert!(ok, "{out}");
        let mut lines = out.lines();
        assert_eq!(
            lines.next(),
            Some("RequestTimeout -32002 Request timeout"),
            "{out}"
        );
        let data: serde_json::Value = lines
            .next()
            .and_then(|l| l.strip_prefix("data "))
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_else(|| panic!("no data line: {out}"));
        assert_eq!(data["request_deadline"], json!(sent), "{out}");
    }
    let stats = listener.server().stats();
    assert_eq!((stats.expired, stats.rejected), (2, 0), "{stats:?}");
    assert!(seen.lock().unwrap().is_empty(), "nothing ran");
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn python_rebuilds_rust_error_objects_as_its_exceptions() {
    let Some(python) = python() else { return };
    let cases = [
        (
            RpcError::not_found("no such thing").with_data("key", "k1"),
            "NotFound 404 no such thing",
        ),
        (
            RpcError::method_not_found(Some("svc.nope")),
            "MethodNotFound -32601 Method not found",
        ),
        (
            RpcError::invalid_params("Invalid params: params.a: missing"),
            "InvalidParams -32602 Invalid params: params.a: missing",
        ),
        (
            RpcError::request_timeout(5),
            "RequestTimeout -32002 Request timeout",
        ),
        (RpcError::aborted(), "Aborted -32001 Aborted"),
        (
            RpcError::internal("secret cause"),
            "InternalError -32603 Internal error",
        ),
        (RpcError::conflict("busy"), "Conflict 409 busy"),
        // An app class Python does not define: its base is not used by kaiju's client.
        (
            RpcError::custom("InvoiceLocked", "Conflict", codes::CONFLICT, "locked"),
            "RPCClientError 409 locked",
        ),
    ];
    for (error, expected) in cases {
        let (ok, out) = run_peer(&python, "rpc_peer.py", &["rebuild", &error.to_string()]);
        assert!(ok, "{error}: {out}");
        assert_eq!(out.trim(), expected, "{error}");
        // A whole response object from a Rust server (jsonrpc member included) reads the same.
        let response = json!({"jsonrpc": "2.0", "id": 1, "error": serde_json::from_str::<serde_json::Value>(&error.to_string()).unwrap()});
        let (ok, out) = run_peer(&python, "rpc_peer.py", &["rebuild", &response.to_string()]);
        assert!(ok && out.trim() == expected, "{response}: {out}");
    }
}

/// A Rust method running inside a request that carried a W3C `traceparent` calls a Python
/// kaiju app: the entry carries the child `traceparent` and the `tracestate`, and Python kaiju
/// still reads and runs it (its handlers cannot see headers, so the entry is read back from
/// the stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_rust_call_runs_on_a_python_kaiju_app() {
    use kaiju_rpc::{NoParams, RequestContext, RpcModule, Server, ServerSettings};
    let Some(python) = python() else { return };
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let url = std::env::var("KAIJU_REDIS_URL").unwrap();
    let (py_app, rs_app) = names();
    let peer = PythonApp::start(&python, &url, "test", &py_app);
    let me = AppSettings {
        env: "test".into(),
        name: rs_app,
        ..AppSettings::default()
    };
    let client = RpcClient::new(t.clone(), &me);
    let mut m = RpcModule::new("front");
    let target = py_app.clone();
    m.method("forward", move |_, _: NoParams, _: RequestContext| {
        let (c, target) = (client.clone(), target.clone());
        async move {
            c.call("ext.record", json!({"traced": true}))
                .app(target)
                .await
                .map_err(RpcError::internal)?;
            Ok::<_, RpcError>(true)
        }
    })
    .unwrap();
    let server = Server::new(&me, ServerSettings::default(), m).unwrap();
    let origin = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut headers = kaiju_rpc::Headers::new();
    headers.insert("Correlation-Id", "rs-traced-1");
    headers.insert("traceparent", origin);
    headers.insert("tracestate", "congo=t61rcWkgMzE");
    let body = kaiju_rpc::to_value(&json!(["front.forward", {}])).unwrap();
    let reply = server.call(body, &headers, Scope::System).await;
    assert!(
        matches!(&reply.body, kaiju_rpc::ReplyBody::Single(r) if r.result.is_ok()),
        "{reply:?}"
    );
    let records = peer.wait_for(1).await;
    assert_eq!(records[0]["method"], "ext.record");
    assert_eq!(records[0]["params"], json!({"traced": true}));
    assert_eq!(records[0]["correlation_id"], "rs-traced-1");
    // What was on the wire, as Python decodes it.
    let stream = format!("test.{py_app}._stream.rpc");
    let (ok, out) = run_peer(&python, "rpc_peer.py", &["dump", &url, &stream]);
    assert!(ok, "{out}");
    let entry: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["body"][0] == "ext.record")
        .unwrap_or_else(|| panic!("no ext.record entry in {stream}: {out}"));
    let sent = entry["headers"]["traceparent"].as_str().unwrap();
    let parsed = kaiju_rpc::TraceParent::parse(sent.as_bytes()).unwrap();
    assert_eq!(
        parsed.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_ne!(parsed.parent_id().to_string(), "b7ad6b7169203331");
    assert_eq!(entry["headers"]["tracestate"], "congo=t61rcWkgMzE");
}
