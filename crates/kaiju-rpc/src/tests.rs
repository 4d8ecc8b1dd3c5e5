//! The server end to end in memory: scopes, batches, templates, deadlines, retries, panics,
//! back-pressure, drain, context isolation, built-ins. (The Redis paths are tested in
//! `tests/it/rpc/`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kaiju_core::{AppSettings, Value};
use kaiju_streams::{HeaderValue, Headers};
use serde::Deserialize;

use crate::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Deserialize)]
struct Sleep {
    ms: u64,
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(pairs.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

fn req(method: &str, params: Value) -> Value {
    Value::Array(vec![s(method), params])
}

fn batch(items: Vec<Value>) -> Value {
    Value::Array(items)
}

fn headers(pairs: &[(&str, HeaderValue)]) -> Headers {
    let mut h = Headers::new();
    for (k, v) in pairs {
        h.insert(*k, v.clone());
    }
    h
}

fn server_with(settings: ServerSettings, flaky: Arc<AtomicU32>) -> Server {
    let mut m = RpcModule::new("svc").permissions([
        ("*", Scope::Guest),
        ("admin", Scope::Admin),
        ("internal", Scope::System),
    ]);
    m.method(
        "add",
        |_, p: Add, _| async move { Ok::<_, RpcError>(p.a + p.b) },
    )
    .unwrap();
    m.method("user", |_, _: NoParams, _| async {
        Ok::<_, RpcError>(map(&[
            ("id", Value::Int(7)),
            (
                "tags",
                Value::Array(vec![
                    map(&[("n", Value::Int(1))]),
                    map(&[("n", Value::Int(2))]),
                ]),
            ),
        ]))
    })
    .unwrap();
    m.method("fail", |_, _: NoParams, _| async {
        Err::<(), _>(RpcError::not_found("no such thing").with_data("key", "k1"))
    })
    .unwrap();
    m.method("boom", |_, _: NoParams, _| async {
        Err::<(), _>(RpcError::internal("db down"))
    })
    .unwrap();
    m.method("panic", |_, _: NoParams, _| async {
        if true {
            panic!("handler bug");
        }
        Ok::<(), RpcError>(())
    })
    .unwrap();
    m.method("sleep", |_, p: Sleep, _| async move {
        tokio::time::sleep(Duration::from_millis(p.ms)).await;
        Ok::<_, RpcError>(p.ms)
    })
    .unwrap();
    m.method("ctx", |_, _: NoParams, ctx: RequestContext| async move {
        // Read the task-local context after an await, as a method doing I/O would.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let current = RequestContext::current().map(|c| c.correlation_id().to_owned());
        Ok::<_, RpcError>((
            ctx.correlation_id().to_owned(),
            current,
            ctx.deadline_unix(),
            ctx.scope().name(),
        ))
    })
    .unwrap();
    m.method("flaky", move |_, _: NoParams, _| {
        let flaky = flaky.clone();
        async move {
            if flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(RpcError::internal("transient").retryable())
            } else {
                Ok("ok")
            }
        }
    })
    .unwrap();
    m.method("admin", |_, _: NoParams, _| async {
        Ok::<_, RpcError>("admin")
    })
    .unwrap();
    m.method("internal", |_, _: NoParams, _| async {
        Ok::<_, RpcError>("internal")
    })
    .unwrap();
    m.method("echo", |_, p: Value, _| async move { Ok::<_, RpcError>(p) })
        .unwrap();
    let app = AppSettings {
        env: "t".into(),
        name: "app".into(),
        ..AppSettings::default()
    };
    Server::new(&app, settings, m).unwrap()
}

fn server() -> Server {
    server_with(ServerSettings::default(), Arc::default())
}

fn result(reply: &Reply, i: usize) -> Result<Value, (i64, String)> {
    reply.responses()[i]
        .result
        .clone()
        .map_err(|e| (e.code(), e.class().to_owned()))
}

#[tokio::test]
async fn a_single_request_runs_with_typed_params() {
    let reply = server()
        .call(
            req(
                "svc.add",
                map(&[("a", Value::Int(1)), ("b", Value::Int(2))]),
            ),
            &Headers::new(),
            Scope::Guest,
        )
        .await;
    assert_eq!(result(&reply, 0), Ok(Value::Int(3)));
    assert_eq!(reply.outcome(), Outcome::Ok);
    assert_eq!(reply.correlation_id.len(), 10);
    // The object form, with its id echoed.
    let object = map(&[
        ("id", s("x")),
        ("method", s("svc.add")),
        ("params", map(&[("a", Value::Int(1)), ("b", Value::Int(1))])),
    ]);
    let reply = server().call(object, &Headers::new(), Scope::Guest).await;
    assert_eq!(reply.responses()[0].id, s("x"));
    assert_eq!(reply.to_value().get("result"), Some(&Value::Int(2)));
    assert_eq!(reply.to_value().get("jsonrpc"), Some(&s("2.0")));
}

#[tokio::test]
async fn scopes_hide_methods_exactly_like_unknown_ones() {
    let srv = server();
    let unknown = srv
        .call(req("svc.nope", Value::Nil), &Headers::new(), Scope::Guest)
        .await;
    let denied = srv
        .call(req("svc.admin", Value::Nil), &Headers::new(), Scope::User)
        .await;
    let (u, d) = (&unknown.responses()[0], &denied.responses()[0]);
    assert_eq!(
        (u.outcome, d.outcome),
        (Outcome::Rejected, Outcome::Rejected)
    );
    let (ue, de) = (
        u.result.as_ref().unwrap_err(),
        d.result.as_ref().unwrap_err(),
    );
    assert_eq!((ue.code(), ue.class()), (de.code(), de.class()));
    assert_eq!(ue.code(), codes::METHOD_NOT_FOUND);
    assert_eq!(de.data("request_method"), Some(&s("svc.admin")));
    // Admin reaches admin methods, not system ones; system reaches everything.
    assert_eq!(
        result(
            &srv.call(req("svc.admin", Value::Nil), &Headers::new(), Scope::Admin)
                .await,
            0
        ),
        Ok(s("admin"))
    );
    assert!(
        result(
            &srv.call(
                req("svc.internal", Value::Nil),
                &Headers::new(),
                Scope::Admin
            )
            .await,
            0
        )
        .is_err()
    );
    assert_eq!(
        result(
            &srv.call(
                req("svc.internal", Value::Nil),
                &Headers::new(),
                Scope::System
            )
            .await,
            0
        ),
        Ok(s("internal"))
    );
    // With permissions off, everything is reachable.
    let open = server_with(
        ServerSettings {
            enable_permissions: false,
            ..Default::default()
        },
        Arc::default(),
    );
    assert_eq!(
        result(
            &open
                .call(
                    req("svc.internal", Value::Nil),
                    &Headers::new(),
                    Scope::Guest
                )
                .await,
            0
        ),
        Ok(s("internal"))
    );
}

#[tokio::test]
async fn blacklists_remove_routes() {
    let srv = server_with(
        ServerSettings {
            blacklist_routes: vec!["svc.a*".into()],
            blacklist_scope: 0,
            ..Default::default()
        },
        Arc::default(),
    );
    let names: Vec<_> = srv.methods().collect();
    assert!(
        !names.contains(&"svc.add") && !names.contains(&"svc.admin"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"svc.internal"),
        "SYSTEM methods removed by blacklist_scope 0"
    );
    assert!(names.contains(&"svc.fail"));
}

#[tokio::test]
async fn bad_params_and_bodies_are_rejected_with_the_reason() {
    let srv = server();
    let cases = [
        (
            req("svc.add", map(&[("a", Value::Int(1))])),
            codes::INVALID_PARAMS,
            "missing field `b`",
        ),
        (
            req("svc.add", map(&[("a", Value::Int(1)), ("b", s("x"))])),
            codes::INVALID_PARAMS,
            "params.b",
        ),
        (
            req(
                "svc.add",
                map(&[
                    ("a", Value::Int(1)),
                    ("b", Value::Int(1)),
                    ("c", Value::Int(1)),
                ]),
            ),
            codes::INVALID_PARAMS,
            "unknown field `c`",
        ),
        (
            req("svc.add", Value::Array(vec![Value::Int(1), Value::Int(2)])),
            codes::INVALID_PARAMS,
            "positional",
        ),
        (Value::Int(5), codes::INVALID_REQUEST, "Invalid request"),
        (Value::Array(vec![]), codes::INVALID_REQUEST, "empty"),
        (Value::Nil, codes::INVALID_REQUEST, "Invalid request"),
    ];
    for (body, code, text) in cases {
        let reply = srv.call(body.clone(), &Headers::new(), Scope::Guest).await;
        let r = &reply.responses()[0];
        let e = r.result.as_ref().unwrap_err();
        assert_eq!(
            (e.code(), r.outcome),
            (code, Outcome::Rejected),
            "{body:?}: {e}"
        );
        assert!(e.message().contains(text), "{body:?}: {e}");
    }
}

#[tokio::test]
async fn method_errors_are_classified() {
    let srv = server();
    let fail = srv
        .call(req("svc.fail", Value::Nil), &Headers::new(), Scope::Guest)
        .await;
    assert_eq!(fail.outcome(), Outcome::ClientError);
    let e = fail.responses()[0].result.as_ref().unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"{"code":404,"message":"no such thing","data":{"key":"k1","type":"NotFound","base_type":"ClientError"}}"#
    );
    let boom = srv
        .call(req("svc.boom", Value::Nil), &Headers::new(), Scope::Guest)
        .await;
    assert_eq!(boom.outcome(), Outcome::Failed);
    assert!(
        !boom
            .to_value()
            .get("error")
            .unwrap()
            .get("message")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("db down")
    );
    let panic = srv
        .call(req("svc.panic", Value::Nil), &Headers::new(), Scope::Guest)
        .await;
    assert_eq!(panic.outcome(), Outcome::Failed);
    assert_eq!(
        result(&panic, 0),
        Err((codes::INTERNAL_ERROR, "InternalError".into()))
    );
    // The server survives the panic.
    assert_eq!(
        result(
            &srv.call(
                req(
                    "svc.add",
                    map(&[("a", Value::Int(1)), ("b", Value::Int(1))])
                ),
                &Headers::new(),
                Scope::Guest
            )
            .await,
            0
        ),
        Ok(Value::Int(2))
    );
    let stats = srv.stats();
    assert_eq!((stats.client_errors, stats.failed, stats.ok), (1, 2, 1));
}

