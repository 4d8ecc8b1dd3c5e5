//! A stream bricked by an entry with the largest id (or an id far in the future): no ACL rule
//! prevents it, so the listener and `kaiju streams` report it, and `admin::repair_ids` mends it
//! without losing an entry, a group or a pending entry.

use std::time::Duration;

use kaiju_core::{Lifecycle, Namespace};
use kaiju_streams::admin::{self, DeadLetters, IdProblem};
use kaiju_streams::{Headers, Listener, ListenerSettings, StreamWriter};
use kaiju_tests::{Target, on_both};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;

const MAX_ID: &str = "18446744073709551615-18446744073709551615";

/// Whether the server sets a stream's last id back past a deleted entry: Redis before 7.2 only
/// (7.2 made `XSETID` refuse it, and Valkey followed), so only there is a stream repaired in
/// place. Elsewhere `repair_ids` refuses before it changes anything.
fn repairs_in_place(t: &Transport) -> bool {
    let caps = t.capabilities();
    caps.kind == kaiju_transport::ServerKind::Redis
        && caps.redis_version < kaiju_transport::Version::new(7, 2, 0)
}

/// On a server that cannot repair in place: `repair_ids` says so, and has moved nothing (the
/// stream's length and the dead letters are as they were).
async fn refused_without_change(t: &Transport, stream: &str, dead: &str) {
    let len_before: u64 = t.pool().xlen(stream).await.unwrap();
    let err = admin::repair_ids(t, stream, dead, admin::MAX_AHEAD)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kaiju_streams::StreamError::NotRepairableInPlace { stream: s } if s == stream),
        "{err}"
    );
    assert!(
        err.to_string().contains("nothing was moved or lost"),
        "{err}"
    );
    let len_after: u64 = t.pool().xlen(stream).await.unwrap();
    assert_eq!(len_after, len_before, "nothing moved");
    let letters: u64 = t.pool().xlen(dead).await.unwrap();
    assert_eq!(letters, 0, "no dead letter written");
}

async fn xadd(t: &Transport, stream: &str, id: &str, body: &str) -> Result<String, Error> {
    t.pool()
        .xadd(stream, false, None, id, vec![("_", body)])
        .await
}

/// Delivered and unacknowledged entries of `group`: their ids.
async fn pending_ids(t: &Transport, stream: &str, group: &str) -> Vec<String> {
    let pending: Vec<(String, String, u64, u64)> = t
        .pool()
        .xpending(stream, group, ("-", "+", 100))
        .await
        .unwrap();
    pending.into_iter().map(|(id, ..)| id).collect()
}

/// A stream with a group `g` that has two pending entries of consumer `c1` and, read by `c2`
/// after the legitimate entries, the entry `bad_id`; then nothing can be written any more.
async fn bricked(t: &Transport, stream: &str, bad_id: &str) -> Vec<String> {
    let writer = StreamWriter::new(t.clone());
    let key = kaiju_core::Key::raw(stream);
    for i in 0..3 {
        writer
            .write(&key, &("svc.m", i), Headers::new())
            .await
            .unwrap();
    }
    let _: () = t
        .pool()
        .xgroup_create(stream, "g", "0", false)
        .await
        .unwrap();
    let _: Value = t
        .pool()
        .xreadgroup("g", "c1", Some(2), None, false, stream, ">")
        .await
        .unwrap();
    xadd(t, stream, bad_id, "evil").await.unwrap();
    let _: Value = t
        .pool()
        .xreadgroup("g", "c2", None, None, false, stream, ">")
        .await
        .unwrap();
    pending_ids(t, stream, "g").await
}

