//! kaiju-locks on a bad day: a partitioned holder, cancelled acquires, lost replies, side keys
//! deleted or lost with a restart, idle pub/sub, dropped `Locks`. One test per defect of the
//! locks review, named after the behaviour it pins down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kaiju_core::{Namespace, RedisSettings, side_key};
use kaiju_locks::{AcquireOptions, LockError, LockGuard, Locks};
use kaiju_testkit::{RedisServer, ServerOptions};
use kaiju_tests::locks::no_wait;
use kaiju_tests::proxy::Proxy;
use kaiju_tests::{Target, can_spawn_servers, eventually, on_both};
use kaiju_transport::Transport;
use kaiju_transport::fred::interfaces::{EventInterface, PubsubInterface};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{CustomCommand, Value};

on_both!(
    side_keys_expire_and_tokens_keep_increasing,
    a_fence_ahead_of_the_clock_still_gives_larger_tokens,
    acquire_many_rejects_a_repeated_key,
    a_release_by_owner_makes_the_guards_own_release_report_the_loss,
    a_release_publishes_only_when_someone_waits,
    a_cancelled_waiter_leaves_the_queue_at_once,
);

/// Every key a lock may leave behind.
fn side_keys(key: &str) -> Vec<String> {
    ["fence", "queue", "alive", "arrivals"]
        .into_iter()
        .map(|s| side_key(key, s))
        .collect()
}