#[tokio::test]
async fn rpc_retries_means_attempts_in_total() {
    let flaky = Arc::new(AtomicU32::new(0));
    let srv = server_with(ServerSettings::default(), flaky.clone());
    let two = srv
        .call(
            req("svc.flaky", Value::Nil),
            &headers(&[("RPC-Retries", 2.into())]),
            Scope::Guest,
        )
        .await;
    assert_eq!(two.outcome(), Outcome::Failed, "2 attempts fail twice");
    flaky.store(0, Ordering::SeqCst);
    let three = srv
        .call(
            req("svc.flaky", Value::Nil),
            &headers(&[("RPC-Retries", 3.into())]),
            Scope::Guest,
        )
        .await;
    assert_eq!(result(&three, 0), Ok(s("ok")));
    // Client errors are never retried.
    flaky.store(0, Ordering::SeqCst);
    let _ = srv
        .call(
            req("svc.fail", Value::Nil),
            &headers(&[("RPC-Retries", 5.into())]),
            Scope::Guest,
        )
        .await;
    assert_eq!(srv.stats().client_errors, 1);
}

#[tokio::test]
async fn deadlines_cancel_methods_and_an_expired_one_never_starts() {
    let srv = server();
    let reply = srv
        .call(
            req("svc.sleep", map(&[("ms", Value::Int(3000))])),
            &headers(&[("Timeout", 1.into())]),
            Scope::Guest,
        )
        .await;
    assert_eq!(reply.outcome(), Outcome::TimedOut);
    assert_eq!(result(&reply, 0).unwrap_err().0, codes::REQUEST_TIMEOUT);
    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 5;
    let started = Arc::new(AtomicU32::new(0));
    let s2 = started.clone();
    let mut m = RpcModule::new("x").permissions([("*", Scope::Guest)]);
    m.method("effect", move |_, _: NoParams, _| {
        s2.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, RpcError>(()) }
    })
    .unwrap();
    let srv = Server::new(&AppSettings::default(), ServerSettings::default(), m).unwrap();
    let reply = srv
        .call(
            req("x.effect", Value::Nil),
            &headers(&[("Deadline", past.into())]),
            Scope::Guest,
        )
        .await;
    assert_eq!(reply.outcome(), Outcome::Expired);
    assert_eq!(result(&reply, 0).unwrap_err().0, codes::REQUEST_TIMEOUT);
    let deadline = |reply: &Reply, i: usize| {
        reply.responses()[i]
            .result
            .as_ref()
            .err()
            .and_then(|e| e.data("request_deadline").cloned())
    };
    assert_eq!(
        deadline(&reply, 0),
        Some(Value::Int(past)),
        "the request's own Deadline, not the time it was read"
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        0,
        "kaiju ran it up to its first await (D23)"
    );
    assert_eq!((srv.stats().expired, srv.stats().rejected), (1, 0));
    // In a batch, nothing starts after the deadline: every request expires.
    let reply = srv
        .call(
            batch(vec![
                req("x.effect", Value::Nil),
                req("x.effect", Value::Nil),
            ]),
            &headers(&[("Deadline", past.into())]),
            Scope::Guest,
        )
        .await;
    assert_eq!(reply.outcome(), Outcome::Expired);
    assert!(
        reply
            .responses()
            .iter()
            .all(|r| r.outcome == Outcome::Expired)
    );
    assert_eq!(started.load(Ordering::SeqCst), 0);
    // The deadline is checked before the method is looked up: an expired request to a method
    // that does not exist (here, or at the caller's scope) is a timeout, not MethodNotFound,
    // alone or in a batch; and the rest of the batch expires, not timed out (they would be
    // counted as cut while running).
    let reply = srv
        .call(
            req("x.nope", Value::Nil),
            &headers(&[("Deadline", past.into())]),
            Scope::Guest,
        )
        .await;
    assert_eq!(reply.outcome(), Outcome::Expired);
    assert_eq!(
        result(&reply, 0).unwrap_err(),
        (codes::REQUEST_TIMEOUT, "RequestTimeout".to_owned())
    );
    assert_eq!(deadline(&reply, 0), Some(Value::Int(past)));
    let reply = srv
        .call(
            batch(vec![req("x.nope", Value::Nil), req("x.effect", Value::Nil)]),
            &headers(&[("Deadline", past.into())]),
            Scope::Guest,
        )
        .await;
    let outcomes: Vec<Outcome> = reply.responses().iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [Outcome::Expired, Outcome::Expired]);
    assert_eq!(reply.outcome(), Outcome::Expired);
    assert!((0..2).all(|i| deadline(&reply, i) == Some(Value::Int(past))));
    assert_eq!((srv.stats().timed_out, srv.stats().rejected), (0, 0));
    // Not a request at all is still refused as such, expired or not.
    let reply = srv
        .call(
            Value::Int(7),
            &headers(&[("Deadline", past.into())]),
            Scope::Guest,
        )
        .await;
    assert_eq!(reply.outcome(), Outcome::Rejected);
    assert_eq!(result(&reply, 0).unwrap_err().0, codes::INVALID_REQUEST);
}

