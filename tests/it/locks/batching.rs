//! kaiju-locks' natural batching: first tries and releases of one `Locks` that overlap share
//! script calls. Each caller still gets its own outcome, an error stays with its call, and
//! callers that give up or lose a reply leave no lock held.
//!
//! A stopped server (SIGSTOP) makes the batches form for sure: the first calls go out and hang,
//! the rest queue behind them, and all go when the server resumes.

use std::collections::HashSet;
use std::time::Duration;

use kaiju_core::Namespace;
use kaiju_locks::{LockError, Locks};
use kaiju_testkit::RedisServer;
use kaiju_tests::locks::no_wait;
use kaiju_tests::proxy::Proxy;
use kaiju_tests::{Target, eventually, on_both};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::{Transport, TransportError};

/// How many calls overlap in these tests: more than one batch call needs.
const CALLERS: usize = 64;

on_both!(
    overlapping_locks_under_one_hash_tag_each_get_their_own,
    a_lone_call_on_a_key_that_is_not_a_lock_is_wrong_type,
);

/// The key of lock `i`: `lock_<i>` in the test's namespace.
fn lock_key(ns: &Namespace, i: usize) -> String {
    ns.key(&format!("lock_{i}")).unwrap().as_str().to_owned()
}

/// Starts calls while the server is stopped, so the first few go out and hang and the rest
/// queue behind them into batches; the server resumes 200 ms later and they all go.
async fn while_stopped<T>(pid: u32, start: impl FnOnce() -> T) -> T {
    kaiju_tests::signal(pid, "-STOP");
    let calls = start();
    tokio::time::sleep(Duration::from_millis(200)).await;
    kaiju_tests::signal(pid, "-CONT");
    calls
}

/// A proxy in front of the test's own server, and a transport through it that gives up on a
/// reply after `command_timeout_ms`.
async fn behind_proxy(server: &RedisServer, command_timeout_ms: u64) -> (Proxy, Transport) {
    let proxy = Proxy::start(server.port()).await.unwrap();
    let t = Transport::connect(&kaiju_core::RedisSettings {
        command_timeout_ms,
        ..proxy.settings()
    })
    .await
    .unwrap();
    (proxy, t)
}

/// Script calls the server has run so far (`INFO commandstats`): `EVALSHA`, and `FCALL` where
/// kaiju's functions are loaded (other tests load them on the shared server).
async fn evalsha_calls(t: &Transport) -> u64 {
    let info: String = t
        .pool()
        .info(Some(kaiju_transport::fred::types::InfoKind::CommandStats))
        .await
        .unwrap();
    // Calls that ran: an FCALL that found no function failed, and went out again as EVALSHA.
    let field = |line: &str, name: &str| -> u64 {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0)
    };
    ["cmdstat_evalsha:", "cmdstat_fcall:"]
        .iter()
        .filter_map(|prefix| info.lines().find(|l| l.starts_with(prefix)))
        .map(|l| field(l, "calls") - field(l, "failed_calls"))
        .sum()
}

/// In a cluster a batch is one slot's calls: keys under one hash tag share one.
async fn overlapping_locks_under_one_hash_tag_each_get_their_own(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let tag = ns.key("tag").unwrap();
    for round in 0..3 {
        let calls = (0..CALLERS).map(|i| {
            let (locks, key) = (locks.clone(), format!("{{{tag}}}.lock.{i}"));
            tokio::spawn(async move {
                let guard = locks.acquire_with(&key, no_wait()).await.unwrap();
                assert_eq!(locks.owner(&key).await.unwrap().as_deref(), Some("me"));
                let token = guard.token();
                guard.release().await.unwrap();
                token
            })
        });
        let mut tokens = HashSet::new();
        for call in calls.collect::<Vec<_>>() {
            assert!(
                tokens.insert(call.await.unwrap()),
                "round {round}: a token handed out twice"
            );
        }
        assert_eq!(tokens.len(), CALLERS);
    }
    for i in 0..CALLERS {
        let key = format!("{{{tag}}}.lock.{i}");
        assert_eq!(locks.owner(&key).await.unwrap(), None, "{key} still held");
    }
    locks.close().await;
}

