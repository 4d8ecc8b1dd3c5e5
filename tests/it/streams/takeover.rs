//! Adversarial review of the takeover of a gone consumer's entries (commit 27ccb66).
//! Tests named `*`; each asserts what the README promises.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kaiju_core::{Lifecycle, Namespace};
use kaiju_streams::{HandlerError, Listener, ListenerSettings, Message};
use kaiju_tests::streams::{Body, Seen, distinct, pending_of, recorder, rpc_stream, write};
use kaiju_tests::{Target, app, eventually, on_both};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{ClusterHash, CustomCommand, Value};

on_both!(
    a_gone_consumer_of_group_a_slash_b_is_taken_over_next_to_group_a,
    a_gone_consumer_of_group_a_slash_b_is_taken_over_next_to_group_x,
    a_gone_consumers_thousands_of_entries_are_taken_over_once_by_two_consumers,
    a_live_python_consumer_under_a_name_with_a_stale_lease_is_never_taken_from,
    a_deleted_stream_and_a_clobbered_lease_hash_do_not_stop_the_listener,
    a_consumer_named_with_a_slash_once_seen_absent_is_taken_over_when_it_dies,
    a_consumer_named_without_a_slash_once_seen_absent_is_taken_over_when_it_dies,
);

/// A gone consumer is being taken over when the stream is deleted, then the lease hash is
/// replaced by a string (WRONGTYPE) and by garbage: the listener keeps handling new entries.
async fn a_deleted_stream_and_a_clobbered_lease_hash_do_not_stop_the_listener(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    write(t, &stream, 3, "x").await;
    let group = app.name.clone();
    dead_consumer(t, ns, &group, "dead", 3).await;
    let seen: Seen = Arc::default();
    let mut live = Listener::new(t.clone(), &app, settings(None), recorder(&seen)).unwrap();
    live.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
    write(t, &stream, 2, "y").await;
    eventually(
        "new entries after the stream was deleted",
        Duration::from_secs(20),
        || async { distinct(&seen) >= 2 },
    )
    .await;
    let leases = leases_of(&app);
    let _: () = t
        .pool()
        .set(leases.as_str(), "clobbered", None, None, false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    write(t, &stream, 2, "z").await;
    eventually(
        "new entries with a WRONGTYPE lease key",
        Duration::from_secs(20),
        || async { distinct(&seen) >= 4 },
    )
    .await;
    let _: i64 = t.pool().del(leases.as_str()).await.unwrap();
    let _: i64 = t
        .pool()
        .hset(
            leases.as_str(),
            vec![
                (format!("{group}/g1"), "no-space-no-number".to_owned()),
                (
                    format!("{group}/g2"),
                    "tok 99999999999999999999999".to_owned(),
                ),
                (format!("{group}/g3"), "tok -5".to_owned()),
                (format!("{group}/g4"), "tok 12".to_owned()),
                (format!("{group}/"), "tok 12".to_owned()),
            ],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    write(t, &stream, 2, "w").await;
    eventually(
        "new entries with garbage leases",
        Duration::from_secs(20),
        || async { distinct(&seen) >= 6 },
    )
    .await;
    let h: HashMap<String, String> = t.pool().hgetall(leases.as_str()).await.unwrap();
    eprintln!(
        "leases after garbage: {h:?}\nstats {:?}",
        live.stats().await.unwrap()
    );
    live.stop(Duration::from_secs(5)).await.unwrap();
}

/// Canary / rollback with stable names (the README recommends a pod name): pod "worker-1" ran
/// the Rust listener less than a day ago, now runs Python kaiju (no lease) and keeps reading.
/// Its stale lease says "gone"; the Rust consumers once took what it held for 10 s and ran it
/// a second time, although it reads every 200 ms. A consumer that reads is alive.
async fn a_live_python_consumer_under_a_name_with_a_stale_lease_is_never_taken_from(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app).into_string();
    write(t, &rpc_stream(&app), 3, "x").await;
    let group = app.name.clone();
    // Python's worker-1 reads 3 entries (a slow handler: 15 s each).
    dead_consumer(t, ns, &group, "worker-1", 3).await;
    let seen: Seen = Arc::default();
    let mut rust = Listener::new(t.clone(), &app, settings(None), recorder(&seen)).unwrap();
    rust.start().await.unwrap();
    // worker-1 stays alive: it keeps reading. (Redis 7.0 counts only a read that delivers
    // something, here its own pending entries again; Redis 7.2 and Valkey count every read.)
    for _ in 0..75 {
        let _: Value = t
            .pool()
            .xreadgroup(
                group.as_str(),
                "worker-1",
                Some(1),
                None,
                false,
                stream.as_str(),
                "0",
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = rust.stats().await.unwrap();
    rust.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        distinct(&seen),
        0,
        "the Rust consumer took {} entries from a live (Python) consumer: {stats:?}",
        distinct(&seen)
    );
}

fn settings(group: Option<&str>) -> ListenerSettings {
    // A random consumer name per listener, as a process with no consumer id gets.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    ListenerSettings {
        group_id: group.map(str::to_owned),
        consumer_id: Some(format!("random-{n}-{}", now_ms())),
        pending_messages_time_ms: None,
        ..ListenerSettings::default()
    }
}

/// The app's lease hash of the topic `rpc`.
fn leases_of(app: &kaiju_core::AppSettings) -> String {
    app.namespace()
        .unwrap()
        .stream_consumers("rpc")
        .unwrap()
        .into_string()
}

/// Makes the lease of `consumer` of `group` one that ran out a second ago.
async fn run_out(t: &Transport, leases: &str, group: &str, consumer: &str) {
    let _: i64 = t
        .pool()
        .hset(
            leases,
            (
                format!("{group}/{consumer}"),
                format!("deadtoken {}", now_ms() - 1000),
            ),
        )
        .await
        .unwrap();
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A crashed Rust consumer `consumer` of `group`: it read `n` entries and its lease ran out.
async fn dead_consumer(t: &Transport, ns: &Namespace, group: &str, consumer: &str, n: u64) {
    let app = app(ns);
    let stream = rpc_stream(&app).into_string();
    let _: Value = t
        .pool()
        .xgroup_create(stream.as_str(), group, "0", true)
        .await
        .unwrap_or(Value::Null);
    let mut left = n;
    while left > 0 {
        let c = left.min(1000);
        let _: Value = t
            .pool()
            .xreadgroup(group, consumer, Some(c), None, false, stream.as_str(), ">")
            .await
            .unwrap();
        left -= c;
    }
    run_out(t, &leases_of(&app), group, consumer).await;
}

async fn consumer_pending(t: &Transport, stream: &str, group: &str, consumer: &str) -> usize {
    let v: Value = t
        .pool()
        .xpending(stream, group, ("-", "+", 100_000, consumer))
        .await
        .unwrap_or(Value::Null);
    v.into_array().len()
}

async fn slash_groups(t: &Transport, ns: &Namespace, sibling: &str) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    write(t, &stream, 3, "x").await;
    dead_consumer(t, ns, "a/b", "c", 3).await;
    let seen_ab: Seen = Arc::default();
    let seen_sib: Seen = Arc::default();
    let mut ab = Listener::new(t.clone(), &app, settings(Some("a/b")), recorder(&seen_ab)).unwrap();
    let mut sib = Listener::new(
        t.clone(),
        &app,
        settings(Some(sibling)),
        recorder(&seen_sib),
    )
    .unwrap();
    sib.start().await.unwrap();
    ab.start().await.unwrap();
    let s = stream.as_str().to_owned();
    eventually(
        &format!("group a/b takes over its dead consumer c (next to group {sibling})"),
        Duration::from_secs(40),
        || async { distinct(&seen_ab) >= 3 },
    )
    .await;
    eventually("c removed", Duration::from_secs(10), || async {
        consumer_pending(t, &s, "a/b", "c").await == 0
    })
    .await;
    ab.stop(Duration::from_secs(5)).await.unwrap();
    sib.stop(Duration::from_secs(5)).await.unwrap();
}

/// Group "a" and group "a/b" listen on the same topic of the same app: the lease field
/// "a/b/c" reads to group "a" as its consumer "b/c". Group "a" once "recovered" it (nothing)
/// and forgot the lease, deleting group a/b's proof that c is gone; it now leaves a name with
/// a `/` that is no consumer of its own alone.
async fn a_gone_consumer_of_group_a_slash_b_is_taken_over_next_to_group_a(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    slash_groups(t, ns, "a").await;
}

/// The same next to a group whose name is not a prefix of it.
async fn a_gone_consumer_of_group_a_slash_b_is_taken_over_next_to_group_x(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    slash_groups(t, ns, "x").await;
}

/// A dead consumer with 5,000 pending entries (200 deleted behind its back), two survivors at
/// once: each live entry runs exactly once, the deleted ones are counted lost, the consumer is
/// removed.
async fn a_gone_consumers_thousands_of_entries_are_taken_over_once_by_two_consumers(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 5000, "x").await;
    let group = app.name.clone();
    dead_consumer(t, ns, &group, "dead", 5000).await;
    let gone: Vec<&str> = ids.iter().step_by(25).map(String::as_str).collect();
    let _: i64 = t.pool().xdel(stream.as_str(), gone.clone()).await.unwrap();
    let seen: Seen = Arc::default();
    let mut one = Listener::new(t.clone(), &app, settings(None), recorder(&seen)).unwrap();
    let mut two = Listener::new(t.clone(), &app, settings(None), recorder(&seen)).unwrap();
    one.start().await.unwrap();
    two.start().await.unwrap();
    eventually("4,800 taken over", Duration::from_secs(90), || async {
        distinct(&seen) >= 4800
    })
    .await;
    let s = stream.as_str().to_owned();
    eventually("nothing pending", Duration::from_secs(20), || async {
        pending_of(t, &s, &group).await == 0
    })
    .await;
    let (a, b) = (one.stats().await.unwrap(), two.stats().await.unwrap());
    let counts: HashMap<String, usize> =
        seen.lock()
            .unwrap()
            .iter()
            .fold(HashMap::new(), |mut m, id| {
                *m.entry(id.clone()).or_default() += 1;
                m
            });
    let twice = counts.values().filter(|&&n| n > 1).count();
    eprintln!("one {a:?}\ntwo {b:?}\nran twice: {twice}");
    assert_eq!(twice, 0);
    assert_eq!(a.recovered + b.recovered, 4800);
    assert_eq!(a.lost + b.lost, 200);
    one.stop(Duration::from_secs(5)).await.unwrap();
    two.stop(Duration::from_secs(5)).await.unwrap();
}

