//! kaiju-streams on a bad day: hostile entries, entries deleted behind the consumer's back,
//! handlers that panic, hang or hog the CPU, an unwritable dead-letter stream, claims that fail,
//! twin consumers, and listeners that are dropped. One test per defect of the streams review,
//! named after the behaviour it pins down.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kaiju_core::{Codec, Lifecycle, LifecycleError, Namespace};
use kaiju_streams::{
    HandlerError, Headers, Listener, ListenerSettings, Message, Outgoing, StreamError, StreamWriter,
};
use kaiju_tests::acl::acl;
use kaiju_tests::proxy::Proxy;
use kaiju_tests::streams::{
    Body, Seen, dead_letters, distinct, field, pending_of, recorder, rpc_stream, write,
};
use kaiju_tests::{Target, app, eventually, on_both};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::{Classify, Transport, TransportError};

on_both!(
    a_ten_byte_entry_declaring_a_huge_map_is_dead_lettered,
    entries_over_the_size_limits_are_dead_lettered_undecoded,
    entries_at_the_top_of_the_id_space_are_handled_and_trimmed,
    entries_with_non_utf8_fields_are_dead_lettered_and_the_rest_run,
    pending_entries_deleted_behind_the_consumers_back_are_acked_and_counted,
    own_pending_entries_beyond_one_batch_are_all_recovered_once,
    a_retry_never_takes_an_entry_another_consumer_claimed,
    a_panicking_handler_is_dead_lettered_after_max_deliveries,
    a_handler_that_never_returns_times_out_and_its_siblings_are_acked,
    a_failed_dead_letter_write_is_retried_without_rerunning_the_handler,
    idle_consumers_without_pending_entries_are_removed,
    a_second_listener_with_the_same_consumer_name_is_refused,
    write_many_reports_which_entries_were_written,
    cpu_bound_handlers_of_one_batch_run_in_parallel,
    each_handler_is_polled_only_when_it_is_woken,
    a_rejected_entry_is_dead_lettered_at_once,
);

/// XADD with raw fields (any bytes), and an explicit id or `*`.
async fn xadd_raw(t: &Transport, stream: &str, id: &str, fields: Vec<(&[u8], &[u8])>) -> String {
    let fields: Vec<(Key, Value)> = fields
        .into_iter()
        .map(|(k, v)| (Key::from(k), Value::Bytes(v.to_vec().into())))
        .collect();
    t.pool()
        .xadd(stream, false, None, id, fields)
        .await
        .unwrap()
}

/// Reads `count` new entries of the stream as `consumer` (creating the group at 0 if needed),
/// leaving them pending: the state a crashed consumer leaves behind.
async fn read_as(t: &Transport, stream: &str, group: &str, consumer: &str, count: u64) {
    let created: Result<Value, _> = t.pool().xgroup_create(stream, group, "0", true).await;
    if let Err(e) = created.classify() {
        assert!(matches!(e, TransportError::BusyGroup { .. }), "{e:?}");
    }
    let _: Value = t
        .pool()
        .xreadgroup(group, consumer, Some(count), None, false, stream, ">")
        .await
        .unwrap();
}

/// Puts a string where the dead-letter stream goes: every XADD to it fails with WRONGTYPE.
async fn block_dead_letters(t: &Transport, dead: &str) {
    let _: () = t
        .pool()
        .set(dead, "in the way", None, None, false)
        .await
        .unwrap();
}

async fn cleanup(t: &Transport, keys: &[&str]) {
    for key in keys {
        let _: Result<i64, _> = t.pool().del(*key).await;
    }
}

/// Settings for tests that count deliveries: quick retries, no claiming.
fn quick() -> ListenerSettings {
    ListenerSettings {
        retry_backoff_ms: 20,
        max_wait_time_ms: 100,
        pending_messages_time_ms: None,
        ..ListenerSettings::default()
    }
}