#[tokio::test]
async fn batches_run_in_order_with_a_response_each() {
    let srv = server();
    let body = batch(vec![
        req(
            "svc.add",
            map(&[("a", Value::Int(1)), ("b", Value::Int(2))]),
        ),
        req("svc.nope", Value::Nil),
        req("svc.fail", Value::Nil),
        Value::Int(3),
        req(
            "svc.add",
            map(&[("a", Value::Int(3)), ("b", Value::Int(4))]),
        ),
    ]);
    let reply = srv.call(body, &Headers::new(), Scope::Guest).await;
    let got: Vec<_> = (0..5).map(|i| result(&reply, i)).collect();
    assert_eq!(got[0], Ok(Value::Int(3)));
    assert_eq!(got[1].clone().unwrap_err().0, codes::METHOD_NOT_FOUND);
    assert_eq!(got[2].clone().unwrap_err().0, codes::NOT_FOUND);
    assert_eq!(got[3].clone().unwrap_err().0, codes::INVALID_REQUEST);
    assert_eq!(
        got[4],
        Ok(Value::Int(7)),
        "one bad item does not reject the batch (D14)"
    );
    assert_eq!(reply.responses()[4].id, Value::Int(4));
    assert_eq!(reply.outcome(), Outcome::Rejected);
    // An empty batch and a batch of successes both answer (D10).
    let ok = srv
        .call(
            batch(vec![req(
                "svc.add",
                map(&[("a", Value::Int(1)), ("b", Value::Int(1))]),
            )]),
            &Headers::new(),
            Scope::Guest,
        )
        .await;
    assert_eq!(ok.outcome(), Outcome::Ok);
}

