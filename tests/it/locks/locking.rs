//! kaiju-locks against a real single node and a real cluster.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaiju_core::Namespace;
use kaiju_locks::{AcquireOptions, LockError, Locks};
use kaiju_tests::locks::no_wait;
use kaiju_tests::{Target, on_both};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use tokio::sync::Mutex;

on_both!(
    acquire_release_owner_exists,
    each_failure_has_its_own_error,
    fencing_tokens_strictly_increase,
    a_late_release_never_deletes_the_next_owners_lock,
    a_revoked_guard_leaves_its_owners_next_hold_alone,
    a_release_that_ran_is_done_whatever_the_key_holds_now,
    renewal_keeps_a_lock_across_five_leases,
    guards_with_different_leases_each_renew_and_expire_on_their_own_time,
    a_locks_made_on_a_runtime_that_ended_still_renews_its_guards,
    a_runtime_that_is_not_driven_holds_up_no_other_runtimes_guards,
    queued_calls_on_an_undriven_runtime_hold_up_no_other_runtime,
    a_lock_deleted_behind_the_holders_back_is_reported,
    waiters_are_served_in_arrival_order,
    tasks_in_one_process_exclude_each_other,
    acquire_many_is_all_or_nothing,
    processes_exclude_each_other,
    a_killed_holders_lock_frees_within_its_lease,
);

async fn locks(t: &Transport, owner: &str) -> Locks {
    Locks::new(t.clone(), owner).await.unwrap()
}

fn opts() -> AcquireOptions {
    AcquireOptions::default()
}

/// A lease of `ms`, renewed or not, taken only if free (the keys of these tests are).
fn lease(ms: u64, renew: bool) -> AcquireOptions {
    AcquireOptions {
        lease: Duration::from_millis(ms),
        renew,
        ..no_wait()
    }
}

