//! kaiju-cache on a bad day: concurrent fills, failing, cancelled and panicking loaders, values
//! that do not decode (after they were removed from Redis), old and new schemas, a near cache
//! under many keys and across a cut connection. One test per defect of the cache review.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kaiju_cache::{Cache, CacheError, FillOptions, NearCache, NearCacheOptions};
use kaiju_core::{Namespace, Value, side_key};
use kaiju_tests::proxy::Proxy;
use kaiju_tests::{Target, eventually, on_both};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use serde::{Deserialize, Serialize};

on_both!(
    callers_in_one_process_share_one_fill_and_its_failure,
    wait_timeout_bounds_the_whole_call,
    a_cancelled_filler_releases_the_fill_lock,
    a_panicking_filler_releases_the_fill_lock,
    a_pop_that_cannot_decode_hands_back_what_it_removed,
    a_swap_that_cannot_decode_hands_back_what_it_replaced,
    lrange_keeps_the_positions_of_empty_elements,
    mget_each_reports_each_key_on_its_own,
    untyped_reads_return_any_value,
    typed_reads_accept_older_and_newer_schemas,
    the_near_cache_holds_no_state_per_key_it_forgot,
);

async fn callers_in_one_process_share_one_fill_and_its_failure(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let cache = Cache::new(t.clone());
    let key = ns.key("failing").unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (cache, key, calls) = (cache.clone(), key.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_set_with::<String, _, _, _>(&key, Duration::from_secs(30), || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err::<String, _>(std::io::Error::other("backend down"))
                })
                .await
        }));
    }
    for task in tasks {
        match task.await.unwrap() {
            Err(CacheError::Loader { message, .. }) => assert!(message.contains("backend down")),
            other => panic!("expected the loader's error, got {other:?}"),
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the loader ran more than once"
    );
    assert_eq!(cache.get::<String>(&key).await.unwrap(), None);
    // A cached key is read with no lock at all: 2,000 concurrent callers, no loader.
    cache.set(&key, &"cached", None).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..2000 {
        let (cache, key) = (cache.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_set_with::<String, _, _, _>(&key, Duration::from_secs(30), || async {
                    Err::<String, _>(std::io::Error::other("must not run"))
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "cached");
    }
    cache.delete(&[&key]).await.unwrap();
}

async fn wait_timeout_bounds_the_whole_call(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let key = ns.key("slow").unwrap();
    let options = FillOptions {
        wait_timeout: Duration::from_millis(300),
        ..FillOptions::default()
    };
    let started = Instant::now();
    let result = cache
        .get_or_set_with_options::<String, _, _, _>(
            &key,
            Duration::from_secs(30),
            options,
            || async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, std::io::Error>("late".to_owned())
            },
        )
        .await;
    assert!(
        matches!(result, Err(CacheError::FillTimeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The filler gave up, so its fill lock is gone too.
    let lock = side_key(key.as_str(), "fill");
    eventually(
        "the fill lock's release",
        Duration::from_secs(2),
        || async { cache.exists(&[&lock]).await.unwrap() == 0 },
    )
    .await;
}

async fn a_cancelled_filler_releases_the_fill_lock(t: &Transport, ns: &Namespace, _: Target) {
    let key = ns.key("cancelled").unwrap();
    let filler = Cache::new(t.clone());
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        filler.get_or_set_with::<String, _, _, _>(&key, Duration::from_secs(30), || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, std::io::Error>("never".to_owned())
        }),
    )
    .await;
    assert!(cancelled.is_err());
    // Another process is not held up for the lock's 30 s.
    another_process_fills_at_once(t, &key).await;
}

async fn a_panicking_filler_releases_the_fill_lock(t: &Transport, ns: &Namespace, _: Target) {
    let key = ns.key("panicking").unwrap();
    let filler = Cache::new(t.clone());
    let panicked = tokio::spawn({
        let key = key.clone();
        async move {
            filler
                .get_or_set_with::<String, _, _, _>(&key, Duration::from_secs(30), || async {
                    panic!("loader bug");
                    #[allow(unreachable_code)]
                    Ok::<_, std::io::Error>(String::new())
                })
                .await
        }
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    another_process_fills_at_once(t, &key).await;
}

/// Another process (another `Cache`) fills `key` without waiting for a fill lock's TTL.
async fn another_process_fills_at_once(t: &Transport, key: &kaiju_core::Key) {
    let other = Cache::new(t.clone());
    let started = Instant::now();
    let value: String = other
        .get_or_set_with(key, Duration::from_secs(30), || async {
            Ok::<_, std::io::Error>("fresh".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(value, "fresh");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    other.delete(&[key]).await.unwrap();
}

async fn a_pop_that_cannot_decode_hands_back_what_it_removed(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let cache = Cache::new(t.clone());
    let key = ns.key("list").unwrap();
    cache.rpush(&key, &["a", "b"]).await.unwrap();
    cache.rpush(&key, &[7_i64]).await.unwrap();
    // Popping all three as strings: the 7 does not decode, but it is gone from Redis.
    match cache.lpop::<String>(&key, 3).await {
        Err(CacheError::Decode { raw, .. }) => {
            let raw: Vec<&[u8]> = raw.iter().map(|b| b.as_ref()).collect();
            assert_eq!(raw, [&b"\xa1a"[..], b"\xa1b", b"\x07"]);
        }
        other => panic!("expected a decode error with the removed bytes, got {other:?}"),
    }
    assert_eq!(cache.llen(&key).await.unwrap(), 0);
}

async fn a_swap_that_cannot_decode_hands_back_what_it_replaced(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let cache = Cache::new(t.clone());
    let key = ns.key("k").unwrap();
    cache.set(&key, &"text", None).await.unwrap();
    match cache.swap::<i64>(&key, &5, None).await {
        Err(CacheError::Decode { raw, .. }) => assert_eq!(raw, [&b"\xa4text"[..]]),
        other => panic!("expected a decode error with the old bytes, got {other:?}"),
    }
    // The new value was written, as documented.
    assert_eq!(cache.get::<i64>(&key).await.unwrap(), Some(5));
    cache.delete(&[&key]).await.unwrap();
}

async fn lrange_keeps_the_positions_of_empty_elements(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let key = ns.key("list").unwrap();
    cache.rpush(&key, &[1_i64]).await.unwrap();
    let _: i64 = t.pool().rpush(key.as_str(), "").await.unwrap();
    cache.rpush(&key, &[3_i64]).await.unwrap();
    assert_eq!(
        cache.lrange::<i64>(&key, 0, -1).await.unwrap(),
        [Some(1), None, Some(3)]
    );
    cache.delete(&[&key]).await.unwrap();
}

async fn mget_each_reports_each_key_on_its_own(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let keys: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|k| ns.key(k).unwrap())
        .collect();
    cache.set(&keys[0], &1_i64, None).await.unwrap();
    cache.set(&keys[1], &"not a number", None).await.unwrap();
    cache.set(&keys[3], &4_i64, None).await.unwrap();
    assert!(matches!(
        cache.mget::<i64, _>(&keys).await,
        Err(CacheError::Decode { .. })
    ));
    let each = cache.mget_each::<i64, _>(&keys).await.unwrap();
    assert_eq!(each.len(), 4);
    assert_eq!(each[0].as_ref().unwrap(), &Some(1));
    assert!(matches!(&each[1], Err(CacheError::Decode { key, .. }) if key == keys[1].as_str()));
    assert_eq!(each[2].as_ref().unwrap(), &None);
    assert_eq!(each[3].as_ref().unwrap(), &Some(4));
    cache.delete(&keys).await.unwrap();
}

async fn untyped_reads_return_any_value(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let key = ns.key("any").unwrap();
    // What Python's RedisCache stores for {"a": 1, "b": [1, "two", None]}.
    let stored: &[u8] = b"\x82\xa1a\x01\xa1b\x93\x01\xa3two\xc0";
    let _: () = t
        .pool()
        .set(key.as_str(), stored, None, None, false)
        .await
        .unwrap();
    let value: Value = cache.get(&key).await.unwrap().unwrap();
    assert_eq!(value.get("a"), Some(&Value::Int(1)));
    assert_eq!(
        value.get("b"),
        Some(&Value::Array(vec![
            Value::Int(1),
            Value::Str("two".into()),
            Value::Nil
        ]))
    );
    cache.set(&key, &value, None).await.unwrap();
    let raw: Vec<u8> = t.pool().get(key.as_str()).await.unwrap();
    assert_eq!(
        raw, stored,
        "an untyped value is written back byte for byte"
    );
    cache.delete(&[&key]).await.unwrap();
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct UserV1 {
    id: uuid::Uuid,
    name: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct UserV2 {
    id: uuid::Uuid,
    name: String,
    email: Option<String>,
}

async fn typed_reads_accept_older_and_newer_schemas(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let key = ns.key("user").unwrap();
    let id = uuid::Uuid::new_v4();
    // A service on the new schema wrote; one on the old schema reads (extra trailing item).
    cache
        .set(
            &key,
            &UserV2 {
                id,
                name: "bob".into(),
                email: Some("b@x".into()),
            },
            None,
        )
        .await
        .unwrap();
    let old: UserV1 = cache.get(&key).await.unwrap().unwrap();
    assert_eq!(old.name, "bob");
    // And the other way round (a missing trailing Option field).
    cache
        .set(
            &key,
            &UserV1 {
                id,
                name: "ann".into(),
            },
            None,
        )
        .await
        .unwrap();
    let new: UserV2 = cache.get(&key).await.unwrap().unwrap();
    assert_eq!((new.name.as_str(), new.email), ("ann", None));
    cache.delete(&[&key]).await.unwrap();
}

async fn the_near_cache_holds_no_state_per_key_it_forgot(t: &Transport, ns: &Namespace, _: Target) {
    let options = NearCacheOptions {
        capacity: 10,
        ..NearCacheOptions::default()
    };
    let near = NearCache::new(Cache::new(t.clone()), options)
        .await
        .unwrap();
    for i in 0..3000 {
        let key = ns.key(&format!("k{i}")).unwrap();
        near.get::<i64>(&key).await.unwrap();
        near.set(&key, &i, None).await.unwrap();
        near.delete(&[&key]).await.unwrap();
    }
    // Entries, reads in flight and order records: bounded by the capacity, not by the 3,000
    // keys seen (a map of every key ever invalidated grew to 190 MB under 1 M deletes).
    let state = near.local_state_len();
    assert!(state <= 10 * 5, "{state} records for a capacity of 10");
}

/// After the tracking connection is cut, no read answered on a connection Redis was not
/// tracking is kept: a later write by another client is always seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_cache_never_keeps_an_untracked_read_across_a_reconnect() {
    let Some(port) = kaiju_tests::single_port() else {
        return;
    };
    let proxy = Proxy::start(port).await.unwrap();
    let through = Transport::connect(&proxy.settings()).await.unwrap();
    let near = NearCache::new(Cache::new(through), NearCacheOptions::default())
        .await
        .unwrap();
    let other = Cache::new(kaiju_tests::connect(Target::Single).await.unwrap());
    let key = kaiju_tests::namespace().key("k").unwrap();
    for round in 0..5_i64 {
        other.set(&key, &round, None).await.unwrap();
        // Cut a connection in the middle of a miss (whichever connection's reply comes next).
        near.clear_local();
        proxy.drop_next_reply();
        let _ = near.get::<i64>(&key).await;
        // Whatever was read and kept, a write by another client must become visible.
        other.set(&key, &(round + 100), None).await.unwrap();
        eventually("the new value", Duration::from_secs(3), || async {
            near.get::<i64>(&key).await.ok().flatten() == Some(round + 100)
        })
        .await;
    }
    other.delete(&[&key]).await.unwrap();
}

/// A dropped near cache closes its tracking connection (CLIENT LIST on a server of the test's
/// own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_near_cache_closes_its_connection() {
    let Some((_server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let clients = || kaiju_tests::client_count(&t);
    let baseline = clients().await;
    for _ in 0..5 {
        let near = NearCache::new(Cache::new(t.clone()), NearCacheOptions::default())
            .await
            .unwrap();
        let clone = near.clone();
        drop(near);
        drop(clone);
    }
    kaiju_tests::connections_back_to(&t, baseline, "the connections to close").await;
    t.close().await.unwrap();
}

// --- Found by the adversarial review of the hardened cache ---

on_both!(
    a_burst_of_invalidations_does_not_deafen_the_near_cache,
    a_fill_cancelled_at_once_never_leaves_its_lock,
    a_pop_hands_back_empty_elements_too,
);

async fn a_burst_of_invalidations_does_not_deafen_the_near_cache(
    t: &Transport,
    ns: &Namespace,
    target: Target,
) {
    let near = NearCache::new(Cache::new(t.clone()), NearCacheOptions::default())
        .await
        .unwrap();
    let other = Cache::new(t.clone());
    // One slot in a cluster, so one DEL invalidates all of them at once.
    let tagged = if target == Target::Cluster {
        ns.hash_tagged()
    } else {
        ns.clone()
    };
    // More than the event channel holds (1,024): some invalidations are missed for sure.
    let keys: Vec<_> = (0..1500)
        .map(|i| tagged.key(&format!("k{i}")).unwrap())
        .collect();
    let probe = tagged.key("probe").unwrap();
    let items: Vec<_> = keys
        .iter()
        .chain([&probe])
        .map(|k| (k.clone(), 1_i64))
        .collect();
    other.mset(&items, None).await.unwrap();
    for key in keys.iter().chain([&probe]) {
        assert_eq!(near.get::<i64>(key).await.unwrap(), Some(1));
    }
    // 1,500 invalidations in one burst.
    other.delete(&keys).await.unwrap();
    other.set(&probe, &2_i64, None).await.unwrap();
    eventually("the probe's new value", Duration::from_secs(3), || async {
        near.get::<i64>(&probe).await.unwrap() == Some(2)
    })
    .await;
    assert_eq!(near.get::<i64>(&keys[0]).await.unwrap(), None);
    // And later writes are still seen.
    other.set(&probe, &3_i64, None).await.unwrap();
    eventually("a later write", Duration::from_secs(3), || async {
        near.get::<i64>(&probe).await.unwrap() == Some(3)
    })
    .await;
    other.delete(&[&probe]).await.unwrap();
}

async fn a_fill_cancelled_at_once_never_leaves_its_lock(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    for i in 0..100 {
        let key = ns.key(&format!("k{i}")).unwrap();
        let _ = tokio::time::timeout(
            Duration::from_millis(i % 3),
            cache.get_or_set_with::<String, _, _, _>(&key, Duration::from_secs(30), || async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, std::io::Error>(String::new())
            }),
        )
        .await;
    }
    let locks: Vec<String> = (0..100)
        .map(|i| side_key(ns.key(&format!("k{i}")).unwrap().as_str(), "fill"))
        .collect();
    eventually(
        "every fill lock's release",
        Duration::from_secs(3),
        || async { cache.exists(&locks).await.unwrap() == 0 },
    )
    .await;
}

async fn a_pop_hands_back_empty_elements_too(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let key = ns.key("list").unwrap();
    let _: i64 = t
        .pool()
        .rpush(key.as_str(), vec![&b""[..], b"\xc1", b"\x01"])
        .await
        .unwrap();
    match cache.lpop::<i64>(&key, 3).await {
        Err(CacheError::Decode { raw, .. }) => {
            let raw: Vec<&[u8]> = raw.iter().map(|b| b.as_ref()).collect();
            assert_eq!(raw, [&b""[..], b"\xc1", b"\x01"]);
        }
        other => panic!("expected a decode error with every removed element, got {other:?}"),
    }
}
