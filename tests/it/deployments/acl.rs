//! Least-privilege ACL users: each component works under a user holding exactly the rule the
//! transport README's "ACL rules" table gives it (read from the README at run time, so the
//! documented rules are the tested ones), and nothing less or other works.
//!
//! Users are made on the shared single node (or every node of the cluster) with random names
//! and removed afterwards. The rows are Redis 7 selectors; `<scripts>` is `+fcall` (kaiju's
//! functions, loaded by each user's creation) unless a test says otherwise. The attacks of
//! issue 31 run against users holding the rows apps hold together.

use std::sync::Arc;
use std::time::Duration;

use kaiju_cache::Cache;
use kaiju_core::{Lifecycle, Namespace, RedisSettings};
use kaiju_locks::{AcquireOptions, LockError, Locks};
use kaiju_streams::{Headers, Listener, ListenerSettings, Outgoing, StreamWriter};
use kaiju_tests::acl::{Scripts, load_functions, rule_for};
use kaiju_tests::streams::{Body, Seen, distinct, recorder, rpc_stream};
use kaiju_tests::{Target, app, connect, eventually, namespace, settings};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{CustomCommand, Value};
use kaiju_transport::{Transport, TransportError};

/// The documented rule of `components` for `prefix`, with kaiju's functions (`+fcall`).
fn rule(components: &[&str], prefix: &str) -> String {
    rule_for(components, prefix, Scripts::Functions, None)
}

/// An ACL user on every node of a target, removed by [`User::remove`].
struct User {
    name: String,
    /// A plain connection to each node (ACL rules are per node).
    admins: Vec<Transport>,
    settings: RedisSettings,
}

/// A connection to each node of `target`: the single node, or each node of the cluster (from
/// the `node=` list of its URL).
async fn admins(target: Target) -> Option<Vec<Transport>> {
    let url = settings(target)?.url?.expose().to_owned();
    if target != Target::Cluster {
        return Some(vec![
            Transport::connect(&RedisSettings::from_url(url))
                .await
                .unwrap(),
        ]);
    }
    let rest = url.split_once("://").unwrap().1;
    let (first, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut nodes = vec![first.to_owned()];
    nodes.extend(
        query
            .split('&')
            .filter_map(|p| p.strip_prefix("node="))
            .map(str::to_owned),
    );
    let mut all = Vec::new();
    for node in nodes {
        let url = format!("redis://{node}");
        all.push(
            Transport::connect(&RedisSettings::from_url(url))
                .await
                .unwrap(),
        );
    }
    Some(all)
}

/// The ACL command, on one node.
async fn acl(admin: &Transport, args: Vec<String>) -> Value {
    admin
        .pool()
        .custom(CustomCommand::new_static("ACL", None, false), args.clone())
        .await
        .unwrap_or_else(|e| panic!("ACL {args:?}: {e}"))
}

impl User {
    async fn create(admin: &Transport, rule: &str) -> Self {
        Self::create_on(vec![admin.clone()], Target::Single, rule).await
    }

    async fn create_on(admins: Vec<Transport>, target: Target, rule: &str) -> Self {
        let name = format!("kaiju-acl-{}", uuid::Uuid::new_v4().simple());
        let password = uuid::Uuid::new_v4().simple().to_string();
        let mut args = vec![
            "SETUSER".to_owned(),
            name.clone(),
            "reset".into(),
            "on".into(),
            format!(">{password}"),
        ];
        args.extend(kaiju_tests::acl::args(rule));
        // kaiju's functions, for the users whose `<scripts>` is `+fcall`.
        if let Some(loader) = connect(target).await {
            load_functions(&loader).await;
            loader.close().await.ok();
        }
        for admin in &admins {
            acl(admin, args.clone()).await;
        }
        let mut settings = settings(target).unwrap();
        settings.username = Some(name.clone());
        settings.password = Some(password.into());
        settings.connect_timeout_ms = 1000;
        settings.command_timeout_ms = 2000;
        Self {
            name,
            admins,
            settings,
        }
    }

    async fn connect(&self) -> Transport {
        match Transport::connect(&self.settings).await {
            Ok(t) => t,
            Err(e) => panic!("connecting as {}: {e}\n{}", self.name, self.denials().await),
        }
    }

    /// What the servers refused this user, from `ACL LOG` on each node.
    async fn denials(&self) -> String {
        let mut out = String::new();
        for admin in &self.admins {
            let log = acl(admin, vec!["LOG".into(), "200".into()]).await;
            for entry in log.into_array() {
                let Ok(fields) = entry.into_map() else {
                    continue;
                };
                let field = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| k.as_str() == Some(name))
                        .and_then(|(_, v)| v.as_string())
                        .unwrap_or_default()
                };
                if field("username") == self.name {
                    out.push_str(&format!(
                        "denied {} {} ({})\n",
                        field("reason"),
                        field("object"),
                        field("context")
                    ));
                }
            }
        }
        out
    }

    async fn remove(self) {
        for admin in &self.admins {
            acl(admin, vec!["DELUSER".into(), self.name.clone()]).await;
        }
    }
}

