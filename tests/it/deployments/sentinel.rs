//! Redis Sentinel, for real: one primary, one replica, three sentinels, started by the tests
//! (they kill the primary). The transport finds the primary through the sentinels, and after
//! a failover writes succeed again and a listener goes on consuming with nothing lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kaiju_core::{Lifecycle, RedisSettings, SentinelSettings};
use kaiju_streams::{Headers, Listener, ListenerSettings, StreamWriter};
use kaiju_testkit::{SentinelOptions, SentinelSet};
use kaiju_tests::streams::{Body, Seen, recorder, rpc_stream};
use kaiju_tests::{app, can_spawn_servers, eventually, namespace};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{CustomCommand, Value};
use kaiju_transport::{Deployment, Transport, TransportError};

async fn start(options: SentinelOptions) -> SentinelSet {
    tokio::task::spawn_blocking(move || SentinelSet::start(options))
        .await
        .unwrap()
        .unwrap()
}

/// Settings that reach `set`'s primary through its sentinels: the first as `host:port`, the
/// others as `sentinel.nodes`.
fn settings_for(
    set: &SentinelSet,
    password: Option<&str>,
    sentinel_password: Option<&str>,
) -> RedisSettings {
    let sentinels = set.sentinel_addresses();
    let (host, port) = kaiju_core::parse_host_port(&sentinels[0]).unwrap();
    RedisSettings {
        host,
        port,
        password: password.map(Into::into),
        sentinel: Some(SentinelSettings {
            service_name: set.service_name().to_owned(),
            nodes: sentinels[1..].to_vec(),
            username: None,
            password: sentinel_password.map(Into::into),
        }),
        connect_timeout_ms: 1000,
        command_timeout_ms: 2000,
        ..RedisSettings::default()
    }
}

