//! kaiju-cache against a real single node and a real cluster.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kaiju_cache::{Cache, CacheError, Condition, NearCache, NearCacheOptions, SetOpts};
use kaiju_core::Namespace;
use kaiju_tests::{Target, eventually, on_all};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::fred::types::{ClusterHash, CustomCommand, InfoKind};
use kaiju_transport::{Feature, Transport, TransportError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: Uuid,
    name: String,
    blocked: bool,
}

fn bob() -> User {
    User {
        id: Uuid::new_v4(),
        name: "bob".into(),
        blocked: false,
    }
}

on_all!(
    set_get_delete_exists,
    wrong_types_are_typed_errors,
    expiry_and_conditions,
    bulk_operations_keep_request_order,
    hashes,
    lists,
    pipelines_return_typed_results_in_order,
    transactions_are_isolated_but_not_rolled_back,
    get_or_set_with_runs_the_loader_once,
    get_or_set_with_failure_is_shared_and_not_cached,
    near_cache_serves_hits_locally_and_sees_other_writers,
    near_cache_is_bounded_in_size_and_age,
);

async fn set_get_delete_exists(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let key = ns.key("user").unwrap();
    assert_eq!(cache.get::<User>(&key).await.unwrap(), None);
    let user = bob();
    cache.set(&key, &user, None).await.unwrap();
    assert_eq!(cache.get::<User>(&key).await.unwrap(), Some(user.clone()));
    // The stored bytes are kaiju-redis's layout: a 3-element array, UUID as bin-16.
    let raw: Vec<u8> = t.pool().get(key.as_str()).await.unwrap();
    assert_eq!(&raw[..3], &[0x93, 0xc4, 0x10]);
    assert_eq!(
        cache
            .exists(&[&key, &ns.key("none").unwrap()])
            .await
            .unwrap(),
        1
    );
    let previous: Option<User> = cache
        .swap(
            &key,
            &User {
                blocked: true,
                ..user.clone()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(previous, Some(user));
    assert_eq!(cache.delete(&[&key]).await.unwrap(), 1);
    assert_eq!(cache.delete(&[&key]).await.unwrap(), 0);
    assert_eq!(cache.get::<User>(&key).await.unwrap(), None);
}

async fn wrong_types_are_typed_errors(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let key = ns.key("text").unwrap();
    cache.set(&key, &"hello", None).await.unwrap();
    match cache.get::<User>(&key).await {
        Err(CacheError::Decode {
            key: k, type_name, ..
        }) => {
            assert_eq!(k, key.as_str());
            assert!(type_name.ends_with("User"), "{type_name}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    // Bytes that are not msgpack at all (written by something else).
    let _: () = t
        .pool()
        .set(key.as_str(), vec![0xc1_u8], None, None, false)
        .await
        .unwrap();
    assert!(matches!(
        cache.get::<String>(&key).await,
        Err(CacheError::Decode { .. })
    ));
    // A Redis type mismatch is the server's WRONGTYPE, typed.
    let list = ns.key("list").unwrap();
    cache.rpush(&list, &[1_i64]).await.unwrap();
    let err = cache.get::<i64>(&list).await.unwrap_err();
    assert!(
        matches!(err, CacheError::Transport(TransportError::WrongType { .. })),
        "{err:?}"
    );
    // Nothing was lost by the failed reads.
    assert_eq!(cache.lrange::<i64>(&list, 0, -1).await.unwrap(), [Some(1)]);
    cache.delete(&[&key, &list]).await.unwrap();
}

async fn expiry_and_conditions(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let key = ns.key("ttl").unwrap();
    cache
        .set(&key, &1_i64, Some(Duration::from_secs(100)))
        .await
        .unwrap();
    let ttl: i64 = t.pool().pttl(key.as_str()).await.unwrap();
    assert!((90_000..=100_000).contains(&ttl), "{ttl}");
    cache
        .set(&key, &1_i64, Some(Duration::from_millis(50)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(cache.get::<i64>(&key).await.unwrap(), None);

    let only_new = SetOpts {
        condition: Condition::IfAbsent,
        ..SetOpts::default()
    };
    assert!(cache.set_with(&key, &1_i64, only_new).await.unwrap());
    assert!(!cache.set_with(&key, &2_i64, only_new).await.unwrap());
    assert_eq!(cache.get::<i64>(&key).await.unwrap(), Some(1));
    let only_existing = SetOpts {
        condition: Condition::IfPresent,
        ..SetOpts::default()
    };
    assert!(
        !cache
            .set_with(ns.key("nope").unwrap(), &3_i64, only_existing)
            .await
            .unwrap()
    );
    assert!(cache.expire(&key, Duration::from_secs(5)).await.unwrap());
    assert!(
        !cache
            .expire(ns.key("nope").unwrap(), Duration::from_secs(5))
            .await
            .unwrap()
    );
    cache.delete(&[&key]).await.unwrap();
}

async fn bulk_operations_keep_request_order(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    // Keys in many slots, no hash tag: the cache groups them by slot in a cluster.
    let keys: Vec<_> = (0..200)
        .map(|i| ns.key(&format!("k{i}")).unwrap())
        .collect();
    let items: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k, i as i64))
        .collect();
    cache.mset(&items, None).await.unwrap();
    let mut asked: Vec<_> = keys.iter().rev().cloned().collect();
    asked.insert(7, ns.key("missing").unwrap());
    let values: Vec<Option<i64>> = cache.mget(&asked).await.unwrap();
    let mut expected: Vec<Option<i64>> = (0..200).rev().map(Some).collect();
    expected.insert(7, None);
    assert_eq!(values, expected);
    assert_eq!(cache.exists(&keys).await.unwrap(), 200);
    assert_eq!(cache.delete(&keys).await.unwrap(), 200);
    assert_eq!(cache.exists(&keys).await.unwrap(), 0);

    // With a TTL every key gets it, and its value (MSETEX per slot where the server has it,
    // else SET ... PX per key: both read back the same).
    cache
        .mset(&items, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let values: Vec<Option<i64>> = cache.mget(&keys).await.unwrap();
    assert_eq!(values, (0..200).map(Some).collect::<Vec<_>>());
    for key in &keys {
        let ttl: i64 = t.pool().pttl(key.as_str()).await.unwrap();
        assert!((20_000..=30_000).contains(&ttl), "{key}: {ttl}");
    }
    assert!(cache.mget::<i64, &str>(&[]).await.unwrap().is_empty());
    cache.delete(&keys).await.unwrap();
}

async fn hashes(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let key = ns.key("h").unwrap();
    assert_eq!(
        cache
            .hset(&key, &[("a", bob()), ("b", bob())])
            .await
            .unwrap(),
        2
    );
    assert_eq!(cache.hset(&key, &[("a", bob())]).await.unwrap(), 0);
    let a: Option<User> = cache.hget(&key, "a").await.unwrap();
    assert_eq!(a.unwrap().name, "bob");
    assert_eq!(cache.hget::<User>(&key, "zz").await.unwrap(), None);
    let all = cache.hgetall::<User>(&key).await.unwrap();
    assert_eq!(
        all.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["a".to_owned(), "b".to_owned()])
    );
    match cache.hget::<i64>(&key, "a").await {
        Err(CacheError::Decode { key: k, .. }) => assert!(k.ends_with("[a]"), "{k}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(cache.hdel(&key, &["a", "zz"]).await.unwrap(), 1);
    assert!(
        cache
            .hgetall::<User>(ns.key("none").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    cache.delete(&[&key]).await.unwrap();
}

async fn lists(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let key = ns.key("l").unwrap();
    assert_eq!(cache.rpush(&key, &["b", "c"]).await.unwrap(), 2);
    assert_eq!(cache.lpush(&key, &["a"]).await.unwrap(), 3);
    assert_eq!(cache.llen(&key).await.unwrap(), 3);
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        cache.lrange::<String>(&key, 0, -1).await.unwrap(),
        [some("a"), some("b"), some("c")]
    );
    assert_eq!(
        cache.lpop::<String>(&key, 2).await.unwrap(),
        [some("a"), some("b")]
    );
    assert_eq!(cache.rpop::<String>(&key, 5).await.unwrap(), [some("c")]);
    assert!(cache.lpop::<String>(&key, 1).await.unwrap().is_empty());
    assert_eq!(cache.llen(&key).await.unwrap(), 0);
}

async fn pipelines_return_typed_results_in_order(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let (a, b, l) = (
        ns.key("a").unwrap(),
        ns.key("b").unwrap(),
        ns.key("l").unwrap(),
    );
    let mut p = cache.pipeline();
    p.set(&a, &bob(), None).unwrap();
    let got_a = p.get::<User>(&a);
    let got_b = p.get::<User>(&b);
    let pushed = p.rpush(&l, &1.5_f64).unwrap();
    let wrong = p.get::<i64>(&a);
    let deleted = p.delete(&a);
    assert_eq!(p.len(), 6);
    let results = p.execute().await.unwrap();
    assert_eq!(results.get(got_a).unwrap().unwrap().name, "bob");
    assert_eq!(results.get(got_b).unwrap(), None);
    assert_eq!(results.get(pushed).unwrap(), 1);
    assert!(matches!(results.get(wrong), Err(CacheError::Decode { .. })));
    assert!(results.get(deleted).unwrap());
    cache.delete(&[&l]).await.unwrap();
}

/// A transaction runs its commands in one atomic step, but, as Redis's MULTI/EXEC, it is not
/// rolled back: a command that fails at run time reports its error, and the others apply.
async fn transactions_are_isolated_but_not_rolled_back(t: &Transport, ns: &Namespace, _: Target) {
    let cache = Cache::new(t.clone());
    let tagged = ns.hash_tagged();
    let (x, y) = (tagged.key("x").unwrap(), tagged.key("y").unwrap());
    let mut trx = cache.transaction();
    trx.set(&x, &1_i64, None).unwrap();
    trx.set(&y, &2_i64, None).unwrap();
    let got = trx.get::<i64>(&x);
    let results = trx.execute().await.unwrap();
    assert_eq!(results.get(got).unwrap(), Some(1));
    assert_eq!(
        cache.mget::<i64, _>(&[&x, &y]).await.unwrap(),
        [Some(1), Some(2)]
    );
    // SET x, then RPUSH onto the string y: WRONGTYPE for the push, yet x is set.
    let mut trx = cache.transaction();
    let set = trx.set(&x, &10_i64, Some(Duration::from_secs(60))).unwrap();
    let pushed = trx.rpush(&y, &3_i64).unwrap();
    let len = trx.llen(&x);
    let results = trx.execute().await.unwrap();
    results.get(set).unwrap();
    assert!(
        matches!(
            results.get(pushed),
            Err(CacheError::Transport(TransportError::WrongType { .. }))
        ),
        "the failing command must report its error"
    );
    assert!(matches!(
        results.get(len),
        Err(CacheError::Transport(TransportError::WrongType { .. }))
    ));
    assert_eq!(cache.get::<i64>(&x).await.unwrap(), Some(10));
    cache.delete(&[&x, &y]).await.unwrap();
}

async fn get_or_set_with_runs_the_loader_once(t: &Transport, ns: &Namespace, _: Target) {
    let key = ns.key("filled").unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    // Two independent caches stand for two processes; 16 tasks ask at the same time.
    let caches = [Cache::new(t.clone()), Cache::new(t.clone())];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let cache = caches[i % 2].clone();
        let (key, calls) = (key.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_set_with(&key, Duration::from_secs(30), || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, std::io::Error>(bob().name)
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "bob");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the loader ran more than once"
    );
    let fill_lock = kaiju_core::side_key(key.as_str(), "fill");
    assert_eq!(
        caches[0].exists(&[fill_lock]).await.unwrap(),
        0,
        "fill lock left behind"
    );
    caches[0].delete(&[&key]).await.unwrap();
}

async fn get_or_set_with_failure_is_shared_and_not_cached(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let key = ns.key("failing").unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let cache = Cache::new(t.clone());
        let (key, calls) = (key.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_set_with::<String, _, _, _>(&key, Duration::from_secs(30), || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(std::io::Error::other("backend down"))
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
    // Callers that waited on the failing fill got its error instead of running the loader.
    assert!(
        calls.load(Ordering::SeqCst) < 8,
        "every caller ran the loader"
    );
    let cache = Cache::new(t.clone());
    assert_eq!(
        cache.get::<String>(&key).await.unwrap(),
        None,
        "a failure was cached"
    );
    // The next caller tries again and succeeds.
    let value = cache
        .get_or_set_with(&key, Duration::from_secs(30), || async {
            Ok::<_, std::io::Error>(7_i64)
        })
        .await
        .unwrap();
    assert_eq!(value, 7);
    cache.delete(&[&key]).await.unwrap();
}

async fn near_cache_serves_hits_locally_and_sees_other_writers(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let near = NearCache::new(Cache::new(t.clone()), NearCacheOptions::default())
        .await
        .unwrap();
    let other = Cache::new(t.clone()); // another writer, on other connections
    let key = ns.key("flags").unwrap();
    other.set(&key, &"v1", None).await.unwrap();
    assert_eq!(
        near.get::<String>(&key).await.unwrap().as_deref(),
        Some("v1")
    );
    assert_eq!(
        near.get::<String>(&key).await.unwrap().as_deref(),
        Some("v1")
    );
    let stats = near.stats();
    assert_eq!(
        (stats.misses, stats.hits, stats.len),
        (1, 1, 1),
        "{stats:?}"
    );

    other.set(&key, &"v2", None).await.unwrap();
    eventually("the invalidation", Duration::from_secs(3), || async {
        near.get::<String>(&key).await.unwrap().as_deref() == Some("v2")
    })
    .await;
    assert!(near.stats().invalidations >= 1);

    // A missing key is remembered as missing, and its creation is noticed too.
    let missing = ns.key("missing").unwrap();
    assert_eq!(near.get::<String>(&missing).await.unwrap(), None);
    let hits = near.stats().hits;
    assert_eq!(near.get::<String>(&missing).await.unwrap(), None);
    assert_eq!(near.stats().hits, hits + 1);
    other.set(&missing, &"now", None).await.unwrap();
    eventually("the creation", Duration::from_secs(3), || async {
        near.get::<String>(&missing).await.unwrap().as_deref() == Some("now")
    })
    .await;

    // Own writes drop the local copy at once.
    near.set(&key, &"v3", None).await.unwrap();
    assert_eq!(
        near.get::<String>(&key).await.unwrap().as_deref(),
        Some("v3")
    );
    assert_eq!(near.delete(&[&key, &missing]).await.unwrap(), 2);
    assert_eq!(near.get::<String>(&key).await.unwrap(), None);
    // A wrong type is still a typed error.
    other.set(&key, &1.5_f64, None).await.unwrap();
    eventually("the type change", Duration::from_secs(3), || async {
        matches!(
            near.get::<String>(&key).await,
            Err(CacheError::Decode { .. })
        )
    })
    .await;
    other.delete(&[&key]).await.unwrap();
}

async fn near_cache_is_bounded_in_size_and_age(t: &Transport, ns: &Namespace, _: Target) {
    let options = NearCacheOptions {
        capacity: 10,
        ttl: Duration::from_millis(200),
    };
    let near = NearCache::new(Cache::new(t.clone()), options)
        .await
        .unwrap();
    let keys: Vec<_> = (0..30).map(|i| ns.key(&format!("k{i}")).unwrap()).collect();
    for key in &keys {
        near.get::<i64>(key).await.unwrap();
    }
    assert!(near.stats().len <= 10, "{:?}", near.stats());
    let misses = near.stats().misses;
    near.get::<i64>(&keys[29]).await.unwrap();
    assert_eq!(
        near.stats().misses,
        misses,
        "the newest key should be a hit"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    near.get::<i64>(&keys[29]).await.unwrap();
    assert_eq!(
        near.stats().misses,
        misses + 1,
        "an expired local copy was used"
    );
}

/// A dropped tracking connection clears the local tier: invalidations sent meanwhile are lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_forgets_everything_when_its_connection_drops() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let near = NearCache::new(Cache::new(t.clone()), NearCacheOptions::default())
        .await
        .unwrap();
    let other = Cache::new(t.clone());
    let key = ns.key("k").unwrap();
    other.set(&key, &1_i64, None).await.unwrap();
    assert_eq!(near.get::<i64>(&key).await.unwrap(), Some(1));
    assert_eq!(near.stats().len, 1);
    let id = near.connection_id().await.unwrap();
    let _: Value = t
        .client()
        .client_kill(vec![
            kaiju_transport::fred::types::client::ClientKillFilter::ID(id.to_string()),
        ])
        .await
        .unwrap();
    eventually(
        "the local tier to be cleared",
        Duration::from_secs(3),
        || async { near.stats().len == 0 },
    )
    .await;
    // After the reconnect, tracking works again.
    assert_eq!(near.get::<i64>(&key).await.unwrap(), Some(1));
    other.set(&key, &2_i64, None).await.unwrap();
    eventually(
        "an invalidation after the reconnect",
        Duration::from_secs(3),
        || async { near.get::<i64>(&key).await.unwrap() == Some(2) },
    )
    .await;
    other.delete(&[&key]).await.unwrap();
}

/// `mset` with a TTL is one `MSETEX` where the server has it (Redis 8.4+, Valkey 9.1+), and
/// `SET ... PX` per key elsewhere (Redis 7, `KAIJU_REDIS_FEATURES_OFF`): counted by the
/// server's command stats on a server of this test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mset_with_a_ttl_uses_msetex_where_the_server_has_it() {
    let Some((_server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let cache = Cache::new(t.clone());
    let keys: Vec<_> = (0..5).map(|i| ns.key(&format!("k{i}")).unwrap()).collect();
    let items: Vec<_> = keys.iter().map(|k| (k, 7_i64)).collect();
    let reset = CustomCommand::new_static("CONFIG", ClusterHash::Random, false);
    let _: Value = t.pool().custom(reset, vec!["RESETSTAT"]).await.unwrap();
    cache
        .mset(&items, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let stats: String = t.pool().info(Some(InfoKind::CommandStats)).await.unwrap();
    let calls = |command: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    if t.capabilities().has(Feature::MSetEx) {
        assert_eq!((calls("msetex"), calls("set")), (1, 0), "{stats}");
    } else {
        assert_eq!((calls("msetex"), calls("set")), (0, 5), "{stats}");
    }
    let values: Vec<Option<i64>> = cache.mget(&keys).await.unwrap();
    assert_eq!(values, vec![Some(7); 5]);
    for key in &keys {
        let ttl: i64 = t.pool().pttl(key.as_str()).await.unwrap();
        assert!((20_000..=30_000).contains(&ttl), "{key}: {ttl}");
    }
    t.close().await.unwrap();
}
