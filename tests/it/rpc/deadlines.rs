//! How long a request may run: the client's timeout becomes the server's deadline, whole; the
//! listener never cuts a method within it; an extreme timeout is clamped; a request nobody
//! serves ends at its deadline. (Single node; regressions of the kaiju-rpc review, D-2 to D-4.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kaiju_core::Lifecycle;
use kaiju_rpc::{CallError, RpcClient, RpcListenerOptions, ServerSettings};
use kaiju_streams::ListenerSettings;
use kaiju_tests::rpc::sleeper::{Counts, listen, listen_with, quick, sleep_params};
use kaiju_tests::streams::{dead_letters, field};
use kaiju_tests::{Target, app, single};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_app_nobody_serves_times_out_at_its_deadline() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let client = RpcClient::new(t, &app);
    let started = Instant::now();
    let r = client
        .request::<_, i64>("svc.add", json!({"a": 1}))
        .timeout(Duration::from_millis(700))
        .await;
    let took = started.elapsed();
    assert!(matches!(r, Err(CallError::Timeout(_))), "{r:?}");
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// D-2: `request(..).timeout(huge)` panics (Instant + Duration overflow).
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_huge_timeout_is_clamped_not_a_panic() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let joined = tokio::spawn(async move {
        client
            .request::<_, String>("svc.sleep", sleep_params(0, "x"))
            .timeout(Duration::MAX)
            .await
    })
    .await;
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(&joined, Ok(Ok(s)) if s == "x"),
        "request().timeout(Duration::MAX): {joined:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// D-3: the client's `Deadline` is floored to whole seconds: a 1 s request may get ~0 s.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_request_gets_its_whole_second() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let _: String = client
        .request("svc.sleep", sleep_params(0, "warm"))
        .await
        .unwrap();
    // Start at .75 s past a whole second.
    loop {
        let sub = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        if (740..760).contains(&sub) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let started = std::time::Instant::now();
    let r = client
        .request::<_, String>("svc.sleep", sleep_params(400, "ok"))
        .timeout(Duration::from_secs(1))
        .await;
    let took = started.elapsed();
    let dead = dead_letters(&t, l.listener().dead_letter_key()).await;
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(&r, Ok(s) if s == "ok"),
        "a 400 ms method under a 1 s request timeout: {r:?} after {took:?}; dead letters: {}",
        dead.iter()
            .map(|d| format!("{:?}", field(d, "reason")))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

// ---------------------------------------------------------------------------------------------
// D-4: the listener's handler timeout cuts requests the server would still allow, re-runs them
// (max_deliveries times) and never answers.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_never_cuts_a_method_within_its_rpc_timeout() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    // Scaled-down defaults: handler_timeout 30 s vs default_request_time 90 s.
    let settings = ListenerSettings {
        handler_timeout_ms: 1_000,
        pending_messages_time_ms: None,
        ..quick()
    };
    let server = ServerSettings {
        default_request_time: 3,
        ..ServerSettings::default()
    };
    let mut l = listen(&t, &app, settings, server, &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let r = client
        .request::<_, String>("svc.sleep", sleep_params(1_500, "slow"))
        .timeout(Duration::from_secs(8))
        .await;
    let runs = counts.sleep.load(Ordering::SeqCst);
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(&r, Ok(s) if s == "slow") && runs == 1,
        "a 1.5 s method with Timeout 8 s: {r:?}; it ran {runs} times"
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 25 item 6: 2,002 requests that timed out while their app was down all became
// RequestTimeout dead letters when it came back, although every caller had long been told
// "no response".
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_expired_while_their_app_was_down_are_acked_and_counted_not_dead_lettered() {
    const REQUESTS: u64 = 5;
    const NOTIFICATIONS: u64 = 3;
    let Some((t, _)) = single().await else {
        return;
    };
    for dead_letter_expired_requests in [false, true] {
        let app = app(&kaiju_tests::namespace());
        let counts = Arc::new(Counts::default());
        let options = RpcListenerOptions {
            dead_letter_expired_requests,
        };
        // The group exists, and the app is down.
        let mut l = listen_with(
            &t,
            &app,
            quick(),
            ServerSettings::default(),
            &counts,
            options.clone(),
        )
        .await;
        l.stop(Duration::from_secs(5)).await.unwrap();
        let client = RpcClient::new(t.clone(), &app);
        requests_nobody_answers(&client, REQUESTS).await;
        let past = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 1;
        for i in 0..NOTIFICATIONS {
            client
                .call("svc.sleep", sleep_params(0, &format!("n{i}")))
                .header("Deadline", past)
                .await
                .unwrap();
        }
        // The app comes back after its outage (longer than the whole second the client's
        // `Deadline` is rounded up to).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let l = listen_with(
            &t,
            &app,
            quick(),
            ServerSettings::default(),
            &counts,
            options,
        )
        .await;
        kaiju_tests::eventually("every entry handled", Duration::from_secs(10), || async {
            kaiju_tests::streams::pending_of(&t, l.listener().stream_key(), &app.name).await == 0
                && l.server().stats().expired == REQUESTS + NOTIFICATIONS
        })
        .await;
        assert_eq!(
            counts.sleep.load(Ordering::SeqCst),
            0,
            "no expired method ran"
        );
        let stats = l.stats().await.unwrap();
        let dead = dead_letters(&t, l.listener().dead_letter_key()).await;
        let (discarded, dead_lettered) = if dead_letter_expired_requests {
            (0, REQUESTS + NOTIFICATIONS)
        } else {
            (REQUESTS, NOTIFICATIONS)
        };
        assert_eq!(
            (stats.discarded, stats.dead_lettered, dead.len() as u64),
            (discarded, dead_lettered, dead_lettered),
            "dead_letter_expired_requests: {dead_letter_expired_requests}, {stats:?}"
        );
        for letter in &dead {
            assert!(
                field(letter, "reason").is_some_and(|r| r.contains("Request timeout")),
                "{:?}",
                field(letter, "reason")
            );
        }
    }
}

/// Only a request whose caller would have been answered may be discarded: an expired entry
/// whose `Reply-To` is not a reply channel of this environment (another env's, or not a
/// string) is a notification as far as anyone knows, and is dead-lettered. (Review of
/// issue 25: both were discarded, and nobody was told.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_entry_whose_reply_to_nobody_answers_is_dead_lettered() {
    let Some((t, _)) = single().await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let counts = Arc::new(Counts::default());
    let l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 5;
    client
        .call("svc.sleep", sleep_params(0, "a"))
        .header("Deadline", past)
        .header("Reply-To", "other-env._reply.x")
        .await
        .unwrap();
    client
        .call("svc.sleep", sleep_params(0, "b"))
        .header("Deadline", past)
        .header("Reply-To", 7_i64)
        .await
        .unwrap();
    kaiju_tests::eventually("both handled", Duration::from_secs(10), || async {
        kaiju_tests::streams::pending_of(&t, l.listener().stream_key(), &app.name).await == 0
            && l.server().stats().expired == 2
    })
    .await;
    let stats = l.stats().await.unwrap();
    let dead = dead_letters(&t, l.listener().dead_letter_key()).await;
    assert_eq!((stats.discarded, dead.len()), (0, 2), "{stats:?}");
}