async fn a_ten_byte_entry_declaring_a_huge_map_is_dead_lettered(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let writer = StreamWriter::new(t.clone());
    let before = writer
        .write(&stream, &("ok".to_owned(), Some(1)), Headers::new())
        .await
        .unwrap();
    // [["x", nil], <map header declaring 2^32-1 headers>]: ten bytes that once made the decoder
    // allocate 200 GB and abort the process.
    let hostile: &[u8] = b"\x92\x92\xa1x\xc0\xdf\xff\xff\xff\xff";
    assert_eq!(hostile.len(), 10);
    let bad = xadd_raw(t, stream.as_str(), "*", vec![(b"_", hostile)]).await;
    let after = writer
        .write(&stream, &("ok".to_owned(), Some(2)), Headers::new())
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let mut listener = Listener::new(t.clone(), &app, quick(), recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    eventually("the good entries", Duration::from_secs(10), || async {
        distinct(&seen) >= 2
    })
    .await;
    eventually("the dead letter", Duration::from_secs(10), || async {
        dead_letters(t, listener.dead_letter_key()).await.len() == 1
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let mut handled = seen.lock().unwrap().clone();
    handled.sort();
    assert_eq!(handled, [before, after]);
    let letters = dead_letters(t, listener.dead_letter_key()).await;
    assert_eq!(field(&letters[0], "id"), Some(bad.as_str()));
    assert_eq!(field(&letters[0], "kind"), Some("malformed"));
    assert_eq!(listener.stats().await.unwrap().pending, 0);
    cleanup(t, &[stream.as_str(), listener.dead_letter_key()]).await;
}

/// The headers and reason of each entry a listener refused.
type Refused = Arc<Mutex<Vec<(Option<Headers>, String)>>>;

/// A handler that records what it handled, and the headers and reasons of the entries the
/// listener refused.
#[derive(Default, Clone)]
struct Refusals {
    handled: Seen,
    refused: Refused,
}

impl kaiju_streams::Handler<Body> for Refusals {
    async fn handle(&self, m: Message<Body>) -> Result<(), HandlerError> {
        self.handled.lock().unwrap().push(m.id);
        Ok(())
    }

    async fn refused(&self, headers: Option<Headers>, reason: &str) {
        self.refused
            .lock()
            .unwrap()
            .push((headers, reason.to_owned()));
    }
}

/// Issue 25 item 4: an entry over `max_entry_bytes`, or one that would be over
/// `max_decoded_bytes` once decoded, is dead-lettered with its reason and never decoded; the
/// handler hears of it with the entry's headers; an entry within both runs.
async fn entries_over_the_size_limits_are_dead_lettered_undecoded(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let writer = StreamWriter::new(t.clone());
    let mut h = Headers::new();
    h.insert("Correlation-Id", "big");
    // 20 KB of text: over max_entry_bytes (10,000).
    let long = writer
        .write(&stream, &("x".repeat(20_000), Some(1)), h.clone())
        .await
        .unwrap();
    // 2 KB of one-item arrays nested 100 deep: small, but ~280 KB decoded, over
    // max_decoded_bytes (100,000). Not even a `Body`: it is never decoded.
    let tower = [vec![0x91; 100], vec![0xc0]].concat();
    let mut nested = vec![0x92, 0xdc, 0x00, 20];
    for _ in 0..20 {
        nested.extend(&tower);
    }
    nested.extend(kaiju_core::Msgpack::WIRE.encode(&h).unwrap());
    let deep = xadd_raw(t, stream.as_str(), "*", vec![(b"_", &nested)]).await;
    let fine = writer
        .write(&stream, &("x".repeat(5_000), Some(2)), Headers::new())
        .await
        .unwrap();
    let handler = Refusals::default();
    let settings = ListenerSettings {
        max_entry_bytes: 10_000,
        max_decoded_bytes: 100_000,
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, handler.clone()).unwrap();
    listener.start().await.unwrap();
    eventually("the dead letters", Duration::from_secs(10), || async {
        dead_letters(t, listener.dead_letter_key()).await.len() == 2
            && distinct(&handler.handled) == 1
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(*handler.handled.lock().unwrap(), [fine]);
    let letters = dead_letters(t, listener.dead_letter_key()).await;
    for (id, limit) in [(&long, "max_entry_bytes"), (&deep, "max_decoded_bytes")] {
        let letter = letters
            .iter()
            .find(|l| field(l, "id") == Some(id.as_str()))
            .unwrap();
        assert_eq!(field(letter, "kind"), Some("too_large"));
        let reason = field(letter, "reason").unwrap();
        assert!(reason.contains(limit), "{reason}");
    }
    let refused = handler.refused.lock().unwrap().clone();
    assert_eq!(refused.len(), 2);
    for (headers, _) in &refused {
        let headers = headers.as_ref().expect("the headers are read on their own");
        assert_eq!(headers.correlation_id(), Some("big"));
    }
    assert_eq!(listener.stats().await.unwrap().pending, 0);
    cleanup(t, &[stream.as_str(), listener.dead_letter_key()]).await;
}

async fn entries_at_the_top_of_the_id_space_are_handled_and_trimmed(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let payload = kaiju_streams::encode(&("top".to_owned(), Some(1_i64)), &Headers::new()).unwrap();
    let top = xadd_raw(
        t,
        stream.as_str(),
        "1-18446744073709551615",
        vec![(b"_", &payload)],
    )
    .await;
    let seen: Seen = Arc::default();
    let settings = ListenerSettings {
        trim_interval_ms: 20,
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    eventually("the top entry", Duration::from_secs(10), || async {
        distinct(&seen) >= 1
    })
    .await;
    // Trimming after it must not overflow `seq + 1`: the stream empties, and the loop lives on.
    eventually("the trim", Duration::from_secs(10), || async {
        t.pool().xlen::<u64, _>(stream.as_str()).await.unwrap() == 0
    })
    .await;
    let next = write(t, &stream, 1, "after").await;
    eventually(
        "an entry after the trim",
        Duration::from_secs(10),
        || async { distinct(&seen) >= 2 },
    )
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [top, next[0].clone()]);

    // The very last id there is: nothing is above it, and trimming keeps it.
    let last = app.namespace().unwrap().stream("last").unwrap();
    let max = "18446744073709551615-18446744073709551615";
    assert_eq!(
        xadd_raw(t, last.as_str(), max, vec![(b"_", &payload)]).await,
        max
    );
    let seen: Seen = Arc::default();
    let settings = ListenerSettings {
        topic: "last".into(),
        trim_interval_ms: 20,
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    eventually("the last entry", Duration::from_secs(10), || async {
        distinct(&seen) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = listener.stats().await.unwrap();
    assert_eq!((stats.processed, stats.pending), (1, 0), "{stats:?}");
    listener.stop(Duration::from_secs(5)).await.unwrap();
    cleanup(t, &[stream.as_str(), last.as_str()]).await;
}

async fn entries_with_non_utf8_fields_are_dead_lettered_and_the_rest_run(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let mut good = write(t, &stream, 1, "a").await;
    let odd = xadd_raw(t, stream.as_str(), "*", vec![(b"\xff\xfe", b"\x00\xc1")]).await;
    good.extend(write(t, &stream, 1, "b").await);
    // A crashed consumer of the same name read all three: after the restart, its own-pending
    // read meets the odd entry first (this once blocked that consumer forever).
    read_as(t, stream.as_str(), &app.name, "stable", 10).await;
    good.extend(write(t, &stream, 2, "c").await);

    let seen: Seen = Arc::default();
    let settings = ListenerSettings {
        consumer_id: Some("stable".into()),
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    eventually("every good entry", Duration::from_secs(10), || async {
        distinct(&seen) >= 4
    })
    .await;
    eventually("the dead letter", Duration::from_secs(10), || async {
        dead_letters(t, listener.dead_letter_key()).await.len() == 1
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let mut handled = seen.lock().unwrap().clone();
    handled.sort();
    assert_eq!(handled, good);
    let letters = dead_letters(t, listener.dead_letter_key()).await;
    assert_eq!(field(&letters[0], "id"), Some(odd.as_str()));
    // The raw field survives byte for byte.
    assert!(
        letters[0]
            .iter()
            .any(|(n, v)| n == b"field:\xff\xfe" && v == b"\x00\xc1"),
        "{letters:?}"
    );
    assert_eq!(listener.stats().await.unwrap().pending, 0);
    cleanup(t, &[stream.as_str(), listener.dead_letter_key()]).await;
}

async fn pending_entries_deleted_behind_the_consumers_back_are_acked_and_counted(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    // Own pending entries, one deleted: the own-pending read returns it as [id, nil].
    let own = write(t, &stream, 3, "own").await;
    read_as(t, stream.as_str(), &app.name, "stable", 3).await;
    let _: i64 = t.pool().xdel(stream.as_str(), &own[1]).await.unwrap();
    // Another consumer's pending entries, one deleted: XAUTOCLAIM reports it.
    let theirs = write(t, &stream, 3, "theirs").await;
    read_as(t, stream.as_str(), &app.name, "crashed", 3).await;
    let _: i64 = t.pool().xdel(stream.as_str(), &theirs[1]).await.unwrap();
    let fresh = write(t, &stream, 2, "fresh").await;

    let seen: Seen = Arc::default();
    let settings = ListenerSettings {
        consumer_id: Some("stable".into()),
        pending_messages_time_ms: Some(300),
        handler_timeout_ms: 200,
        max_deliveries: 2,
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    eventually(
        "every entry still there",
        Duration::from_secs(10),
        || async { distinct(&seen) >= 6 },
    )
    .await;
    eventually("nothing pending", Duration::from_secs(10), || async {
        pending_of(t, stream.as_str(), &app.name).await == 0
    })
    .await;
    let stats = listener.stats().await.unwrap();
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let mut handled = seen.lock().unwrap().clone();
    handled.sort();
    let mut expected = vec![
        own[0].clone(),
        own[2].clone(),
        theirs[0].clone(),
        theirs[2].clone(),
    ];
    expected.extend(fresh);
    expected.sort();
    assert_eq!(handled, expected);
    assert_eq!(stats.lost, 2, "{stats:?}");
    cleanup(t, &[stream.as_str()]).await;
}

async fn own_pending_entries_beyond_one_batch_are_all_recovered_once(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 25, "x").await;
    read_as(t, stream.as_str(), &app.name, "stable", 25).await;
    let deliveries: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let log = deliveries.clone();
    let settings = ListenerSettings {
        consumer_id: Some("stable".into()),
        max_batch_size: 10,
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, move |m: Message<Body>| {
        log.lock().unwrap().push((m.id.clone(), m.deliveries));
        std::future::ready(Ok::<_, HandlerError>(()))
    })
    .unwrap();
    listener.start().await.unwrap();
    eventually(
        "all 25 own pending entries",
        Duration::from_secs(10),
        || async { deliveries.lock().unwrap().len() >= 25 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let mut seen = deliveries.lock().unwrap().clone();
    seen.sort();
    // Each exactly once, as its second delivery: paging did not re-read (and count) any entry.
    let expected: Vec<(String, u64)> = {
        let mut e: Vec<_> = ids.into_iter().map(|id| (id, 2)).collect();
        e.sort();
        e
    };
    assert_eq!(seen, expected);
    assert_eq!(listener.stats().await.unwrap().pending, 0);
    cleanup(t, &[stream.as_str()]).await;
}

async fn a_retry_never_takes_an_entry_another_consumer_claimed(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 1, "x").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let settings = ListenerSettings {
        retry_backoff_ms: 800,
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, move |_m: Message<Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err::<(), HandlerError>("transient".into()))
    })
    .unwrap();
    listener.start().await.unwrap();
    eventually("the first delivery", Duration::from_secs(5), || async {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    // While the retry waits out its backoff, another consumer claims the entry (and would be
    // running it now).
    let claimed: Value = t
        .pool()
        .xclaim(
            stream.as_str(),
            listener.group(),
            "other",
            0,
            ids[0].as_str(),
            None,
            None,
            None,
            false,
            true,
        )
        .await
        .unwrap();
    assert_eq!(claimed.into_array().len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the retry took the entry back from the consumer that claimed it"
    );
    let owner: Vec<(String, String, u64, u64)> = t
        .pool()
        .xpending(stream.as_str(), listener.group(), ("-", "+", 10))
        .await
        .unwrap();
    assert_eq!(owner.len(), 1);
    assert_eq!(owner[0].1, "other");
    cleanup(t, &[stream.as_str()]).await;
}

async fn a_panicking_handler_is_dead_lettered_after_max_deliveries(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 1, "boom").await;
    let settings = ListenerSettings {
        max_deliveries: 2,
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, |m: Message<Body>| async move {
        if m.body.0 == "boom" {
            panic!("handler bug");
        }
        Ok::<_, HandlerError>(())
    })
    .unwrap();
    listener.start().await.unwrap();
    eventually("the dead letter", Duration::from_secs(10), || async {
        dead_letters(t, listener.dead_letter_key()).await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A stop sends the last acks; the counts are final after it.
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let stats = listener.stats().await.unwrap();
    let letters = dead_letters(t, listener.dead_letter_key()).await;
    assert_eq!(letters.len(), 1, "retried after the dead letter");
    assert_eq!(field(&letters[0], "id"), Some(ids[0].as_str()));
    assert_eq!(field(&letters[0], "kind"), Some("panicked"));
    assert!(
        field(&letters[0], "reason")
            .unwrap()
            .contains("handler bug")
    );
    assert_eq!(
        (
            stats.panicked,
            stats.failed,
            stats.dead_lettered,
            stats.pending
        ),
        (2, 2, 1, 0),
        "{stats:?}"
    );
    cleanup(t, &[stream.as_str(), listener.dead_letter_key()]).await;
}

async fn a_handler_that_never_returns_times_out_and_its_siblings_are_acked(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let writer = StreamWriter::new(t.clone());
    let hang = writer
        .write(&stream, &("hang".to_owned(), None::<i64>), Headers::new())
        .await
        .unwrap();
    write(t, &stream, 4, "quick").await;
    let settings = ListenerSettings {
        handler_timeout_ms: 1500,
        max_deliveries: 2,
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, |m: Message<Body>| async move {
        if m.body.0 == "hang" {
            std::future::pending::<()>().await;
        }
        Ok::<_, HandlerError>(())
    })
    .unwrap();
    listener.start().await.unwrap();
    // The four siblings are acked while the hung one still runs.
    eventually("the siblings' acks", Duration::from_secs(1), || async {
        pending_of(t, stream.as_str(), &app.name).await == 1
    })
    .await;
    eventually("the timeouts", Duration::from_secs(10), || async {
        dead_letters(t, listener.dead_letter_key()).await.len() == 1
    })
    .await;
    // The ack follows the dead letter.
    eventually("the last ack", Duration::from_secs(5), || async {
        pending_of(t, stream.as_str(), &app.name).await == 0
    })
    .await;
    let stats = listener.stats().await.unwrap();
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let letters = dead_letters(t, listener.dead_letter_key()).await;
    assert_eq!(field(&letters[0], "id"), Some(hang.as_str()));
    assert_eq!(field(&letters[0], "kind"), Some("timed_out"));
    assert_eq!(
        (stats.processed, stats.timed_out, stats.pending),
        (4, 2, 0),
        "{stats:?}"
    );
    cleanup(t, &[stream.as_str(), listener.dead_letter_key()]).await;
}

async fn a_failed_dead_letter_write_is_retried_without_rerunning_the_handler(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let dead = app.namespace().unwrap().dead_letter_stream("rpc").unwrap();
    block_dead_letters(t, dead.as_str()).await;
    let ids = write(t, &stream, 1, "unknown.method").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut listener = Listener::new(t.clone(), &app, quick(), move |_m: Message<Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err::<(), _>(HandlerError::reject("no such method")))
    })
    .unwrap();
    listener.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(pending_of(t, stream.as_str(), &app.name).await, 1);
    let _: i64 = t.pool().del(dead.as_str()).await.unwrap();
    eventually("the dead letter", Duration::from_secs(10), || async {
        t.pool().xlen::<u64, _>(dead.as_str()).await.unwrap_or(0) == 1
    })
    .await;
    eventually("the ack", Duration::from_secs(5), || async {
        pending_of(t, stream.as_str(), &app.name).await == 0
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the handler ran again");
    let letters = dead_letters(t, dead.as_str()).await;
    assert_eq!(field(&letters[0], "id"), Some(ids[0].as_str()));
    assert_eq!(field(&letters[0], "reason"), Some("no such method"));
    cleanup(t, &[stream.as_str(), dead.as_str()]).await;
}

async fn idle_consumers_without_pending_entries_are_removed(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    write(t, &stream, 1, "x").await;
    read_as(t, stream.as_str(), &app.name, "gone-busy", 1).await;
    let _: Value = t
        .pool()
        .xgroup_createconsumer(stream.as_str(), &app.name, "gone-idle")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settings = ListenerSettings {
        consumer_id: Some("live".into()),
        remove_idle_consumers_ms: Some(200),
        trim_interval_ms: 50,
        ..quick()
    };
    let seen: Seen = Arc::default();
    let mut listener = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    let consumers = || async {
        let all: Vec<HashMap<String, Value>> = t
            .pool()
            .xinfo_consumers(stream.as_str(), app.name.as_str())
            .await
            .unwrap();
        let mut names: Vec<String> = all.iter().map(|c| c["name"].as_string().unwrap()).collect();
        names.sort();
        names
    };
    eventually(
        "the idle consumer's removal",
        Duration::from_secs(5),
        || async { !consumers().await.contains(&"gone-idle".to_owned()) },
    )
    .await;
    // A consumer with a pending entry is kept, however idle: deleting it would drop the entry.
    assert_eq!(consumers().await, ["gone-busy", "live"]);
    assert!(listener.stats().await.unwrap().consumers_removed >= 1);
    listener.stop(Duration::from_secs(5)).await.unwrap();
    cleanup(t, &[stream.as_str()]).await;
}

async fn a_second_listener_with_the_same_consumer_name_is_refused(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let settings = ListenerSettings {
        consumer_id: Some("pod-0".into()),
        ..quick()
    };
    let seen: Seen = Arc::default();
    let mut first = Listener::new(t.clone(), &app, settings.clone(), recorder(&seen)).unwrap();
    first.start().await.unwrap();
    let mut twin = Listener::new(t.clone(), &app, settings.clone(), recorder(&seen)).unwrap();
    let started = Instant::now();
    let refused = twin.start().await;
    match refused {
        Err(LifecycleError::Failed { source, .. }) => {
            let error = source.downcast_ref::<StreamError>().unwrap();
            assert!(
                matches!(error, StreamError::ConsumerInUse { consumer } if consumer == "pod-0"),
                "{error:?}"
            );
        }
        other => panic!("the twin started: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(8));
    // Once the first stops, the name is free at once.
    first.stop(Duration::from_secs(5)).await.unwrap();
    let mut next = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    let started = Instant::now();
    next.start().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    next.stop(Duration::from_secs(5)).await.unwrap();
    let stream = rpc_stream(&app);
    let leases = app.namespace().unwrap().stream_consumers("rpc").unwrap();
    cleanup(t, &[stream.as_str(), leases.as_str()]).await;
}

async fn write_many_reports_which_entries_were_written(t: &Transport, ns: &Namespace, _: Target) {
    let one = ns.key("one").unwrap();
    let wrong = ns.key("wrong").unwrap();
    let two = ns.key("two").unwrap();
    let _: () = t
        .pool()
        .set(wrong.as_str(), "a string", None, None, false)
        .await
        .unwrap();
    let writer = StreamWriter::new(t.clone());
    let body = ("m".to_owned(), Some(1_i64));
    let entry = |stream| Outgoing {
        stream,
        body: &body,
        headers: Headers::new(),
    };
    let result = writer
        .write_many(vec![entry(&one), entry(&wrong), entry(&two)])
        .await;
    let Err(StreamError::PartialWrite { ids, error }) = result else {
        panic!("{result:?}");
    };
    assert!(error.to_string().contains("wrong type"), "{error}");
    assert_eq!(ids.len(), 3);
    assert!(ids[1].is_none());
    let stored: Vec<(String, Value)> = t.pool().xrange(one.as_str(), "-", "+", None).await.unwrap();
    assert_eq!(Some(&stored[0].0), ids[0].as_ref());
    let stored: Vec<(String, Value)> = t.pool().xrange(two.as_str(), "-", "+", None).await.unwrap();
    assert_eq!(Some(&stored[0].0), ids[2].as_ref());
    cleanup(t, &[one.as_str(), wrong.as_str(), two.as_str()]).await;
}

async fn cpu_bound_handlers_of_one_batch_run_in_parallel(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    write(t, &stream, 2, "cpu").await;
    let spans: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let log = spans.clone();
    let mut listener = Listener::new(t.clone(), &app, quick(), move |_m: Message<Body>| {
        let log = log.clone();
        async move {
            let start = Instant::now();
            // Blocks its thread, as CPU-bound work does.
            std::thread::sleep(Duration::from_millis(300));
            log.lock().unwrap().push((start, Instant::now()));
            Ok::<_, HandlerError>(())
        }
    })
    .unwrap();
    listener.start().await.unwrap();
    eventually("both handlers", Duration::from_secs(10), || async {
        spans.lock().unwrap().len() == 2
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let spans = spans.lock().unwrap().clone();
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "the two handlers ran one after the other"
    );
    cleanup(t, &[stream.as_str()]).await;
}

/// Counts the polls of the future it wraps.
struct Counted<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

async fn each_handler_is_polled_only_when_it_is_woken(t: &Transport, ns: &Namespace, _: Target) {
    const N: usize = 50;
    let app = app(ns);
    let stream = rpc_stream(&app);
    write(t, &stream, N, "sleep").await;
    let polls = Arc::new(AtomicUsize::new(0));
    let (counter, done) = (polls.clone(), Arc::new(AtomicUsize::new(0)));
    let finished = done.clone();
    let settings = ListenerSettings {
        max_batch_size: N,
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, move |m: Message<Body>| {
        let finished = finished.clone();
        let ms = 5 + 3 * m.body.1.unwrap_or(0) as u64;
        Counted {
            inner: Box::pin(async move {
                // Each handler wakes once, at its own time.
                tokio::time::sleep(Duration::from_millis(ms)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok::<_, HandlerError>(())
            }),
            polls: counter.clone(),
        }
    })
    .unwrap();
    listener.start().await.unwrap();
    eventually("every handler", Duration::from_secs(10), || async {
        done.load(Ordering::SeqCst) == N
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    // About 2 polls each (start, wake-up); polling every handler on every wake-up would be
    // about N²/2 = 1250.
    let polls = polls.load(Ordering::Relaxed);
    assert!(polls <= 3 * N, "{polls} polls for {N} handlers");
    cleanup(t, &[stream.as_str()]).await;
}

async fn a_rejected_entry_is_dead_lettered_at_once(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 1, "nope").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut listener = Listener::new(t.clone(), &app, quick(), move |m: Message<Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err::<(), _>(HandlerError::reject(format!(
            "method not found: {}",
            m.body.0
        ))))
    })
    .unwrap();
    listener.start().await.unwrap();
    eventually("the dead letter", Duration::from_secs(10), || async {
        dead_letters(t, listener.dead_letter_key()).await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A stop sends the last acks; the counts are final after it.
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let stats = listener.stats().await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a rejected entry was retried"
    );
    let letters = dead_letters(t, listener.dead_letter_key()).await;
    assert_eq!(field(&letters[0], "id"), Some(ids[0].as_str()));
    assert_eq!(field(&letters[0], "kind"), Some("rejected"));
    assert_eq!(field(&letters[0], "reason"), Some("method not found: nope"));
    assert_eq!(field(&letters[0], "deliveries"), Some("1"));
    assert_eq!(
        (
            stats.rejected,
            stats.retried,
            stats.dead_lettered,
            stats.pending
        ),
        (1, 0, 1, 0),
        "{stats:?}"
    );
    cleanup(t, &[stream.as_str(), listener.dead_letter_key()]).await;
}

/// A claim that fails (here: the ACL user loses the right to run scripts for a while) leaves the
/// retry in the schedule; once claiming works again, the entry is retried. Single node only: the
/// ACL change is per server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_claim_fails_is_claimed_later() {
    let Some(admin) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let app = app(&ns);
    let user = format!("streams-{}", app.name);
    acl(
        &admin,
        &["SETUSER", &user, "on", ">pw", "~*", "&*", "+@all"],
    )
    .await;
    let mut settings = kaiju_tests::settings(Target::Single).unwrap();
    settings.username = Some(user.clone());
    settings.password = Some("pw".into());
    let t = Transport::connect(&settings).await.unwrap();
    let stream = rpc_stream(&app);
    write(&t, &stream, 1, "x").await;
    let deliveries: Arc<Mutex<Vec<u64>>> = Arc::default();
    let log = deliveries.clone();
    let listener_settings = ListenerSettings {
        retry_backoff_ms: 300,
        ..quick()
    };
    let mut listener = Listener::new(
        t.clone(),
        &app,
        listener_settings,
        move |m: Message<Body>| {
            log.lock().unwrap().push(m.deliveries);
            std::future::ready(if m.deliveries == 1 {
                Err::<(), HandlerError>("transient".into())
            } else {
                Ok(())
            })
        },
    )
    .unwrap();
    listener.start().await.unwrap();
    eventually("the first delivery", Duration::from_secs(5), || async {
        deliveries.lock().unwrap().len() == 1
    })
    .await;
    acl(&admin, &["SETUSER", &user, "-evalsha", "-eval", "-xclaim"]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(deliveries.lock().unwrap().len(), 1);
    acl(&admin, &["SETUSER", &user, "+evalsha", "+eval", "+xclaim"]).await;
    eventually("the retry", Duration::from_secs(5), || async {
        deliveries.lock().unwrap().len() == 2
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(*deliveries.lock().unwrap(), [1, 2]);
    assert_eq!(listener.stats().await.unwrap().pending, 0);
    cleanup(&t, &[stream.as_str()]).await;
    t.close().await.unwrap();
    acl(&admin, &["DELUSER", &user]).await;
}

/// Dropping a running listener, or a stop that runs past its deadline, closes its blocking
/// connection (checked with CLIENT LIST on a server of the test's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_timed_out_listeners_close_their_connections() {
    let Some((_server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let clients = || kaiju_tests::client_count(&t);
    let baseline = clients().await;
    let ns = kaiju_tests::namespace();
    let app = app(&ns);
    for round in 0..5 {
        let seen: Seen = Arc::default();
        let mut listener = Listener::new(t.clone(), &app, quick(), recorder(&seen)).unwrap();
        listener.start().await.unwrap();
        assert_eq!(clients().await, baseline + 1, "round {round}");
        drop(listener);
        kaiju_tests::connections_back_to(
            &t,
            baseline,
            "the dropped listener's connection to close",
        )
        .await;
    }
    let stream = rpc_stream(&app);
    write(&t, &stream, 1, "slow").await;
    let mut slow = Listener::new(t.clone(), &app, quick(), |_m: Message<Body>| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, HandlerError>(())
    })
    .unwrap();
    slow.start().await.unwrap();
    eventually(
        "the slow entry to be read",
        Duration::from_secs(5),
        || async { pending_of(&t, stream.as_str(), &app.name).await == 1 },
    )
    .await;
    let stopped = slow.stop(Duration::from_millis(200)).await;
    assert!(
        matches!(stopped, Err(LifecycleError::StopTimeout { .. })),
        "{stopped:?}"
    );
    kaiju_tests::connections_back_to(&t, baseline, "the stopped listener's connection to close")
        .await;
    t.close().await.unwrap();
}

/// Trimming reads the groups' positions and trims in one script, so a group created (or an
/// entry read) in between can never lose entries it needs. Checked on the wire: on a server of
/// the test's own, MONITOR shows every XTRIM and XINFO of the listener inside a script, never
/// sent on their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_reads_the_groups_and_trims_in_one_script() {
    let Some((server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let monitor = kaiju_tests::observe::Monitor::start(&server, &t).await;
    let ns = kaiju_tests::namespace();
    let app = app(&ns);
    let stream = rpc_stream(&app);
    let seen: Seen = Arc::default();
    let settings = ListenerSettings {
        trim_interval_ms: 20,
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    write(&t, &stream, 20, "x").await;
    eventually("the trim", Duration::from_secs(10), || async {
        t.pool().xlen::<u64, _>(stream.as_str()).await.unwrap() == 0
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    t.close().await.unwrap();
    let lines = monitor.lines();
    let trims: Vec<&String> = lines.iter().filter(|l| l.contains("\"XTRIM\"")).collect();
    assert!(!trims.is_empty(), "no XTRIM seen at all");
    // XTRIM only inside the script that reads the groups. (XINFO GROUPS is also sent outside
    // scripts, by the sampling of the lag and pending metrics every 5 s.)
    for line in lines.iter().filter(|l| l.contains("\"XTRIM\"")) {
        assert!(line.contains(" lua]"), "sent outside a script: {line}");
    }
}

// --- Found by the adversarial review of the hardened listener ---

on_both!(
    an_entry_that_keeps_killing_its_consumer_is_dead_lettered,
    start_after_a_timed_out_stop_redelivers_what_was_unfinished,
    a_slow_entry_does_not_hold_up_the_others,
    an_unwritable_dead_letter_does_not_hold_up_the_others,
    a_handler_that_blocks_past_its_timeout_is_counted_timed_out,
    a_cancelled_stop_keeps_the_run_attached,
    an_idle_listener_stops_at_once,
    failed_entries_waiting_in_memory_are_bounded,
);

async fn an_entry_that_keeps_killing_its_consumer_is_dead_lettered(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 1, "poison").await;
    let deliveries: Arc<Mutex<Vec<u64>>> = Arc::default();
    let settings = ListenerSettings {
        consumer_id: Some("crashing".into()),
        max_deliveries: 3,
        ..quick()
    };
    // Each run hangs on the entry and is then dropped: a process that dies on it, restarted.
    for _ in 0..5 {
        let log = deliveries.clone();
        let mut listener = Listener::new(
            t.clone(),
            &app,
            settings.clone(),
            move |m: Message<Body>| {
                log.lock().unwrap().push(m.deliveries);
                async {
                    std::future::pending::<()>().await;
                    Ok::<_, HandlerError>(())
                }
            },
        )
        .unwrap();
        listener.start().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(listener);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let letters = dead_letters(
        t,
        &app.namespace()
            .unwrap()
            .dead_letter_stream("rpc")
            .unwrap()
            .into_string(),
    )
    .await;
    assert_eq!(
        *deliveries.lock().unwrap(),
        [1, 2, 3],
        "run after max_deliveries"
    );
    assert_eq!(letters.len(), 1);
    assert_eq!(field(&letters[0], "id"), Some(ids[0].as_str()));
    assert_eq!(field(&letters[0], "kind"), Some("exhausted"));
    assert_eq!(pending_of(t, stream.as_str(), &app.name).await, 0);
    let dead = app.namespace().unwrap().dead_letter_stream("rpc").unwrap();
    cleanup(t, &[stream.as_str(), dead.as_str()]).await;
}

async fn start_after_a_timed_out_stop_redelivers_what_was_unfinished(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    write(t, &stream, 3, "slow").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut listener = Listener::new(t.clone(), &app, quick(), move |m: Message<Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if m.deliveries == 1 {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Ok::<_, HandlerError>(())
        }
    })
    .unwrap();
    listener.start().await.unwrap();
    eventually("the first deliveries", Duration::from_secs(5), || async {
        calls.load(Ordering::SeqCst) == 3
    })
    .await;
    let stopped = listener.stop(Duration::from_millis(200)).await;
    assert!(matches!(stopped, Err(LifecycleError::StopTimeout { .. })));
    listener.start().await.unwrap();
    eventually(
        "the unfinished entries, again",
        Duration::from_secs(10),
        || async { pending_of(t, stream.as_str(), &app.name).await == 0 },
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    listener.stop(Duration::from_secs(5)).await.unwrap();
    cleanup(t, &[stream.as_str()]).await;
}

async fn a_slow_entry_does_not_hold_up_the_others(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let writer = StreamWriter::new(t.clone());
    writer
        .write(&stream, &("slow".to_owned(), None::<i64>), Headers::new())
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let mut listener = Listener::new(t.clone(), &app, quick(), move |m: Message<Body>| {
        let log = log.clone();
        async move {
            if m.body.0 == "slow" {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            log.lock().unwrap().push(m.id);
            Ok::<_, HandlerError>(())
        }
    })
    .unwrap();
    listener.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(t, &stream, 100, "quick").await;
    // With one place held by the slow entry, the other nine keep reading.
    eventually("the quick entries", Duration::from_secs(3), || async {
        distinct(&seen) >= 100
    })
    .await;
    listener.stop(Duration::from_secs(10)).await.unwrap();
    cleanup(t, &[stream.as_str()]).await;
}

async fn an_unwritable_dead_letter_does_not_hold_up_the_others(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let dead = app.namespace().unwrap().dead_letter_stream("rpc").unwrap();
    block_dead_letters(t, dead.as_str()).await;
    xadd_raw(t, stream.as_str(), "*", vec![(b"no-payload", b"x")]).await;
    let seen: Seen = Arc::default();
    let mut listener = Listener::new(t.clone(), &app, quick(), recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    write(t, &stream, 100, "good").await;
    eventually("the good entries", Duration::from_secs(3), || async {
        distinct(&seen) >= 100
    })
    .await;
    let _: i64 = t.pool().del(dead.as_str()).await.unwrap();
    eventually("the dead letter", Duration::from_secs(10), || async {
        pending_of(t, stream.as_str(), &app.name).await == 0
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    cleanup(t, &[stream.as_str(), dead.as_str()]).await;
}

async fn a_handler_that_blocks_past_its_timeout_is_counted_timed_out(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    write(t, &stream, 1, "blocking").await;
    let settings = ListenerSettings {
        handler_timeout_ms: 200,
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, |_m: Message<Body>| async {
        std::thread::sleep(Duration::from_millis(600));
        Ok::<_, HandlerError>(())
    })
    .unwrap();
    listener.start().await.unwrap();
    eventually("the late handler", Duration::from_secs(5), || async {
        listener.stats().await.unwrap().processed == 1
    })
    .await;
    let stats = listener.stats().await.unwrap();
    listener.stop(Duration::from_secs(5)).await.unwrap();
    // Its work is done (it returned Ok), so it is acked; but it overran, and says so.
    assert_eq!((stats.processed, stats.timed_out), (1, 1), "{stats:?}");
    cleanup(t, &[stream.as_str()]).await;
}

async fn a_cancelled_stop_keeps_the_run_attached(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    write(t, &stream, 1, "slow").await;
    let settings = ListenerSettings {
        consumer_id: Some("one".into()),
        ..quick()
    };
    let started: Seen = Arc::default();
    let log = started.clone();
    let mut listener = Listener::new(
        t.clone(),
        &app,
        settings.clone(),
        move |m: Message<Body>| {
            log.lock().unwrap().push(m.id);
            async {
                tokio::time::sleep(Duration::from_secs(6)).await;
                Ok::<_, HandlerError>(())
            }
        },
    )
    .unwrap();
    listener.start().await.unwrap();
    eventually("the slow entry", Duration::from_secs(5), || async {
        distinct(&started) == 1
    })
    .await;
    // The caller gives up on the stop after 100 ms.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        listener.stop(Duration::from_secs(10)),
    )
    .await;
    assert!(gave_up.is_err());
    // The run is still stopping: it may not be started twice, and the name is still taken.
    assert!(matches!(
        listener.start().await,
        Err(LifecycleError::AlreadyStarted { .. })
    ));
    let mut twin = Listener::new(t.clone(), &app, settings, recorder(&Seen::default())).unwrap();
    assert!(
        twin.start().await.is_err(),
        "a twin started while the run was stopping"
    );
    listener.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(pending_of(t, stream.as_str(), &app.name).await, 0);
    cleanup(t, &[stream.as_str()]).await;
}

async fn an_idle_listener_stops_at_once(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let settings = ListenerSettings {
        max_wait_time_ms: 10_000,
        ..quick()
    };
    let mut listener =
        Listener::new(t.clone(), &app, settings, recorder(&Seen::default())).unwrap();
    listener.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = Instant::now();
    listener.stop(Duration::from_secs(2)).await.unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    let stream = rpc_stream(&app);
    cleanup(t, &[stream.as_str()]).await;
}

async fn failed_entries_waiting_in_memory_are_bounded(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    write(t, &stream, 1500, "failing").await;
    let settings = ListenerSettings {
        max_batch_size: 2,
        retry_backoff_ms: 60_000,
        handler_timeout_ms: 1000,
        pending_messages_time_ms: Some(600_000),
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, |_m: Message<Body>| {
        std::future::ready(Err::<(), HandlerError>("down".into()))
    })
    .unwrap();
    listener.start().await.unwrap();
    eventually("every first delivery", Duration::from_secs(20), || async {
        listener.stats().await.unwrap().failed >= 1500
    })
    .await;
    let stats = listener.stats().await.unwrap();
    listener.stop(Duration::from_secs(5)).await.unwrap();
    // 2 places x 100: the rest waits in Redis, still pending, for the claim pass.
    assert_eq!(stats.retries_waiting, 200, "{stats:?}");
    assert_eq!(stats.pending, 1500, "{stats:?}");
    cleanup(t, &[stream.as_str()]).await;
}

/// A read connection that goes half-open (nothing arrives, nothing closes) is replaced; the
/// listener reads again and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_read_connection_is_replaced() {
    let Some((proxy, through, direct, app, stream)) = behind_a_proxy().await else {
        return;
    };
    let seen: Seen = Arc::default();
    let mut listener = Listener::new(through, &app, quick(), recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    let first = write(&direct, &stream, 10, "before").await;
    eventually("the first entries", Duration::from_secs(5), || async {
        distinct(&seen) >= first.len()
    })
    .await;
    proxy.cut_existing();
    let second = write(&direct, &stream, 10, "after").await;
    eventually(
        "the entries after the cut",
        Duration::from_secs(20),
        || async { distinct(&seen) >= first.len() + second.len() },
    )
    .await;
    eventually("nothing pending", Duration::from_secs(10), || async {
        pending_of(&direct, stream.as_str(), &app.name).await == 0
    })
    .await;
    drop(listener);
    cleanup(&direct, &[stream.as_str()]).await;
}

/// An entry a listener is still working on is marked as in progress (its idle time in Redis
/// reset) every quarter of the claim time, so other consumers' claim passes leave it alone
/// however long it takes within its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_in_progress_never_look_abandoned() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let stream = rpc_stream(&app);
    write(&t, &stream, 1, "slow").await;
    let settings = ListenerSettings {
        handler_timeout_ms: 5500,
        pending_messages_time_ms: Some(6000),
        ..quick()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, |_m: Message<Body>| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, HandlerError>(())
    })
    .unwrap();
    listener.start().await.unwrap();
    let mut most_idle = 0;
    let began = Instant::now();
    while began.elapsed() < Duration::from_millis(4800) {
        let pending: Vec<(String, String, u64, u64)> = t
            .pool()
            .xpending(stream.as_str(), app.name.as_str(), ("-", "+", 10))
            .await
            .unwrap();
        if let Some((_, _, idle, deliveries)) = pending.first() {
            most_idle = most_idle.max(*idle);
            assert_eq!(*deliveries, 1, "touching must not count as a delivery");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    listener.stop(Duration::from_secs(5)).await.unwrap();
    // Checked every 1.5 s (a quarter of the claim time), so touched by the time it has been
    // held about half the claim time: never near the 6 s claim time (untouched, this 5 s
    // handler's entry would reach 4.8 s).
    assert!(most_idle < 3600, "idle reached {most_idle} ms");
    cleanup(&t, &[stream.as_str()]).await;
}

/// A listener cut off from Redis for longer than its consumer-name lease, whose name another
/// instance took meanwhile, stops reading when it is back, instead of running that instance's
/// entries too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_name_was_taken_over_stops_reading() {
    let Some((proxy, through, direct, app, stream)) = behind_a_proxy().await else {
        return;
    };
    let settings = ListenerSettings {
        consumer_id: Some("pod-0".into()),
        ..quick()
    };
    let (first, second): (Seen, Seen) = (Seen::default(), Seen::default());
    let mut cut_off = Listener::new(through, &app, settings.clone(), recorder(&first)).unwrap();
    cut_off.start().await.unwrap();
    proxy.black_hole(true);
    // The replacement waits out the lease it cannot see renewed, then takes the name.
    let mut replacement = Listener::new(direct.clone(), &app, settings, recorder(&second)).unwrap();
    replacement.start().await.unwrap();
    // The network comes back (old connections stay dead; new ones work).
    proxy.cut_existing();
    proxy.black_hole(false);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let ids = write(&direct, &stream, 20, "after").await;
    eventually("the entries", Duration::from_secs(10), || async {
        distinct(&second) >= ids.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        distinct(&first),
        0,
        "the cut-off listener read entries of the name it lost"
    );
    drop(cut_off);
    replacement.stop(Duration::from_secs(5)).await.unwrap();
    cleanup(&direct, &[stream.as_str()]).await;
}

/// A proxy in front of the single node, a transport through it (1 s command timeout), one
/// straight to the server, and a fresh app with its stream.
async fn behind_a_proxy() -> Option<(
    Proxy,
    Transport,
    Transport,
    kaiju_core::AppSettings,
    kaiju_core::Key,
)> {
    let (proxy, through, direct) = kaiju_tests::through_proxy().await?;
    let app = app(&kaiju_tests::namespace());
    let stream = rpc_stream(&app);
    Some((proxy, through, direct, app, stream))
}

/// `CLIENT UNBLOCK <id> ERROR` from another client (any user with the listener row's
/// `+client|unblock` may send it, to any client: Redis has no narrower form) ends the
/// listener's blocking read with an `UNBLOCKED` error. It used to count as a failed read: a
/// warning and a 200 ms pause each time, so another app could flood the logs and hold up new
/// entries (adversarial review). Now it is a read that found nothing, and the next one starts
/// at once. On a server of the test's own, so no other test's reads are unblocked.
#[tokio::test]
async fn another_clients_unblock_is_an_empty_read_not_a_failure() {
    let Some((_server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let (captured, _guard) = kaiju_tests::observe::Captured::this_thread(tracing::Level::WARN);
    let ns = kaiju_tests::namespace();
    let app = app(&ns);
    let stream = rpc_stream(&app);
    let seen: Seen = Arc::default();
    let mut listener = Listener::new(t.clone(), &app, quick(), recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    let mut unblocked = 0;
    for _ in 0..20 {
        let clients: String = t
            .pool()
            .client_list::<String, String>(None, None)
            .await
            .unwrap();
        for id in clients
            .lines()
            .filter(|l| l.contains("cmd=xreadgroup"))
            .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("id=")))
        {
            let unblock =
                kaiju_transport::fred::types::CustomCommand::new_static("CLIENT", None, false);
            let n: i64 = t
                .pool()
                .custom(unblock, vec!["UNBLOCK", id, "ERROR"])
                .await
                .unwrap();
            unblocked += n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(unblocked > 0, "the listener's read was never found blocked");
    write(&t, &stream, 1, "after").await;
    eventually("the entry", Duration::from_secs(10), || async {
        seen.lock().unwrap().len() == 1
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let text = captured.text();
    assert!(!text.contains("read failed"), "{text}");
}