#[tokio::test]
async fn the_abort_flag_keeps_the_real_error_and_aborts_the_rest() {
    let srv = server();
    let body = batch(vec![
        req(
            "svc.add",
            map(&[("a", Value::Int(1)), ("b", Value::Int(2))]),
        ),
        req("svc.fail", Value::Nil),
        req(
            "svc.add",
            map(&[("a", Value::Int(3)), ("b", Value::Int(4))]),
        ),
    ]);
    let reply = srv
        .call(
            body,
            &headers(&[("RPC-Batch-Abort-Error", "?1".into())]),
            Scope::Guest,
        )
        .await;
    assert_eq!(result(&reply, 0), Ok(Value::Int(3)));
    assert_eq!(
        result(&reply, 1),
        Err((404, "NotFound".into())),
        "kaiju replaced it with InvalidParams \"\" (D15)"
    );
    assert_eq!(result(&reply, 2), Err((codes::ABORTED, "Aborted".into())));
    assert_eq!(reply.responses()[2].outcome, Outcome::Aborted);
    assert_eq!(
        reply.outcome(),
        Outcome::Aborted,
        "acked by a listener: the failure was the caller's"
    );
}

#[tokio::test]
async fn a_timeout_in_a_batch_times_out_the_rest() {
    let srv = server();
    let body = batch(vec![
        req("svc.sleep", map(&[("ms", Value::Int(3000))])),
        req(
            "svc.add",
            map(&[("a", Value::Int(3)), ("b", Value::Int(4))]),
        ),
    ]);
    let reply = srv
        .call(body, &headers(&[("Timeout", 1.into())]), Scope::Guest)
        .await;
    assert_eq!(result(&reply, 0).unwrap_err().0, codes::REQUEST_TIMEOUT);
    assert_eq!(result(&reply, 1).unwrap_err().0, codes::REQUEST_TIMEOUT);
    assert_eq!(reply.outcome(), Outcome::TimedOut);
}

