//! The listener on the commands of newer servers (`XREADGROUP ... CLAIM`, `XNACK`,
//! `XTRIM ... ACKED`), keyed by what the server offers: each test proves the same guarantee on
//! every server, and asserts the older behaviour where the command is missing (Redis 7, Valkey,
//! or `KAIJU_REDIS_FEATURES_OFF=all`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kaiju_core::{Lifecycle, Namespace};
use kaiju_streams::{HandlerError, Listener, ListenerSettings, Message};
use kaiju_tests::streams::{
    Body, Seen, dead_letters, distinct, field, pending_of, recorder, rpc_stream, write,
};
use kaiju_tests::{Target, app, eventually, on_both};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::{Feature, Transport};

on_both!(
    trim_is_safe_across_two_groups,
    retries_are_handed_to_another_consumer_at_a_graceful_stop,
    claimed_entries_carry_their_delivery_counts,
    a_pending_entry_deleted_behind_the_consumers_back_is_lost_and_acked,
);

/// The ids left in `stream`.
async fn ids_in(t: &Transport, stream: &str) -> Vec<String> {
    let entries: Vec<(String, Value)> = t.pool().xrange(stream, "-", "+", None).await.unwrap();
    entries.into_iter().map(|(id, _)| id).collect()
}

/// Who holds pending entry `id` in `group` (`""`: handed back to the group), if anyone.
async fn owner(t: &Transport, stream: &str, group: &str, id: &str) -> Option<String> {
    let pending: Vec<(String, String, i64, u64)> =
        t.pool().xpending(stream, group, (id, id, 1)).await.unwrap();
    pending.into_iter().next().map(|(_, who, _, _)| who)
}