/// A Redis stall longer than the lease (CLIENT PAUSE 11 s: a failover, a fork stall): every
/// lease runs out at once, and the first listener to renew after it could take over what the
/// other live listeners have held for 10 s (a 20 s handler, within the 30 s handler timeout).
/// A listener whose own lease ran out reports nobody gone, so nothing is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_stall_longer_than_the_lease_takes_nothing_from_live_consumers() {
    // CLIENT PAUSE stops every client of the server: a server of the test's own.
    let Some((_server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let app = app(&ns);
    let stream = rpc_stream(&app);
    let runs: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = |runs: Arc<Mutex<Vec<String>>>| {
        move |m: Message<Body>| {
            runs.lock().unwrap().push(m.id);
            async move {
                tokio::time::sleep(Duration::from_secs(20)).await;
                Ok::<_, HandlerError>(())
            }
        }
    };
    let mut listeners = Vec::new();
    for _ in 0..3 {
        let one_settings = settings(None);
        let mut l = Listener::new(t.clone(), &app, one_settings, handler(runs.clone())).unwrap();
        l.start().await.unwrap();
        listeners.push(l);
    }
    // One entry at a time, so that they spread over the listeners (each has room left).
    for i in 1..=6 {
        write(&t, &stream, 1, "x").await;
        eventually("started", Duration::from_secs(5), || async {
            runs.lock().unwrap().len() >= i
        })
        .await;
    }
    let _: Value = t
        .client()
        .custom(
            CustomCommand::new_static("CLIENT", ClusterHash::Random, false),
            vec!["PAUSE", "11000", "ALL"],
        )
        .await
        .unwrap();
    let leases = leases_of(&app);
    for _ in 0..6 {
        let h: HashMap<String, String> =
            t.pool().hgetall(leases.as_str()).await.unwrap_or_default();
        eprintln!("{} leases: {h:?}", now_ms());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = runs.lock().unwrap().clone();
    let stats: Vec<_> = {
        let mut v = Vec::new();
        for l in &listeners {
            v.push(l.stats().await.unwrap().recovered);
        }
        v
    };
    eprintln!("runs started: {all:?}, recovered per listener: {stats:?}");
    for mut l in listeners {
        let _ = l.stop(Duration::from_secs(1)).await;
    }
    assert_eq!(
        all.len(),
        6,
        "a live consumer's entry was run a second time"
    );
}

/// Consumer "pod/1" of the app's own group (no group "pod" exists) is a kaiju-rs listener.
/// Once, its lease was seen run out while it was no consumer of the group (another survivor
/// had just taken its entries over and removed it, or idle-consumer housekeeping removed it):
/// the live listener once left "pod/1" alone for good. "pod/1" comes back, reads 3 entries and
/// dies: its entries are taken over all the same. (Second review of issue 25.)
async fn a_consumer_named_with_a_slash_once_seen_absent_is_taken_over_when_it_dies(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    once_absent_then_dead(t, ns, "pod/1").await;
}

async fn once_absent_then_dead(t: &Transport, ns: &Namespace, name: &str) {
    let app = app(ns);
    let stream = rpc_stream(&app).into_string();
    let group = app.name.clone();
    let leases = leases_of(&app);
    let dead_lease = || run_out(t, &leases, &group, name);
    // 1. "pod/1"'s lease ran out, and "pod/1" is no consumer of the group (already removed).
    dead_lease().await;
    let seen: Seen = Arc::default();
    let settings = ListenerSettings {
        consumer_id: Some(format!("live-{}", now_ms())),
        pending_messages_time_ms: None,
        ..ListenerSettings::default()
    };
    let mut live = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    live.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // 2. "pod/1" is back (the live listener paused, so that pod/1 gets the entries), reads 3
    // entries, and crashes.
    let _: () = t
        .pool()
        .set(live.pause_key(), "1", None, None, false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    write(t, &rpc_stream(&app), 3, "x").await;
    let _: Value = t
        .pool()
        .xreadgroup(
            group.as_str(),
            name,
            Some(3),
            None,
            false,
            stream.as_str(),
            ">",
        )
        .await
        .unwrap();
    dead_lease().await;
    let _: i64 = t.pool().del(live.pause_key()).await.unwrap();
    // 3. Its entries idle for a lease, it idle for a lease: taken over within a few seconds.
    eventually(
        &format!("the entries of the dead consumer {name} taken over"),
        Duration::from_secs(30),
        || async { distinct(&seen) >= 3 },
    )
    .await;
    assert_eq!(live.stats().await.unwrap().recovered, 3);
    live.stop(Duration::from_secs(5)).await.unwrap();
}

/// The same with a name without a `/`.
async fn a_consumer_named_without_a_slash_once_seen_absent_is_taken_over_when_it_dies(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    once_absent_then_dead(t, ns, "pod-1").await;
}

/// The leases are judged by the Redis server's wall clock (`TIME`): a forward step of it (an
/// NTP step, a VM resumed, a failover to a replica whose clock is ahead), simulated for the
/// leases by moving every expiry 8 s back, while a live listener is 10 s into a 25 s handler
/// with no room for more (so not reading): one run only. A step under 6.7 s expires no lease
/// before its renewal, and a larger one makes every renewing listener "lapsed", so none
/// reports the others gone. (Second review of issue 25.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_step_of_the_redis_clock_takes_nothing_from_live_consumers() {
    let Some((t, ns)) = kaiju_tests::single().await else {
        return;
    };
    let app = app(&ns);
    let stream = rpc_stream(&app);
    let leases = leases_of(&app);
    let runs: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let handler = |who: &'static str, runs: Arc<std::sync::Mutex<Vec<String>>>| {
        move |m: kaiju_streams::Message<kaiju_tests::streams::Body>| {
            runs.lock().unwrap().push(format!("{who} {}", m.id));
            async move {
                tokio::time::sleep(Duration::from_secs(25)).await;
                Ok::<_, kaiju_streams::HandlerError>(())
            }
        }
    };
    let settings = |name: &str| ListenerSettings {
        consumer_id: Some(format!("{name}-{}", now_ms())),
        pending_messages_time_ms: None,
        // Busy: no room for another entry, so it does not read while its handler runs.
        max_batch_size: 1,
        ..ListenerSettings::default()
    };
    let mut slow = Listener::new(
        t.clone(),
        &app,
        settings("slow"),
        handler("slow", runs.clone()),
    )
    .unwrap();
    slow.start().await.unwrap();
    write(&t, &stream, 1, "x").await;
    eventually("slow runs it", Duration::from_secs(5), || async {
        !runs.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let mut other = Listener::new(
        t.clone(),
        &app,
        settings("other"),
        handler("other", runs.clone()),
    )
    .unwrap();
    other.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    // Wait for a moment where one lease has more than 8.5 s left and another less than 7.5 s.
    let shifted = loop {
        let h: std::collections::HashMap<String, String> =
            t.pool().hgetall(leases.as_str()).await.unwrap();
        let now: i64 = t
            .pool()
            .eval(
                "local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)",
                Vec::<String>::new(),
                Vec::<String>::new(),
            )
            .await
            .unwrap();
        let left: Vec<i64> = h
            .values()
            .filter_map(|v| v.rsplit(' ').next()?.parse::<i64>().ok())
            .map(|e| e - now)
            .collect();
        if left.iter().any(|l| *l > 8500) && left.iter().any(|l| *l < 7500) {
            let _: Value = t
                .pool()
                .eval(
                    "for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do \
                       local v = redis.call('HGET', KEYS[1], f) \
                       local tok, e = string.match(v, '^(.*) (%d+)$') \
                       redis.call('HSET', KEYS[1], f, tok .. ' ' .. string.format('%d', tonumber(e) - 8000)) \
                     end return 1",
                    vec![leases.as_str()],
                    Vec::<String>::new(),
                )
                .await
                .unwrap();
            break left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(6)).await;
    let all = runs.lock().unwrap().clone();
    let (a, b) = (slow.stats().await.unwrap(), other.stats().await.unwrap());
    eprintln!("lease ms left before the step: {shifted:?}\nruns: {all:?}\nslow {a:?}\nother {b:?}");
    let _ = slow.stop(Duration::from_secs(1)).await;
    let _ = other.stop(Duration::from_secs(1)).await;
    assert_eq!(all.len(), 1, "a live consumer's entry ran twice: {all:?}");
}