fn options() -> SentinelOptions {
    SentinelOptions {
        password: Some("data-pw".into()),
        sentinel_password: Some("sentinel-pw".into()),
        ..SentinelOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_rides_through_a_sentinel_failover_and_loses_nothing() {
    if !can_spawn_servers() {
        return;
    }
    let mut set = start(options()).await;
    let first_primary = set.primary_port().unwrap();
    let t = Transport::connect(&settings_for(&set, Some("data-pw"), Some("sentinel-pw")))
        .await
        .unwrap();
    assert_eq!(t.deployment(), Deployment::Sentinel);
    let ns = namespace();
    let app = app(&ns);
    let stream = rpc_stream(&app);
    let seen: Seen = Arc::default();
    let mut listener = Listener::new(
        t.clone(),
        &app,
        ListenerSettings {
            max_wait_time_ms: 100,
            ..ListenerSettings::default()
        },
        recorder(&seen),
    )
    .unwrap();
    listener.start().await.unwrap();
    let writer = StreamWriter::new(t.clone());
    let mut written = Vec::new();
    for i in 0..100 {
        let body: Body = ("ext.record".into(), Some(i));
        written.push(writer.write(&stream, &body, Headers::new()).await.unwrap());
    }
    eventually("the first 100 entries", Duration::from_secs(10), || async {
        seen.lock().unwrap().len() >= 100
    })
    .await;
    // Everything so far is on the replica before the primary dies (replication is
    // asynchronous: an entry the replica never got is lost by Redis itself, not by kaiju).
    let replicas: Value = t
        .pool()
        .custom(
            CustomCommand::new_static("WAIT", None, false),
            vec![1, 5000],
        )
        .await
        .unwrap();
    assert_eq!(replicas.as_u64(), Some(1));

    let killed = set.kill_primary().unwrap();
    assert_eq!(killed, first_primary);
    let kill = Instant::now();
    let (mut failed, mut recovered) = (0, None);
    let mut i = 100;
    while recovered.is_none() {
        assert!(
            kill.elapsed() < Duration::from_secs(60),
            "no write succeeded in 60 s"
        );
        let body: Body = ("ext.record".into(), Some(i));
        match writer.write(&stream, &body, Headers::new()).await {
            Ok(id) => {
                written.push(id);
                recovered = Some(kill.elapsed());
                i += 1;
            }
            Err(e) => {
                failed += 1;
                assert!(
                    matches!(&e, kaiju_streams::StreamError::Transport(t) if t.is_retryable()),
                    "a failover fails with retryable errors only: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let promoted = set.primary_port().unwrap();
    assert_ne!(
        promoted, first_primary,
        "the sentinels promoted the replica"
    );
    for _ in 0..100 {
        let body: Body = ("ext.record".into(), Some(i));
        written.push(writer.write(&stream, &body, Headers::new()).await.unwrap());
        i += 1;
    }
    let consumed = Instant::now();
    eventually(
        "every written entry, after the failover",
        Duration::from_secs(30),
        || async {
            let seen = seen.lock().unwrap();
            written.iter().all(|id| seen.contains(id))
        },
    )
    .await;
    eprintln!(
        "sentinel failover: first write accepted {:?} after the primary was killed \
         ({failed} failed attempts); all {} entries handled {:?} after the last write",
        recovered.unwrap_or_default(),
        written.len(),
        consumed.elapsed()
    );
    listener.stop(Duration::from_secs(5)).await.unwrap();
    t.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_passwords_are_checked_and_never_shown() {
    if !can_spawn_servers() {
        return;
    }
    let set = start(options()).await;
    let ok = Transport::connect(&settings_for(&set, Some("data-pw"), Some("sentinel-pw")))
        .await
        .unwrap();
    let pong: String = ok.pool().ping(None).await.unwrap();
    assert_eq!(pong, "PONG");
    ok.close().await.ok();
    let mut unknown = settings_for(&set, Some("data-pw"), Some("sentinel-pw"));
    unknown.reconnect_max_attempts = 1;
    if let Some(sentinel) = unknown.sentinel.as_mut() {
        sentinel.service_name = "no-such-service".into();
    }
    match Transport::connect(&unknown).await {
        Err(TransportError::Config(e)) => {
            assert!(e.to_string().contains("no-such-service"), "{e}")
        }
        other => panic!("an unknown service name: {:?}", other.map(|_| ())),
    }
    for (data, sentinel) in [
        (Some("data-pw"), Some("wrong-sentinel-secret")),
        (Some("data-pw"), None),
        (Some("wrong-data-secret"), Some("sentinel-pw")),
    ] {
        let settings = RedisSettings {
            reconnect_max_attempts: 1,
            ..settings_for(&set, data, sentinel)
        };
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("-pw"),
            "{shown}"
        );
        match Transport::connect(&settings).await {
            Err(e) => {
                let text = format!("{e} {e:?}");
                assert!(!text.contains("secret") && !text.contains("-pw"), "{text}");
                assert!(
                    matches!(e, TransportError::Auth { .. }),
                    "{data:?} / {sentinel:?}: {e:?}"
                );
            }
            Ok(_) => panic!("{data:?} / {sentinel:?} connected"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_least_privilege_user_works_through_sentinel() {
    if !can_spawn_servers() {
        return;
    }
    let set = start(options()).await;
    let ns = namespace();
    let rule = kaiju_tests::acl::rule(&["cache"], ns.prefix());
    let primary = set.primary_port().unwrap();
    let mut setuser = vec!["ACL", "SETUSER", "kaiju-app", "reset", "on", ">app-pw"];
    let rule = kaiju_tests::acl::args(&rule);
    setuser.extend(rule.iter().map(String::as_str));
    // ACL rules are per node: the replica gets them too, for after a failover.
    for port in set.data_ports() {
        set.data_cli(port, &setuser).unwrap();
    }
    let settings = RedisSettings {
        username: Some("kaiju-app".into()),
        ..settings_for(&set, Some("app-pw"), Some("sentinel-pw"))
    };
    let t = Transport::connect(&settings).await.unwrap();
    let cache = kaiju_cache::Cache::new(t.clone());
    let key = ns.key("k").unwrap();
    cache.set(&key, &1_i64, None).await.unwrap();
    assert_eq!(cache.get::<i64>(&key).await.unwrap(), Some(1));
    let log = set.data_cli(primary, &["ACL", "LOG"]).unwrap();
    assert!(!log.contains("kaiju-app"), "denied:\n{log}");
    t.close().await.ok();
}

/// A primary that is paused (SIGSTOP) past the failover and then resumes still answers as a
/// primary until the sentinels demote it; writes acknowledged by it meanwhile are discarded by
/// the demotion. The transport follows the primary the sentinels name, so writes go to the
/// promoted replica within a second of the old primary's return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_the_promoted_primary_when_the_old_one_wakes_up() {
    if !can_spawn_servers() {
        return;
    }
    let set = start(options()).await;
    // Configured by URL this time: the watch reads the sentinels from fred's configuration.
    let sentinels = set.sentinel_addresses();
    let url = format!(
        "redis-sentinel://:data-pw@{}?sentinelServiceName={}&node={}&node={}&sentinelPassword=sentinel-pw",
        sentinels[0],
        set.service_name(),
        sentinels[1],
        sentinels[2]
    );
    let settings = RedisSettings {
        command_timeout_ms: 2000,
        connect_timeout_ms: 1000,
        ..RedisSettings::from_url(url)
    };
    assert!(!format!("{settings:?}").contains("-pw"), "{settings:?}");
    let t = Transport::connect(&settings).await.unwrap();
    assert_eq!(t.deployment(), Deployment::Sentinel);
    let ns = namespace();
    let app = app(&ns);
    let stream = rpc_stream(&app);
    let old = set.primary_port().unwrap();
    let pid = set.data_pid(old).unwrap();
    let seen: Seen = Arc::default();
    let listener_settings = ListenerSettings {
        max_wait_time_ms: 100,
        ..ListenerSettings::default()
    };
    let mut listener = Listener::new(t.clone(), &app, listener_settings, recorder(&seen)).unwrap();
    listener.start().await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writes = {
        let (writer, stream, stop) = (StreamWriter::new(t.clone()), stream.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let body: Body = ("ext.record".into(), Some(i));
                i += 1;
                if let Ok(id) = writer.write(&stream, &body, Headers::new()).await {
                    acknowledged.push((id, Instant::now()));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    kaiju_tests::signal(pid, "-STOP");
    let promoted = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(port) = set.primary_port()
                && port != old
            {
                return port;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the sentinels promote the replica");
    tokio::time::sleep(Duration::from_secs(3)).await;
    kaiju_tests::signal(pid, "-CONT");
    let resumed = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acknowledged = writes.await.unwrap();
    // The truth is what the promoted primary holds (the old one is demoted and resynced).
    let direct = Transport::connect(&RedisSettings::from_url(format!(
        "redis://:data-pw@127.0.0.1:{promoted}"
    )))
    .await
    .unwrap();
    let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> = direct
        .pool()
        .xrange(stream.as_str(), "-", "+", None)
        .await
        .unwrap();
    let held: std::collections::HashSet<String> = entries.into_iter().map(|(id, _)| id).collect();
    direct.close().await.ok();
    let settled = resumed + Duration::from_millis(1500);
    let (mut before, mut lost_before) = (0, 0);
    let mut lost_after = Vec::new();
    for (id, at) in &acknowledged {
        let kept = held.contains(id);
        if *at < settled {
            before += 1;
            lost_before += usize::from(!kept);
        } else if !kept {
            lost_after.push(id.clone());
        }
    }
    eprintln!(
        "sentinel pause: {} writes acknowledged; {lost_before} of the {before} before the old \
         primary had been back 1.5 s are not on the promoted primary; after that, {} lost",
        acknowledged.len(),
        lost_after.len()
    );
    assert!(
        acknowledged.len() - before > 100,
        "writes went on after the old primary resumed"
    );
    assert!(
        lost_after.is_empty(),
        "{} writes acknowledged 1.5 s or more after the old primary resumed were lost: {:?}",
        lost_after.len(),
        &lost_after[..lost_after.len().min(5)]
    );
    // The listener's blocking connection follows the promoted primary too: it handles every
    // entry the promoted primary holds.
    eventually(
        "every kept entry handled",
        Duration::from_secs(30),
        || async {
            let seen = seen.lock().unwrap();
            held.iter().all(|id| seen.contains(id))
        },
    )
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    t.close().await.ok();
}