async fn a_bricked_stream_is_repaired_keeping_its_group_and_pending_entries(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    let pending_before = bricked(t, &stream, MAX_ID).await;
    assert_eq!(pending_before.len(), 4, "{pending_before:?}");
    assert!(
        xadd(t, &stream, "*", "x").await.is_err(),
        "the stream is bricked: every XADD fails"
    );
    let warning = admin::check_ids(t, &stream).await.unwrap().unwrap();
    assert_eq!(warning.problem, IdProblem::Exhausted);
    assert!(warning.to_string().contains("--repair"), "{warning}");
    if !repairs_in_place(t) {
        refused_without_change(t, &stream, &dead).await;
        assert_eq!(pending_ids(t, &stream, "g").await, pending_before);
        return;
    }

    let done = admin::repair_ids(t, &stream, &dead, admin::MAX_AHEAD)
        .await
        .unwrap();
    assert_eq!(done.moved, 1);
    assert_eq!(done.last_id_before, MAX_ID);
    assert_eq!(done.groups_reset, ["g"]);
    assert_eq!(admin::check_ids(t, &stream).await.unwrap(), None);

    // Writes work again, and the group is given what is written.
    let id = xadd(t, &stream, "*", "after").await.unwrap();
    let read: Value = t
        .pool()
        .xreadgroup("g", "c1", None, None, false, stream.as_str(), ">")
        .await
        .unwrap();
    assert!(format!("{read:?}").contains(&id), "{read:?}");
    // No pending entry was lost: the ones before, and the new one.
    let pending_after = pending_ids(t, &stream, "g").await;
    for p in &pending_before {
        assert!(
            pending_after.contains(p),
            "{p} is still pending: {pending_after:?}"
        );
    }
    assert!(pending_after.contains(&id));
    // The legitimate entries are still there; the bad one is a dead letter, not gone.
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(len, 4, "3 legitimate entries and the new one");
    let letters = DeadLetters::new(t.clone(), stream.clone(), dead.clone());
    let list = letters.list(None, 10).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].kind.as_str(), list[0].origin_id.as_str()),
        ("future-id", MAX_ID)
    );
    assert_eq!(&list[0].fields[0].1[..], b"evil");
    // A repair of a sound stream does nothing.
    let again = admin::repair_ids(t, &stream, &dead, admin::MAX_AHEAD)
        .await
        .unwrap();
    assert_eq!((again.moved, again.last_id_after), (0, None));
}

async fn a_stream_ahead_of_the_clock_is_reported_and_repaired(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let future = format!("{}-0", now_ms + 10 * 86_400_000);
    bricked(t, &stream, &future).await;
    // Not bricked, but every id follows the one from the future.
    let next = xadd(t, &stream, "*", "follows").await.unwrap();
    assert!(
        next.starts_with(&(now_ms + 10 * 86_400_000).to_string()),
        "{next}"
    );
    let warning = admin::check_ids(t, &stream).await.unwrap().unwrap();
    assert!(
        matches!(warning.problem, IdProblem::Ahead(d) if d > Duration::from_secs(9 * 86_400)),
        "{warning:?}"
    );
    if !repairs_in_place(t) {
        return refused_without_change(t, &stream, &dead).await;
    }
    let done = admin::repair_ids(t, &stream, &dead, admin::MAX_AHEAD)
        .await
        .unwrap();
    assert_eq!(
        done.moved, 2,
        "the entry from the future and the one after it"
    );
    let id = xadd(t, &stream, "*", "after").await.unwrap();
    let ms: u64 = id.split('-').next().unwrap().parse().unwrap();
    assert!(
        ms < now_ms + 86_400_000,
        "new ids follow the clock again: {id}"
    );
    assert_eq!(admin::check_ids(t, &stream).await.unwrap(), None);
    let letters = DeadLetters::new(t.clone(), stream.clone(), dead.clone());
    assert_eq!(letters.len().await.unwrap(), 2, "both kept as dead letters");
}

on_both!(
    a_bricked_stream_is_repaired_keeping_its_group_and_pending_entries,
    a_stream_ahead_of_the_clock_is_reported_and_repaired
);

/// The listener logs an error at start when its stream is bricked (a current-thread runtime,
/// so its tasks log to this test's subscriber).
#[tokio::test]
async fn the_listener_logs_an_error_when_its_stream_is_bricked() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let (captured, _guard) = kaiju_tests::observe::Captured::this_thread(tracing::Level::WARN);
    let ns = kaiju_tests::namespace();
    let app = kaiju_tests::app(&ns);
    let stream = ns.stream("rpc").unwrap().into_string();
    xadd(&t, &stream, MAX_ID, "evil").await.unwrap();
    let mut listener = Listener::new(
        t.clone(),
        &app,
        ListenerSettings::default(),
        |_: kaiju_streams::Message<kaiju_tests::streams::Body>| async { Ok(()) },
    )
    .unwrap();
    listener.start().await.unwrap();
    let logged = || captured.text();
    kaiju_tests::eventually("the error", Duration::from_secs(10), || async {
        logged().contains("ERROR")
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let text = logged();
    assert!(
        text.contains(&stream) && text.contains("is unusable") && text.contains("--repair"),
        "{text}"
    );
}

/// `XADD` fields as `(name, value)` text pairs.
async fn xadd_field(t: &Transport, stream: &str, id: &str, name: &str, value: &str) -> String {
    t.pool()
        .xadd(stream, false, None, id, vec![(name, value)])
        .await
        .unwrap()
}

async fn read_all(t: &Transport, stream: &str, group: &str) -> Vec<String> {
    let read: Value = t
        .pool()
        .xreadgroup(group, "c", None, None, false, stream, ">")
        .await
        .unwrap();
    let text = format!("{read:?}");
    let all: Vec<String> = t
        .pool()
        .xrange::<Vec<(String, Value)>, _, _, _>(stream, "-", "+", None)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| text.contains(id.as_str()))
        .collect();
    all
}

