//! The operator's view of `kaiju`, run as a process: `check` fails on what `run` would fail on,
//! errors are written for people (where, what, a hint; no Rust type names), exit codes agree
//! across commands, and `--json` output is stable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{code, command, conn, examples, kaiju, text, url};
use kaiju_tests::{Target, TempFile};
use serde_json::Value as Json;

/// `kaiju check -c <each file>`.
fn check(files: &[&TempFile], more: &[&str]) -> std::process::Output {
    let mut args = vec!["check"];
    for f in files {
        args.extend(["-c", f.path()]);
    }
    args.extend(more);
    kaiju(&args)
}

#[test]
fn check_exits_2_on_every_config_run_cannot_start() {
    let main = "main: {name: app, env: dev}\n";
    for (services, wanted) in [
        (
            "services:\n  - RedisCache\n",
            "no RedisTransportService service is configured",
        ),
        (
            "services:\n  - {cls: RedisTransportService, enabled: false}\n  - RedisCache\n",
            "no RedisTransportService service is configured",
        ),
        (
            "services:\n  - RedisTransportService\n  - {cls: RedisCache, settings: {transport: nosuch}}\n",
            "no service is named `nosuch`",
        ),
        (
            "services:\n  - RedisTransportService\n  - RedisListener\n",
            "no JSONRPCServer service is configured",
        ),
    ] {
        let config = TempFile::new(&format!("{main}{services}"));
        let o = check(&[&config], &[]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 2, "{services}: {err}");
        assert!(err.contains(wanted), "{services}: {err}");
        assert!(out.is_empty(), "nothing is printed as ok: {out}");
        // `run` fails on it the same way, before connecting.
        let o = kaiju(&["run", "-c", config.path()]);
        assert_eq!(code(&o), 2, "{services}: {:?}", text(&o));
        assert!(text(&o).1.contains(wanted));
    }
}