#[tokio::test]
async fn templates_fill_params_from_earlier_results() {
    let srv = server();
    let h = headers(&[("RPC-Batch-Template", "?1".into())]);
    let body = batch(vec![
        req(
            "svc.add",
            map(&[("a", Value::Int(1)), ("b", Value::Int(2))]),
        ),
        req("svc.add", map(&[("a", s("[0]")), ("b", Value::Int(10))])),
        req("svc.user", Value::Nil),
        req(
            "svc.add",
            map(&[("a", s("[2.id]")), ("b", s("[2.missing:5]"))]),
        ),
    ]);
    let reply = srv.call(body, &h, Scope::Guest).await;
    assert_eq!(result(&reply, 1), Ok(Value::Int(13)));
    assert_eq!(result(&reply, 3), Ok(Value::Int(12)));
    // A reference to a failed request: that item is rejected, the rest aborted.
    let body = batch(vec![
        req("svc.fail", Value::Nil),
        req("svc.add", map(&[("a", s("[0.id]")), ("b", Value::Int(1))])),
        req(
            "svc.add",
            map(&[("a", Value::Int(1)), ("b", Value::Int(1))]),
        ),
    ]);
    let reply = srv.call(body, &h, Scope::Guest).await;
    assert_eq!(result(&reply, 1).unwrap_err().0, codes::INVALID_PARAMS);
    assert!(
        reply.responses()[1]
            .result
            .as_ref()
            .unwrap_err()
            .data("template")
            .is_some()
    );
    assert_eq!(result(&reply, 2).unwrap_err().0, codes::ABORTED);
    assert_eq!(reply.outcome(), Outcome::Rejected);
    // Without the header, a template-looking string is a plain string.
    let body = batch(vec![req(
        "svc.add",
        map(&[("a", s("[0]")), ("b", Value::Int(1))]),
    )]);
    assert_eq!(
        srv.call(body, &Headers::new(), Scope::Guest)
            .await
            .outcome(),
        Outcome::Rejected
    );
}