/// A runtime of its own, as a sync wrapper or each test of a suite would have.
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Takes and releases 64 locks at once (enough overlapping calls to queue and batch).
async fn take_and_release_64(
    locks: &Locks,
    ns: &Namespace,
    prefix: &str,
    options: &AcquireOptions,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let (locks, key, options) = (
            locks.clone(),
            ns.key(&format!("{prefix}{i}")).unwrap(),
            options.clone(),
        );
        tasks.spawn(async move {
            let guard = locks.acquire_with(&key, options).await?;
            guard.release().await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
}

async fn acquire_release_owner_exists(t: &Transport, ns: &Namespace, _: Target) {
    let locks = locks(t, "app-1").await;
    let (key, other) = (ns.key("lock").unwrap(), ns.key("other").unwrap());
    let guard = locks.acquire(&key).await.unwrap();
    assert_eq!(guard.key(), key.as_str());
    assert_eq!(locks.owner(&key).await.unwrap().as_deref(), Some("app-1"));
    assert!(locks.is_owner(&key, "app-1").await.unwrap());
    assert!(!locks.is_owner(&key, "app-2").await.unwrap());
    assert_eq!(locks.exists(&[&key, &other]).await.unwrap(), [true, false]);
    // Python kaiju-redis reads the value as the owner id, verbatim.
    let raw: String = t.pool().get(key.as_str()).await.unwrap();
    assert_eq!(raw, "app-1");
    guard.release().await.unwrap();
    assert_eq!(locks.owner(&key).await.unwrap(), None);
    assert_eq!(locks.exists(&[&key]).await.unwrap(), [false]);
}

async fn each_failure_has_its_own_error(t: &Transport, ns: &Namespace, _: Target) {
    let (a, b) = (locks(t, "a").await, locks(t, "b").await);
    let key = ns.key("lock").unwrap();
    let guard = a.acquire(&key).await.unwrap();
    let busy = b.acquire_with(&key, no_wait()).await;
    assert!(
        matches!(&busy, Err(LockError::Exists { owner: Some(o), .. }) if o == "a"),
        "{busy:?}"
    );
    let started = Instant::now();
    let late = b
        .acquire_with(
            &key,
            AcquireOptions {
                timeout: Some(Duration::from_millis(300)),
                ..opts()
            },
        )
        .await;
    assert!(matches!(late, Err(LockError::Timeout { .. })), "{late:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let wrong = b.release(&key, "b").await;
    assert!(
        matches!(&wrong, Err(LockError::NotOwner { owner: Some(o), .. }) if o == "a"),
        "{wrong:?}"
    );
    assert!(
        a.is_owner(&key, "a").await.unwrap(),
        "a failed release must not delete the lock"
    );
    guard.release().await.unwrap();
    assert!(matches!(
        a.release(&key, "a").await,
        Err(LockError::NotOwner { owner: None, .. })
    ));
    // The timed-out waiter left the queue: a non-waiting acquire succeeds at once.
    let again = b.acquire_with(&key, no_wait()).await.unwrap();
    again.release().await.unwrap();
}

async fn fencing_tokens_strictly_increase(t: &Transport, ns: &Namespace, _: Target) {
    let locks = locks(t, "app").await;
    let key = ns.key("lock").unwrap();
    let mut last = 0;
    for _ in 0..5 {
        let guard = locks.acquire(&key).await.unwrap();
        assert!(guard.token() > last, "{} after {last}", guard.token());
        last = guard.token();
        guard.release().await.unwrap();
    }
}

async fn a_late_release_never_deletes_the_next_owners_lock(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    // Same owner id on purpose: two tasks of one app share it, only the token tells them apart.
    let locks = locks(t, "app").await;
    let key = ns.key("lock").unwrap();
    let short = AcquireOptions {
        lease: Duration::from_millis(100),
        renew: false,
        ..opts()
    };
    let first = locks.acquire_with(&key, short.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = locks.acquire_with(&key, no_wait()).await.unwrap();
    assert!(second.token() > first.token());
    assert!(matches!(
        first.release().await,
        Err(LockError::NotOwner { .. })
    ));
    assert!(
        locks.exists(&[&key]).await.unwrap()[0],
        "the late release deleted the new lock"
    );
    // It left the new holder's fence as it was, expiry included.
    let fence = kaiju_core::side_key(key.as_str(), "fence");
    let expiry: i64 = t.pool().pttl(fence.as_str()).await.unwrap();
    assert!(expiry > 0, "the fence lost its expiry: {expiry}");
    second.release().await.unwrap();
}

/// A guard whose hold was taken away (a release by owner alone) does not release the lock
/// its owner id took again since (here the way Python kaiju takes it): it reports the lock
/// lost, and the new hold stays.
async fn a_revoked_guard_leaves_its_owners_next_hold_alone(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let locks = locks(t, "app").await;
    let key = ns.key("lock").unwrap();
    let guard = locks
        .acquire_with(&key, lease(30_000, false))
        .await
        .unwrap();
    locks.release(&key, "app").await.unwrap();
    let taken: Option<String> = t
        .pool()
        .set(
            key.as_str(),
            "app",
            Some(Expiration::EX(30)),
            Some(SetOptions::NX),
            false,
        )
        .await
        .unwrap();
    assert_eq!(taken.as_deref(), Some("OK"));
    match guard.release().await {
        Err(LockError::NotOwner { owner, .. }) => assert_eq!(owner.as_deref(), Some("app")),
        other => panic!("a revoked guard's release: {other:?}"),
    }
    assert_eq!(locks.owner(&key).await.unwrap().as_deref(), Some("app"));
    locks.release(&key, "app").await.unwrap();
}

/// A release that ran is done, whatever the key holds now: sent again (here: its run
/// simulated by marking the fence released, and the key then overwritten with a hash), it
/// still reports success rather than the new value's `WRONGTYPE`.
async fn a_release_that_ran_is_done_whatever_the_key_holds_now(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let locks = locks(t, "app").await;
    let key = ns.key("lock").unwrap();
    let guard = locks
        .acquire_with(&key, lease(30_000, false))
        .await
        .unwrap();
    let fence = kaiju_core::side_key(key.as_str(), "fence");
    let released = format!("{} released", guard.token());
    let _: Value = t
        .pool()
        .set(fence.as_str(), released.as_str(), None, None, false)
        .await
        .unwrap();
    let _: Value = t.pool().del(key.as_str()).await.unwrap();
    let _: Value = t.pool().hset(key.as_str(), ("f", "v")).await.unwrap();
    guard.release().await.unwrap();
    let kind: String = t.pool().r#type(key.as_str()).await.unwrap();
    assert_eq!(kind, "hash", "the release touched the new value");
    let _: Value = t.pool().del((key.as_str(), fence.as_str())).await.unwrap();
}

async fn renewal_keeps_a_lock_across_five_leases(t: &Transport, ns: &Namespace, _: Target) {
    let locks = locks(t, "app").await;
    let key = ns.key("lock").unwrap();
    let guard = locks
        .acquire_with(
            &key,
            AcquireOptions {
                lease: Duration::from_millis(300),
                ..opts()
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!guard.is_lost());
    assert!(
        locks.is_owner(&key, "app").await.unwrap(),
        "the lock expired while held"
    );
    let ttl: i64 = t.pool().pttl(key.as_str()).await.unwrap();
    assert!(ttl > 0 && ttl <= 300, "{ttl}");
    guard.release().await.unwrap();
    // Releasing stopped renewal: nothing re-creates the key.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(locks.owner(&key).await.unwrap(), None);
}

/// Guards' keepers start from one timer per `Locks` (and runtime), which sleeps until the
/// earliest one is due: a short lease taken while it sleeps for a long one must still be renewed on time, and a
/// guard without renewal must report its loss at its own deadline, not at a later guard's.
async fn guards_with_different_leases_each_renew_and_expire_on_their_own_time(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let locks = locks(t, "app").await;
    let (long, short, once) = (
        ns.key("long").unwrap(),
        ns.key("short").unwrap(),
        ns.key("once").unwrap(),
    );
    // The timer now sleeps until the long lease's first renewal (10 s away).
    let long_guard = locks
        .acquire_with(&long, lease(30_000, true))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let short_guard = locks.acquire_with(&short, lease(300, true)).await.unwrap();
    let once_guard = locks.acquire_with(&once, lease(400, false)).await.unwrap();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), once_guard.lost())
        .await
        .expect("a guard without renewal never reported its loss");
    let at = started.elapsed();
    assert!(
        at >= Duration::from_millis(300) && at < Duration::from_secs(1),
        "lost after {at:?}, its lease less a tenth is 360 ms"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !short_guard.is_lost(),
        "the short lease was not renewed in time"
    );
    assert!(
        locks.is_owner(&short, "app").await.unwrap(),
        "the short lease expired while held"
    );
    assert!(!long_guard.is_lost());
    short_guard.release().await.unwrap();
    long_guard.release().await.unwrap();
    assert_eq!(locks.owner(&short).await.unwrap(), None);
    assert_eq!(locks.owner(&long).await.unwrap(), None);
}

/// A `Locks` kept after the runtime it was made on has ended (a static one shared by tests,
/// each on a runtime of its own) still renews guards taken on a live runtime.
async fn a_locks_made_on_a_runtime_that_ended_still_renews_its_guards(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let transport = t.clone();
    let locks = std::thread::spawn(move || {
        let runtime = current_thread_runtime();
        let locks = runtime.block_on(Locks::new(transport, "app")).unwrap();
        drop(runtime);
        locks
    })
    .join()
    .unwrap();
    let key = ns.key("lock").unwrap();
    let options = lease(300, true);
    let guard = locks.acquire_with(&key, options.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!guard.is_lost(), "not renewed");
    assert!(
        locks.is_owner(&key, "app").await.unwrap(),
        "expired while held"
    );
    guard.release().await.unwrap();
    assert_eq!(locks.owner(&key).await.unwrap(), None);
    // Their batches go out from this runtime too.
    take_and_release_64(&locks, ns, "many", &options).await;
}

/// A guard taken on a runtime that then sits idle (a current-thread runtime kept for
/// `block_on` calls) must not hold up the renewal of guards on other runtimes.
async fn a_runtime_that_is_not_driven_holds_up_no_other_runtimes_guards(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let locks = locks(t, "app").await;
    let (elsewhere, idle_key) = (locks.clone(), ns.key("idle").unwrap());
    let (taken, done) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let idle = std::thread::spawn(move || {
        let runtime = current_thread_runtime();
        let guard = runtime
            .block_on(elsewhere.acquire_with(&idle_key, lease(30_000, true)))
            .unwrap();
        taken.send(()).unwrap();
        // Alive, not driven, until the test is over.
        let _ = released.recv();
        runtime.block_on(guard.release()).unwrap();
    });
    done.recv().unwrap();
    let (short, once) = (ns.key("short").unwrap(), ns.key("once").unwrap());
    let short_guard = locks.acquire_with(&short, lease(300, true)).await.unwrap();
    let once_guard = locks.acquire_with(&once, lease(400, false)).await.unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(2), once_guard.lost()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let short_held = locks.is_owner(&short, "app").await.unwrap();
    release.send(()).unwrap();
    tokio::task::spawn_blocking(move || idle.join().unwrap())
        .await
        .unwrap();
    assert!(
        lost.is_ok(),
        "lost() of a guard without renewal never resolved"
    );
    assert!(
        short_held && !short_guard.is_lost(),
        "the 300 ms lease was not renewed"
    );
    short_guard.release().await.unwrap();
}

/// Batches are per runtime too: a runtime left undriven with lock calls queued (a
/// `block_on` that returned while other tasks of it were mid-call) holds up no call made on
/// another runtime.
async fn queued_calls_on_an_undriven_runtime_hold_up_no_other_runtime(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let locks = locks(t, "app").await;
    let options = no_wait();
    let elsewhere = locks.clone();
    let keys: Vec<kaiju_core::Key> = (0..64)
        .map(|i| ns.key(&format!("idle{i}")).unwrap())
        .collect();
    let (parked, done) = std::sync::mpsc::channel();
    let (finish, finished) = std::sync::mpsc::channel::<()>();
    let idle_options = options.clone();
    let idle = std::thread::spawn(move || {
        let runtime = current_thread_runtime();
        let mut calls = Vec::new();
        for key in keys {
            let (locks, options) = (elsewhere.clone(), idle_options.clone());
            calls.push(runtime.spawn(async move {
                let guard = locks.acquire_with(&key, options).await?;
                guard.release().await
            }));
        }
        // Driven only until the first call is done: the others stay mid-call, unpolled.
        let first = calls.remove(0);
        runtime.block_on(first).unwrap().unwrap();
        parked.send(()).unwrap();
        let _ = finished.recv();
        for call in calls {
            runtime.block_on(call).unwrap().unwrap();
        }
    });
    done.recv().unwrap();
    let all = tokio::time::timeout(
        Duration::from_secs(5),
        take_and_release_64(&locks, ns, "live", &options),
    )
    .await;
    finish.send(()).unwrap();
    tokio::task::spawn_blocking(move || idle.join().unwrap())
        .await
        .unwrap();
    assert!(
        all.is_ok(),
        "calls on a live runtime waited for an undriven one"
    );
}

async fn a_lock_deleted_behind_the_holders_back_is_reported(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let locks = locks(t, "app").await;
    let key = ns.key("lock").unwrap();
    let guard = locks
        .acquire_with(
            &key,
            AcquireOptions {
                lease: Duration::from_millis(300),
                ..opts()
            },
        )
        .await
        .unwrap();
    let _: i64 = t.pool().del(key.as_str()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("the holder was not told that its lock is gone");
    assert!(guard.is_lost());
    assert!(matches!(
        guard.release().await,
        Err(LockError::NotOwner { .. })
    ));
}

async fn waiters_are_served_in_arrival_order(t: &Transport, ns: &Namespace, _: Target) {
    let key = ns.key("lock").unwrap();
    let holder = locks(t, "holder").await;
    let guard = holder.acquire(&key).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..4 {
        // Separate Locks values stand for separate processes.
        let locks = locks(t, &format!("w{i}")).await;
        let (key, order) = (key.clone(), order.clone());
        waiters.push(tokio::spawn(async move {
            let guard = locks.acquire(&key).await.unwrap();
            order.lock().await.push(i);
            tokio::time::sleep(Duration::from_millis(20)).await;
            guard.release().await.unwrap();
        }));
        // Let each waiter join the queue before the next one arrives.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    guard.release().await.unwrap();
    for w in waiters {
        w.await.unwrap();
    }
    assert_eq!(*order.lock().await, [0, 1, 2, 3]);
}

async fn tasks_in_one_process_exclude_each_other(t: &Transport, ns: &Namespace, _: Target) {
    let locks = locks(t, "app").await;
    let (key, counter) = (ns.key("lock").unwrap(), ns.key("counter").unwrap());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (locks, pool) = (locks.clone(), t.pool().clone());
        let (key, counter) = (key.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            for _ in 0..10 {
                let guard = locks.acquire(&key).await.unwrap();
                let v: Option<i64> = pool.get(counter.as_str()).await.unwrap();
                let _: () = pool
                    .set(counter.as_str(), v.unwrap_or(0) + 1, None, None, false)
                    .await
                    .unwrap();
                tokens.push(guard.token());
                guard.release().await.unwrap();
            }
            tokens
        }));
    }
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.extend(task.await.unwrap());
    }
    let value: i64 = t.pool().get(counter.as_str()).await.unwrap();
    assert_eq!(value, 160);
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 160, "two holders got the same fencing token");
}