#[test]
fn check_connect_connects_and_authenticates_every_transport() {
    let Some(url) = url() else { return };
    let port = kaiju_tests::single_port().unwrap();
    let ok = TempFile::new(&format!(
        "main: {{name: app}}\nservices:\n  - {{cls: RedisTransportService, settings: {{url: '{url}'}}}}\n"
    ));
    let o = check(&[&ok], &["--connect"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        err.contains("connected: service `RedisTransportService` reached redis"),
        "{err}"
    );
    let o = check(&[&ok], &["--connect", "--json"]);
    let json: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["connected"][0]["service"], "RedisTransportService");
    assert_eq!(json["ok"], true);
    // Without --connect nothing connects: a config pointing nowhere passes.
    let free = kaiju_testkit::free_port(false).unwrap();
    let down = TempFile::new(&format!(
        "main: {{name: app}}\nservices:\n  - RedisTransportService\n  - {{cls: RedisTransportService, name: second, settings: {{port: {free}}}}}\n"
    ));
    let o = check(&[&down], &[]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let o = check(&[&down], &["--connect"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "{err}");
    // The first transport (the default port, 6379) may or may not answer on this machine; the
    // one that failed is named, with its address.
    assert!(
        err.contains("127.0.0.1:6379") || err.contains(&format!("127.0.0.1:{free}")),
        "{err}"
    );
    let wrong = TempFile::new(&format!(
        "main: {{name: app}}\nservices:\n  - {{cls: RedisTransportService, settings: {{url: 'redis://nobody:wrong@127.0.0.1:{port}'}}}}\n"
    ));
    let o = check(&[&wrong], &["--connect"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "a refused password: {err}");
    assert!(
        err.contains("refused the credentials") && !err.contains("wrong"),
        "{err}"
    );
}

#[test]
fn check_prints_the_services_as_they_will_run() {
    let base = examples().join("app.yml");
    let transport = examples().join("transport.yml");
    let over = TempFile::new(
        "services:\n  - cls: RedisTransportService\n    override: true\n    settings: {port: 7000}\n  - {cls: RedisCache, enabled: false}\n",
    );
    let o = kaiju(&[
        "check",
        "-c",
        base.to_str().unwrap(),
        "-c",
        transport.to_str().unwrap(),
        "-c",
        over.path(),
        "-e",
        "main_name=billing",
    ]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    let json: Json = serde_json::from_str(&out).unwrap();
    let services = json["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "one transport, as it will run: {out}");
    assert_eq!(services[0]["name"], "RedisTransportService");
    assert_eq!(
        services[0]["settings"]["port"], 7000,
        "the override's settings"
    );
    assert!(services[0].get("override").is_none(), "{out}");
    assert!(err.contains("1 services: RedisTransportService"), "{err}");
    let o = kaiju(&[
        "check",
        "-c",
        base.to_str().unwrap(),
        "-c",
        transport.to_str().unwrap(),
        "-e",
        "main_name=billing",
        "--json",
    ]);
    let json: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["app"], "billing");
    assert_eq!(
        json["services"],
        serde_json::json!(["RedisTransportService"])
    );
    assert_eq!(
        json["config"]["services"][0]["name"],
        "RedisTransportService"
    );
    assert_eq!(json["connected"], Json::Null);
}

#[test]
fn connection_errors_name_the_server_and_say_why_in_words() {
    let free = kaiju_testkit::free_port(false).unwrap();
    let to = format!("redis://127.0.0.1:{free}");
    let o = kaiju(&["streams", "x", "--redis-url", &to]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "{err}");
    assert!(
        err.contains(&format!(
            "cannot connect to Redis at 127.0.0.1:{free}: connection refused"
        )),
        "{err}"
    );
    assert!(!err.contains("Os {") && !err.contains("code: 111"), "{err}");
    let cluster = format!("redis-cluster://127.0.0.1:{free}");
    let o = kaiju(&["streams", "x", "--redis-url", &cluster]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "{err}");
    assert!(
        err.contains(&format!("the Redis Cluster at 127.0.0.1:{free}")),
        "{err}"
    );
    let down = TempFile::new(&format!(
        "main: {{name: x}}\nservices:\n  - cls: RedisTransportService\n    settings: {{port: {free}}}\n"
    ));
    let o = kaiju(&["run", "-c", down.path()]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "{err}");
    assert!(
        err.contains(&format!("cannot connect to Redis at 127.0.0.1:{free}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_is_exit_3_from_every_command() {
    let Some(port) = kaiju_tests::single_port() else {
        return;
    };
    let wrong = format!("redis://nobody:not-the-password@127.0.0.1:{port}");
    let config = TempFile::new(&format!(
        "main: {{name: x}}\nservices:\n  - {{cls: RedisTransportService, settings: {{url: '{wrong}'}}}}\n"
    ));
    let by_url: [&[&str]; 4] = [
        &["streams", "x"],
        &["cache", "get", "k"],
        &["locks", "owner", "k"],
        &["call", "x", "a.b"],
    ];
    for args in by_url {
        let o = command()
            .args(args)
            .env("KAIJU_REDIS_URL", &wrong)
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert_eq!(code(&o), 3, "{args:?}: {err}");
        assert!(err.contains("refused the credentials"), "{args:?}: {err}");
        assert!(!err.contains("not-the-password"), "{err}");
    }
    for args in [
        vec!["run", "-c", config.path()],
        vec!["check", "--connect", "-c", config.path()],
        vec!["streams", "x", "-c", config.path()],
    ] {
        let o = kaiju(&args);
        let (_, err) = text(&o);
        assert_eq!(code(&o), 3, "{args:?}: {err}");
        assert!(err.contains("refused the credentials"), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rust_type_names_in_what_users_read() {
    let config = |settings: &str| {
        TempFile::new(&format!(
            "main: {{name: app}}\nservices:\n  - cls: RedisTransportService\n    settings: {{{settings}}}\n"
        ))
    };
    for (settings, wanted) in [
        ("port: 70000", "expected a port number, 1-65535"),
        ("pool_size: -1", "expected an integer of 0 or more"),
        ("connect_timeout_ms: x", "expected an integer of 0 or more"),
        ("tls: maybe", "expected"),
    ] {
        let f = config(settings);
        let o = check(&[&f], &[]);
        let (_, err) = text(&o);
        assert_eq!(code(&o), 2, "{settings}: {err}");
        assert!(err.contains(wanted), "{settings}: {err}");
        for rust in ["u16", "u64", "usize", "i64", "::", "struct "] {
            assert!(!err.contains(rust), "{settings}: {rust} in {err}");
        }
    }
    // A URL the url crate refuses: its error's name (`InvalidPort`) is not shown.
    let o = kaiju(&["streams", "x", "--redis-url", "redis://127.0.0.1:99999"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("the port is not a number from 0 to 65535") && !err.contains("InvalidPort"),
        "{err}"
    );
    // A pool no machine could open: refused by check, as run would be.
    let f = config("pool_size: 100000");
    let o = check(&[&f], &[]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o).1.contains("must be at most 1024"),
        "{:?}",
        text(&o)
    );
    // A plain string set by redis-cli, read as a cache value.
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let key = ns.key("plain").unwrap();
    {
        use kaiju_transport::fred::prelude::*;
        let _: () = t
            .pool()
            .set(key.as_str(), "hello world", None, None, false)
            .await
            .unwrap();
    }
    let o = kaiju(&[&["cache", "get", key.as_str()][..], &conn(&url, &ns)].concat());
    let (_, err) = text(&o);
    assert_eq!(code(&o), 1, "{err}");
    assert!(
        err.contains("11 bytes that are not a kaiju cache value")
            && err.contains("\"hello world\""),
        "{err}"
    );
    assert!(!err.contains("::"), "{err}");
}

#[test]
fn errors_point_at_the_key_and_hint_near_misses() {
    // The key (`port:` at column 7), not its value (column 13).
    let f = TempFile::new(
        "main: {name: app}\nservices:\n  - cls: RedisTransportService\n    settings:\n      port: 70000\n",
    );
    let o = check(&[&f], &[]);
    let (_, err) = text(&o);
    assert!(err.contains(&format!("{}:5:7:", f.path())), "{err}");
    // "(the value of --env ...)" only for a value that came from --env.
    let f = TempFile::new(
        "main: {name: app}\nservices:\n  - cls: RedisTransportService\n    settings:\n      port: '[PORT:70000]'\n      pool_size: '[POOL:2]'\n",
    );
    let o = check(&[&f], &["-e", "POOL=3"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains(&format!("{}:5:7:", f.path())), "{err}");
    assert!(!err.contains("--env"), "the value was the default: {err}");
    let o = check(&[&f], &["-e", "PORT=80000"]);
    let (_, err) = text(&o);
    assert!(
        err.contains(&format!("{}:5:7 (the value of --env PORT):", f.path())),
        "{err}"
    );
    // Near misses.
    let f = TempFile::new(
        "main: {name: app}\nservices:\n  - RedisTransportService\n  - JSONRPCServer\n  - cls: RedisListener\n    settings: {groupid: x}\n",
    );
    let o = check(&[&f], &[]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("setting `groupid`") && err.contains("did you mean `group_id`?"),
        "{err}"
    );
    assert!(err.contains(&format!("{}:6:16:", f.path())), "{err}");
    let f = TempFile::new("main: {name: app}\nservices:\n  - RedisCach\n");
    let o = check(&[&f], &[]);
    let (_, err) = text(&o);
    assert!(err.contains("did you mean `RedisCache`?"), "{err}");
    let f = TempFile::new("main: {name: app}\nservices:\n  - Frobnicator\n");
    let o = check(&[&f], &[]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("unknown service class `Frobnicator`")
            && err.contains("the known classes are")
            && err.contains("RedisListener")
            && !err.contains("did you mean"),
        "{err}"
    );
}

#[test]
fn a_config_without_main_is_told_so() {
    let snippet = TempFile::new("services:\n  - RedisTransportService\n");
    let o = check(&[&snippet], &[]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("this config has no `main` section; add `main: {name: ..., env: ...}` or layer it over a file that has one"),
        "{err}"
    );
    assert!(!err.contains("<defaults>"), "{err}");
    // Layered over a file that has one, it is fine.
    let main = TempFile::new("main: {name: app}\n");
    let o = check(&[&main, &snippet], &[]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
}

#[test]
fn bad_env_arguments_are_refused() {
    let f = TempFile::new("main: {name: '[NAME:app]'}\n");
    for (arg, wanted) in [
        ("a b=x", "a template name has only letters"),
        ("NAME=", "no value after `=`"),
        ("=x", "expected NAME=VALUE"),
        ("NAME", "expected NAME=VALUE"),
    ] {
        let o = check(&[&f], &["-e", arg]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 2, "-e {arg:?}: {err}");
        assert!(err.contains(wanted), "-e {arg:?}: {err}");
        assert!(out.is_empty());
    }
    let o = check(&[&f], &["-e", "NAME=\"\""]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "an empty main.name: {err}");
    let o = check(&[&f], &["-e", "NAME=billing"]);
    assert!(text(&o).1.contains("app `billing`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calling_an_app_nobody_listens_for_fails_fast_and_writes_nothing() {
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let (env, app) = ns.prefix().split_once('.').unwrap();
    let stream = ns.stream("rpc").unwrap();
    let started = Instant::now();
    let o = kaiju(&[&["call", app, "a.b", "--wait"][..], &conn(&url, &ns)].concat());
    let (_, err) = text(&o);
    assert_eq!(code(&o), 4, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it did not wait for the timeout"
    );
    assert!(
        err.contains(&format!("no app `{app}` listens in env `{env}`")),
        "{err}"
    );
    let o = kaiju(&[&["call", app, "a.b"][..], &conn(&url, &ns)].concat());
    let (_, err) = text(&o);
    assert_eq!(code(&o), 4, "{err}");
    assert!(err.contains("--create"), "{err}");
    let exists: u32 = t.pool().exists(stream.as_str()).await.unwrap();
    assert_eq!(exists, 0, "no stray stream was left behind");
    // The app listens in another env: the hint names it.
    let other = kaiju_core::Namespace::new(&format!("{env}x"), app).unwrap();
    let other_stream = other.stream("rpc").unwrap();
    let _: () = t
        .pool()
        .xgroup_create(other_stream.as_str(), app, "$", true)
        .await
        .unwrap();
    let o = kaiju(&[&["call", app, "a.b", "--wait"][..], &conn(&url, &ns)].concat());
    let (_, err) = text(&o);
    assert_eq!(code(&o), 4, "{err}");
    assert!(
        err.contains(&format!("Did you mean --environment {env}x?")),
        "{err}"
    );
    // --create writes the notification anyway.
    let o = kaiju(&[&["call", app, "a.b", "--create"][..], &conn(&url, &ns)].concat());
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let length: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(length, 1);
    let _: () = t
        .pool()
        .del(vec![stream.as_str(), other_stream.as_str()])
        .await
        .unwrap();
}

/// The table in `kaiju --help` and the one in the README are the same, code for code.
#[test]
fn the_exit_code_tables_of_help_and_readme_agree() {
    let o = kaiju(&["--help"]);
    let (help, _) = text(&o);
    let from_help: Vec<(String, String)> = help
        .split("Exit codes:")
        .nth(1)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (code, meaning) = l.trim().split_once("  ")?;
            Some((code.to_owned(), meaning.trim().to_owned()))
        })
        .collect();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let from_readme: Vec<(String, String)> = readme
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["", code, meaning, ""] if code.parse::<u8>().is_ok() => {
                    Some(((*code).to_owned(), (*meaning).to_owned()))
                }
                _ => None,
            }
        })
        .collect();
    assert_eq!(from_help.len(), 5, "{help}");
    assert_eq!(from_help, from_readme);
}

/// `--json` documents, and `kaiju streams` telling live consumers from gone ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_and_live_or_stale_consumers() {
    use kaiju_core::Lifecycle as _;
    use kaiju_streams::{Listener, ListenerSettings};
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let (_, app_name) = ns.prefix().split_once('.').unwrap();
    let c = conn(&url, &ns);
    let app = kaiju_tests::app(&ns);
    let seen = kaiju_tests::streams::Seen::default();
    let settings = ListenerSettings {
        consumer_id: Some("alive".into()),
        max_wait_time_ms: 100,
        ..ListenerSettings::default()
    };
    let mut listener = Listener::new(
        t.clone(),
        &app,
        settings,
        kaiju_tests::streams::recorder(&seen),
    )
    .unwrap();
    listener.start().await.unwrap();
    let stream = ns.stream("rpc").unwrap();
    // A consumer without a lease (as a Python kaiju consumer has none).
    let _: () = t
        .pool()
        .xgroup_createconsumer(stream.as_str(), app_name, "python-one")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let o = kaiju(
        &[
            &["streams", app_name, "--json", "--stale-after", "0"][..],
            &c,
        ]
        .concat(),
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    let json: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(json["stream"], stream.as_str());
    assert_eq!(json["exists"], true);
    let consumers = json["groups"][0]["consumers"].as_array().unwrap();
    let of = |name: &str| {
        consumers
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {out}"))
            .clone()
    };
    assert_eq!(of("alive")["state"], "live", "{out}");
    assert!(of("alive")["lease_left_ms"].as_u64().unwrap() > 0);
    assert_eq!(of("python-one")["state"], "stale", "{out}");
    assert_eq!(of("python-one")["live"], false);
    listener.stop(Duration::from_secs(5)).await.unwrap();
    // Stopped: its lease was released, so it is gone, whatever its idle time.
    let o = kaiju(&[&["streams", app_name][..], &c].concat());
    let (out, _) = text(&o);
    assert!(
        out.contains("alive: stale (its lease ran out: stopped or died)"),
        "{out}"
    );
    assert!(out.contains("python-one: live (no lease"), "{out}");

    // locks owner --json: the owner, the time left and the fencing token.
    let lock = ns.key("lock").unwrap();
    let locks = kaiju_locks::Locks::new(t.clone(), "owner-7").await.unwrap();
    let guard = locks.acquire(lock.as_str()).await.unwrap();
    let o = kaiju(&[&["locks", "owner", lock.as_str(), "--json"][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    let json: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(json["owner"], "owner-7");
    assert_eq!(json["token"].as_u64(), Some(guard.token()));
    assert!(json["ttl_ms"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(json["waiters"], 0);
    let o = kaiju(&[&["locks", "owner", lock.as_str()][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(out.trim(), "owner-7");
    assert!(
        err.contains(&format!("fencing token {}", guard.token())),
        "{err}"
    );
    guard.release().await.unwrap();
    let o = kaiju(&[&["locks", "owner", lock.as_str(), "--json"][..], &c].concat());
    assert_eq!(code(&o), 4);

    // cache get --json.
    let key = ns.key("user").unwrap();
    kaiju_cache::Cache::new(t.clone())
        .set(key.as_str(), &serde_json::json!({"n": 1}), None)
        .await
        .unwrap();
    let o = kaiju(&[&["cache", "get", key.as_str(), "--json"][..], &c].concat());
    let json: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"key": key.as_str(), "value": {"n": 1}})
    );
}

/// Review of issue 26: an error about `main` points into the file that has it, never at the
/// built-in `<defaults>`, and names the setting that is wrong.
#[test]
fn errors_about_main_point_into_the_file() {
    for (yaml, place, wanted) in [
        (
            "main: {env: dev}\nservices: []\n",
            ":1:1:",
            "main.name is missing",
        ),
        (
            "main:\n  name: app\n  env: \"a.b\"\nservices: []\n",
            ":3:3:",
            "main.env `a.b` cannot be part of a key",
        ),
        (
            "main: {name: \"a.b\"}\nservices: []\n",
            ":1:8:",
            "main.name `a.b` cannot be part of a key",
        ),
        ("main:\nservices: []\n", ":1:1:", "the `main` section"),
        (
            "main: {name: ''}\nservices: []\n",
            ":1:8:",
            "main.name must not be empty",
        ),
    ] {
        let config = TempFile::new(yaml);
        let o = check(&[&config], &[]);
        let (_, err) = text(&o);
        assert_eq!(code(&o), 2, "{yaml}: {err}");
        assert!(!err.contains("<defaults>"), "{yaml}: {err}");
        assert!(
            err.contains(&format!("{}{place}", config.path())),
            "{yaml}: {err}"
        );
        assert!(err.contains(wanted), "{yaml}: {err}");
        assert!(
            !err.contains("key part `env`") || wanted.contains("env"),
            "{err}"
        );
    }
}

/// Review of issue 26: `--json` on a command that prints no JSON is refused (exit 2), rather
/// than text where a script expects one document.
#[test]
fn json_is_refused_where_there_is_no_json_output() {
    for args in [
        &["call", "app", "a.b", "--json"][..],
        &["write", "dev.app._stream.rpc", "[1]", "--json"],
        &["functions", "load", "--json"],
    ] {
        let o = command()
            .args(args)
            .env("KAIJU_REDIS_URL", "redis://127.0.0.1:1")
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(code(&o), 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains("has no --json output"), "{args:?}: {err}");
    }
}

/// Review of issue 26: a server that answers the connect with an error (here a database the
/// server does not have) is the same exit code from `run` as from `check --connect` and the
/// other commands (it was 1 from `run`, 3 from the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_the_server_refuses_is_one_exit_code_everywhere() {
    let Some(url) = url() else { return };
    // A default server has 16 databases.
    let config = TempFile::new(&format!(
        "main: {{name: x}}\nservices:\n  - {{cls: RedisTransportService, settings: {{url: '{url}', db: 200}}}}\n"
    ));
    let mut codes = Vec::new();
    for args in [
        vec!["run", "-c", config.path()],
        vec!["check", "--connect", "-c", config.path()],
        vec!["streams", "x", "-c", config.path()],
        vec!["cache", "get", "k", "-c", config.path()],
    ] {
        let o = kaiju(&args);
        let (_, err) = text(&o);
        assert!(err.contains("DB index is out of range"), "{args:?}: {err}");
        codes.push((args[0], code(&o)));
    }
    assert!(codes.iter().all(|(_, c)| *c == 3), "{codes:?}");
}

/// Review of issue 26: group and consumer names are anyone's text; the human output of
/// `kaiju streams` shows their escape sequences instead of sending them to the terminal, and a
/// lease hash of another type costs a warning, not the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_escapes_names_and_survives_a_broken_lease_hash() {
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let (_, app_name) = ns.prefix().split_once('.').unwrap();
    let c = conn(&url, &ns);
    let stream = ns.stream("rpc").unwrap();
    let _: () = t
        .pool()
        .xgroup_create(stream.as_str(), "g\x1b[31mred", "$", true)
        .await
        .unwrap();
    let _: () = t
        .pool()
        .xgroup_createconsumer(stream.as_str(), "g\x1b[31mred", "c\x1b[2J\nfake line")
        .await
        .unwrap();
    let leases = ns.stream_consumers("rpc").unwrap();
    let _: () = t
        .pool()
        .set(leases.as_str(), "not a hash", None, None, false)
        .await
        .unwrap();
    let o = kaiju(&[&["streams", app_name][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(!out.contains('\x1b'), "{out:?}");
    assert!(!out.contains("\nfake line"), "{out:?}");
    assert!(out.contains(r"c\u{1b}[2J\nfake line: "), "{out}");
    assert!(err.contains("cannot read the consumer leases"), "{err}");
    let o = kaiju(&[&["streams", app_name, "--json"][..], &c].concat());
    let json: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        json["groups"][0]["consumers"][0]["name"],
        "c\x1b[2J\nfake line"
    );
}