/// A holder, and a waiter that gets the lock through the queue when the holder releases it:
/// the holder's token, and the waiter's guard.
async fn through_the_queue(locks: &Locks, key: &str) -> (u64, LockGuard) {
    let first = locks.acquire(key).await.unwrap();
    let waiter = tokio::spawn({
        let (locks, key) = (locks.clone(), key.to_owned());
        async move { locks.acquire(&key).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let token = first.token();
    first.release().await.unwrap();
    (token, waiter.await.unwrap())
}

async fn side_keys_expire_and_tokens_keep_increasing(t: &Transport, ns: &Namespace, _: Target) {
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let key = ns.key("lock").unwrap();
    // A holder and a waiter that gets the lock through the queue.
    let (t1, second) = through_the_queue(&locks, key.as_str()).await;
    let t2 = second.token();
    assert!(t2 > t1);
    second.release().await.unwrap();
    for side in side_keys(key.as_str()) {
        let ttl: i64 = t.pool().pttl(side.as_str()).await.unwrap();
        assert!(ttl != -1, "{side} never expires");
    }
    // Every side key deleted (evicted, expired, flushed): tokens still go up.
    let all: Vec<String> = side_keys(key.as_str());
    for side in &all {
        let _: i64 = t.pool().del(side.as_str()).await.unwrap();
    }
    let third = locks.acquire(&key).await.unwrap();
    assert!(third.token() > t2, "{} after {t2}", third.token());
    third.release().await.unwrap();
}

/// A fence ahead of the server clock (a clock that went back, or a fence from a faster
/// server before a failover), in the current `<token> <state>` form or as a bare number: the
/// next token is still above it, on the fast path, the queued path and `acquire_many`.
async fn a_fence_ahead_of_the_clock_still_gives_larger_tokens(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let ahead: u64 = 9_000_000_000_000_000; // year 2255, in µs
    let key = ns.hash_tagged().key("a").unwrap();
    let fence = side_key(key.as_str(), "fence");
    for stored in [format!("{ahead} released"), ahead.to_string()] {
        let _: () = t
            .pool()
            .set(fence.as_str(), stored.as_str(), None, None, false)
            .await
            .unwrap();
        let guard = locks.acquire(&key).await.unwrap();
        assert_eq!(guard.token(), ahead + 1, "after {stored:?}");
        let state: String = t.pool().get(fence.as_str()).await.unwrap();
        assert!(state.starts_with(&format!("{} ", ahead + 1)), "{state}");
        guard.release().await.unwrap();
        let state: String = t.pool().get(fence.as_str()).await.unwrap();
        assert_eq!(state, format!("{} released", ahead + 1));
    }
    // Through the queue: held, so the next acquire waits and takes it after the release.
    let (first, second) = through_the_queue(&locks, key.as_str()).await;
    assert_eq!(first, ahead + 2);
    assert_eq!(second.token(), ahead + 3);
    second.release().await.unwrap();
    // Several keys at once.
    let other = ns.hash_tagged().key("b").unwrap();
    let both = locks
        .acquire_many(&[&key, &other], AcquireOptions::default())
        .await
        .unwrap();
    assert_eq!(both.tokens()[0], ahead + 4);
    assert!(both.tokens()[1] < ahead, "{:?}", both.tokens());
    both.release().await.unwrap();
}

/// `Locks::release(key, owner)` (no token, as the seed's API) takes the lock away from the
/// guard that holds it: the guard learns it lost the lock, and its own release says so
/// instead of pretending it released it.
async fn a_release_by_owner_makes_the_guards_own_release_report_the_loss(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let key = ns.key("lock").unwrap();
    let guard = locks.acquire(&key).await.unwrap();
    locks.release(&key, "me").await.unwrap();
    let released = guard.release().await;
    assert!(
        matches!(released, Err(LockError::NotOwner { .. })),
        "{released:?}"
    );
    // The lock is free for the next one, with a larger token.
    let next = locks.acquire_with(&key, no_wait()).await.unwrap();
    next.release().await.unwrap();
}

async fn acquire_many_rejects_a_repeated_key(t: &Transport, ns: &Namespace, _: Target) {
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let key = ns.hash_tagged().key("a").unwrap();
    let other = ns.hash_tagged().key("b").unwrap();
    let twice = locks
        .acquire_many(&[&key, &other, &key], AcquireOptions::default())
        .await;
    assert!(
        matches!(&twice, Err(LockError::DuplicateKey { key: k }) if k == key.as_str()),
        "{twice:?}"
    );
    assert_eq!(locks.exists(&[&key, &other]).await.unwrap(), [false, false]);
}

async fn a_release_publishes_only_when_someone_waits(t: &Transport, ns: &Namespace, _: Target) {
    let key = ns.key("lock").unwrap();
    let channel = side_key(key.as_str(), "released");
    let listener = t.dedicated_connection().await.unwrap();
    let messages = Arc::new(AtomicUsize::new(0));
    let counter = messages.clone();
    let _handle = listener.client().on_message(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    });
    listener.client().subscribe(channel.as_str()).await.unwrap();
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    for _ in 0..10 {
        locks.acquire(&key).await.unwrap().release().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        messages.load(Ordering::SeqCst),
        0,
        "published with nobody waiting"
    );
    // With a waiter, the release wakes it.
    let held = locks.acquire(&key).await.unwrap();
    let waiter = tokio::spawn({
        let (locks, key) = (locks.clone(), key.clone());
        async move { locks.acquire(&key).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.release().await.unwrap();
    waiter.await.unwrap().release().await.unwrap();
    eventually("the wake-up", Duration::from_secs(2), || async {
        messages.load(Ordering::SeqCst) >= 1
    })
    .await;
}

async fn a_cancelled_waiter_leaves_the_queue_at_once(t: &Transport, ns: &Namespace, _: Target) {
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let key = ns.key("lock").unwrap();
    let held = locks.acquire(&key).await.unwrap();
    // A waiter whose caller gives up (a timeout around the call).
    let gave_up = tokio::time::timeout(Duration::from_millis(300), locks.acquire(&key)).await;
    assert!(gave_up.is_err());
    let queue = side_key(key.as_str(), "queue");
    eventually(
        "the ticket to leave the queue",
        Duration::from_secs(1),
        || async { t.pool().zcard::<u64, _>(queue.as_str()).await.unwrap() == 0 },
    )
    .await;
    // The next caller is not held up behind the dead ticket.
    held.release().await.unwrap();
    let started = Instant::now();
    let next = locks.acquire(&key).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
    next.release().await.unwrap();
}

/// A holder cut off from Redis learns that its lock may be lost before anyone else can take
/// it: `lost()` fires no later than the last renewal's send time plus the lease (minus a
/// margin), even though its renewal is still waiting for a reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_fires_before_another_process_can_acquire() {
    let Some(port) = kaiju_tests::single_port() else {
        return;
    };
    let proxy = Proxy::start(port).await.unwrap();
    let partitioned = Transport::connect(&proxy.settings()).await.unwrap();
    let direct = kaiju_tests::connect(Target::Single).await.unwrap();
    let key = kaiju_tests::namespace().key("lock").unwrap();
    let holder = Locks::new(partitioned, "holder").await.unwrap();
    let contender = Locks::new(direct, "contender").await.unwrap();
    let lease = Duration::from_secs(3);
    let guard = holder
        .acquire_with(
            &key,
            AcquireOptions {
                lease,
                ..AcquireOptions::default()
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.black_hole(true);
    let cut = Instant::now();
    let lost_at = async {
        guard.lost().await;
        Instant::now()
    };
    let acquired_at = async {
        loop {
            if let Ok(g) = contender.acquire_with(&key, no_wait()).await {
                let at = Instant::now();
                g.release().await.unwrap();
                return at;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (lost_at, acquired_at) = tokio::join!(lost_at, acquired_at);
    eprintln!(
        "lease 3 s, partitioned at 0: lost() at {:?}, another process acquired at {:?}",
        lost_at - cut,
        acquired_at - cut
    );
    assert!(lost_at < acquired_at, "two holders at once");
    assert!(lost_at - cut <= lease);
    proxy.black_hole(false);
    drop(guard);
}

/// A proxy in front of the single node, locks of owner `me` through it, and a fresh key.
async fn locks_behind_proxy() -> Option<(Proxy, Locks, kaiju_core::Key)> {
    let port = kaiju_tests::single_port()?;
    let proxy = Proxy::start(port).await.unwrap();
    let t = Transport::connect(&proxy.settings()).await.unwrap();
    let locks = Locks::new(t, "me").await.unwrap();
    let key = kaiju_tests::namespace().key("lock").unwrap();
    Some((proxy, locks, key))
}

/// A lost reply does not turn a successful acquire into `Exists` (with the caller itself as
/// the owner) and an orphaned lock, nor a successful release into `NotOwner`: the scripts are
/// idempotent for their own call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_neither_orphans_a_lock_nor_fakes_not_owner() {
    let Some((proxy, locks, key)) = locks_behind_proxy().await else {
        return;
    };
    proxy.drop_next_reply();
    let guard = locks.acquire_with(&key, no_wait()).await.unwrap();
    assert_eq!(proxy.dropped(), 1);
    assert_eq!(locks.owner(&key).await.unwrap().as_deref(), Some("me"));
    proxy.drop_next_reply();
    guard.release().await.unwrap();
    assert_eq!(proxy.dropped(), 2);
    assert_eq!(locks.owner(&key).await.unwrap(), None);
}

/// A release by owner alone is not idempotent (resent after it ran, it would take away a lock
/// the same owner id took since), so a lost reply is an error of unknown outcome, not a
/// resend: the release ran once, and the caller is told it does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_by_owner_whose_reply_is_lost_is_not_sent_again() {
    let Some((proxy, locks, key)) = locks_behind_proxy().await else {
        return;
    };
    let guard = locks.acquire_with(&key, no_wait()).await.unwrap();
    proxy.drop_next_reply();
    match locks.release(&key, "me").await {
        Err(LockError::Transport(e)) => assert!(e.is_retryable(), "{e:?}"),
        // A resend after the release ran finds no lock: `NotOwner`.
        other => panic!("a release by owner with a lost reply: {other:?}"),
    }
    assert_eq!(proxy.dropped(), 1);
    assert_eq!(locks.owner(&key).await.unwrap(), None);
    assert!(matches!(
        guard.release().await,
        Err(LockError::NotOwner { owner: None, .. })
    ));
}

/// Under maxmemory (with the default `noeviction` policy the server refuses writes that may add
/// memory), a guard's release still frees its lock: a release only removes memory, and its
/// script's first write is the `DEL`, which the server allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_releases_its_lock_when_the_server_is_out_of_memory() {
    release_when_out_of_memory(false).await;
}

/// The same where kaiju's scripts are loaded as functions: the server refuses a function that
/// may write whole when it is out of memory, so the release goes by `EVALSHA`, checked per
/// command, for that call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_releases_its_lock_out_of_memory_where_scripts_are_functions() {
    release_when_out_of_memory(true).await;
}

async fn release_when_out_of_memory(functions: bool) {
    let Some((_server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    if functions {
        for script in kaiju_locks::scripts() {
            script.load_function(&t).await.unwrap();
        }
    }
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let ns = kaiju_tests::namespace();
    let key = ns.key("lock").unwrap();
    let guard = locks.acquire_with(&key, no_wait()).await.unwrap();
    let info: String = t
        .pool()
        .info(Some(kaiju_transport::fred::types::InfoKind::Memory))
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    set_maxmemory(&t, used / 2).await;
    let refused = locks
        .acquire_with(ns.key("other").unwrap(), no_wait())
        .await;
    assert!(
        matches!(refused, Err(LockError::Transport(_))),
        "the server is not out of memory: {refused:?}"
    );
    let released = guard.release().await;
    set_maxmemory(&t, 0).await;
    released.unwrap();
    assert_eq!(locks.owner(&key).await.unwrap(), None);
    let stats: String = t
        .pool()
        .info(Some(kaiju_transport::fred::types::InfoKind::CommandStats))
        .await
        .unwrap();
    // The acquire went by FCALL where the functions are loaded; elsewhere every FCALL found
    // no function (and the scripts went by EVALSHA).
    let fcall = |field: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_fcall:"))
            .and_then(|l| l.split(',').find_map(|f| f.strip_prefix(field)))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let ran_as_functions = fcall("calls=").saturating_sub(fcall("failed_calls="));
    assert_eq!(ran_as_functions > 0, functions, "{stats}");
}

async fn set_maxmemory(t: &Transport, bytes: u64) {
    let config = CustomCommand::new_static("CONFIG", None, false);
    let args = vec!["SET".to_owned(), "maxmemory".into(), bytes.to_string()];
    let _: Value = t.pool().custom(config, args).await.unwrap();
}

/// An acquire whose caller gives up while the script is on its way (here: the server is
/// stopped when it is sent) never leaves a lock without a guard: the script completes in the
/// background and the lock it took is released at once, not after its 30 s lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_cancelled_in_flight_releases_what_it_took() {
    let Some((server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let key = kaiju_tests::namespace().key("lock").unwrap();
    let pid = server.pid().unwrap();
    kaiju_tests::signal(pid, "-STOP");
    let cancelled = tokio::time::timeout(Duration::from_millis(300), locks.acquire(&key)).await;
    assert!(cancelled.is_err());
    kaiju_tests::signal(pid, "-CONT");
    // The script ran after the caller left and took the lock; it must be released at once
    // (the release marks its fence `<token> released`), not stay held for its lease.
    let fence = side_key(key.as_str(), "fence");
    eventually(
        "the orphaned lock to be released",
        Duration::from_secs(3),
        || async {
            let state: Option<String> = t.pool().get(fence.as_str()).await.unwrap();
            state.is_some_and(|s| s.ends_with(" released"))
        },
    )
    .await;
    assert_eq!(locks.owner(&key).await.unwrap(), None);
    let next = locks.acquire_with(&key, no_wait()).await.unwrap();
    next.release().await.unwrap();
    t.close().await.unwrap();
}

/// Tokens after a restart without persistence (every side key gone) are still above every
/// earlier token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_increasing_across_a_restart_without_persistence() {
    if !can_spawn_servers() {
        return;
    }
    let mut server = tokio::task::spawn_blocking(|| RedisServer::start(ServerOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let settings = RedisSettings::from_url(server.url());
    let t = Transport::connect(&settings).await.unwrap();
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let key = kaiju_tests::namespace().key("lock").unwrap();
    let mut before = 0;
    for _ in 0..5 {
        let guard = locks.acquire(&key).await.unwrap();
        before = before.max(guard.token());
        guard.release().await.unwrap();
    }
    t.close().await.unwrap();
    let mut server = tokio::task::spawn_blocking(move || {
        server.restart().unwrap();
        server
    })
    .await
    .unwrap();
    let t = Transport::connect(&settings).await.unwrap();
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let exists: i64 = t
        .pool()
        .exists(side_key(key.as_str(), "fence"))
        .await
        .unwrap();
    assert_eq!(exists, 0, "the restart kept the data");
    let after = locks.acquire(&key).await.unwrap();
    assert!(after.token() > before, "{} after {before}", after.token());
    after.release().await.unwrap();
    t.close().await.unwrap();
    server.kill();
}

/// Dropped `Locks` close their pub/sub connection (CLIENT LIST on a server of the test's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_locks_close_their_connections() {
    let Some((_server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let clients = || kaiju_tests::client_count(&t);
    let baseline = clients().await;
    for _ in 0..5 {
        let locks = Locks::new(t.clone(), "me").await.unwrap();
        drop(locks);
    }
    kaiju_tests::connections_back_to(&t, baseline, "the connections to close").await;
    t.close().await.unwrap();
}

// --- Found by the adversarial review of the hardened locks ---

on_both!(
    a_key_and_the_same_key_as_a_hash_tag_are_separate_locks,
    a_burst_of_releases_does_not_deafen_the_waiters,
);

async fn a_key_and_the_same_key_as_a_hash_tag_are_separate_locks(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let locks = Locks::new(t.clone(), "me").await.unwrap();
    let plain = ns.key("x").unwrap();
    let tagged = format!("{{{}}}", plain.as_str());
    let short = AcquireOptions {
        lease: Duration::from_secs(3),
        ..AcquireOptions::default()
    };
    let first = locks.acquire_with(&plain, short.clone()).await.unwrap();
    let second = locks.acquire_with(&tagged, short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!first.is_lost(), "taking {tagged} disturbed {plain}");
    first.release().await.unwrap();
    second.release().await.unwrap();
}

async fn a_burst_of_releases_does_not_deafen_the_waiters(t: &Transport, ns: &Namespace, _: Target) {
    let holder = Locks::new(t.clone(), "holder").await.unwrap();
    let waiter = Locks::new(t.clone(), "waiter").await.unwrap();
    let keys: Vec<_> = (0..60).map(|i| ns.key(&format!("k{i}")).unwrap()).collect();
    let mut held = Vec::new();
    for key in &keys {
        held.push(holder.acquire(key).await.unwrap());
    }
    let mut waits = Vec::new();
    for key in &keys {
        let (waiter, key) = (waiter.clone(), key.clone());
        waits.push(tokio::spawn(
            async move { waiter.acquire(&key).await.unwrap() },
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for guard in held {
        guard.release().await.unwrap();
    }
    for wait in waits {
        wait.await.unwrap().release().await.unwrap();
    }
    // After the burst, a hand-off is still woken by the release, not by the 500 ms retry.
    let key = ns.key("after").unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let guard = holder.acquire(&key).await.unwrap();
        let next = tokio::spawn({
            let (waiter, key) = (waiter.clone(), key.clone());
            async move {
                let guard = waiter.acquire(&key).await.unwrap();
                let at = Instant::now();
                guard.release().await.unwrap();
                at
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let released = Instant::now();
        guard.release().await.unwrap();
        slowest = slowest.max(next.await.unwrap() - released);
    }
    assert!(
        slowest < Duration::from_millis(250),
        "hand-off took {slowest:?}"
    );
}

/// `is_lost()` reads the clock: a holder whose runtime was blocked past the lease sees it,
/// even though its timers could not run.
#[test]
fn is_lost_is_right_after_a_blocked_executor() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let Some(t) = kaiju_tests::connect(Target::Single).await else {
            return;
        };
        let locks = Locks::new(t.clone(), "me").await.unwrap();
        let key = kaiju_tests::namespace().key("lock").unwrap();
        let guard = locks
            .acquire_with(
                &key,
                AcquireOptions {
                    lease: Duration::from_millis(500),
                    ..AcquireOptions::default()
                },
            )
            .await
            .unwrap();
        assert!(!guard.is_lost());
        // Block the only thread: no timer, no renewal runs.
        std::thread::sleep(Duration::from_millis(800));
        assert!(
            guard.is_lost(),
            "the lease ran out while the executor was blocked"
        );
        drop(guard);
    });
}

/// An acquire whose first try is in flight, dropped on a thread outside any runtime (a struct
/// holding the future dropped elsewhere): the try still finishes on its runtime and the lock
/// it took is released, not left for its lease.
#[test]
fn a_first_try_dropped_outside_a_runtime_still_releases_what_it_took() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some((server, t)) = rt.block_on(kaiju_tests::own_server()) else {
        return;
    };
    let locks = rt.block_on(Locks::new(t.clone(), "me")).unwrap();
    let key = kaiju_tests::namespace().key("outside").unwrap();
    // Scripts loaded, so the stopped server holds the acquire itself.
    rt.block_on(async { locks.acquire(&key).await.unwrap().release().await.unwrap() });
    let pid = server.pid().unwrap();
    kaiju_tests::signal(pid, "-STOP");
    let mut acquire = Box::pin({
        let (locks, key) = (locks.clone(), key.clone());
        async move { locks.acquire(&key).await }
    });
    rt.block_on(async {
        let waited = tokio::time::timeout(Duration::from_millis(100), &mut acquire).await;
        assert!(waited.is_err());
    });
    std::thread::spawn(move || drop(acquire)).join().unwrap();
    kaiju_tests::signal(pid, "-CONT");
    rt.block_on(eventually(
        "the orphaned lock to be released",
        Duration::from_secs(5),
        || async { locks.owner(&key).await.unwrap().is_none() },
    ));
    rt.block_on(async { t.close().await.unwrap() });
}