/// A second group that reads 20 of 30 entries and acks all of them but the 6th: the trim never
/// deletes the entry pending there, nor the 10 it has not read. With `XTRIM ... ACKED` it
/// deletes the acked entries behind the pending one; without, it stops at the pending one.
async fn trim_is_safe_across_two_groups(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 30, "x").await;
    let _: () = t
        .pool()
        .xgroup_create(stream.as_str(), "slow", "0", false)
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let settings = ListenerSettings {
        trim_interval_ms: 50,
        ..ListenerSettings::default()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    eventually("30 entries", Duration::from_secs(10), || async {
        distinct(&seen) >= 30
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ids_in(t, stream.as_str()).await,
        ids,
        "trimmed what the slow group has not read"
    );
    let _: Value = t
        .pool()
        .xreadgroup("slow", "s1", Some(20), None, false, stream.as_str(), ">")
        .await
        .unwrap();
    let acked: Vec<String> = ids[..20]
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, id)| id.clone())
        .collect();
    let _: u64 = t.pool().xack(stream.as_str(), "slow", acked).await.unwrap();
    let expected: Vec<String> = if t.capabilities().has(Feature::XTrimAcked) {
        std::iter::once(ids[5].clone())
            .chain(ids[20..].iter().cloned())
            .collect()
    } else {
        ids[5..].to_vec()
    };
    eventually("the trim to catch up", Duration::from_secs(5), || async {
        t.pool().xlen::<u64, _>(stream.as_str()).await.unwrap() == expected.len() as u64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ids_in(t, stream.as_str()).await, expected);
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

/// Consumer `a` fails an entry and stops while its retry waits. With `XNACK` (Redis 8.8) it
/// hands the entry back, and `b`, already reading, runs it within a second or two, far below
/// the claim time (20 s), as its second delivery. Without, the entry stays `a`'s.
async fn retries_are_handed_to_another_consumer_at_a_graceful_stop(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 1, "x").await;
    let settings = |c: &str| ListenerSettings {
        consumer_id: Some(c.into()),
        pending_messages_time_ms: Some(20_000),
        handler_timeout_ms: 1000,
        retry_backoff_ms: 2000,
        max_deliveries: 3,
        max_wait_time_ms: 100,
        ..ListenerSettings::default()
    };
    let mut a = Listener::new(t.clone(), &app, settings("a"), |_: Message<Body>| async {
        Err::<(), _>(HandlerError::retry("not now"))
    })
    .unwrap();
    a.start().await.unwrap();
    eventually("a failed the entry", Duration::from_secs(10), || async {
        a.stats().await.unwrap().retries_waiting == 1
    })
    .await;
    let deliveries: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut b = Listener::new(t.clone(), &app, settings("b"), {
        let deliveries = deliveries.clone();
        move |m: Message<Body>| {
            deliveries.lock().unwrap().push(m.deliveries);
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    })
    .unwrap();
    b.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        deliveries.lock().unwrap().is_empty(),
        "b took a live consumer's entry"
    );
    a.stop(Duration::from_secs(5)).await.unwrap();
    let stopped = Instant::now();
    if t.capabilities().has(Feature::XNack) {
        eventually(
            "b to run the handed-back entry",
            Duration::from_secs(3),
            || async { !deliveries.lock().unwrap().is_empty() },
        )
        .await;
        let took = stopped.elapsed();
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(
            *deliveries.lock().unwrap(),
            [2],
            "the failed delivery still counts"
        );
        eventually("the ack", Duration::from_secs(5), || async {
            pending_of(t, stream.as_str(), &app.name).await == 0
        })
        .await;
    } else {
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(deliveries.lock().unwrap().is_empty());
        assert_eq!(
            owner(t, stream.as_str(), &app.name, &ids[0])
                .await
                .as_deref(),
            Some("a")
        );
    }
    b.stop(Duration::from_secs(5)).await.unwrap();
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

/// Two entries another consumer left pending (idle, delivered 1 and 5 times): the listener
/// claims them with their counts, runs the first as its 2nd delivery and dead-letters the
/// second (its 6th, over `max_deliveries`) without running it. `XREADGROUP ... CLAIM` reads the
/// counts off its reply; XAUTOCLAIM asks `XPENDING`.
async fn claimed_entries_carry_their_delivery_counts(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let group = app.name.clone();
    let _: () = t
        .pool()
        .xgroup_create(stream.as_str(), group.as_str(), "0", true)
        .await
        .unwrap();
    let ids = write(t, &stream, 2, "x").await;
    let _: Value = t
        .pool()
        .xreadgroup(
            group.as_str(),
            "ghost",
            Some(2),
            None,
            false,
            stream.as_str(),
            ">",
        )
        .await
        .unwrap();
    for (id, count) in [(&ids[0], 1), (&ids[1], 5)] {
        let _: Value = t
            .pool()
            .xclaim(
                stream.as_str(),
                group.as_str(),
                "ghost",
                0,
                id.as_str(),
                Some(100_000),
                None,
                Some(count),
                false,
                true,
            )
            .await
            .unwrap();
    }
    let deliveries: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let settings = ListenerSettings {
        pending_messages_time_ms: Some(3000),
        handler_timeout_ms: 500,
        max_wait_time_ms: 100,
        ..ListenerSettings::default()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, {
        let deliveries = deliveries.clone();
        move |m: Message<Body>| {
            deliveries.lock().unwrap().push((m.id, m.deliveries));
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    })
    .unwrap();
    listener.start().await.unwrap();
    eventually("both entries settled", Duration::from_secs(10), || async {
        pending_of(t, stream.as_str(), &group).await == 0
    })
    .await;
    assert_eq!(*deliveries.lock().unwrap(), [(ids[0].clone(), 2)]);
    let dead = dead_letters(t, listener.dead_letter_key()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(field(&dead[0], "id"), Some(ids[1].as_str()));
    assert_eq!(field(&dead[0], "kind"), Some("exhausted"));
    assert_eq!(field(&dead[0], "deliveries"), Some("6"));
    let stats = listener.stats().await.unwrap();
    assert_eq!(
        (stats.claimed, stats.dead_lettered, stats.lost),
        (2, 1, 0),
        "{stats:?}"
    );
    listener.stop(Duration::from_secs(5)).await.unwrap();
    // One key at a time: in a cluster they live in different slots.
    for key in [stream.as_str(), listener.dead_letter_key()] {
        let _: i64 = t.pool().del(key).await.unwrap();
    }
}

/// An entry another consumer holds is deleted from the stream while the listener runs. A
/// `XREADGROUP ... CLAIM` read skips it and leaves it pending for ever; the slower XAUTOCLAIM
/// sweep still finds it: counted lost once, and gone from the pending list, on every server.
async fn a_pending_entry_deleted_behind_the_consumers_back_is_lost_and_acked(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let group = app.name.clone();
    let _: () = t
        .pool()
        .xgroup_create(stream.as_str(), group.as_str(), "0", true)
        .await
        .unwrap();
    let ids = write(t, &stream, 3, "x").await;
    let _: Value = t
        .pool()
        .xreadgroup(
            group.as_str(),
            "ghost",
            Some(3),
            None,
            false,
            stream.as_str(),
            ">",
        )
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let settings = ListenerSettings {
        pending_messages_time_ms: Some(1500),
        handler_timeout_ms: 500,
        max_deliveries: 3,
        max_wait_time_ms: 100,
        ..ListenerSettings::default()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    // After the listener's first sweep (at start, when nothing was idle yet).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _: u64 = t
        .pool()
        .xdel(stream.as_str(), ids[1].as_str())
        .await
        .unwrap();
    eventually(
        "the deleted entry counted lost",
        Duration::from_secs(15),
        || async {
            listener.stats().await.unwrap().lost == 1
                && pending_of(t, stream.as_str(), &group).await == 0
        },
    )
    .await;
    let handled: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    assert_eq!(handled, HashSet::from([ids[0].clone(), ids[2].clone()]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = listener.stats().await.unwrap();
    assert_eq!(
        (stats.lost, stats.processed, stats.pending),
        (1, 2, 0),
        "{stats:?}"
    );
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

/// Calls per command from `INFO commandstats` (a single node).
async fn command_calls(t: &Transport) -> std::collections::HashMap<String, u64> {
    let info: String = t
        .pool()
        .next()
        .info(Some(kaiju_transport::fred::types::InfoKind::CommandStats))
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// A measurement, not a check (run it by name, with `--ignored`, on a single node): 3,000
/// entries another consumer left pending are drained by a listener with claiming on; prints
/// the entries per second and the read-path commands per claimed entry. Compare a run on Redis
/// 8 with one under `KAIJU_REDIS_FEATURES_OFF=all`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by name"]
async fn measure_claim_drain() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let app = app(&ns);
    let stream = rpc_stream(&app);
    let group = app.name.clone();
    const N: usize = 3000;
    let _: () = t
        .pool()
        .xgroup_create(stream.as_str(), group.as_str(), "0", true)
        .await
        .unwrap();
    write(&t, &stream, N, "x").await;
    let _: Value = t
        .pool()
        .xreadgroup(
            group.as_str(),
            "ghost",
            Some(N as u64),
            None,
            false,
            stream.as_str(),
            ">",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let seen: Seen = Arc::default();
    let settings = ListenerSettings {
        pending_messages_time_ms: Some(1000),
        handler_timeout_ms: 300,
        retry_backoff_ms: 50,
        max_deliveries: 3,
        max_batch_size: 100,
        trim_delivered: false,
        ..ListenerSettings::default()
    };
    let before = command_calls(&t).await;
    let started = Instant::now();
    let mut listener = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    eventually("the drain", Duration::from_secs(120), || async {
        distinct(&seen) >= N
    })
    .await;
    let took = started.elapsed();
    let after = command_calls(&t).await;
    let stats = listener.stats().await.unwrap();
    assert_eq!(stats.claimed, N as u64, "{stats:?}");
    let per = |name: &str| {
        (after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)) as f64
            / N as f64
    };
    let reads = ["xreadgroup", "xautoclaim", "xpending"];
    eprintln!(
        "claim drain of {N}: {:.0} entries/s; per claimed entry: xreadgroup {:.3}, xautoclaim {:.3}, xpending {:.3}, xack {:.3}; read path {:.3} commands (features {:?})",
        N as f64 / took.as_secs_f64(),
        per("xreadgroup"),
        per("xautoclaim"),
        per("xpending"),
        per("xack"),
        reads.iter().map(|c| per(c)).sum::<f64>(),
        t.capabilities().features,
    );
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}