/// A call that goes out alone (no batch formed) keeps the class of its error too.
async fn a_lone_call_on_a_key_that_is_not_a_lock_is_wrong_type(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let key = ns.key("hash").unwrap();
    let _: () = t.pool().hset(key.as_str(), ("f", "v")).await.unwrap();
    let acquired = locks.acquire_with(key.as_str(), no_wait()).await;
    assert!(
        matches!(
            acquired,
            Err(LockError::Transport(TransportError::WrongType { .. }))
        ),
        "{acquired:?}"
    );
    let released = locks.release(key.as_str(), "me").await;
    assert!(
        matches!(
            released,
            Err(LockError::Transport(TransportError::WrongType { .. }))
        ),
        "{released:?}"
    );
    let fields: i64 = t.pool().hlen(key.as_str()).await.unwrap();
    assert_eq!(fields, 1, "the hash was left as it was");
    locks.close().await;
}

/// Calls queued while the server is stopped go out together; each caller gets its own
/// outcome: a lock, `Exists` for a held one, and `WrongType` for a key that is not a lock,
/// while the calls beside it in the same script call succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_calls_share_script_calls_and_keep_their_own_outcomes() {
    let Some((server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let key = |i: usize| lock_key(&ns, i);
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let other = Locks::new(t.clone(), "other").await.unwrap();
    // Key 0 is held by someone else; key 1 is a hash, not a lock.
    let held = other.acquire(key(0)).await.unwrap();
    let _: () = t.pool().hset(key(1), ("f", "v")).await.unwrap();
    let before = evalsha_calls(&t).await;

    let pid = server.pid().unwrap();
    let calls: Vec<_> = while_stopped(pid, || {
        (0..CALLERS)
            .map(|i| {
                let (locks, key) = (locks.clone(), key(i));
                tokio::spawn(async move { locks.acquire_with(&key, no_wait()).await })
            })
            .collect()
    })
    .await;

    let mut guards = Vec::new();
    let mut tokens = HashSet::new();
    for (i, call) in calls.into_iter().enumerate() {
        match (i, call.await.unwrap()) {
            (0, Err(LockError::Exists { owner, .. })) => {
                assert_eq!(owner.as_deref(), Some("other"));
            }
            (1, Err(LockError::Transport(TransportError::WrongType { .. }))) => {}
            (i, Ok(guard)) if i > 1 => {
                assert!(tokens.insert(guard.token()));
                guards.push(guard);
            }
            (i, other) => panic!("call {i}: {other:?}"),
        }
    }
    assert_eq!(guards.len(), CALLERS - 2);
    // Every acquire of the batch took its lock.
    for i in 2..CALLERS {
        assert_eq!(locks.owner(key(i)).await.unwrap().as_deref(), Some("me"));
    }
    let acquires = evalsha_calls(&t).await - before;
    // 64 calls (plus the owner lookup's none): without batching 64 script calls; with it, the
    // calls that went out before the stop and a few batches after it.
    assert!(
        acquires < 16,
        "{acquires} script calls for {CALLERS} acquires"
    );

    // Releases batch the same way; one of them finds its lock gone.
    let _: i64 = t.pool().del(key(2)).await.unwrap();
    let before = evalsha_calls(&t).await;
    let releases: Vec<_> = while_stopped(pid, || {
        guards
            .into_iter()
            .map(|g| tokio::spawn(async move { (g.key().to_owned(), g.release().await) }))
            .collect()
    })
    .await;
    for release in releases {
        match release.await.unwrap() {
            (k, Err(LockError::NotOwner { owner: None, .. })) if k == key(2) => {}
            (k, Ok(())) if k != key(2) => {}
            (k, other) => panic!("release of {k}: {other:?}"),
        }
    }
    assert!(evalsha_calls(&t).await - before < 16);
    for i in 2..CALLERS {
        assert_eq!(locks.owner(key(i)).await.unwrap(), None);
    }
    held.release().await.unwrap();
}

/// Callers that give up while their calls wait in a batch (the server is stopped) leave no
/// lock held: the calls run when the server resumes, and what they took is released at once,
/// not after the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_give_up_on_a_queued_batch_leave_no_lock_held() {
    let Some((server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let key = |i: usize| lock_key(&ns, i);
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let pid = server.pid().unwrap();
    kaiju_tests::signal(pid, "-STOP");
    let calls: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (locks, key) = (locks.clone(), key(i));
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(100), locks.acquire(&key)).await
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_err(), "the server was stopped");
    }
    kaiju_tests::signal(pid, "-CONT");
    for i in 0..CALLERS {
        let key = key(i);
        eventually(
            "an acquire whose caller gave up to be undone",
            Duration::from_secs(5),
            || async { locks.owner(&key).await.unwrap().is_none() },
        )
        .await;
    }
    // And the locks are usable at once.
    let guard = locks.acquire_with(key(0), no_wait()).await.unwrap();
    guard.release().await.unwrap();
}