/// Runs `work` as a user holding `components`' rules for `ns` on the single node; on failure,
/// shows what the server denied.
async fn as_user<F, Fut>(admin: &Transport, ns: &Namespace, components: &[&str], work: F)
where
    F: FnOnce(Transport) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let user = User::create(admin, &rule(components, ns.prefix())).await;
    run_as(user, components, work).await;
}

/// Runs `work` as `user`, then removes it; fails on an error or on any denial.
async fn run_as<F, Fut>(user: User, components: &[&str], work: F)
where
    F: FnOnce(Transport) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let t = user.connect().await;
    let result = work(t.clone()).await;
    let denials = user.denials().await;
    t.close().await.ok();
    user.remove().await;
    if let Err(e) = result {
        panic!("{components:?} under its documented rule: {e}\n{denials}");
    }
    assert!(
        denials.is_empty(),
        "{components:?}: the server denied\n{denials}"
    );
}

fn fail(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_works_under_its_rule() {
    let Some(admin) = connect(Target::Single).await else {
        return;
    };
    let ns = namespace();
    as_user(&admin, &ns.clone(), &["cache"], |t| async move {
        let cache = Cache::new(t);
        let (a, b) = (ns.key("a").map_err(fail)?, ns.key("b").map_err(fail)?);
        cache.set(&a, &1_i64, None).await.map_err(fail)?;
        cache
            .set(&b, &2_i64, Some(Duration::from_secs(60)))
            .await
            .map_err(fail)?;
        let got: Option<i64> = cache.get(&a).await.map_err(fail)?;
        assert_eq!(got, Some(1));
        cache
            .expire(&a, Duration::from_secs(60))
            .await
            .map_err(fail)?;
        assert_eq!(cache.exists(&[&a, &b]).await.map_err(fail)?, 2);
        let tagged = ns.hash_tagged();
        let (x, y) = (
            tagged.key("x").map_err(fail)?,
            tagged.key("y").map_err(fail)?,
        );
        cache
            .mset(&[(&x, 1_i64), (&y, 2_i64)], None)
            .await
            .map_err(fail)?;
        let both: Vec<Option<i64>> = cache.mget(&[&x, &y]).await.map_err(fail)?;
        assert_eq!(both, [Some(1), Some(2)]);
        let filled: i64 = cache
            .get_or_set_with(
                &ns.key("filled").map_err(fail)?,
                Duration::from_secs(60),
                || async { Ok::<_, std::convert::Infallible>(7_i64) },
            )
            .await
            .map_err(fail)?;
        assert_eq!(filled, 7);
        cache.delete(&[&a, &b, &x, &y]).await.map_err(fail)?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_work_under_their_rule() {
    let Some(admin) = connect(Target::Single).await else {
        return;
    };
    let ns = namespace();
    as_user(&admin, &ns.clone(), &["locks"], |t| async move {
        let locks = Locks::new(t.clone(), "owner-a").await.map_err(fail)?;
        let other = Locks::new(t, "owner-b").await.map_err(fail)?;
        let key = ns.key("lock").map_err(fail)?;
        let guard = locks.acquire(&key).await.map_err(fail)?;
        assert!(guard.token() > 0);
        let busy = other
            .acquire_with(
                &key,
                AcquireOptions {
                    wait: false,
                    ..AcquireOptions::default()
                },
            )
            .await;
        assert!(matches!(busy, Err(LockError::Exists { .. })), "{busy:?}");
        // A waiter is woken by the release (queue, wake-up channel).
        let waiter = tokio::spawn(async move {
            other
                .acquire_with(
                    &ns.key("lock").unwrap(),
                    AcquireOptions {
                        timeout: Some(Duration::from_secs(5)),
                        ..AcquireOptions::default()
                    },
                )
                .await
                .map(|g| g.token())
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        guard.release().await.map_err(fail)?;
        let token = waiter.await.map_err(fail)?.map_err(fail)?;
        assert!(token > 0);
        locks.close().await;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_and_a_listener_work_under_their_rules() {
    let Some(admin) = connect(Target::Single).await else {
        return;
    };
    let ns = namespace();
    let app = app(&ns);
    let stream = rpc_stream(&app);
    let app_ns = app.namespace().unwrap();
    assert_eq!(app_ns.prefix(), ns.prefix());
    as_user(&admin, &ns, &["writer"], |t| async move {
        let writer = StreamWriter::new(t);
        let body: Body = ("ext.record".into(), Some(1));
        writer
            .write(&stream, &body, Headers::new())
            .await
            .map_err(fail)?;
        let bodies: Vec<Body> = (0..20).map(|i| ("ext.record".into(), Some(i))).collect();
        let batch = bodies
            .iter()
            .map(|body| Outgoing {
                stream: &stream,
                body,
                headers: Headers::new(),
            })
            .collect();
        writer.write_many(batch).await.map_err(fail)?;
        Ok(())
    })
    .await;
    as_user(&admin, &ns, &["listener"], |t| async move {
        let seen: Seen = Arc::default();
        let mut listener =
            Listener::new(t, &app, ListenerSettings::default(), recorder(&seen)).map_err(fail)?;
        listener.start().await.map_err(fail)?;
        eventually("21 entries", Duration::from_secs(10), || async {
            distinct(&seen) >= 21
        })
        .await;
        listener.stop(Duration::from_secs(5)).await.map_err(fail)?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_apps_keys_are_out_of_reach_and_denials_are_typed() {
    let Some(admin) = connect(Target::Single).await else {
        return;
    };
    let (mine, theirs) = (namespace(), namespace());
    let user = User::create(&admin, &rule(&["cache", "locks", "writer"], mine.prefix())).await;
    let t = user.connect().await;
    let their_key = theirs.key("secret").unwrap();
    let _: () = admin
        .pool()
        .set(their_key.as_str(), "theirs", None, None, false)
        .await
        .unwrap();
    let cache = Cache::new(t.clone());
    let read = cache.get::<String>(&their_key).await;
    assert!(
        matches!(
            read,
            Err(kaiju_cache::CacheError::Transport(
                TransportError::NoPermission { .. }
            ))
        ),
        "{read:?}"
    );
    let write = cache.set(&their_key, "mine", None).await;
    assert!(
        matches!(
            write,
            Err(kaiju_cache::CacheError::Transport(
                TransportError::NoPermission { .. }
            ))
        ),
        "{write:?}"
    );
    let locks = Locks::new(t.clone(), "intruder").await.unwrap();
    let lock = locks
        .acquire_with(
            &theirs.key("lock").unwrap(),
            AcquireOptions {
                wait: false,
                ..AcquireOptions::default()
            },
        )
        .await;
    assert!(
        matches!(
            lock,
            Err(LockError::Transport(TransportError::NoPermission { .. }))
        ),
        "{lock:?}"
    );
    let writer = StreamWriter::new(t.clone());
    let their_stream = theirs.stream("rpc").unwrap();
    let body: Body = ("x".into(), None);
    let written = writer.write(&their_stream, &body, Headers::new()).await;
    assert!(
        matches!(
            written,
            Err(kaiju_streams::StreamError::Transport(
                TransportError::NoPermission { .. }
            ))
        ),
        "{written:?}"
    );
    let many = writer
        .write_many(vec![Outgoing {
            stream: &their_stream,
            body: &body,
            headers: Headers::new(),
        }])
        .await;
    assert!(many.is_err(), "{many:?}");
    let value: Option<String> = admin.pool().get(their_key.as_str()).await.unwrap();
    assert_eq!(value.as_deref(), Some("theirs"));
    let their_stream_len: u64 = admin.pool().xlen(their_stream.as_str()).await.unwrap();
    assert_eq!(their_stream_len, 0);
    let _: i64 = admin.pool().del(their_key.as_str()).await.unwrap();
    t.close().await.ok();
    user.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_the_rule_gets_a_permission_error() {
    let Some(admin) = connect(Target::Single).await else {
        return;
    };
    let ns = namespace();
    // The connection's rule alone: connecting works, the cache's commands do not.
    let user = User::create(&admin, &rule(&[], ns.prefix())).await;
    let t = user.connect().await;
    let cache = Cache::new(t.clone());
    let denied = cache.set(&ns.key("a").unwrap(), &1_i64, None).await;
    match denied {
        Err(kaiju_cache::CacheError::Transport(TransportError::NoPermission { .. })) => {}
        other => panic!("expected NoPermission, got {other:?}"),
    }
    t.close().await.ok();
    user.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_server_and_its_client_work_under_their_rules() {
    let Some(admin) = connect(Target::Single).await else {
        return;
    };
    let ns = namespace();
    let app = app(&ns);
    let server_user = User::create(&admin, &rule(&["listener", "rpc server"], ns.prefix())).await;
    let client_user = User::create(&admin, &rule(&["writer", "rpc client"], ns.prefix())).await;
    let (server_t, client_t) = (server_user.connect().await, client_user.connect().await);
    let seen = kaiju_tests::rpc::Seen::default();
    let mut listener =
        kaiju_tests::rpc::serve(&server_t, &app, &seen, kaiju_rpc::Scope::Guest).await;
    let client = kaiju_rpc::RpcClient::new(client_t.clone(), &app);
    let sum = client
        .request::<_, i64>("svc.add", kaiju_tests::rpc::Add { a: 2, b: 3 })
        .timeout(Duration::from_secs(5))
        .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let denied = format!(
        "{}{}",
        server_user.denials().await,
        client_user.denials().await
    );
    drop(client);
    for (t, user) in [(server_t, server_user), (client_t, client_user)] {
        t.close().await.ok();
        user.remove().await;
    }
    assert_eq!(sum.ok(), Some(5), "{denied}");
    assert!(denied.is_empty(), "{denied}");
}

/// fred logs through `log`: a logger that appends the records of one thread (the capturing
/// test's, whose current-thread runtime runs fred's tasks too) to the buffer.
struct ThreadLogger {
    thread: std::thread::ThreadId,
    into: kaiju_tests::observe::Captured,
}

impl log::Log for ThreadLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        std::thread::current().id() == self.thread
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}\n", record.level(), record.args());
            self.into.push(line.as_bytes());
        }
    }
    fn flush(&self) {}
}

/// Every failure a secret could leak through: a wrong password for a real user, a user
/// without permissions, TLS with a client key, and the settings' `Debug`. Logs at TRACE level,
/// error messages and `Debug` output never hold the password or key material.
#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_logs_errors_or_debug_output() {
    let Some(admin) = connect(Target::Single).await else {
        return;
    };
    let (captured, _guard) = kaiju_tests::observe::Captured::this_thread(tracing::Level::TRACE);
    let logger = ThreadLogger {
        thread: std::thread::current().id(),
        into: captured.clone(),
    };
    assert!(
        log::set_boxed_logger(Box::new(logger)).is_ok(),
        "no other test installs a logger"
    );
    log::set_max_level(log::LevelFilter::Trace);
    let ns = namespace();
    let user = User::create(&admin, &rule(&[], ns.prefix())).await;
    let password = user.settings.password.clone().unwrap().expose().to_owned();
    let mut texts = vec![format!("{:?}", user.settings)];
    let wrong = RedisSettings {
        password: Some("wrong-secret-password".into()),
        ..user.settings.clone()
    };
    match Transport::connect(&wrong).await {
        Err(e) => texts.push(format!("{e} {e:?}")),
        Ok(_) => panic!("a wrong password connected"),
    }
    let t = user.connect().await;
    let denied = Cache::new(t.clone())
        .set(&ns.key("a").unwrap(), &1_i64, None)
        .await;
    texts.push(format!("{denied:?}"));
    t.close().await.ok();
    if let (Some(tls), Some(files)) = (settings(Target::Tls), kaiju_tests::tls_files()) {
        let key = std::fs::read_to_string(files.client_key()).unwrap();
        let with_key = RedisSettings {
            tls_cert_file: Some(files.client_cert()),
            tls_key_file: Some(files.client_key()),
            tls_ca_file: Some(files.other_ca()),
            password: Some(password.clone().into()),
            reconnect_max_attempts: 1,
            ..tls
        };
        texts.push(format!("{with_key:?}"));
        match Transport::connect(&with_key).await {
            Err(e) => texts.push(format!("{e} {e:?}")),
            Ok(_) => panic!("an unrelated CA was trusted"),
        }
        let body = key.lines().nth(1).unwrap().to_owned();
        texts.push(captured.text());
        for text in &texts {
            assert!(!text.contains(&body), "key material in: {text}");
        }
    }
    user.remove().await;
    texts.push(captured.text());
    for text in &texts {
        assert!(!text.contains(&password), "the password in: {text}");
        assert!(
            !text.contains("wrong-secret-password"),
            "the password in: {text}"
        );
    }
    assert!(
        texts.iter().any(|t| t.contains("NoPermission")),
        "{texts:?}"
    );
    // The capture works: fred's trace records of these connections are in it.
    let logs = texts.last().unwrap();
    assert!(logs.contains("TRACE"), "nothing was logged: {logs}");
    log::set_max_level(log::LevelFilter::Off);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_and_locks_work_on_every_cluster_node_under_their_rules() {
    let Some(admins) = admins(Target::Cluster).await else {
        return;
    };
    let ns = namespace();
    let components = ["cache", "locks"];
    let user = User::create_on(admins, Target::Cluster, &rule(&components, ns.prefix())).await;
    run_as(user, &components, |t| async move {
        let cache = Cache::new(t.clone());
        let keys: Vec<_> = (0..30).map(|i| ns.key(&format!("k{i}")).unwrap()).collect();
        for key in &keys {
            cache.set(key, &1_i64, None).await.map_err(fail)?;
        }
        assert_eq!(cache.exists(&keys).await.map_err(fail)?, 30);
        cache.delete(&keys).await.map_err(fail)?;
        let locks = Locks::new(t, "owner").await.map_err(fail)?;
        let guard = locks
            .acquire(ns.key("lock").map_err(fail)?)
            .await
            .map_err(fail)?;
        guard.release().await.map_err(fail)?;
        // Several locks at once need one slot: a hash-tagged namespace.
        let tagged = ns.hash_tagged();
        let (a, b) = (
            tagged.key("a").map_err(fail)?,
            tagged.key("b").map_err(fail)?,
        );
        let both = locks
            .acquire_many(&[&a, &b], AcquireOptions::default())
            .await
            .map_err(fail)?;
        both.release().await.map_err(fail)?;
        locks.close().await;
        Ok(())
    })
    .await;
}

/// Whether `key` exists in database `db`, asked on a connection of its own that SELECTs `db`
/// itself, so the answer does not depend on how kaiju applies the `db` setting.
async fn exists_in_db(admin: &Transport, db: i64, key: &str) -> bool {
    let raw = admin.dedicated_connection().await.unwrap();
    raw.client().select(db).await.unwrap();
    let found: u64 = raw.client().exists(key).await.unwrap();
    raw.close().await.ok();
    found == 1
}

/// The user may SELECT (the connection rule allows it), and the `db` setting is applied: what
/// the cache writes lands in that database and not in database 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_other_than_0_works_under_the_connection_rule() {
    let Some(admin) = connect(Target::Single).await else {
        return;
    };
    let ns = namespace();
    let mut user = User::create(&admin, &rule(&["cache"], ns.prefix())).await;
    user.settings.db = Some(1);
    run_as(user, &["cache"], |t| async move {
        let cache = Cache::new(t);
        let key = ns.key("in-db-1").map_err(fail)?;
        cache.set(&key, &1_i64, None).await.map_err(fail)?;
        let got: Option<i64> = cache.get(&key).await.map_err(fail)?;
        let placed = (
            exists_in_db(&admin, 1, key.as_str()).await,
            exists_in_db(&admin, 0, key.as_str()).await,
        );
        if (got, placed) != (Some(1), (true, false)) {
            return Err(format!(
                "set with db 1: read back {got:?}; in db 1, in db 0: {placed:?}, expected (true, false)"
            ));
        }
        cache.delete(&[&key]).await.map_err(fail)?;
        if exists_in_db(&admin, 1, key.as_str()).await {
            return Err("the delete did not reach db 1".into());
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_listener_works_under_its_rule() {
    let Some(admin) = connect(Target::Single).await else {
        return;
    };
    let ns = namespace();
    let app = app(&ns);
    let topic = format!("t{}", uuid::Uuid::new_v4().simple());
    let stream = app.shared_namespace().unwrap().stream(&topic).unwrap();
    let settings = ListenerSettings {
        topic: topic.clone(),
        shared: true,
        ..ListenerSettings::default()
    };
    as_user(&admin, &ns, &["shared writer"], |t| async move {
        let body: Body = ("ext.record".into(), Some(1));
        StreamWriter::new(t)
            .write(&stream, &body, Headers::new())
            .await
            .map_err(fail)?;
        Ok(())
    })
    .await;
    let cleanup = app.shared_namespace().unwrap();
    as_user(
        &admin,
        &ns,
        &["listener", "shared listener"],
        |t| async move {
            let seen: Seen = Arc::default();
            let mut listener = Listener::new(t, &app, settings, recorder(&seen)).map_err(fail)?;
            listener.start().await.map_err(fail)?;
            eventually("the shared entry", Duration::from_secs(10), || async {
                distinct(&seen) >= 1
            })
            .await;
            listener.stop(Duration::from_secs(5)).await.map_err(fail)?;
            Ok(())
        },
    )
    .await;
    for key in ["", "_lock.", "_dead.", "_consumers."] {
        let name = format!("{}._stream.{key}{topic}", cleanup.prefix());
        let _: i64 = admin.pool().del(name.as_str()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_and_a_subscriber_work_under_their_rules() {
    let Some(admin) = connect(Target::Single).await else {
        return;
    };
    let ns = namespace();
    let app = app(&ns);
    let subscriber = User::create(&admin, &rule(&["subscriber"], ns.prefix())).await;
    let sub_t = subscriber.connect().await;
    let seen = kaiju_tests::rpc::Seen::default();
    let server = kaiju_rpc::Server::new(
        &app,
        kaiju_rpc::ServerSettings::default(),
        kaiju_tests::rpc::module(&seen),
    )
    .unwrap();
    let mut sub =
        kaiju_rpc::RpcSubscriber::new(sub_t.clone(), &app, "rpc", kaiju_rpc::Scope::System, server)
            .unwrap();
    sub.start().await.unwrap();
    let publisher_app = app.clone();
    as_user(&admin, &ns, &["publisher"], |t| async move {
        let client = kaiju_rpc::RpcClient::new(t, &publisher_app);
        let receivers = client
            .publish("svc.record", serde_json::json!({"i": 1}))
            .await
            .map_err(fail)?;
        assert_eq!(receivers, 1);
        Ok(())
    })
    .await;
    kaiju_tests::rpc::seen_len(&seen, 1).await;
    sub.stop(Duration::from_secs(5)).await.unwrap();
    let denied = subscriber.denials().await;
    sub_t.close().await.ok();
    subscriber.remove().await;
    assert!(denied.is_empty(), "{denied}");
}

/// Every row of the README's table but the connection's (which every rule starts with).
const EVERY_ROW: [&str; 11] = [
    "cache",
    "locks",
    "writer",
    "listener",
    "shared listener",
    "shared writer",
    "rpc server",
    "rpc client",
    "calling another app",
    "publisher",
    "subscriber",
];

/// The rows apps hold together (issue 31): the README's example app calling another app, a
/// listener that is also a client, and every row.
const COMBINATIONS: [&[&str]; 3] = [
    &["locks", "listener", "rpc server", "calling another app"],
    &["listener", "writer", "rpc client", "calling another app"],
    &EVERY_ROW,
];

/// `name args...` as `t`'s user, routed by its first key (`key`); the reply or the classified
/// error.
async fn raw(
    t: &Transport,
    key: Option<&str>,
    name: &'static str,
    args: Vec<String>,
) -> Result<Value, TransportError> {
    use kaiju_transport::Classify;
    use kaiju_transport::fred::types::ClusterHash;
    let hash = key.map_or(ClusterHash::Random, |k| {
        ClusterHash::Custom(kaiju_core::key_slot(k.as_bytes()))
    });
    t.pool()
        .custom::<Value, String>(CustomCommand::new_static(name, hash, false), args)
        .await
        .classify()
}

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// A Lua script of the user's own that reads its one key: with the `EVALSHA` form of
/// `<scripts>`, any user can load and run it.
const READ_STREAM: &str = "return redis.call('XRANGE', KEYS[1], '-', '+')";

/// The attacks of issue 31, item 1, by `shop` (holding `components` and the row calling
/// `billing`'s `rpc` topic) against `billing`, in the same env: each answers NOPERM, and
/// billing's stream, pending entries, pause key and dead letters are as they were.
async fn attacks_fail(target: Target, components: &[&str], scripts: Scripts) {
    let (Some(admin), Some(nodes)) = (connect(target).await, admins(target).await) else {
        return;
    };
    let shop = namespace();
    let billing = namespace();
    let billing_name = billing.prefix().split('.').nth(1).unwrap().to_owned();
    let stream = billing.stream("rpc").unwrap().into_string();
    let dead = billing.dead_letter_stream("rpc").unwrap().into_string();
    let pause = billing.stream_lock("rpc").unwrap().into_string();
    // Billing's stream holds a request, delivered to billing's group and not yet acked.
    let _: Value = admin
        .pool()
        .xgroup_create(stream.as_str(), billing_name.as_str(), "$", true)
        .await
        .unwrap();
    let id: String = admin
        .pool()
        .xadd(stream.as_str(), false, None, "*", ("_", "request"))
        .await
        .unwrap();
    let rule = rule_for(
        components,
        shop.prefix(),
        scripts,
        Some((billing_name.as_str(), "rpc")),
    );
    let user = User::create_on(nodes, target, &rule).await;
    let t = user.connect().await;
    let reply_channel = format!("{}._reply.victim", billing.prefix());
    let trim = kaiju_streams::scripts()[0].function_name().to_owned();
    let reclaim = kaiju_streams::scripts()[2].function_name().to_owned();
    let attempts: Vec<(&str, Option<&str>, &'static str, Vec<String>)> = vec![
        (
            "read billing's requests",
            Some(&stream),
            "XRANGE",
            words(&[&stream, "-", "+"]),
        ),
        (
            "read billing's length",
            Some(&stream),
            "XLEN",
            words(&[&stream]),
        ),
        (
            "steal a request by reading it in billing's group",
            Some(&stream),
            "XREADGROUP",
            words(&["GROUP", &billing_name, "thief", "STREAMS", &stream, ">"]),
        ),
        (
            "ack billing's request",
            Some(&stream),
            "XACK",
            words(&[&stream, &billing_name, &id]),
        ),
        (
            "claim billing's request",
            Some(&stream),
            "XCLAIM",
            words(&[&stream, &billing_name, "thief", "0", &id]),
        ),
        (
            "read billing's dead letters",
            Some(&dead),
            "XRANGE",
            words(&[&dead, "-", "+"]),
        ),
        (
            "write into billing's dead letters",
            Some(&dead),
            "XADD",
            words(&[&dead, "*", "_", "forged"]),
        ),
        ("pause billing", Some(&pause), "SET", words(&[&pause, "1"])),
        (
            "read billing's pause key",
            Some(&pause),
            "GET",
            words(&[&pause]),
        ),
        (
            "run kaiju's trim on billing's stream",
            Some(&stream),
            "FCALL",
            words(&[&trim, "1", &stream]),
        ),
        (
            "run kaiju's reclaim on billing's request",
            Some(&stream),
            "FCALL",
            words(&[&reclaim, "1", &stream, &billing_name, "thief", &id]),
        ),
        // Issue 31, item 3: a cache user's endless script made the whole server answer BUSY.
        (
            "run Lua of one's own",
            None,
            "EVAL",
            words(&["while true do end", "0"]),
        ),
        (
            "load a function of one's own",
            None,
            "FUNCTION",
            words(&[
                "LOAD",
                "#!lua name=mine\nredis.register_function('mine', function() end)",
            ]),
        ),
    ];
    let mut allowed = Vec::new();
    for (what, key, name, args) in attempts {
        match raw(&t, key, name, args).await {
            Err(TransportError::NoPermission { .. }) => {}
            other => allowed.push(format!("{what}: {other:?}")),
        }
    }
    // Scripts of one's own: refused with kaiju's functions. The EVALSHA form loads and runs
    // them, as the README warns (an endless one is not run here: it would stop the server);
    // the read inside it is refused.
    if scripts == Scripts::Functions {
        for (name, args) in [
            ("SCRIPT", words(&["LOAD", READ_STREAM])),
            (
                "EVALSHA",
                words(&["0000000000000000000000000000000000000000", "0"]),
            ),
        ] {
            match raw(&t, None, name, args).await {
                Err(TransportError::NoPermission { .. }) => {}
                other => allowed.push(format!("{name} with +fcall alone: {other:?}")),
            }
        }
    } else {
        let sha: Result<Value, _> = raw(&t, None, "SCRIPT", words(&["LOAD", READ_STREAM])).await;
        let sha = sha.unwrap().as_string().unwrap();
        match raw(&t, Some(&stream), "EVALSHA", words(&[&sha, "1", &stream])).await {
            Err(TransportError::NoPermission { .. }) => {}
            other => allowed.push(format!(
                "a script of one's own reading billing's stream: {other:?}"
            )),
        }
    }
    // Every app's reply channels: only PUBLISH (the rpc server's row), never SUBSCRIBE. fred's
    // `subscribe` does not report the refusal, so the server is asked: nobody listens on the
    // channel, on any node, and the refusal is in the ACL log.
    let subscriber = t.dedicated_connection().await.unwrap();
    let _ = subscriber.client().subscribe(reply_channel.as_str()).await;
    let _ = subscriber.client().ping::<Value>(None).await;
    let mut listeners = 0;
    for node in &user.admins {
        let numsub: Vec<Value> = node
            .pool()
            .custom(
                CustomCommand::new_static("PUBSUB", None, false),
                words(&["NUMSUB", &reply_channel]),
            )
            .await
            .unwrap();
        listeners += numsub.get(1).and_then(Value::as_u64).unwrap_or(0);
    }
    if listeners != 0 {
        allowed.push(format!(
            "subscribe to billing's replies: {listeners} subscribed"
        ));
    }
    let denials = user.denials().await;
    if !denials.contains(&format!("denied channel {reply_channel}")) {
        allowed.push(format!(
            "subscribe to billing's replies: no refusal logged in {denials}"
        ));
    }
    subscriber.close().await.ok();
    // What the rows grant still works: calling billing.
    let call = raw(
        &t,
        Some(&stream),
        "XADD",
        words(&[&stream, "*", "_", "call"]),
    )
    .await;
    // Billing's state is untouched: its request pending for nobody, no pause, no dead letters.
    let delivered = raw(
        &admin,
        Some(&stream),
        "XREADGROUP",
        words(&[
            "GROUP",
            &billing_name,
            "billing",
            "COUNT",
            "1",
            "STREAMS",
            &stream,
            ">",
        ]),
    )
    .await
    .unwrap();
    let dead_len: u64 = admin.pool().xlen(dead.as_str()).await.unwrap();
    let paused: u64 = admin.pool().exists(pause.as_str()).await.unwrap();
    let _: i64 = admin.pool().del(stream.as_str()).await.unwrap();
    t.close().await.ok();
    user.remove().await;
    assert!(
        allowed.is_empty(),
        "{components:?} ({scripts:?}) on {target:?} allowed:\n{}",
        allowed.join("\n")
    );
    assert!(call.is_ok(), "calling billing: {call:?}");
    assert!(
        format!("{delivered:?}").contains(&id),
        "billing no longer gets its request: {delivered:?}"
    );
    assert_eq!((dead_len, paused), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_rows_keep_another_apps_streams_and_replies_out_of_reach() {
    for components in COMBINATIONS {
        for scripts in [Scripts::Functions, Scripts::Evalsha] {
            attacks_fail(Target::Single, components, scripts).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_rows_keep_another_apps_streams_and_replies_out_of_reach_in_a_cluster() {
    for components in COMBINATIONS {
        attacks_fail(Target::Cluster, components, Scripts::Functions).await;
    }
}

/// `SETUSER` on `admin` for a fresh user with `rule`; its settings.
async fn user_on(admin: &Transport, rule: &str) -> RedisSettings {
    let name = format!("kaiju-acl-{}", uuid::Uuid::new_v4().simple());
    let mut args = vec![
        "SETUSER".to_owned(),
        name.clone(),
        "reset".into(),
        "on".into(),
        ">pw".into(),
    ];
    args.extend(kaiju_tests::acl::args(rule));
    acl(admin, args).await;
    RedisSettings {
        username: Some(name),
        password: Some("pw".into()),
        ..admin.settings().clone()
    }
}

/// Locks, a cache fill, a batch write and a listener: every kind of kaiju script.
async fn run_every_script(t: &Transport, ns: &Namespace) -> Result<(), String> {
    let locks = Locks::new(t.clone(), "owner").await.map_err(fail)?;
    let guard = locks
        .acquire(ns.key("lock").map_err(fail)?)
        .await
        .map_err(fail)?;
    guard.release().await.map_err(fail)?;
    locks.close().await;
    let filled: i64 = Cache::new(t.clone())
        .get_or_set_with(
            &ns.key("filled").map_err(fail)?,
            Duration::from_secs(60),
            || async { Ok::<_, std::convert::Infallible>(7_i64) },
        )
        .await
        .map_err(fail)?;
    assert_eq!(filled, 7);
    let app = app(ns);
    let stream = rpc_stream(&app);
    let bodies: Vec<Body> = (0..10).map(|i| ("ext.record".into(), Some(i))).collect();
    let batch = bodies
        .iter()
        .map(|body| Outgoing {
            stream: &stream,
            body,
            headers: Headers::new(),
        })
        .collect();
    StreamWriter::new(t.clone())
        .write_many(batch)
        .await
        .map_err(fail)?;
    let seen: Seen = Arc::default();
    let mut listener = Listener::new(
        t.clone(),
        &app,
        ListenerSettings::default(),
        recorder(&seen),
    )
    .map_err(fail)?;
    listener.start().await.map_err(fail)?;
    eventually("10 entries", Duration::from_secs(10), || async {
        distinct(&seen) >= 10
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.map_err(fail)?;
    Ok(())
}

/// Where kaiju's functions are not loaded, a user with the EVALSHA form of `<scripts>` runs
/// every script through EVALSHA (the FCALL that found no function ran nothing); a user with
/// `+fcall` alone is refused with a typed error that says what to do. Once an admin loaded the
/// functions, the `+fcall` user runs every script, with no Lua of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_fall_back_to_evalsha_where_the_functions_are_not_loaded() {
    // A server of the test's own: the shared servers have kaiju's functions (the other tests
    // load them).
    let Some((_server, admin)) = kaiju_tests::own_server().await else {
        return;
    };
    let ns = namespace();
    let components = ["cache", "locks", "writer", "listener"];
    let with_evalsha = user_on(
        &admin,
        &rule_for(&components, ns.prefix(), Scripts::Evalsha, None),
    )
    .await;
    let t = Transport::connect(&with_evalsha).await.unwrap();
    assert!(t.scripts_as_functions(), "Redis 7 has functions");
    if let Err(e) = run_every_script(&t, &ns).await {
        let log = acl(&admin, vec!["LOG".into(), "20".into()]).await;
        panic!("{e}: {log:?}");
    }
    let fill = kaiju_cache::scripts()[0];
    assert!(
        !fill.runs_as_function(&t),
        "EVALSHA from the first FCALL that found no function on"
    );
    t.close().await.ok();

    let fcall_only = user_on(&admin, &rule(&components, ns.prefix())).await;
    let t = Transport::connect(&fcall_only).await.unwrap();
    let refused = Locks::new(t.clone(), "owner")
        .await
        .unwrap()
        .acquire(ns.key("refused").unwrap())
        .await;
    match &refused {
        Err(LockError::Transport(TransportError::NoPermission { message })) => {
            assert!(message.contains("kaiju functions load"), "{message}");
        }
        other => panic!("expected NoPermission, got {other:?}"),
    }
    t.close().await.ok();

    load_functions(&admin).await;
    let t = Transport::connect(&fcall_only).await.unwrap();
    run_every_script(&t, &ns).await.unwrap();
    assert!(fill.runs_as_function(&t), "FCALL throughout");
    let eval: Result<Value, _> = raw(&t, None, "EVAL", words(&["return 1", "0"])).await;
    assert!(
        matches!(eval, Err(TransportError::NoPermission { .. })),
        "{eval:?}"
    );
    t.close().await.ok();
    // A script of the app's own (no function of kaiju's) goes to EVALSHA alone: kaiju's
    // scripts on the same transport stay functions.
    let own =
        kaiju_transport::Script::new(format!("return {} -- {}", 7, uuid::Uuid::new_v4().simple()));
    let seven: i64 = own
        .run(&admin, Vec::<String>::new(), Vec::<String>::new())
        .await
        .unwrap();
    assert_eq!(seven, 7);
    assert!(!own.runs_as_function(&admin));
    assert!(fill.runs_as_function(&admin));
    admin.close().await.ok();
}
