//! How many times a call is written and run: a call whose reply is lost is not written twice,
//! a method whose result cannot be encoded runs once, and entries waiting for a server slot
//! are not dead-lettered. (Single node.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kaiju_core::Lifecycle;
use kaiju_rpc::{RpcClient, ServerSettings};
use kaiju_streams::ListenerSettings;
use kaiju_tests::rpc::sleeper::{Counts, listen, quick, sleep_params};
use kaiju_tests::streams::{dead_letters, field, pending_of, rpc_stream};
use kaiju_tests::{app, eventually, single};
use kaiju_transport::fred::prelude::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_reply_is_lost_is_not_written_twice() {
    let Some((proxy, through, direct)) = kaiju_tests::through_proxy().await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let client = RpcClient::new(through, &app);
    proxy.drop_next_reply();
    let result = client.call("svc.add", json!({"a": 1, "b": 2})).await;
    if direct
        .capabilities()
        .has(kaiju_transport::Feature::XAddIdmp)
    {
        // Redis 8.6+: sent again with the same XADD IDMP ids, which return the first id.
        assert!(result.is_ok(), "resent safely: {result:?}");
    } else {
        assert!(
            result.is_err(),
            "the client cannot know whether it was written: {result:?}"
        );
    }
    assert_eq!(proxy.dropped(), 1);
    let len: u64 = direct.pool().xlen(rpc_stream(&app).as_str()).await.unwrap();
    assert_eq!(
        len, 1,
        "written once, never resent behind the caller's back"
    );
}

// ---------------------------------------------------------------------------------------------
// D-5: a method that finished but whose result cannot be encoded is run again.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_whose_result_cannot_be_encoded_runs_once() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    client.call("svc.unencodable", ()).await.unwrap();
    let dead = l.listener().dead_letter_key().to_owned();
    eventually("a dead letter", Duration::from_secs(10), || async {
        dead_letters(&t, &dead).await.len() == 1
    })
    .await;
    let runs = counts.unencodable.load(Ordering::SeqCst);
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        runs, 1,
        "the method finished (side effects done) but ran {runs} times"
    );
}

// ---------------------------------------------------------------------------------------------
// Entries waiting for a server slot (max_parallel_tasks 1) all run; none is dead-lettered.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_waiting_for_a_server_slot_are_not_dead_lettered() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let settings = ListenerSettings {
        handler_timeout_ms: 1_000,
        pending_messages_time_ms: None,
        max_deliveries: 2,
        ..quick()
    };
    let server = ServerSettings {
        max_parallel_tasks: 1,
        ..ServerSettings::default()
    };
    let mut l = listen(&t, &app, settings, server, &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let calls: Vec<_> = (0..8)
        .map(|i| ("svc.sleep".to_owned(), sleep_params(300, &i.to_string())))
        .collect();
    client.call_each(calls).await.unwrap();
    eventually("nothing pending", Duration::from_secs(20), || async {
        pending_of(&t, rpc_stream(&app).as_str(), &app.name).await == 0
    })
    .await;
    let dead = dead_letters(&t, l.listener().dead_letter_key()).await;
    let stats = l.stats().await.unwrap();
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        dead.is_empty(),
        "{} dead-lettered ({:?}); {} runs for 8 entries; {stats:?}",
        dead.len(),
        dead.iter().map(|d| field(d, "kind")).collect::<Vec<_>>(),
        counts.sleep.load(Ordering::SeqCst)
    );
}