#[tokio::test]
async fn batches_beyond_the_limit_are_rejected_whole() {
    let srv = server_with(
        ServerSettings {
            max_batch_length: 3,
            ..Default::default()
        },
        Arc::default(),
    );
    let body = batch(
        (0..4)
            .map(|_| {
                req(
                    "svc.add",
                    map(&[("a", Value::Int(1)), ("b", Value::Int(1))]),
                )
            })
            .collect(),
    );
    let reply = srv.call(body, &Headers::new(), Scope::Guest).await;
    // One answer for the whole batch: its requests are never read one by one (answering each
    // turned a 1 MB entry of a million tiny items into a 165 MB reply).
    assert_eq!(reply.responses().len(), 1);
    assert!(matches!(reply.body, ReplyBody::Single(_)));
    assert_eq!(reply.responses()[0].id, Value::Nil);
    assert_eq!(result(&reply, 0), Err((-32600, "InvalidRequest".into())));
    assert_eq!(reply.outcome(), Outcome::Rejected);
    assert_eq!(srv.stats().ok, 0, "nothing ran");
    assert_eq!(srv.stats().requests, 1, "counted once");
}

/// A chain of templates that doubles its data at each request (`["[0]", "[0]"]`, then
/// `["[1]", "[1]"]`, ...) stops once what the batch holds reaches `max_batch_bytes`, counting
/// the results held as well as the copies. The old bound (copies only: 4,194,304 values or 128
/// MiB) let it reach request 17, with a 128 MiB result held twice and a 191 MB peak.
#[tokio::test]
async fn a_doubling_template_chain_stops_at_the_batch_budget() {
    let srv = server();
    let mut items = vec![req("svc.echo", map(&[("a", s(&"x".repeat(1024)))]))];
    for i in 0..40 {
        let earlier = s(&format!("[{i}]"));
        items.push(req(
            "svc.echo",
            map(&[("a", earlier.clone()), ("b", earlier)]),
        ));
    }
    let h = headers(&[("RPC-Batch-Template", "?1".into())]);
    let reply = srv.call(batch(items), &h, Scope::Guest).await;
    let first_failed = reply
        .responses()
        .iter()
        .position(|r| r.result.is_err())
        .expect("the chain is stopped");
    // Request k holds a result of 2^k KiB, charged twice (copied, then held): 8 MiB of
    // budget stops it at request 11 or 12.
    assert!(
        (10..=12).contains(&first_failed),
        "stopped at request {first_failed}"
    );
    let held: usize = reply
        .responses()
        .iter()
        .filter_map(|r| r.result.as_ref().ok())
        .map(|v| crate::request::encoded_len(v, usize::MAX).unwrap_or(usize::MAX))
        .sum();
    assert!(held < 8 << 20, "the batch held {held} bytes");
    assert!(
        reply.responses()[first_failed + 1..]
            .iter()
            .all(|r| r.outcome == Outcome::Aborted),
        "the rest is aborted"
    );
}

