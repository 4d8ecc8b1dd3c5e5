//! kaiju-transport against a real single node and a real cluster.

use std::time::Duration;

use kaiju_core::Namespace;
use kaiju_tests::{Target, on_all};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{ClusterHash, CustomCommand};
use kaiju_transport::{Deployment, Script, ServerKind, Transport, TransportError};

on_all!(
    commands_reach_every_slot,
    multi_key_commands_need_one_slot,
    server_errors_are_typed,
    scripts_reload_after_flush,
    capabilities_are_detected,
    blocking_reads_do_not_delay_the_pool,
);

async fn commands_reach_every_slot(t: &Transport, ns: &Namespace, target: Target) {
    let expected = match target {
        Target::Single | Target::Tls => Deployment::Single,
        Target::Cluster => Deployment::Cluster,
    };
    assert_eq!(t.deployment(), expected);
    let keys: Vec<_> = (0..300)
        .map(|i| ns.key(&format!("k{i}")).unwrap())
        .collect();
    let slots: std::collections::HashSet<u16> = keys.iter().map(|k| k.slot()).collect();
    assert!(slots.len() > 200, "keys should spread over many slots");
    for (i, key) in keys.iter().enumerate() {
        let _: () = t
            .pool()
            .set(
                key.as_str(),
                i as i64,
                Some(Expiration::EX(60)),
                None,
                false,
            )
            .await
            .unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        let value: Option<i64> = t.pool().get(key.as_str()).await.unwrap();
        assert_eq!(value, Some(i as i64), "{key}");
    }
}

async fn multi_key_commands_need_one_slot(t: &Transport, ns: &Namespace, target: Target) {
    let a = ns.key("a").unwrap();
    let b = ns.key("b").unwrap();
    assert_ne!(a.slot(), b.slot());
    let result: Result<Vec<Option<String>>, TransportError> = t
        .pool()
        .mget(vec![a.as_str(), b.as_str()])
        .await
        .map_err(Into::into);
    match target {
        Target::Single | Target::Tls => assert_eq!(result.unwrap(), vec![None, None]),
        Target::Cluster => assert!(
            matches!(result, Err(TransportError::CrossSlot { .. })),
            "{result:?}"
        ),
    }
    // Under one hash tag, multi-key commands work in both deployments.
    let tagged = ns.hash_tagged();
    let (x, y) = (tagged.key("x").unwrap(), tagged.key("y").unwrap());
    let _: () = t
        .pool()
        .mset(vec![(x.as_str(), "1"), (y.as_str(), "2")])
        .await
        .unwrap();
    let values: Vec<Option<String>> = t.pool().mget(vec![x.as_str(), y.as_str()]).await.unwrap();
    assert_eq!(values, vec![Some("1".into()), Some("2".into())]);
    let deleted: u64 = t.pool().del(vec![x.as_str(), y.as_str()]).await.unwrap();
    assert_eq!(deleted, 2);
}

async fn server_errors_are_typed(t: &Transport, ns: &Namespace, _: Target) {
    let key = ns.key("string").unwrap();
    let _: () = t
        .pool()
        .set(key.as_str(), "x", Some(Expiration::EX(60)), None, false)
        .await
        .unwrap();
    let err: TransportError = t
        .pool()
        .lpush::<i64, _, _>(key.as_str(), "y")
        .await
        .unwrap_err()
        .into();
    assert!(matches!(err, TransportError::WrongType { .. }), "{err:?}");
    assert!(!err.is_retryable());

    let stream = ns.stream("rpc").unwrap();
    let _: () = t
        .pool()
        .xgroup_create(stream.as_str(), "g", "0", true)
        .await
        .unwrap();
    let err: TransportError = t
        .pool()
        .xgroup_create::<(), _, _, _>(stream.as_str(), "g", "0", true)
        .await
        .unwrap_err()
        .into();
    assert!(matches!(err, TransportError::BusyGroup { .. }), "{err:?}");
    let err: TransportError = t
        .pool()
        .xreadgroup::<Value, _, _, _, _>("missing", "c", None, None, false, stream.as_str(), ">")
        .await
        .unwrap_err()
        .into();
    assert!(matches!(err, TransportError::NoGroup { .. }), "{err:?}");
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

async fn scripts_reload_after_flush(t: &Transport, ns: &Namespace, _: Target) {
    // A unique script body, so parallel tests never flush each other's cache entry mid-run.
    let script = Script::new(format!(
        "-- {ns}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
    ));
    let key = ns.key("counter").unwrap();
    let n: i64 = script.run(t, key.as_str(), 5).await.unwrap();
    assert_eq!(n, 5);
    let _: () = t.client().script_flush_cluster(false).await.unwrap();
    let n: i64 = script.run(t, key.as_str(), 2).await.unwrap();
    assert_eq!(n, 7);
    let _: i64 = t.pool().del(key.as_str()).await.unwrap();
}

async fn capabilities_are_detected(t: &Transport, _: &Namespace, _: Target) {
    let caps = t.capabilities();
    // The suite runs on Redis and on Valkey (`cargo xtask test --server valkey9`): the kind
    // must be the one the server names itself in its own words.
    let info: String = t
        .pool()
        .custom(
            CustomCommand::new_static("INFO", ClusterHash::Random, false),
            vec!["server"],
        )
        .await
        .unwrap();
    let expected = if info.contains("server_name:valkey") {
        ServerKind::Valkey
    } else {
        ServerKind::Redis
    };
    assert_eq!(caps.kind, expected, "{info}");
    assert!(caps.redis_version.major >= 6, "{caps:?}");
    assert!(caps.has_resp3());
    t.ping().await.unwrap();
}

async fn blocking_reads_do_not_delay_the_pool(t: &Transport, ns: &Namespace, _: Target) {
    let stream = ns.hash_tagged().stream("rpc").unwrap();
    let _: () = t
        .pool()
        .xgroup_create(stream.as_str(), "g", "$", true)
        .await
        .unwrap();
    let reader = t
        .blocking_connection(Duration::from_millis(1500))
        .await
        .unwrap();
    let key = stream.clone();
    let blocked = tokio::spawn(async move {
        reader
            .client()
            .xreadgroup::<Value, _, _, _, _>(
                "g",
                "c",
                Some(1),
                Some(1500),
                false,
                key.as_str(),
                ">",
            )
            .await
    });
    // Give the read time to reach the server, then use the shared pool while it blocks.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..10 {
        t.ping().await.unwrap();
    }
    assert!(
        !blocked.is_finished(),
        "the shared pool answered only after the blocking read returned"
    );
    let result = blocked.await.unwrap().unwrap();
    assert!(
        result.is_null(),
        "an empty BLOCK read returns nil: {result:?}"
    );
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}
