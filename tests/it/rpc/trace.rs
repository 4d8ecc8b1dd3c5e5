//! W3C trace context across apps over the Redis stream RPC: a request's `traceparent` reaches
//! its method, and every call the method makes sends a child of it (same trace id and flags, a
//! new parent id) with its `tracestate`; calls outside a request send none.

use std::time::Duration;

use kaiju_core::{AppSettings, Lifecycle};
use kaiju_rpc::{
    NoParams, RequestContext, RpcClient, RpcError, RpcListener, RpcModule, Scope, Server,
    ServerSettings, TraceParent,
};
use kaiju_tests::rpc::{Seen, seen_len, serve, settings};
use kaiju_tests::{app, single};

use serde_json::json;

const ORIGIN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_chain_across_apps_shares_one_trace_id() {
    let Some((t, ns)) = single().await else {
        return;
    };
    // App A's method calls app B's `svc.record`; B records what it received.
    let a = app(&ns);
    let b = AppSettings {
        name: format!("{}-b", a.name),
        ..a.clone()
    };
    let seen = Seen::default();
    let mut lb = serve(&t, &b, &seen, Scope::System).await;
    let client = RpcClient::new(t.clone(), &a);
    let mut m = RpcModule::new("front").permissions([("*", Scope::Guest)]);
    let (c, target) = (client.clone(), b.name.clone());
    m.method("forward", move |_, _: NoParams, ctx: RequestContext| {
        let (c, target) = (c.clone(), target.clone());
        async move {
            c.request::<_, serde_json::Value>("svc.record", json!({"from": "a"}))
                .app(target)
                .await
                .map_err(RpcError::internal)?;
            // What A's own method saw of its caller's trace context.
            Ok::<_, RpcError>(json!({
                "trace_id": ctx.trace().map(|t| t.trace_id().to_string()),
                "parent_id": ctx.trace().map(|t| t.parent_id().to_string()),
            }))
        }
    })
    .unwrap();
    let server = Server::new(&a, ServerSettings::default(), m).unwrap();
    let mut la = RpcListener::new(t.clone(), &a, settings(), Scope::Guest, server).unwrap();
    la.start().await.unwrap();

    let at_a: serde_json::Value = client
        .request("front.forward", ())
        .header("traceparent", ORIGIN)
        .header("tracestate", "vendor=abc,other=1")
        .await
        .unwrap();
    // A call outside any request carries no trace context.
    client
        .call("svc.record", json!({"from": "outside"}))
        .app(b.name.clone())
        .await
        .unwrap();
    seen_len(&seen, 2).await;
    la.stop(Duration::from_secs(5)).await.unwrap();
    lb.stop(Duration::from_secs(5)).await.unwrap();

    let origin = TraceParent::parse(ORIGIN.as_bytes()).unwrap();
    assert_eq!(at_a["trace_id"], origin.trace_id().to_string());
    assert_eq!(at_a["parent_id"], origin.parent_id().to_string());

    let seen = seen.lock().unwrap().clone();
    let from_a = seen.iter().find(|r| r["params"]["from"] == "a").unwrap();
    let sent = from_a["headers"]["traceparent"].as_str().unwrap();
    let got = TraceParent::parse(sent.as_bytes()).expect("a valid traceparent from A's client");
    assert_eq!(got.trace_id(), origin.trace_id(), "one trace id: {sent}");
    assert_eq!(got.flags(), origin.flags(), "the same flags: {sent}");
    assert_ne!(
        got.parent_id(),
        origin.parent_id(),
        "a new parent id: {sent}"
    );
    assert_eq!(from_a["headers"]["tracestate"], "vendor=abc,other=1");
    assert_eq!(
        from_a["correlation_id"].as_str().map(str::len),
        Some(10),
        "the correlation id is A's request's own"
    );

    let outside = seen
        .iter()
        .find(|r| r["params"]["from"] == "outside")
        .unwrap();
    assert!(outside["headers"].get("traceparent").is_none(), "{outside}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_traceparent_is_ignored_and_not_passed_on() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let a = app(&ns);
    let b = AppSettings {
        name: format!("{}-b", a.name),
        ..a.clone()
    };
    let seen = Seen::default();
    let mut lb = serve(&t, &b, &seen, Scope::System).await;
    let client = RpcClient::new(t.clone(), &a);
    let mut m = RpcModule::new("front").permissions([("*", Scope::Guest)]);
    let (c, target) = (client.clone(), b.name.clone());
    m.method("forward", move |_, _: NoParams, ctx: RequestContext| {
        let (c, target) = (c.clone(), target.clone());
        async move {
            c.request::<_, serde_json::Value>("svc.record", json!({"from": "a"}))
                .app(target)
                .await
                .map_err(RpcError::internal)?;
            Ok::<_, RpcError>(ctx.trace().is_some())
        }
    })
    .unwrap();
    let server = Server::new(&a, ServerSettings::default(), m).unwrap();
    let mut la = RpcListener::new(t.clone(), &a, settings(), Scope::Guest, server).unwrap();
    la.start().await.unwrap();
    let traced: bool = client
        .request("front.forward", ())
        .header(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )
        .await
        .unwrap();
    seen_len(&seen, 1).await;
    la.stop(Duration::from_secs(5)).await.unwrap();
    lb.stop(Duration::from_secs(5)).await.unwrap();
    assert!(!traced, "an all-zero trace id is no trace context");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen[0]["headers"].get("traceparent").is_none(),
        "{}",
        seen[0]
    );
}