/// A reply over `max_reply_bytes` becomes one kaiju error object; the request is rejected (not
/// retried: it would give the same).
#[tokio::test]
async fn replies_over_the_cap_become_an_error() {
    let srv = server_with(
        ServerSettings {
            max_reply_bytes: 1 << 20,
            ..Default::default()
        },
        Arc::default(),
    );
    let big = map(&[("a", s(&"x".repeat(2 << 20)))]);
    let reply = srv
        .call(req("svc.echo", big), &Headers::new(), Scope::Guest)
        .await;
    assert_eq!(result(&reply, 0), Err((-32603, "InternalError".into())));
    let error = reply.responses()[0].result.as_ref().unwrap_err();
    assert_eq!(error.data("max_reply_bytes"), Some(&Value::Int(1 << 20)));
    assert_eq!(reply.outcome(), Outcome::Rejected);
    // A batch over the cap: one error for the whole.
    let h = headers(&[("RPC-Batch-Template", "?1".into())]);
    let items = vec![
        req("svc.echo", map(&[("a", s(&"x".repeat(600 << 10)))])),
        req("svc.echo", map(&[("a", s("[0]"))])),
    ];
    let reply = srv.call(batch(items), &h, Scope::Guest).await;
    assert_eq!(reply.responses().len(), 1);
    assert_eq!(result(&reply, 0), Err((-32603, "InternalError".into())));
    // Under the cap, the same reply goes through.
    let reply = srv
        .call(
            req("svc.echo", map(&[("a", s(&"x".repeat(1000)))])),
            &Headers::new(),
            Scope::Guest,
        )
        .await;
    assert_eq!(reply.outcome(), Outcome::Ok);
}

#[tokio::test]
async fn each_request_has_its_own_context() {
    let srv = server();
    let calls = (0..20).map(|i| {
        let srv = srv.clone();
        tokio::spawn(async move {
            let h = headers(&[
                ("Correlation-Id", format!("c{i}").into()),
                ("Timeout", 9.into()),
            ]);
            let reply = srv.call(req("svc.ctx", Value::Nil), &h, Scope::User).await;
            (i, result(&reply, 0).unwrap())
        })
    });
    for call in calls {
        let (i, v) = call.await.unwrap();
        let Value::Array(items) = v else {
            panic!("{v:?}")
        };
        let id = format!("c{i}");
        assert_eq!(items[0], s(&id));
        assert_eq!(
            items[1],
            s(&id),
            "the task-local context is this request's (D25)"
        );
        assert_eq!(items[3], s("USER"));
    }
}

