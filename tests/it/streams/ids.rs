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
    let captured = kaiju_tests::observe::Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
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
