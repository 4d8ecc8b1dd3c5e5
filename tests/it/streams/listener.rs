//! kaiju-streams against a real single node and a real cluster.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kaiju_core::{Lifecycle, LifecycleError, Namespace};
use kaiju_streams::{HandlerError, Headers, Listener, ListenerSettings, Message, StreamWriter};
use kaiju_tests::streams::{Body, Seen, distinct, pending_of, recorder, rpc_stream, write};
use kaiju_tests::{Target, app, eventually, on_all, on_both};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;

on_all!(
    a_backlog_written_before_any_listener_is_processed,
    malformed_entries_are_dead_lettered_and_the_rest_run,
    failing_handlers_are_retried_then_dead_lettered,
    a_deleted_group_and_stream_are_recovered,
    trim_delivered_keeps_what_a_slow_group_needs,
    the_pause_key_stops_and_resumes_listeners,
    stop_finishes_in_flight_work_or_leaves_it_pending,
    entries_left_by_a_stopped_listener_are_taken_over_with_claiming_off,
    a_restarted_consumer_processes_its_own_pending_entries,
);

// Worker processes get a URL only, not the TLS node's CA.
on_both!(a_killed_consumers_entries_are_claimed_by_the_others);

async fn a_backlog_written_before_any_listener_is_processed(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 10_000, "ext.record").await;
    let seen: Seen = Arc::default();
    let settings = ListenerSettings {
        max_batch_size: 100,
        max_parallel_batches: 2,
        ..ListenerSettings::default()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    eventually("10,000 entries", Duration::from_secs(60), || async {
        distinct(&seen) >= ids.len()
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let handled: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    assert_eq!(handled, ids.into_iter().collect::<HashSet<_>>());
    let stats = listener.stats().await.unwrap();
    assert_eq!(stats.processed, 10_000);
    assert_eq!(stats.pending, 0, "{stats:?}");
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

async fn malformed_entries_are_dead_lettered_and_the_rest_run(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let writer = StreamWriter::new(t.clone());
    let mut good = Vec::new();
    for i in 0..7 {
        if i == 2 {
            // No `_` field at all (kaiju-redis dropped the whole batch on this, D2); a `_` that
            // is not msgpack; msgpack that is not `[body, headers]`.
            let malformed: [(&str, Vec<u8>); 3] =
                [("x", b"1".to_vec()), ("_", vec![0xc1]), ("_", vec![0x05])];
            for (field, value) in malformed {
                let _: String = t
                    .pool()
                    .xadd(stream.as_str(), false, None, "*", vec![(field, value)])
                    .await
                    .unwrap();
            }
        }
        good.push(
            writer
                .write(&stream, &("ok".to_owned(), Some(i)), Headers::new())
                .await
                .unwrap(),
        );
    }
    let seen: Seen = Arc::default();
    let mut listener = Listener::new(
        t.clone(),
        &app,
        ListenerSettings::default(),
        recorder(&seen),
    )
    .unwrap();
    listener.start().await.unwrap();
    eventually("7 good entries", Duration::from_secs(10), || async {
        distinct(&seen) >= 7
    })
    .await;
    eventually("3 dead letters", Duration::from_secs(10), || async {
        t.pool()
            .xlen::<u64, _>(listener.dead_letter_key())
            .await
            .unwrap_or(0)
            >= 3
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    // Entries of a batch run concurrently: compare as sets.
    let mut handled = seen.lock().unwrap().clone();
    handled.sort();
    assert_eq!(handled, good);
    let dead: Vec<(String, std::collections::HashMap<String, Value>)> = t
        .pool()
        .xrange(listener.dead_letter_key(), "-", "+", None)
        .await
        .unwrap();
    assert_eq!(dead.len(), 3);
    // The three were dead-lettered concurrently: find each by its content, not its position.
    let reason = |f: &std::collections::HashMap<String, Value>| f["reason"].as_string().unwrap();
    let (no_field, bad): (Vec<_>, Vec<_>) =
        dead.iter().partition(|(_, f)| f.contains_key("field:x"));
    assert_eq!(no_field.len(), 1);
    let missing = &no_field[0].1;
    assert!(
        reason(missing).contains("no `_` field"),
        "{}",
        reason(missing)
    );
    assert_eq!(missing["field:x"].as_string().as_deref(), Some("1"));
    assert_eq!(
        missing["stream"].as_string().as_deref(),
        Some(stream.as_str())
    );
    assert_eq!(missing["deliveries"].as_u64(), Some(1));
    // Reasons in words, naming no Rust type: what the payload must be, what it holds.
    let mut reasons: Vec<String> = bad.iter().map(|(_, f)| reason(f)).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "not a kaiju entry: the `_` field must hold a msgpack array [body, headers]; it holds an integer (5)",
            "not a kaiju entry: the `_` field must hold msgpack [body, headers]; not msgpack: a byte that begins no msgpack value (0xc1, say, which msgpack never uses) (1 byte: \"\\xc1\")",
        ]
    );
    for (_, fields) in &bad {
        assert!(
            fields.contains_key("field:_"),
            "the original payload was not kept"
        );
    }
    let stats = listener.stats().await.unwrap();
    assert_eq!((stats.dead_lettered, stats.pending), (3, 0), "{stats:?}");
    let _: i64 = t
        .pool()
        .del(vec![stream.as_str(), listener.dead_letter_key()])
        .await
        .unwrap_or(0);
}

async fn failing_handlers_are_retried_then_dead_lettered(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let writer = StreamWriter::new(t.clone());
    let flaky = writer
        .write(&stream, &("flaky".to_owned(), None::<i64>), Headers::new())
        .await
        .unwrap();
    let broken = writer
        .write(&stream, &("broken".to_owned(), None::<i64>), Headers::new())
        .await
        .unwrap();
    let attempts: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let log = attempts.clone();
    let settings = ListenerSettings {
        max_deliveries: 3,
        retry_backoff_ms: 20,
        ..ListenerSettings::default()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, move |m: Message<Body>| {
        log.lock().unwrap().push((m.body.0.clone(), m.deliveries));
        let fail = m.body.0 == "broken" || (m.body.0 == "flaky" && m.deliveries < 2);
        std::future::ready(if fail {
            Err::<(), HandlerError>("boom".into())
        } else {
            Ok(())
        })
    })
    .unwrap();
    listener.start().await.unwrap();
    eventually(
        "the broken entry to be given up",
        Duration::from_secs(10),
        || async {
            attempts
                .lock()
                .unwrap()
                .iter()
                .filter(|(m, _)| m == "broken")
                .count()
                >= 3
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts
            .iter()
            .filter(|(m, _)| m == "flaky")
            .map(|(_, d)| *d)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        attempts
            .iter()
            .filter(|(m, _)| m == "broken")
            .map(|(_, d)| *d)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let dead: Vec<(String, std::collections::HashMap<String, Value>)> = t
        .pool()
        .xrange(listener.dead_letter_key(), "-", "+", None)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1["id"].as_string(), Some(broken));
    assert!(
        dead[0].1["reason"]
            .as_string()
            .unwrap()
            .contains("handler failed 3 time(s): boom")
    );
    assert_eq!(dead[0].1["deliveries"].as_u64(), Some(3));
    let stats = listener.stats().await.unwrap();
    assert_eq!(
        (stats.processed, stats.dead_lettered, stats.pending),
        (1, 1, 0),
        "{stats:?} {flaky}"
    );
    let _: i64 = t
        .pool()
        .del(vec![stream.as_str(), listener.dead_letter_key()])
        .await
        .unwrap_or(0);
}

async fn a_deleted_group_and_stream_are_recovered(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let seen: Seen = Arc::default();
    let mut listener = Listener::new(
        t.clone(),
        &app,
        ListenerSettings::default(),
        recorder(&seen),
    )
    .unwrap();
    listener.start().await.unwrap();
    let mut all = write(t, &stream, 5, "a").await;
    eventually("5 entries", Duration::from_secs(10), || async {
        distinct(&seen) >= 5
    })
    .await;
    let _: i64 = t
        .pool()
        .xgroup_destroy(stream.as_str(), listener.group())
        .await
        .unwrap();
    all.extend(write(t, &stream, 5, "b").await);
    eventually(
        "entries after the group was deleted",
        Duration::from_secs(10),
        || async { distinct(&seen) >= 10 },
    )
    .await;
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    all.extend(write(t, &stream, 5, "c").await);
    eventually(
        "entries after the stream was deleted",
        Duration::from_secs(10),
        || async { distinct(&seen) >= 15 },
    )
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let seen: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    assert!(all.iter().all(|id| seen.contains(id)));
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

async fn trim_delivered_keeps_what_a_slow_group_needs(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 20, "x").await;
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
    eventually("20 entries", Duration::from_secs(10), || async {
        distinct(&seen) >= 20
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(len, 20, "trimmed entries the slow group has not read");
    // The slow group reads 10 and acks the first 5: entries 0..5 may go, 5.. must stay.
    let _: Value = t
        .pool()
        .xreadgroup("slow", "s1", Some(10), None, false, stream.as_str(), ">")
        .await
        .unwrap();
    let _: u64 = t
        .pool()
        .xack(stream.as_str(), "slow", ids[..5].to_vec())
        .await
        .unwrap();
    eventually("the trim to catch up", Duration::from_secs(5), || async {
        t.pool().xlen::<u64, _>(stream.as_str()).await.unwrap() == 15
    })
    .await;
    let remaining: Vec<(String, Value)> = t
        .pool()
        .xrange(stream.as_str(), "-", "+", None)
        .await
        .unwrap();
    assert_eq!(remaining.len(), 15);
    assert_eq!(remaining[0].0, ids[5]);
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

async fn the_pause_key_stops_and_resumes_listeners(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let seen: Seen = Arc::default();
    let settings = |c: &str| ListenerSettings {
        consumer_id: Some(c.into()),
        pause_check_interval_ms: 50,
        max_wait_time_ms: 100,
        ..ListenerSettings::default()
    };
    let mut one = Listener::new(t.clone(), &app, settings("one"), recorder(&seen)).unwrap();
    let mut two = Listener::new(t.clone(), &app, settings("two"), recorder(&seen)).unwrap();
    one.start().await.unwrap();
    two.start().await.unwrap();
    let _: () = t
        .pool()
        .set(one.pause_key(), "1", None, None, false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    write(t, &stream, 10, "x").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(distinct(&seen), 0, "a paused listener read entries");
    let _: i64 = t.pool().del(one.pause_key()).await.unwrap();
    eventually(
        "entries after the pause",
        Duration::from_secs(5),
        || async { distinct(&seen) >= 10 },
    )
    .await;
    one.stop(Duration::from_secs(5)).await.unwrap();
    two.stop(Duration::from_secs(5)).await.unwrap();
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

async fn stop_finishes_in_flight_work_or_leaves_it_pending(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let started: Seen = Arc::default();
    let log = started.clone();
    let slow = move |ms: u64| {
        let log = log.clone();
        move |m: Message<Body>| {
            log.lock().unwrap().push(m.id);
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, HandlerError>(())
            }
        }
    };
    write(t, &stream, 5, "x").await;
    let mut listener =
        Listener::new(t.clone(), &app, ListenerSettings::default(), slow(200)).unwrap();
    listener.start().await.unwrap();
    eventually("the batch to start", Duration::from_secs(5), || async {
        distinct(&started) >= 5
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        listener.stats().await.unwrap().pending,
        0,
        "in-flight work was not finished and acked"
    );

    // A deadline shorter than the work: stop returns in time, the entries stay pending.
    write(t, &stream, 5, "y").await;
    let settings = ListenerSettings {
        consumer_id: Some("c2".into()),
        ..ListenerSettings::default()
    };
    let mut listener = Listener::new(t.clone(), &app, settings, slow(10_000)).unwrap();
    listener.start().await.unwrap();
    eventually(
        "the second batch to start",
        Duration::from_secs(5),
        || async { distinct(&started) >= 10 },
    )
    .await;
    let began = Instant::now();
    let stopped = listener.stop(Duration::from_millis(200)).await;
    assert!(
        matches!(stopped, Err(LifecycleError::StopTimeout { .. })),
        "{stopped:?}"
    );
    assert!(began.elapsed() < Duration::from_secs(2));
    assert_eq!(listener.stats().await.unwrap().pending, 5);
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

/// A listener stopped past its deadline leaves its unfinished entries pending (above). With
/// claiming off and a new consumer name at each start (kaiju's defaults), nobody ever ran
/// them. Its lease now runs out as it stops, so the group's other consumers take them over
/// (once idle for a lease), and remove it from the group.
async fn entries_left_by_a_stopped_listener_are_taken_over_with_claiming_off(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let off = |name: &str| ListenerSettings {
        consumer_id: Some(name.into()),
        pending_messages_time_ms: None,
        ..ListenerSettings::default()
    };
    let started: Seen = Arc::default();
    let log = started.clone();
    let stuck_handler = move |m: Message<Body>| {
        log.lock().unwrap().push(m.id);
        async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, HandlerError>(())
        }
    };
    let ids = write(t, &stream, 3, "x").await;
    let mut stuck = Listener::new(t.clone(), &app, off("stuck"), stuck_handler).unwrap();
    stuck.start().await.unwrap();
    eventually("the entries to start", Duration::from_secs(5), || async {
        distinct(&started) >= 3
    })
    .await;
    let stopped = stuck.stop(Duration::from_millis(200)).await;
    assert!(
        matches!(stopped, Err(LifecycleError::StopTimeout { .. })),
        "{stopped:?}"
    );
    let seen: Seen = Arc::default();
    let mut other = Listener::new(t.clone(), &app, off("other"), recorder(&seen)).unwrap();
    other.start().await.unwrap();
    eventually(
        "the entries taken over",
        Duration::from_secs(30),
        || async { distinct(&seen) >= 3 },
    )
    .await;
    let handled: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    assert_eq!(handled, ids.into_iter().collect::<HashSet<_>>());
    eventually(
        "nothing pending, and only the live consumer left",
        Duration::from_secs(10),
        || async {
            let consumers: Vec<std::collections::HashMap<String, Value>> = t
                .pool()
                .xinfo_consumers(stream.as_str(), app.name.as_str())
                .await
                .unwrap();
            pending_of(t, stream.as_str(), &app.name).await == 0 && consumers.len() == 1
        },
    )
    .await;
    assert_eq!(other.stats().await.unwrap().recovered, 3);
    other.stop(Duration::from_secs(5)).await.unwrap();
    let leases = app.namespace().unwrap().stream_consumers("rpc").unwrap();
    for key in [stream.as_str(), leases.as_str()] {
        let _: i64 = t.pool().del(key).await.unwrap();
    }
}

async fn a_restarted_consumer_processes_its_own_pending_entries(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let stream = rpc_stream(&app);
    let ids = write(t, &stream, 5, "x").await;
    let settings = ListenerSettings {
        consumer_id: Some("stable".into()),
        ..ListenerSettings::default()
    };
    // A "crash": the handler never finishes and the listener is torn down.
    let hung = Listener::new(
        t.clone(),
        &app,
        settings.clone(),
        |_m: Message<Body>| async {
            std::future::pending::<()>().await;
            Ok::<_, HandlerError>(())
        },
    );
    let mut hung = hung.unwrap();
    hung.start().await.unwrap();
    eventually("entries pending", Duration::from_secs(5), || async {
        pending_of(t, stream.as_str(), hung.group()).await >= 5
    })
    .await;
    drop(hung);
    let seen: Seen = Arc::default();
    let mut restarted = Listener::new(t.clone(), &app, settings, recorder(&seen)).unwrap();
    restarted.start().await.unwrap();
    eventually("own pending entries", Duration::from_secs(10), || async {
        distinct(&seen) >= 5
    })
    .await;
    restarted.stop(Duration::from_secs(5)).await.unwrap();
    let mut handled = seen.lock().unwrap().clone();
    handled.sort();
    assert_eq!(handled, ids);
    assert_eq!(restarted.stats().await.unwrap().pending, 0);
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

fn url(target: Target) -> String {
    std::env::var(target.url_var()).unwrap()
}

async fn a_killed_consumers_entries_are_claimed_by_the_others(
    t: &Transport,
    ns: &Namespace,
    target: Target,
) {
    const TOTAL: usize = 20_000;
    let app = app(ns);
    let stream = rpc_stream(&app);
    let (set, count) = (ns.key("handled").unwrap(), ns.key("handled-count").unwrap());
    let spawn = |consumer: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stream_worker"))
            .args([
                url(target).as_str(),
                &app.env,
                &app.name,
                consumer,
                set.as_str(),
                count.as_str(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "started");
        child
    };
    let mut victim = spawn("victim");
    let mut others = vec![spawn("a"), spawn("b")];
    let writer = tokio::spawn({
        let (t, stream) = (t.clone(), stream.clone());
        async move { write(&t, &stream, TOTAL, "x").await }
    });
    // Kill the victim in the middle of its batches.
    let victim_killed = loop {
        let handled: u64 = t.pool().scard(set.as_str()).await.unwrap();
        if handled >= (TOTAL / 4) as u64 {
            break handled;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    victim.kill().unwrap();
    let _ = victim.wait();
    let ids = writer.await.unwrap();
    let started = Instant::now();
    loop {
        let handled: u64 = t.pool().scard(set.as_str()).await.unwrap();
        if handled as usize >= TOTAL {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {handled} of {TOTAL} handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for child in &mut others {
        child.kill().unwrap();
        let _ = child.wait();
    }
    let handled: HashSet<String> = t.pool().smembers(set.as_str()).await.unwrap();
    assert!(
        ids.iter().all(|id| handled.contains(id)),
        "an entry was lost"
    );
    // The killed consumer may have died between SADD and INCR, so this is +-1.
    let total: i64 = t.pool().get(count.as_str()).await.unwrap();
    eprintln!(
        "{TOTAL} entries, consumer killed after {victim_killed} handled: all handled, about {} duplicate deliveries",
        total - TOTAL as i64
    );
    let _: i64 = t.pool().del(vec![stream.as_str()]).await.unwrap();
    let _: i64 = t.pool().del(vec![set.as_str()]).await.unwrap();
}