/// A batch whose reply is lost (its connection cut after the server ran it) leaves no lock
/// without a guard: each caller either holds its lock, or gets an error and the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_batch_reply_leaves_no_lock_without_a_guard() {
    let Some((server, direct)) = kaiju_tests::own_server().await else {
        return;
    };
    let (proxy, t) = behind_proxy(&server, 2000).await;
    let ns = kaiju_tests::namespace();
    let key = |i: usize| lock_key(&ns, i);
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let pid = server.pid().unwrap();
    let calls: Vec<_> = while_stopped(pid, || {
        let calls = (0..CALLERS)
            .map(|i| {
                let (locks, key) = (locks.clone(), key(i));
                tokio::spawn(async move { locks.acquire_with(&key, no_wait()).await })
            })
            .collect();
        // The first reply after the server resumes is dropped, its connection cut.
        proxy.drop_next_reply();
        calls
    })
    .await;
    let mut guards = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        match call.await.unwrap() {
            Ok(guard) => guards.push(guard),
            Err(LockError::Transport(_)) => {
                let key = key(i);
                let owner =
                    || async { direct.pool().get::<Option<String>, _>(&key).await.unwrap() };
                eventually(
                    "a lock whose acquire failed to be free",
                    Duration::from_secs(5),
                    || async { owner().await.is_none() },
                )
                .await;
            }
            Err(other) => panic!("call {i}: {other:?}"),
        }
    }
    assert!(proxy.dropped() >= 1, "a reply was dropped");
    for guard in &guards {
        let owner: Option<String> = direct.pool().get(guard.key()).await.unwrap();
        assert_eq!(
            owner.as_deref(),
            Some("me"),
            "{} lost its lock",
            guard.key()
        );
    }
    for guard in guards {
        guard.release().await.unwrap();
    }
}

