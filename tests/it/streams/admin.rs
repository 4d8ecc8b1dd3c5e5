//! kaiju-streams' admin API (what `kaiju streams` and `kaiju dead` use), against Redis:
//! reports, and dead-letter replays that lose nothing and cannot be redirected.

use kaiju_core::{Namespace, Value};
use kaiju_streams::admin::{self, DeadLetters};
use kaiju_streams::{Headers, StreamWriter};
use kaiju_tests::{Target, on_both};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;

/// Writes `n` dead letters the way the listener does (why, where from, `field:_`).
async fn dead_letters(t: &Transport, dead: &str, from: &str, n: usize) {
    let pipeline = t.pipeline();
    for i in 0..n {
        let body = kaiju_streams::encode(&("svc.m", i), &Headers::new()).unwrap();
        let fields: Vec<(&str, Vec<u8>)> = vec![
            ("reason", b"boom".to_vec()),
            ("kind", b"exhausted".to_vec()),
            ("stream", from.as_bytes().to_vec()),
            ("id", b"1-0".to_vec()),
            ("deliveries", b"5".to_vec()),
            ("field:_", body),
        ];
        let _: () = pipeline.xadd(dead, false, None, "*", fields).await.unwrap();
    }
    let _: Vec<kaiju_transport::fred::types::Value> = pipeline.all().await.unwrap();
}