/// One info line per request when it is done: outcome and duration, in the `rpc` span with
/// the method, the transport, the correlation id and the trace ids; `access_log: false` keeps
/// only the failures of methods that ran.
#[tokio::test(flavor = "current_thread")]
async fn every_request_logs_one_line_with_its_span_fields() {
    use kaiju_rpc::{Headers, Via, to_value};
    let (captured, _guard) = kaiju_tests::observe::Captured::this_thread(tracing::Level::INFO);
    let app = app(&kaiju_tests::namespace());
    let seen = Seen::default();
    let run = |settings: ServerSettings, method: &'static str, params: serde_json::Value| {
        let server = Server::new(&app, settings, kaiju_tests::rpc::module(&seen)).unwrap();
        async move {
            let mut h = Headers::new();
            h.insert("Correlation-Id", "logged-1");
            h.insert("traceparent", ORIGIN);
            let body = to_value(&json!([method, params])).unwrap();
            server.call_via(body, &h, Scope::System, Via::Local).await
        }
    };
    run(
        ServerSettings::default(),
        "svc.add",
        json!({"a": 1, "b": 2}),
    )
    .await;
    let text = captured.text();
    let line = text
        .lines()
        .find(|l| l.contains("done"))
        .unwrap_or_else(|| panic!("no access line: {text}"));
    for part in [
        "method=svc.add",
        "via=local",
        "correlation_id=logged-1",
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
        "parent_id=00f067aa0ba902b7",
        "outcome=Ok",
        "duration_ms=",
        "INFO",
    ] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
    assert_eq!(text.lines().count(), 1, "one line: {text}");

    // An unknown method: rejected before it ran, still one line.
    run(ServerSettings::default(), "svc.nope", json!({})).await;
    let text = captured.text();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().nth(1).unwrap().contains("outcome=Rejected"),
        "{text}"
    );

    // Turned off: a success and a rejection log nothing; a method's internal error still does.
    let quiet = || ServerSettings {
        access_log: false,
        ..ServerSettings::default()
    };
    run(quiet(), "svc.add", json!({"a": 1, "b": 2})).await;
    run(quiet(), "svc.nope", json!({})).await;
    assert_eq!(captured.text().lines().count(), 2, "{}", captured.text());
    run(quiet(), "svc.boom", json!({})).await;
    let text = captured.text();
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("ERROR")
            && last.contains("outcome=Failed")
            && last.contains("method=svc.boom"),
        "{text}"
    );
}