/// Polls `fut` once and leaves it alive, unpolled: a `select!` arm not taken yet.
async fn poll_once<F: std::future::Future + ?Sized>(fut: &mut std::pin::Pin<Box<F>>) {
    std::future::poll_fn(|cx| {
        let _ = fut.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
}

/// Calls whose futures were polled once and then left alone (their replies long in) do not
/// hold up any other caller of the same `Locks`: queued calls are sent by a task of the lane,
/// never by a caller's future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_stop_polling_hold_up_no_one() {
    let Some((_server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let key = |i: usize| lock_key(&ns, i);
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    type Parked = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<kaiju_locks::LockGuard, LockError>> + Send>,
    >;
    let mut parked: Vec<Parked> = Vec::new();
    for i in 0..CALLERS {
        let (locks, key) = (locks.clone(), key(i));
        let mut call: Parked = Box::pin(async move { locks.acquire_with(key, no_wait()).await });
        poll_once(&mut call).await;
        parked.push(call);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in CALLERS..CALLERS + 8 {
        let guard = tokio::time::timeout(
            Duration::from_secs(5),
            locks.acquire_with(key(i), no_wait()),
        )
        .await
        .expect("an unrelated acquire waited for futures nobody polls")
        .unwrap();
        guard.release().await.unwrap();
    }
    // The parked calls still complete, each with its own lock, once polled.
    for (i, call) in parked.into_iter().enumerate() {
        let guard = call.await.unwrap();
        assert_eq!(guard.key(), key(i));
        guard.release().await.unwrap();
    }
}

/// A batch the server refuses as a whole because of one call (an ACL user that may not touch
/// that call's key: checked before the script runs) is sent again call by call: only that
/// call fails, its neighbours get their locks and releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_key_fails_only_its_own_call_in_a_batch() {
    let Some((server, admin)) = kaiju_tests::own_server().await else {
        return;
    };
    server
        .cli(&[
            "ACL", "SETUSER", "app", "on", ">pw", "~app.*", "~{app.*", "&*", "+@all",
        ])
        .unwrap();
    let t = Transport::connect(&kaiju_core::RedisSettings::from_url(format!(
        "redis://app:pw@127.0.0.1:{}",
        server.port()
    )))
    .await
    .unwrap();
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let pid = server.pid().unwrap();
    let forbidden = |i: usize| i == 10;
    let calls: Vec<_> = while_stopped(pid, || {
        (0..CALLERS)
            .map(|i| {
                let locks = locks.clone();
                let key = if forbidden(i) {
                    "secret.lock".to_owned()
                } else {
                    format!("app.lock.{i}")
                };
                tokio::spawn(async move { locks.acquire_with(&key, no_wait()).await })
            })
            .collect()
    })
    .await;
    let mut guards = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        match call.await.unwrap() {
            Err(LockError::Transport(TransportError::NoPermission { .. })) if forbidden(i) => {}
            Ok(guard) if !forbidden(i) => guards.push(guard),
            other => panic!("call {i}: {other:?}"),
        }
    }
    // Releases, with a release of the forbidden key among them.
    let releases: Vec<_> = while_stopped(pid, || {
        let mut releases: Vec<_> = guards
            .into_iter()
            .map(|g| tokio::spawn(async move { g.release().await }))
            .collect();
        let l = locks.clone();
        releases.insert(
            5,
            tokio::spawn(async move { l.release("secret.lock", "me").await }),
        );
        releases
    })
    .await;
    for (i, release) in releases.into_iter().enumerate() {
        match (i, release.await.unwrap()) {
            (5, Err(LockError::Transport(TransportError::NoPermission { .. }))) => {}
            (i, Ok(())) if i != 5 => {}
            (i, other) => panic!("release {i}: {other:?}"),
        }
    }
    for i in (0..CALLERS).filter(|i| !forbidden(*i)) {
        let owner: Option<String> = admin.pool().get(format!("app.lock.{i}")).await.unwrap();
        assert_eq!(owner, None, "app.lock.{i} still held after its release");
    }
}

/// When the server stops answering, a caller waits about one command timeout, not one per
/// batch queued ahead of it: a batch that times out fails the calls queued behind it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_queued_calls_after_one_timeout() {
    let Some((server, _)) = kaiju_tests::own_server().await else {
        return;
    };
    let (proxy, t) = behind_proxy(&server, 1000).await;
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    proxy.black_hole(true);
    let started = std::time::Instant::now();
    // 16 batches' worth of callers.
    let calls: Vec<_> = (0..16 * 64)
        .map(|i| {
            let locks = locks.clone();
            tokio::spawn(async move {
                let failed = locks
                    .acquire_with(format!("outage.{i}"), no_wait())
                    .await
                    .is_err();
                (failed, started.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for call in calls {
        let (failed, took) = call.await.unwrap();
        assert!(failed, "the server was unreachable");
        slowest = slowest.max(took);
    }
    // One timeout for the call, one for undoing an acquire of unknown outcome, and slack.
    assert!(
        slowest < Duration::from_millis(3500),
        "the slowest caller waited {slowest:?} with a 1 s command timeout"
    );
}