async fn acquire_many_is_all_or_nothing(t: &Transport, ns: &Namespace, target: Target) {
    let locks = locks(t, "app").await;
    let tagged = ns.hash_tagged();
    let (a, b) = (tagged.key("a").unwrap(), tagged.key("b").unwrap());
    let held = locks.acquire(&b).await.unwrap();
    let busy = locks.acquire_many(&[&a, &b], no_wait()).await;
    assert!(
        matches!(&busy, Err(LockError::Exists { key, .. }) if key == b.as_str()),
        "{busy:?}"
    );
    assert_eq!(
        locks.exists(&[&a]).await.unwrap(),
        [false],
        "a was taken although b was busy"
    );
    held.release().await.unwrap();
    let both = locks.acquire_many(&[&a, &b], opts()).await.unwrap();
    assert_eq!(both.tokens().len(), 2);
    assert_eq!(locks.exists(&[&a, &b]).await.unwrap(), [true, true]);
    both.release().await.unwrap();
    assert_eq!(locks.exists(&[&a, &b]).await.unwrap(), [false, false]);

    let (x, y) = (ns.key("x").unwrap(), ns.key("y").unwrap());
    let spread = locks.acquire_many(&[&x, &y], no_wait()).await;
    match target {
        Target::Cluster => assert!(
            matches!(spread, Err(LockError::CrossSlot { .. })),
            "{spread:?}"
        ),
        Target::Single | Target::Tls => spread.unwrap().release().await.unwrap(),
    }
    assert!(matches!(
        locks.acquire_many::<&str>(&[], opts()).await,
        Err(LockError::NoKeys)
    ));
}

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lock_worker"))
}