async fn replay_moves_every_letter_back_once_and_skips_forged_ones(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    let elsewhere = ns.key("victim").unwrap().into_string();
    dead_letters(t, &dead, &stream, 2500).await;
    dead_letters(t, &dead, &elsewhere, 3).await;
    let letters = DeadLetters::new(t.clone(), stream.clone(), dead.clone());
    assert_eq!(letters.len().await.unwrap(), 2503);
    let first = letters.list(None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(
        (
            first[0].kind.as_str(),
            first[0].deliveries,
            first[0].stream.as_str()
        ),
        ("exhausted", 5, stream.as_str())
    );
    let mut calls = Vec::new();
    let done = letters
        .replay(1000, |d, total| calls.push((d, total)))
        .await
        .unwrap();
    assert_eq!((done.replayed, done.skipped), (2500, 3));
    assert_eq!(
        calls.last(),
        Some(&(2503, 2503)),
        "progress reaches the total: {calls:?}"
    );
    assert!(calls.len() >= 3, "progress after each batch: {calls:?}");
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(len, 2500, "every letter is back in its stream, once");
    let exists: i64 = t.pool().exists(elsewhere.as_str()).await.unwrap();
    assert_eq!(
        exists, 0,
        "a forged dead letter cannot make the replay write elsewhere"
    );
    assert_eq!(letters.len().await.unwrap(), 3, "the skipped letters stay");
    // The replayed entries are the original envelopes.
    let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> = t
        .pool()
        .xrange(stream.as_str(), "-", "+", Some(1))
        .await
        .unwrap();
    let (body, _): ((String, Value), Headers) = kaiju_streams::decode(&entries[0].1["_"]).unwrap();
    assert_eq!(body, ("svc.m".to_owned(), Value::Int(0)));
    assert_eq!(letters.purge().await.unwrap(), 3);
    assert_eq!(letters.len().await.unwrap(), 0);
    assert_eq!(
        letters.replay(10, |_, _| {}).await.unwrap().replayed,
        0,
        "nothing to replay"
    );
}

async fn inspect_reports_groups_pending_and_dead_letters(t: &Transport, ns: &Namespace, _: Target) {
    let stream = ns.stream("rpc").unwrap();
    let dead = ns.dead_letter_stream("rpc").unwrap();
    let report = admin::inspect(t, stream.as_str(), dead.as_str())
        .await
        .unwrap();
    assert_eq!(
        (report.length, report.groups.len(), report.dead_letters),
        (0, 0, 0),
        "a stream that does not exist"
    );
    let writer = StreamWriter::new(t.clone());
    for i in 0..5 {
        writer
            .write(&stream, &("svc.m", i), Headers::new())
            .await
            .unwrap();
    }
    let _: () = t
        .pool()
        .xgroup_create(stream.as_str(), "g", "0", false)
        .await
        .unwrap();
    let _: kaiju_transport::fred::types::Value = t
        .pool()
        .xreadgroup("g", "c1", Some(2), None, false, stream.as_str(), ">")
        .await
        .unwrap();
    dead_letters(t, dead.as_str(), stream.as_str(), 2).await;
    let report = admin::inspect(t, stream.as_str(), dead.as_str())
        .await
        .unwrap();
    assert_eq!((report.length, report.dead_letters), (5, 2));
    let g = &report.groups[0];
    assert_eq!((g.name.as_str(), g.pending, g.lag), ("g", 2, Some(3)));
    assert!(g.oldest_pending_age.is_some());
    assert_eq!(g.consumers.len(), 1);
    assert_eq!((g.consumers[0].0.as_str(), g.consumers[0].1), ("c1", 2));
}

/// A dead-letter stream that holds the largest id (`kaiju streams` warns about it; someone
/// wrote it) still lists, dry-runs, replays and purges: paging after that id asked Redis for
/// `XRANGE (<max> +`, which it refuses ("invalid start ID"), so `kaiju dead list` failed with
/// exit 1 and showed nothing, and `replay` failed after writing its first page back.
async fn a_dead_letter_stream_holding_the_largest_id_still_pages(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    const MAX_ID: &str = "18446744073709551615-18446744073709551615";
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    dead_letters(t, &dead, &stream, 3).await;
    let body = kaiju_streams::encode(&("svc.m", 9), &Headers::new()).unwrap();
    let fields: Vec<(&str, Vec<u8>)> = vec![
        ("kind", b"failed".to_vec()),
        ("stream", stream.as_bytes().to_vec()),
        ("field:_", body),
    ];
    let _: String = t
        .pool()
        .xadd(dead.as_str(), false, None, MAX_ID, fields)
        .await
        .unwrap();
    let letters = DeadLetters::new(t.clone(), stream.clone(), dead.clone());
    let all = letters.list(None, 10).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(
        letters.list(Some(MAX_ID), 10).await.unwrap().is_empty(),
        "nothing comes after the largest id"
    );
    let mut seen = 0;
    let dry = letters.replay_dry_run(2, |_| seen += 1).await.unwrap();
    assert_eq!((dry.replayed, seen), (4, 4));
    let only_max = letters
        .clone()
        .filter(admin::DeadFilter::default().ids([MAX_ID]));
    assert_eq!(only_max.purge_dry_run(|_| {}).await.unwrap(), 1);
    assert_eq!(letters.replay(2, |_, _| {}).await.unwrap().replayed, 4);
    assert_eq!(letters.len().await.unwrap(), 0);
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(len, 4);
}

/// A purge deletes the dead letters there when it starts, never one written while it runs
/// (the listener keeps dead-lettering): what it reports plus what is left is every letter
/// written. A purge without a filter used `XLEN`, then `DEL`: it reported fewer than it
/// deleted, and deleted letters nobody had seen. `up_to` bounds a purge to the letters an
/// operator was shown.
async fn a_purge_deletes_only_the_letters_there_when_it_starts(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    dead_letters(t, &dead, &stream, 3).await;
    let shown = DeadLetters::new(t.clone(), stream.clone(), dead.clone())
        .list(None, 10)
        .await
        .unwrap();
    dead_letters(t, &dead, &stream, 2).await;
    let pinned = DeadLetters::new(t.clone(), stream.clone(), dead.clone())
        .filter(admin::DeadFilter::default().up_to(&shown[2].id));
    assert_eq!(pinned.purge().await.unwrap(), 3, "the three it was shown");
    let letters = DeadLetters::new(t.clone(), stream.clone(), dead.clone());
    assert_eq!(
        letters.len().await.unwrap(),
        2,
        "the two written since stay"
    );
    assert_eq!(letters.purge().await.unwrap(), 2);

    dead_letters(t, &dead, &stream, 5000).await;
    let writer = {
        let (t, dead, stream) = (t.clone(), dead.clone(), stream.clone());
        tokio::spawn(async move {
            for _ in 0..200 {
                dead_letters(&t, &dead, &stream, 10).await;
            }
        })
    };
    let mut purged = 0;
    while !writer.is_finished() {
        purged += letters.purge().await.unwrap();
    }
    writer.await.unwrap();
    let left = letters.len().await.unwrap();
    assert_eq!(purged + left, 7000, "purged {purged}, left {left}");
}

on_both!(
    replay_moves_every_letter_back_once_and_skips_forged_ones,
    inspect_reports_groups_pending_and_dead_letters,
    a_dead_letter_stream_holding_the_largest_id_still_pages,
    a_purge_deletes_only_the_letters_there_when_it_starts
);