/// A request whose method failed (worth a retry), and whose deadline then passed during the
/// retry backoff, is dead-lettered: the failure is worth a trace beyond the logs. (Review of
/// issue 25: the second delivery was discarded as expired.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_failed_then_expired_during_its_backoff_is_dead_lettered() {
    let Some((t, _)) = single().await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let counts = Arc::new(Counts::default());
    let settings = ListenerSettings {
        retry_backoff_ms: 2500,
        max_deliveries: 3,
        ..quick()
    };
    let l = listen(&t, &app, settings, ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let answer = client
        .request::<_, serde_json::Value>("svc.boom", json!({}))
        .timeout(Duration::from_secs(1))
        .await;
    assert!(matches!(answer, Err(CallError::Timeout(_))), "{answer:?}");
    kaiju_tests::eventually("handled", Duration::from_secs(15), || async {
        kaiju_tests::streams::pending_of(&t, l.listener().stream_key(), &app.name).await == 0
    })
    .await;
    let stats = l.stats().await.unwrap();
    let dead = dead_letters(&t, l.listener().dead_letter_key()).await;
    assert_eq!(
        (stats.discarded, stats.retried, dead.len()),
        (0, 1, 1),
        "{stats:?}"
    );
}

/// After an outage, the requests that expired meanwhile cost nothing but their ack: no reply
/// is published to callers that stopped waiting (each cost a PUBLISH, and a place among the
/// replies waiting to be published again). Counted with MONITOR on a server of the test's
/// own. (Review of issue 25.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_requests_that_expired_while_their_app_was_down_are_not_published() {
    const REQUESTS: u64 = 50;
    let Some((server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    l.stop(Duration::from_secs(5)).await.unwrap();
    let client = RpcClient::new(t.clone(), &app);
    requests_nobody_answers(&client, REQUESTS).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let monitor = kaiju_tests::observe::Monitor::start(&server, &t).await;
    let l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    kaiju_tests::eventually("every entry handled", Duration::from_secs(20), || async {
        kaiju_tests::streams::pending_of(&t, l.listener().stream_key(), &app.name).await == 0
            && l.server().stats().expired == REQUESTS
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let publishes = monitor
        .lines()
        .iter()
        .filter(|line| line.to_ascii_lowercase().contains("\"publish\""))
        .count();
    assert_eq!(publishes, 0, "PUBLISH to callers gone long ago");
    assert_eq!(l.stats().await.unwrap().discarded, REQUESTS);
}

/// A headers dict in Python: a repeated name's last value wins, and names match exactly.
/// `{"Deadline": past, "Deadline": future}` and `{"deadline": past, "Deadline": future}`
/// both run in kaiju; kaiju-rs once read the first (case-insensitive) match and expired them.
/// (Review of issue 25.)
#[tokio::test]
async fn a_repeated_or_differently_cased_deadline_is_read_as_python_reads_it() {
    let app = app(&kaiju_tests::namespace());
    let counts = Arc::new(Counts::default());
    let server = kaiju_rpc::Server::new(
        &app,
        ServerSettings::default(),
        kaiju_tests::rpc::sleeper::module(&counts),
    )
    .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    for first in [&b"Deadline"[..], b"deadline"] {
        // [["svc.sleep", {"ms": 0, "tag": "x"}], {first: past, "Deadline": future}]
        let mut p = b"\x92\x92\xa9svc.sleep\x82\xa2ms\x00\xa3tag\xa1x\x82".to_vec();
        p.push(0xa0 | first.len() as u8);
        p.extend_from_slice(first);
        p.push(0xce);
        p.extend_from_slice(&(now - 100).to_be_bytes());
        p.extend_from_slice(b"\xa8Deadline\xce");
        p.extend_from_slice(&(now + 60).to_be_bytes());
        let (body, headers): (kaiju_core::Value, kaiju_streams::Headers) =
            kaiju_streams::decode(&p).unwrap();
        let reply = server.call(body, &headers, kaiju_rpc::Scope::Guest).await;
        assert_eq!(reply.outcome(), kaiju_rpc::Outcome::Ok, "{first:?}");
    }
    assert_eq!(counts.sleep.load(Ordering::SeqCst), 2);
}

/// A `Deadline` that is not positive once read (`0`, `"0"`, `0.5`) is ignored (D23: the
/// request runs under its Timeout), and its reply is sent: the replier once read it as a
/// deadline long passed and published nothing. (Second review of issue 25.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_deadline_zero_that_runs_is_answered() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let mut results = Vec::new();
    for zero in [
        kaiju_rpc::HeaderValue::Int(0),
        kaiju_rpc::HeaderValue::Str("0".into()),
        kaiju_rpc::HeaderValue::Float(0.5),
    ] {
        let r = client
            .request::<_, String>("svc.sleep", sleep_params(0, "x"))
            .header("Deadline", zero.clone())
            .timeout(Duration::from_secs(3))
            .await;
        results.push(format!("{zero:?}: {r:?}"));
    }
    let ran = counts.sleep.load(Ordering::SeqCst);
    l.stop(Duration::from_secs(5)).await.unwrap();
    eprintln!("{results:?}, method ran {ran} times");
    assert_eq!(ran, 3, "{results:?}");
    assert!(
        results.iter().all(|r| r.contains("Ok(\"x\")")),
        "the method ran {ran} times, but: {results:?}"
    );
}

/// Sends `n` requests at once, each with a 1 s timeout, to an app that is down: each times out.
async fn requests_nobody_answers(client: &RpcClient, n: u64) {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .request::<_, String>("svc.sleep", sleep_params(0, &format!("r{i}")))
                    .timeout(Duration::from_secs(1))
                    .await
            })
        })
        .collect();
    for call in calls {
        let answer = call.await.unwrap();
        assert!(matches!(answer, Err(CallError::Timeout(_))), "{answer:?}");
    }
}