/// The repair keeps apart the entries every group has already handled: their dead letters
/// say so (`future-id-handled`), and a replay leaves them alone unless told otherwise, so a
/// request is not run twice. Entries a group still has to handle stay replayable, with their
/// real delivery count.
async fn entries_every_group_handled_are_not_replayed(t: &Transport, ns: &Namespace, _: Target) {
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for g in ["g1", "g2"] {
        let _: () = t
            .pool()
            .xgroup_create(stream.as_str(), g, "$", true)
            .await
            .unwrap();
    }
    let evil = xadd_field(
        t,
        &stream,
        &format!("{}-0", now_ms + 10 * 86_400_000),
        "evil",
        "1",
    )
    .await;
    let legit1 = xadd_field(t, &stream, "*", "legit", "1").await;
    let legit2 = xadd_field(t, &stream, "*", "legit", "2").await;
    // Both groups are given all three. g1 acks them all; g2 acks all but legit2, which it is
    // given a second time (2 deliveries).
    for g in ["g1", "g2"] {
        let read = read_all(t, &stream, g).await;
        assert_eq!(read.len(), 3, "{read:?}");
    }
    let acked: u64 = t
        .pool()
        .xack(stream.as_str(), "g1", vec![&evil, &legit1, &legit2])
        .await
        .unwrap();
    assert_eq!(acked, 3);
    let acked: u64 = t
        .pool()
        .xack(stream.as_str(), "g2", vec![&evil, &legit1])
        .await
        .unwrap();
    assert_eq!(acked, 2);
    let _: Value = t
        .pool()
        .xclaim(
            stream.as_str(),
            "g2",
            "c",
            0,
            &legit2,
            None,
            None,
            None,
            false,
            false,
        )
        .await
        .unwrap();
    // legit3: handled by g1, not yet delivered to g2.
    let legit3 = xadd_field(t, &stream, "*", "legit", "3").await;
    assert_eq!(
        read_all(t, &stream, "g1").await,
        std::slice::from_ref(&legit3)
    );
    let _: u64 = t
        .pool()
        .xack(stream.as_str(), "g1", vec![&legit3])
        .await
        .unwrap();

    if !repairs_in_place(t) {
        return refused_without_change(t, &stream, &dead).await;
    }
    let done = admin::repair_ids(t, &stream, &dead, admin::MAX_AHEAD)
        .await
        .unwrap();
    assert_eq!((done.moved, done.moved_handled), (4, 2), "{done:?}");
    let letters = DeadLetters::new(t.clone(), stream.clone(), dead.clone());
    let list = letters.list(None, 10).await.unwrap();
    let by_origin = |id: &str| list.iter().find(|d| d.origin_id == id).unwrap().clone();
    for id in [&evil, &legit1] {
        let d = by_origin(id);
        assert_eq!(d.kind, admin::KIND_FUTURE_ID_HANDLED, "{d:?}");
        assert!(
            d.reason
                .contains("already delivered to and acked by every group (g1, g2)")
                && d.reason.contains("replaying runs it again"),
            "{d:?}"
        );
        assert_eq!(d.deliveries, 0);
    }
    let d = by_origin(&legit2);
    assert_eq!(
        (d.kind.as_str(), d.deliveries),
        (admin::KIND_FUTURE_ID, 2),
        "{d:?}"
    );
    let d = by_origin(&legit3);
    assert_eq!(
        (d.kind.as_str(), d.deliveries),
        (admin::KIND_FUTURE_ID, 0),
        "{d:?}"
    );

    // A replay writes back the two a group still has to handle, and keeps the other two.
    let replayed = letters.replay(100, |_, _| {}).await.unwrap();
    assert_eq!(
        (replayed.replayed, replayed.handled),
        (2, 2),
        "{replayed:?}"
    );
    let left = letters.list(None, 10).await.unwrap();
    let mut left: Vec<&str> = left.iter().map(|d| d.origin_id.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, [evil.as_str(), legit1.as_str()]);
    let back: Vec<(String, Vec<(String, String)>)> = t
        .pool()
        .xrange(stream.as_str(), "-", "+", None)
        .await
        .unwrap();
    let values: Vec<&str> = back.iter().map(|(_, f)| f[0].1.as_str()).collect();
    assert_eq!(values, ["2", "3"], "{back:?}");
    // Forced, they are replayed too.
    let forced = letters
        .clone()
        .include_handled(true)
        .replay(100, |_, _| {})
        .await
        .unwrap();
    assert_eq!((forced.replayed, forced.handled), (2, 0));
    assert_eq!(letters.len().await.unwrap(), 0);
}

