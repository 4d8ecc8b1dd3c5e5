//! The listener's Redis 8 paths under attack: `XREADGROUP ... CLAIM`,
//! `XNACK` at a graceful stop, `XTRIM ... ACKED`. Each test asserts what held before the
//! change (and still holds on Redis 7), so a failure on Redis 8.8+ is a regression.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kaiju_core::{Lifecycle, Namespace};
use kaiju_streams::{HandlerError, Listener, ListenerSettings, Message};
use kaiju_tests::streams::{Body, pending_of, rpc_stream, write};
use kaiju_tests::{Target, app, eventually, on_both};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;

on_both!(
    handed_back_entry_reaches_a_group_that_does_not_claim,
    a_cut_off_instance_does_not_hand_back_what_the_live_one_runs,
);

/// Who holds pending entry `id` in `group` (`""`: handed back to the group), if anyone.
async fn owner(t: &Transport, stream: &str, group: &str, id: &str) -> Option<String> {
    let pending: Vec<(String, String, i64, u64)> =
        t.pool().xpending(stream, group, (id, id, 1)).await.unwrap();
    pending.into_iter().next().map(|(_, who, _, _)| who)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The app's lease hash of the topic `rpc`.
fn leases_of(app: &kaiju_core::AppSettings) -> String {
    app.namespace()
        .unwrap()
        .stream_consumers("rpc")
        .unwrap()
        .into_string()
}

/// Consumer `a` (claiming on) fails an entry and stops gracefully while its retry waits; the
/// rest of the group is `b`, with claiming off (`pending_messages_time_ms: None`, e.g. mid
/// rolling deploy of that setting). Before XNACK, `a`'s entry stayed `a`'s, and `b` took it
/// over once `a`'s released lease had been idle for a lease (~10 s). With the hand-back, the
/// entry has no consumer: the takeover (per consumer) never sees it, `b` never claims: it is
/// stranded pending for ever.
async fn handed_back_entry_reaches_a_group_that_does_not_claim(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 1, "x").await;
    let a_settings = ListenerSettings {
        consumer_id: Some("a".into()),
        pending_messages_time_ms: Some(20_000),
        handler_timeout_ms: 1000,
        retry_backoff_ms: 2000,
        max_deliveries: 3,
        max_wait_time_ms: 100,
        ..ListenerSettings::default()
    };
    let mut a = Listener::new(t.clone(), &app, a_settings, |_: Message<Body>| async {
        Err::<(), _>(HandlerError::retry("not now"))
    })
    .unwrap();
    a.start().await.unwrap();
    eventually("a failed the entry", Duration::from_secs(10), || async {
        a.stats().await.unwrap().retries_waiting == 1
    })
    .await;
    let deliveries: Arc<Mutex<Vec<u64>>> = Arc::default();
    let b_settings = ListenerSettings {
        consumer_id: Some("b".into()),
        pending_messages_time_ms: None,
        handler_timeout_ms: 1000,
        max_wait_time_ms: 100,
        ..ListenerSettings::default()
    };
    let mut b = Listener::new(t.clone(), &app, b_settings, {
        let deliveries = deliveries.clone();
        move |m: Message<Body>| {
            deliveries.lock().unwrap().push(m.deliveries);
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    })
    .unwrap();
    b.start().await.unwrap();
    a.stop(Duration::from_secs(5)).await.unwrap();
    let who = owner(t, stream.as_str(), &app.name, &ids[0]).await;
    let what = format!("b to take over a's entry (owner after a's stop: {who:?})");
    eventually(&what, Duration::from_secs(30), || async {
        !deliveries.lock().unwrap().is_empty()
    })
    .await;
    // Acked (the acks go out in batches, just after the handler).
    eventually("b acked it", Duration::from_secs(5), || async {
        pending_of(t, stream.as_str(), &app.name).await == 0
    })
    .await;
    b.stop(Duration::from_secs(5)).await.unwrap();
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

/// Instance `a1` of consumer `a` fails an entry (long backoff) and is then cut off: another
/// instance `a2` takes the consumer name `a` (a1's lease lost), recovers `a`'s pending entry
/// and is running it (slow handler). When a1 is then stopped gracefully, its hand-back
/// (nack.lua checks the owner *name*, `a`, which a2 now is) takes the entry a2 is running
/// away and hands it to the group: another consumer may claim it at once (duplicate, while
/// a2 still runs it). Before XNACK the stop left it alone.
async fn a_cut_off_instance_does_not_hand_back_what_the_live_one_runs(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 1, "x").await;
    let settings = || ListenerSettings {
        consumer_id: Some("a".into()),
        pending_messages_time_ms: Some(100_000),
        handler_timeout_ms: 20_000,
        retry_backoff_ms: 30_000,
        max_deliveries: 3,
        max_wait_time_ms: 100,
        ..ListenerSettings::default()
    };
    let mut a1 = Listener::new(t.clone(), &app, settings(), |_: Message<Body>| async {
        Err::<(), _>(HandlerError::retry("not now"))
    })
    .unwrap();
    a1.start().await.unwrap();
    eventually("a1 failed the entry", Duration::from_secs(10), || async {
        a1.stats().await.unwrap().retries_waiting == 1
    })
    .await;
    // Someone else holds the name now: a1 loses it at its next renewal (every ~3.3 s).
    let leases = leases_of(&app);
    let field = format!("{}/a", app.name);
    let _: i64 = t
        .pool()
        .hset(
            leases.as_str(),
            (field.clone(), format!("thief {}", now_ms() + 60_000)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The thief goes; a2 takes the free name and recovers a's pending entry.
    let _: i64 = t
        .pool()
        .hdel(leases.as_str(), field.as_str())
        .await
        .unwrap();
    let running: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut a2 = Listener::new(t.clone(), &app, settings(), {
        let running = running.clone();
        move |m: Message<Body>| {
            running.lock().unwrap().push(m.deliveries);
            async {
                tokio::time::sleep(Duration::from_secs(8)).await;
                Ok::<(), HandlerError>(())
            }
        }
    })
    .unwrap();
    a2.start().await.unwrap();
    eventually("a2 runs a's entry", Duration::from_secs(10), || async {
        !running.lock().unwrap().is_empty()
    })
    .await;
    a1.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        owner(t, stream.as_str(), &app.name, &ids[0])
            .await
            .as_deref(),
        Some("a"),
        "a1's stop took the entry a2 is running from it"
    );
    a2.stop(Duration::from_secs(15)).await.unwrap();
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}
