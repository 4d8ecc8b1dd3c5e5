//! What crosses the wire between Rust and the real Python kaiju-redis 2.4.2, both ways: cache
//! values (and schema changes), locks, and stream entries.
//!
//! Runs when `KAIJU_PYTHON` names a Python with kaiju-redis installed (`cargo xtask interop`
//! creates one); with `KAIJU_REQUIRE_INTEROP=1` a missing Python fails instead of skipping.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use kaiju_cache::Cache;
use kaiju_core::Namespace;
use kaiju_tests::Target;
use kaiju_tests::interop::{python, run_peer};
use kaiju_tests::streams::rpc_stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const U: &str = "01234567-89ab-cdef-0123-456789abcdef";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: Uuid,
    name: String,
    #[serde(default)]
    blocked: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Outer {
    user: User,
    tags: Vec<String>,
}

fn user(name: &str, blocked: bool) -> User {
    User {
        id: Uuid::parse_str(U).unwrap(),
        name: name.into(),
        blocked,
    }
}

fn peer(python: &str, mode: &str, url: &str, ns: &Namespace) -> (bool, String) {
    run_peer(python, "cache_peer.py", &[mode, url, ns.prefix()])
}

/// Everything the Python peer defines, written by Rust or checked after Python wrote it.
async fn each_case<F: AsyncCase>(f: &mut F) {
    f.case("str", "hello".to_owned()).await;
    f.case("int", 1_i64 << 40).await;
    f.case("negative", -1_i64).await;
    f.case("float", 1.5_f64).await;
    f.case("bool", true).await;
    f.case("none", None::<i64>).await;
    f.case("bytes", serde_bytes::ByteBuf::from(vec![0_u8, 1, 0xff]))
        .await;
    f.case("uuid", Uuid::parse_str(U).unwrap()).await;
    f.case("list", vec![1_i64, 2, 3]).await;
    f.case(
        "dict",
        BTreeMap::from([("a".to_owned(), 1_i64), ("b".to_owned(), 2)]),
    )
    .await;
    f.case("tuple", (1_i64, "two".to_owned(), 3.0_f64)).await;
    f.case("set", BTreeSet::from([1_i64, 2, 3])).await;
    f.case("frozenset", BTreeSet::from([4_i64, 5])).await;
    f.case("struct", user("bob", false)).await;
    f.case("struct_blocked", user("eve", true)).await;
    f.case(
        "nested",
        Outer {
            user: user("bob", false),
            tags: vec!["t".into()],
        },
    )
    .await;
}

trait AsyncCase {
    async fn case<T>(&mut self, name: &str, value: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug;
}

struct Write<'a>(&'a Cache, &'a Namespace);
struct Check<'a>(&'a Cache, &'a Namespace, Vec<String>);

impl AsyncCase for Write<'_> {
    async fn case<T: Serialize + DeserializeOwned + PartialEq + Debug>(
        &mut self,
        name: &str,
        value: T,
    ) {
        self.0
            .set(self.1.key(name).unwrap(), &value, None)
            .await
            .unwrap();
    }
}