/// Issue 26 item 9: a request read after its deadline is a `RequestTimeout` whose
/// `data.request_deadline` is the `Deadline` it was sent with (kaiju's `request_deadline`), not
/// the time it was read; and it is one even when its method does not exist here: expired
/// first (counted and delivered as every other request of an outage), not `MethodNotFound`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_reports_its_own_deadline_even_to_a_missing_method() {
    let Some((t, _)) = single().await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let counts = Arc::new(Counts::default());
    let l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 30;
    // Notifications (as every Python kaiju call is): an expired one is dead-lettered, with the
    // error object as its reason.
    for method in ["svc.sleep", "svc.nope"] {
        client
            .call(method, sleep_params(0, "late"))
            .header("Deadline", past)
            .await
            .unwrap();
    }
    kaiju_tests::eventually("both handled", Duration::from_secs(10), || async {
        let stats = l.server().stats();
        stats.expired + stats.rejected == 2
            && kaiju_tests::streams::pending_of(&t, l.listener().stream_key(), &app.name).await == 0
    })
    .await;
    let stats = l.server().stats();
    assert_eq!(
        (stats.expired, stats.rejected),
        (2, 0),
        "the missing method's request expired too: {stats:?}"
    );
    let dead = dead_letters(&t, l.listener().dead_letter_key()).await;
    assert_eq!(dead.len(), 2);
    for letter in &dead {
        let reason = field(letter, "reason").unwrap();
        let error: serde_json::Value = serde_json::from_str(reason).unwrap();
        assert_eq!(
            (&error["code"], &error["data"]["type"]),
            (&json!(-32002), &json!("RequestTimeout")),
            "{reason}"
        );
        assert_eq!(
            error["data"]["request_deadline"],
            json!(past),
            "the request's Deadline: {reason}"
        );
    }
    assert_eq!(counts.sleep.load(Ordering::SeqCst), 0, "nothing ran");
}
