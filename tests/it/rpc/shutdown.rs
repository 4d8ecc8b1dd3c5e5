//! Stopping and draining: a request running at stop is answered once and not run again,
//! entries read after a drain stay pending for the next start, and no subscriber call starts
//! after stop returned. (Single node.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kaiju_core::Lifecycle;
use kaiju_rpc::{RpcClient, RpcSubscriber, Scope, Server, ServerSettings};
use kaiju_tests::rpc::sleeper::{Counts, listen, module, quick, sleep_params};
use kaiju_tests::streams::{dead_letters, field, pending_of, rpc_stream};
use kaiju_tests::{app, eventually, single};

// ---------------------------------------------------------------------------------------------
// Stop while a request runs: answered once, acked, not run again after a restart.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_a_request_runs_drains_it() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let req = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .request::<_, String>("svc.sleep", sleep_params(1000, "s"))
                .timeout(Duration::from_secs(5))
                .await
        })
    };
    eventually("running", Duration::from_secs(5), || {
        let n = counts.sleep.load(Ordering::SeqCst);
        async move { n == 1 }
    })
    .await;
    l.stop(Duration::from_secs(5)).await.unwrap();
    let r = req.await.unwrap();
    let pending = pending_of(&t, rpc_stream(&app).as_str(), &app.name).await;
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    l.stop(Duration::from_secs(5)).await.unwrap();
    let runs = counts.sleep.load(Ordering::SeqCst);
    assert!(
        matches!(&r, Ok(s) if s == "s") && pending == 0 && runs == 1,
        "{r:?} pending {pending} runs {runs}"
    );
}

// ---------------------------------------------------------------------------------------------
// D-6: a drained server behind a running listener: entries burn their deliveries and are
// dead-lettered without ever running.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_read_after_a_drain_stay_pending_unrun() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    assert!(l.server().drain(Duration::from_secs(1)).await);
    let client = RpcClient::new(t.clone(), &app);
    client
        .call("svc.sleep", sleep_params(0, "x"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dead = dead_letters(&t, l.listener().dead_letter_key()).await;
    let pending = pending_of(&t, rpc_stream(&app).as_str(), &app.name).await;
    let deferred = l.stats().await.unwrap().deferred;
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        dead.is_empty(),
        "never ran ({} runs), pending {pending}, yet dead-lettered: {:?}",
        counts.sleep.load(Ordering::SeqCst),
        dead.iter().map(|d| field(d, "reason")).collect::<Vec<_>>()
    );
    assert_eq!(
        (pending, deferred),
        (1, 1),
        "left pending, counted as deferred"
    );
    assert_eq!(counts.sleep.load(Ordering::SeqCst), 0);
    // The next start (a fresh server) runs it.
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    eventually("the deferred entry ran", Duration::from_secs(10), || {
        let n = counts.sleep.load(Ordering::SeqCst);
        async move { n == 1 }
    })
    .await;
    l.stop(Duration::from_secs(5)).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// D-7: RpcSubscriber::stop returns while calls still start afterwards.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_subscriber_call_starts_after_stop_returned() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let server = Server::new(
        &app,
        ServerSettings {
            max_parallel_tasks: 1,
            ..ServerSettings::default()
        },
        module(&counts),
    )
    .unwrap();
    let mut sub = RpcSubscriber::new(t.clone(), &app, "rpc", Scope::Guest, server).unwrap();
    sub.start().await.unwrap();
    let client = RpcClient::new(t.clone(), &app);
    for i in 0..5 {
        client
            .publish("svc.sleep", sleep_params(200, &i.to_string()))
            .await
            .unwrap();
    }
    eventually("the first call", Duration::from_secs(5), || {
        let n = counts.sleep.load(Ordering::SeqCst);
        async move { n >= 1 }
    })
    .await;
    let stopped = sub.stop(Duration::from_secs(10)).await;
    let at_stop = counts.sleep.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = counts.sleep.load(Ordering::SeqCst);
    assert_eq!(
        at_stop, later,
        "stop returned {stopped:?} after {at_stop} calls started; {later} had started 1.5 s later"
    );
}