impl AsyncCase for Check<'_> {
    async fn case<T: Serialize + DeserializeOwned + PartialEq + Debug>(
        &mut self,
        name: &str,
        value: T,
    ) {
        match self.0.get::<T>(self.1.key(name).unwrap()).await {
            Ok(Some(got)) if got == value => {}
            other => self
                .2
                .push(format!("{name}: got {other:?}, expected {value:?}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_values_cross_between_python_and_rust() {
    let Some(python) = python() else { return };
    let Some(transport) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let url = std::env::var("KAIJU_REDIS_URL").unwrap();
    let cache = Cache::new(transport);

    // Rust writes, Python reads with RedisCache.get(key, data_type).
    let ns = kaiju_tests::namespace();
    each_case(&mut Write(&cache, &ns)).await;
    let (ok, report) = peer(&python, "read", &url, &ns);
    eprintln!("python read what rust wrote:\n{report}");
    assert!(ok, "Python could not read what Rust wrote:\n{report}");

    // Python writes with RedisCache.set, Rust reads with get::<T>.
    let ns = kaiju_tests::namespace();
    let (ok, report) = peer(&python, "write", &url, &ns);
    assert!(ok, "the Python peer failed to write:\n{report}");
    let mut check = Check(&cache, &ns, Vec::new());
    each_case(&mut check).await;
    assert!(
        check.2.is_empty(),
        "Rust could not read what Python wrote:\n{}",
        check.2.join("\n")
    );
}

/// A struct that gained a field on one side reads on the other, in both directions, as msgspec
/// reads it: a mixed fleet can roll out a schema change in either order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_roll_out_in_either_order_between_python_and_rust() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct UserNewer {
        id: Uuid,
        name: String,
        #[serde(default)]
        blocked: bool,
        nickname: Option<String>,
    }
    let Some(python) = python() else { return };
    let Some(transport) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let url = std::env::var("KAIJU_REDIS_URL").unwrap();
    let cache = Cache::new(transport);
    let ns = kaiju_tests::namespace();
    let (ok, report) = peer(&python, "schema-write", &url, &ns);
    assert!(ok, "the Python peer failed to write:\n{report}");
    // Python appended `age`: Rust's User ignores it.
    let newer: User = cache.get(ns.key("newer").unwrap()).await.unwrap().unwrap();
    assert_eq!(newer, user("new", true));
    // Python's older User has no `blocked`: Rust's default applies; an Option field is None.
    let older: User = cache.get(ns.key("older").unwrap()).await.unwrap().unwrap();
    assert_eq!(older, user("old", false));
    let older: UserNewer = cache.get(ns.key("older").unwrap()).await.unwrap().unwrap();
    assert_eq!(older.nickname, None);
    // A UUID stored as its text.
    let text: User = cache
        .get(ns.key("uuid_str").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text, user("txt", false));
    // Rust writes its User and a newer struct; Python reads both with every schema.
    cache
        .set(ns.key("rust_user").unwrap(), &user("rust", true), None)
        .await
        .unwrap();
    let newer = UserNewer {
        id: Uuid::parse_str(U).unwrap(),
        name: "rust".into(),
        blocked: true,
        nickname: Some("r".into()),
    };
    cache
        .set(ns.key("rust_user_newer").unwrap(), &newer, None)
        .await
        .unwrap();
    let (ok, report) = peer(&python, "schema-read", &url, &ns);
    eprintln!("python read rust's structs:\n{report}");
    assert!(ok, "Python could not read what Rust wrote:\n{report}");
}

/// A lock held by a kaiju-redis 2.4 service blocks kaiju-locks, and the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_exclude_python_services_both_ways() {
    let Some(python) = python() else { return };
    let Some(transport) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let url = std::env::var("KAIJU_REDIS_URL").unwrap();
    let locks = kaiju_locks::Locks::new(transport, "rust-app")
        .await
        .unwrap();
    let no_wait = kaiju_locks::AcquireOptions {
        wait: false,
        ..Default::default()
    };
    let ns = kaiju_tests::namespace();
    let key = ns.key("lock").unwrap();
    let lock_peer = |args: &[&str]| {
        let (ok, out) = run_peer(&python, "lock_peer.py", args);
        assert!(ok, "lock peer failed: {out}");
        out.trim().to_owned()
    };

    // Python holds it: Rust cannot take it, and sees Python's owner id.
    assert_eq!(
        lock_peer(&["try", &url, key.as_str(), "python-owner"]),
        "acquired"
    );
    let busy = locks.acquire_with(&key, no_wait.clone()).await;
    assert!(
        matches!(&busy, Err(kaiju_locks::LockError::Exists { owner: Some(o), .. }) if o == "python-owner"),
        "{busy:?}"
    );
    assert!(matches!(
        locks.release(&key, "rust-app").await,
        Err(kaiju_locks::LockError::NotOwner { .. })
    ));
    assert_eq!(
        lock_peer(&["release", &url, key.as_str(), "python-owner"]),
        "released"
    );

    // Rust holds it: Python cannot take it, reads Rust's owner, and cannot release it.
    let guard = locks.acquire_with(&key, no_wait).await.unwrap();
    assert_eq!(
        lock_peer(&["try", &url, key.as_str(), "python-owner"]),
        "exists"
    );
    assert_eq!(lock_peer(&["owner", &url, key.as_str()]), "rust-app");
    assert_eq!(
        lock_peer(&["release", &url, key.as_str(), "python-owner"]),
        "not-owner"
    );
    guard.release().await.unwrap();
    assert_eq!(
        lock_peer(&["try", &url, key.as_str(), "python-owner"]),
        "acquired"
    );
    assert_eq!(
        lock_peer(&["release", &url, key.as_str(), "python-owner"]),
        "released"
    );
}

