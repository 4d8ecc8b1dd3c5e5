//! Requests and their replies over a client's one reply subscription: copies of a client never
//! get each other's replies, many concurrent requests each get their own, a cancelled request
//! is forgotten, and requests are answered again after the reply connection was cut or killed.
//! (Single node: these break their own connections and servers.)

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaiju_core::Lifecycle;
use kaiju_rpc::{CallError, RpcClient, Scope, ServerSettings};
use kaiju_streams::ListenerSettings;
use kaiju_tests::rpc::sleeper::{Counts, listen, quick, sleep_params};
use kaiju_tests::rpc::{Seen, serve};
use kaiju_tests::{Target, app, eventually, single};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// D-1: a client and its `with_topic` copy share the reply channel but count request ids from 1
// each: replies are crossed.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_a_client_never_get_each_others_replies() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l1 = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let other = ListenerSettings {
        topic: "other".into(),
        ..quick()
    };
    let mut l2 = listen(&t, &app, other, ServerSettings::default(), &counts).await;

    let a = RpcClient::new(t.clone(), &app);
    // Copy made before the first request: two subscriptions on the same channel.
    let b = a.with_topic("other");
    let (ra, rb) = tokio::join!(
        a.request::<_, String>("svc.sleep", sleep_params(600, "A"))
            .timeout(Duration::from_secs(5))
            .into_future(),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            b.request::<_, String>("svc.sleep", sleep_params(50, "B"))
                .timeout(Duration::from_secs(5))
                .await
        }
    );
    let first = format!("{ra:?} / {rb:?}");

    // Copy made after the first request: one shared pending map.
    let c = RpcClient::new(t.clone(), &app);
    let _: String = c
        .request("svc.sleep", sleep_params(0, "warm"))
        .await
        .unwrap();
    let d = c.with_topic("other");
    let (rc, rd) = tokio::join!(
        c.request::<_, String>("svc.sleep", sleep_params(600, "C"))
            .timeout(Duration::from_secs(5))
            .into_future(),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.request::<_, String>("svc.sleep", sleep_params(50, "D"))
                .timeout(Duration::from_secs(5))
                .await
        }
    );
    let second = format!("{rc:?} / {rd:?}");
    l1.stop(Duration::from_secs(5)).await.unwrap();
    l2.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!((&ra, &rb), (Ok(x), Ok(y)) if x == "A" && y == "B")
            && matches!((&rc, &rd), (Ok(x), Ok(y)) if x == "C" && y == "D"),
        "copy before first request: {first}; copy after first request: {second}"
    );
}

// ---------------------------------------------------------------------------------------------
// Many concurrent requests over the one subscription.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_are_all_answered_correctly() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let settings = ListenerSettings {
        max_batch_size: 100,
        max_parallel_batches: 4,
        ..quick()
    };
    let mut l = listen(&t, &app, settings, ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let mut handles = Vec::new();
    for i in 0..1500 {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let r: Result<String, CallError> = client
                .request("svc.sleep", sleep_params(0, &i.to_string()))
                .timeout(Duration::from_secs(20))
                .await;
            (i, r)
        }));
    }
    let mut wrong = Vec::new();
    for h in handles {
        let (i, r) = h.await.unwrap();
        if !matches!(&r, Ok(s) if *s == i.to_string()) {
            wrong.push(format!("{i}: {r:?}"));
        }
    }
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        wrong.is_empty(),
        "{} wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_requests_are_forgotten_at_every_await() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let seen = Seen::default();
    let mut listener = serve(&t, &app, &seen, Scope::System).await;
    let client = RpcClient::new(t.clone(), &app);
    // Cancel after 0, 1, 2, ... polls: before the subscription, before the write, while waiting.
    for budget in [0_u64, 50, 100, 200, 400, 800, 1600] {
        let request = client.request::<_, i64>("svc.add", json!({"a": 1, "b": 1}));
        let _ = tokio::time::timeout(Duration::from_micros(budget), request).await;
        assert_eq!(client.waiting_requests(), 0, "after {budget} µs");
    }
    // The client still works, and its subscription too.
    let sum: i64 = client
        .request("svc.add", json!({"a": 5, "b": 5}))
        .await
        .unwrap();
    assert_eq!(sum, 10);
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_work_again_after_the_reply_connection_was_cut() {
    let Some((proxy, through, direct)) = kaiju_tests::through_proxy().await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let seen = Seen::default();
    let mut listener = serve(&direct, &app, &seen, Scope::System).await;
    let client = RpcClient::new(through.clone(), &app);
    let sum: i64 = client
        .request("svc.add", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert_eq!(sum, 3);
    // Every connection of the client goes half-open (the reply subscription included).
    proxy.cut_existing();
    let started = Instant::now();
    eventually(
        "a request answered after the cut",
        Duration::from_secs(15),
        || async {
            client
                .request::<_, i64>("svc.add", json!({"a": 2, "b": 2}))
                .timeout(Duration::from_millis(500))
                .await
                .is_ok()
        },
    )
    .await;
    eprintln!(
        "requests answered again {:?} after the cut",
        started.elapsed()
    );
    // And keep working: the subscription was made again.
    for i in 0..10 {
        let sum: i64 = client
            .request("svc.add", json!({"a": i, "b": 1}))
            .await
            .unwrap();
        assert_eq!(sum, i + 1);
    }
    assert_eq!(
        client.waiting_requests(),
        0,
        "timed-out requests are forgotten"
    );
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// S-1: the reply subscription after its connection is killed.
// ---------------------------------------------------------------------------------------------

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new(kaiju_testkit::cli_path().unwrap())
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// On a server of its own: `CLIENT KILL TYPE pubsub` would hit other tests' subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_right_after_the_reply_connection_was_killed_is_answered() {
    let Some((server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let _: String = client
        .request("svc.sleep", sleep_params(0, "warm"))
        .await
        .unwrap();
    for round in 0..5 {
        let killed = redis_cli(server.port(), &["CLIENT", "KILL", "TYPE", "pubsub"]);
        let r1 = client
            .request::<_, String>("svc.sleep", sleep_params(0, "r1"))
            .timeout(Duration::from_secs(3))
            .await;
        let r2 = client
            .request::<_, String>("svc.sleep", sleep_params(0, "r2"))
            .timeout(Duration::from_secs(3))
            .await;
        assert!(
            r1.is_ok() && r2.is_ok(),
            "round {round}: killed {killed:?}; right after: {r1:?}; next: {r2:?}"
        );
    }
    l.stop(Duration::from_secs(5)).await.unwrap();
}