fn url(target: Target) -> String {
    std::env::var(target.url_var()).unwrap()
}

async fn processes_exclude_each_other(t: &Transport, ns: &Namespace, target: Target) {
    let (key, counter, log) = (
        ns.key("lock").unwrap(),
        ns.key("counter").unwrap(),
        ns.key("log").unwrap(),
    );
    const PROCESSES: usize = 2;
    const TASKS: usize = 8;
    const PER_TASK: usize = 63;
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            worker()
                .args([
                    "count",
                    &url(target),
                    key.as_str(),
                    counter.as_str(),
                    log.as_str(),
                ])
                .args([TASKS.to_string(), PER_TASK.to_string()])
                .spawn()
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    let statuses = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|mut c| c.wait().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(statuses.iter().all(|s| s.success()), "{statuses:?}");
    let total = PROCESSES * TASKS * PER_TASK;
    eprintln!(
        "{total} contended acquisitions by {PROCESSES} processes x {TASKS} tasks in {:?}",
        started.elapsed()
    );
    let value: i64 = t.pool().get(counter.as_str()).await.unwrap();
    assert_eq!(
        value as usize, total,
        "lost updates: the lock let two holders in"
    );
    // Ordered by fencing token, the values read must be 0, 1, 2, ...: no two holders overlapped.
    let entries: Vec<String> = t.pool().lrange(log.as_str(), 0, -1).await.unwrap();
    let mut by_token: Vec<(u64, i64)> = entries
        .iter()
        .map(|e| {
            let (token, value) = e.split_once(' ').unwrap();
            (token.parse().unwrap(), value.parse().unwrap())
        })
        .collect();
    by_token.sort_unstable();
    let values: Vec<i64> = by_token.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, (0..total as i64).collect::<Vec<_>>());
}

async fn a_killed_holders_lock_frees_within_its_lease(
    t: &Transport,
    ns: &Namespace,
    target: Target,
) {
    let key = ns.key("lock").unwrap();
    let lease = Duration::from_millis(1000);
    let mut child = worker()
        .args([
            "hold",
            &url(target),
            key.as_str(),
            &lease.as_millis().to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(line.starts_with("held"), "{line}");
    let locks = locks(t, "survivor").await;
    child.kill().unwrap();
    let killed = Instant::now();
    let _ = child.wait();
    // The waiter must get the lock once the dead holder's lease runs out (plus one retry).
    let guard = locks
        .acquire_with(
            &key,
            AcquireOptions {
                timeout: Some(lease * 3),
                ..opts()
            },
        )
        .await
        .unwrap();
    let waited = killed.elapsed();
    eprintln!("lock of a SIGKILLed holder acquired {waited:?} after the kill (lease {lease:?})");
    assert!(waited <= lease + Duration::from_millis(700), "{waited:?}");
    guard.release().await.unwrap();
}