/// Stream entries written by kaiju-redis 2.4's client are handled by a kaiju-streams listener,
/// and entries written by kaiju-streams decode in Python with kaiju's own `msgpack_loads`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_entries_cross_between_python_and_rust() {
    use kaiju_core::{AppSettings, Lifecycle};
    use kaiju_streams::{
        HandlerError, HeaderValue, Headers, Listener, ListenerSettings, Message, StreamWriter,
    };
    use kaiju_transport::fred::prelude::*;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let Some(python) = python() else { return };
    let Some(transport) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let url = std::env::var("KAIJU_REDIS_URL").unwrap();
    let ns = kaiju_tests::namespace();
    let app = AppSettings {
        env: "test".into(),
        name: ns.prefix().split('.').nth(1).unwrap().to_owned(),
        ..AppSettings::default()
    };
    let stream = rpc_stream(&app);

    // Python writes, Rust listens.
    let (ok, out) = run_peer(
        &python,
        "stream_peer.py",
        &["write", &url, stream.as_str(), "5"],
    );
    assert!(ok, "{out}");
    type Body = (String, Option<BTreeMap<String, i64>>);
    let seen: Arc<Mutex<Vec<(Body, Headers)>>> = Arc::default();
    let record = seen.clone();
    let mut listener = Listener::new(
        transport.clone(),
        &app,
        ListenerSettings::default(),
        move |m: Message<Body>| {
            record.lock().unwrap().push((m.body, m.headers));
            std::future::ready(Ok::<_, HandlerError>(()))
        },
    )
    .unwrap();
    listener.start().await.unwrap();
    let started = Instant::now();
    while seen.lock().unwrap().len() < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "Python's entries were not handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let mut got = seen.lock().unwrap().clone();
    got.sort_by_key(|(body, _)| body.1.as_ref().and_then(|p| p.get("value").copied()));
    for (i, (body, headers)) in got.iter().enumerate() {
        assert_eq!(body.0, "ext.record");
        assert_eq!(body.1.as_ref().unwrap()["value"], i as i64);
        assert_eq!(headers.correlation_id(), Some(format!("py{i}").as_str()));
        assert_eq!(headers.get("Timeout"), Some(&HeaderValue::Int(5)));
    }
    assert_eq!(listener.stats().await.unwrap().dead_lettered, 0);

    // Rust writes, Python decodes with msgpack_loads.
    let other = ns.key("rust-written").unwrap();
    let writer = StreamWriter::new(transport.clone());
    let mut headers = Headers::new();
    headers
        .insert("Correlation-Id", "rs0")
        .insert("Timeout", 5_i64);
    let params = BTreeMap::from([("value".to_owned(), 42_i64)]);
    writer
        .write(&other, &("ext.record", Some(&params)), headers)
        .await
        .unwrap();
    writer
        .write(
            &other,
            &("ext.record", None::<&BTreeMap<String, i64>>),
            Headers::new(),
        )
        .await
        .unwrap();
    let (ok, out) = run_peer(&python, "stream_peer.py", &["read", &url, other.as_str()]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "[['ext.record', {'value': 42}], {'Correlation-Id': 'rs0', 'Timeout': 5}]"
    );
    assert!(
        lines[1].starts_with("[['ext.record', None], {'Correlation-Id': '"),
        "{}",
        lines[1]
    );
    let _: i64 = transport.pool().del(vec![stream.as_str()]).await.unwrap();
    let _: i64 = transport.pool().del(vec![other.as_str()]).await.unwrap();
}