/// A dead-letter stream bricked (or ahead of the clock) is mended so that letters can be
/// written to it again; its letters are kept, written again with new ids.
async fn a_bricked_dead_letter_stream_is_repaired_keeping_its_letters(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let old = xadd_field(t, &dead, "*", "kind", "rejected").await;
    let ahead = format!("{}-0", now_ms + 10 * 86_400_000);
    xadd_field(t, &dead, &ahead, "kind", "ahead").await;
    xadd_field(t, &dead, MAX_ID, "e", "1").await;
    xadd_field(t, &stream, MAX_ID, "evil", "1").await;
    assert!(xadd(t, &dead, "*", "x").await.is_err());
    let warning = admin::check_ids(t, &dead).await.unwrap().unwrap();
    assert!(
        warning
            .to_string()
            .contains("kaiju streams <app> <topic> --repair` (the topic whose dead letters"),
        "{warning}"
    );
    // The main repair cannot write its dead letter, and says where.
    let err = admin::repair_ids(t, &stream, &dead, admin::MAX_AHEAD)
        .await
        .unwrap_err()
        .to_string();
    // (Where the stream cannot be repaired in place, that is said first, naming the stream.)
    let named = if repairs_in_place(t) { &dead } else { &stream };
    assert!(err.contains(named.as_str()), "{err}");

    let mended = admin::repair_dead_ids(t, &dead, admin::MAX_AHEAD)
        .await
        .unwrap();
    assert_eq!(mended.rewritten, 2, "{mended:?}");
    assert_eq!(mended.last_id_before, MAX_ID);
    assert_eq!(admin::check_ids(t, &dead).await.unwrap(), None);
    let entries: Vec<(String, Vec<(String, String)>)> = t
        .pool()
        .xrange(dead.as_str(), "-", "+", None)
        .await
        .unwrap();
    assert_eq!(entries.len(), 3, "every letter kept: {entries:?}");
    assert_eq!(entries[0].0, old);
    assert_eq!(
        entries[1].1,
        [
            ("kind".into(), "ahead".into()),
            ("repaired-from-id".into(), ahead.clone())
        ]
    );
    assert_eq!(
        entries[2].1,
        [
            ("e".into(), "1".into()),
            ("repaired-from-id".into(), MAX_ID.into())
        ]
    );
    // Now the main repair works (where it can); a second mend does nothing.
    if repairs_in_place(t) {
        let done = admin::repair_ids(t, &stream, &dead, admin::MAX_AHEAD)
            .await
            .unwrap();
        assert_eq!(done.moved, 1);
        xadd(t, &stream, "*", "after").await.unwrap();
    }
    let again = admin::repair_dead_ids(t, &dead, admin::MAX_AHEAD)
        .await
        .unwrap();
    assert_eq!((again.rewritten, again.last_id_after), (0, None));
}

on_both!(
    entries_every_group_handled_are_not_replayed,
    a_bricked_dead_letter_stream_is_repaired_keeping_its_letters
);

/// A listener whose dead-letter stream is bricked cannot write a dead letter: it keeps the
/// entry pending and logs an error naming the dead-letter stream and the repair.
#[tokio::test]
async fn the_listener_logs_an_error_when_its_dead_letter_stream_is_bricked() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let (captured, _guard) = kaiju_tests::observe::Captured::this_thread(tracing::Level::WARN);
    let ns = kaiju_tests::namespace();
    let app = kaiju_tests::app(&ns);
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    xadd(&t, &dead, MAX_ID, "evil").await.unwrap();
    let poison = xadd(&t, &stream, "*", "not msgpack").await.unwrap();
    let mut listener = Listener::new(
        t.clone(),
        &app,
        ListenerSettings::default(),
        |_: kaiju_streams::Message<kaiju_tests::streams::Body>| async { Ok(()) },
    )
    .unwrap();
    listener.start().await.unwrap();
    let logged = || captured.text();
    kaiju_tests::eventually("the error", Duration::from_secs(10), || async {
        logged().contains("entry stays pending")
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let text = logged();
    let line = text
        .lines()
        .find(|l| l.contains("entry stays pending"))
        .unwrap();
    assert!(
        line.contains("ERROR")
            && line.contains(&format!("the dead-letter stream {dead} is unusable"))
            && line.contains("kaiju streams <app> rpc --repair"),
        "{text}"
    );
    // Nothing dropped: the entry is still there, pending.
    let group = app.name.clone();
    assert_eq!(pending_ids(&t, &stream, &group).await, [poison]);
}