#[tokio::test]
async fn max_parallel_tasks_is_a_semaphore_and_drain_waits() {
    let srv = server_with(
        ServerSettings {
            max_parallel_tasks: 2,
            ..Default::default()
        },
        Arc::default(),
    );
    let slow = |ms: i64| {
        let srv = srv.clone();
        tokio::spawn(async move {
            srv.call(
                req("svc.sleep", map(&[("ms", Value::Int(ms))])),
                &Headers::new(),
                Scope::Guest,
            )
            .await
        })
    };
    let (a, b) = (slow(300), slow(300));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(srv.stats().running, 2);
    // A third waits for a slot, and does not stall the server after (kaiju's D12).
    let started = tokio::time::Instant::now();
    let c = slow(10);
    c.await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "it waited for a slot"
    );
    // A batch takes one slot and gives it back.
    let _ = srv
        .call(
            batch(vec![req("svc.sleep", map(&[("ms", Value::Int(1))]))]),
            &Headers::new(),
            Scope::Guest,
        )
        .await;
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!((a.outcome(), b.outcome()), (Outcome::Ok, Outcome::Ok));
    assert_eq!(srv.stats().running, 0);
    // Drain: waits for a running request, then refuses new ones with a retryable error.
    let d = slow(200);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(srv.drain(Duration::from_secs(5)).await);
    assert_eq!(d.await.unwrap().outcome(), Outcome::Ok);
    let late = srv
        .call(
            req(
                "svc.add",
                map(&[("a", Value::Int(1)), ("b", Value::Int(1))]),
            ),
            &Headers::new(),
            Scope::Guest,
        )
        .await;
    assert_eq!(late.outcome(), Outcome::Unavailable);
    assert!(
        late.responses()[0]
            .result
            .as_ref()
            .unwrap_err()
            .is_retryable()
    );
    // A drain that cannot finish in time says so.
    let srv = server_with(
        ServerSettings {
            max_parallel_tasks: 2,
            ..Default::default()
        },
        Arc::default(),
    );
    let s2 = srv.clone();
    let _busy = tokio::spawn(async move {
        s2.call(
            req("svc.sleep", map(&[("ms", Value::Int(2000))])),
            &Headers::new(),
            Scope::Guest,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!srv.drain(Duration::from_millis(50)).await);
}

#[tokio::test]
async fn built_in_routes_follow_the_callers_scope() {
    let srv = server();
    let api = srv
        .call(req("rpc.api", Value::Nil), &Headers::new(), Scope::Guest)
        .await;
    let routes = result(&api, 0).unwrap();
    let Some(Value::Array(routes)) = routes.get("routes") else {
        panic!("{routes:?}")
    };
    let names: Vec<_> = routes
        .iter()
        .filter_map(|r| r.get("route").and_then(Value::as_str))
        .collect();
    assert!(
        names.contains(&"svc.add") && names.contains(&"rpc.api"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"svc.admin") && !names.contains(&"rpc.status"),
        "{names:?}"
    );
    let api = srv
        .call(
            req("rpc.api", map(&[("pattern", s("svc.a*"))])),
            &Headers::new(),
            Scope::System,
        )
        .await;
    let routes = result(&api, 0).unwrap();
    let Some(Value::Array(routes)) = routes.get("routes") else {
        panic!()
    };
    assert_eq!(routes.len(), 2, "svc.add and svc.admin: {routes:?}");
    let status = srv
        .call(
            req("rpc.status", Value::Nil),
            &Headers::new(),
            Scope::System,
        )
        .await;
    let status = result(&status, 0).unwrap();
    assert_eq!(status.get("app"), Some(&s("app")));
    assert_eq!(status.get("max_tasks"), Some(&Value::Int(128)));
    assert_eq!(
        srv.call(req("rpc.status", Value::Nil), &Headers::new(), Scope::Guest)
            .await
            .outcome(),
        Outcome::Rejected
    );
}

/// Arbitrary bytes, and mutations of real entries, decoded as a listener decodes them and run
/// through a server: nothing panics, hangs or allocates by a declared length, and every body
/// gets an answer. `cargo xtask fuzz` runs it with more cases.
#[test]
fn fuzz_server_bodies() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let srv = server();
    let valid = kaiju_streams::encode(
        &batch(vec![
            req(
                "svc.add",
                map(&[("a", Value::Int(1)), ("b", Value::Int(2))]),
            ),
            req("svc.add", map(&[("a", s("[0]")), ("b", s("[0.x:1]"))])),
        ]),
        &headers(&[("RPC-Batch-Template", "?1".into()), ("Timeout", 5.into())]),
    )
    .unwrap();
    let random = proptest::collection::vec(any::<u8>(), 0..256);
    let mutated = proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
        .prop_map(move |edits| kaiju_testkit::mutate(&valid, &edits));
    let cases = kaiju_testkit::fuzz_cases();
    let mut runner = TestRunner::new(Config::with_cases(cases));
    runner
        .run(&prop_oneof![random, mutated], |bytes| {
            if let Ok((body, headers)) = kaiju_streams::decode::<Value>(&bytes) {
                let reply = runtime.block_on(srv.call(body, &headers, Scope::Guest));
                prop_assert!(!reply.responses().is_empty());
                let _ = reply.to_value();
            }
            Ok(())
        })
        .unwrap();
    eprintln!("fuzz_server_bodies: {cases} inputs run through a server without a panic or hang");
}
