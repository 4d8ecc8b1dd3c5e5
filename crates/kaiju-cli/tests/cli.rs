//! Every `kaiju` subcommand, run as a process against the Redis `cargo xtask test` started:
//! output, and the exit codes scripts rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{code, conn, examples, kaiju, text, url};
use kaiju_tests::{Target, TempFile};

#[test]
fn check_prints_the_resolved_config_with_secrets_hidden() {
    let app = examples().join("app.yml");
    let transport = examples().join("transport.yml");
    let o = kaiju(&[
        "check",
        "-c",
        app.to_str().unwrap(),
        "-c",
        transport.to_str().unwrap(),
        "-e",
        "main_name=billing",
    ]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["main"]["name"], "billing");
    assert_eq!(json["services"][0]["settings"]["password"], "<hidden>");
    assert!(!out.contains("redis1") && !err.contains("redis1"));
    assert!(err.contains("config ok: app `billing`"), "{err}");
}

/// `kaiju check` with `extra_env` set in its OS environment.
fn check_with_env(args: &[&str], extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = common::command();
    cmd.arg("check").args(args);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Secrets are hidden by their key's name (key, cookie, jwt, sign, secret, token, password),
/// by their form (`Bearer ...`, a URL's password and `?token=`), and by where they came from
/// (the OS environment, an env file) whatever their key.
#[test]
fn check_hides_secrets_by_name_by_form_and_by_where_they_came_from() {
    let env_file = TempFile::new("FILE_VALUE: fv-s3cret\n");
    let config = TempFile::new(
        "main: {name: app}\netc:\n  api-key: ak-s3cret\n  apiKey: ak2-s3cret\n  cookie_key: ck-s3cret\n  jwt: jw-s3cret\n  signing_key: sk-s3cret\n  client_secret: cs-s3cret\n  header: 'Bearer be-s3cret'\n  link: 'https://h/x?token=tk-s3cret&page=2'\n  dsn: 'postgres://u:pw-s3cret@h/db'\n  neutral: '[NEUTRAL]'\n  from_file: '[FILE_VALUE]'\n  user: bob\n",
    );
    let o = check_with_env(
        &["-c", config.path(), "-f", env_file.path()],
        &[("NEUTRAL", "os-s3cret")],
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    for secret in [
        "ak-s3cret",
        "ak2-s3cret",
        "ck-s3cret",
        "jw-s3cret",
        "sk-s3cret",
        "cs-s3cret",
        "be-s3cret",
        "tk-s3cret",
        "pw-s3cret",
        "os-s3cret",
        "fv-s3cret",
    ] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret}: {out}{err}"
        );
    }
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["etc"]["user"], "bob", "what is no secret is shown");
    assert_eq!(json["etc"]["link"], "https://h/x?token=***&page=2");
    assert_eq!(
        json["etc"]["neutral"],
        "<hidden: the environment variable NEUTRAL>"
    );
    assert_eq!(
        json["etc"]["from_file"],
        "<hidden: `FILE_VALUE` of an env file>"
    );
}

/// A setting with the wrong type, its value taken from the environment: the error names the
/// variable and never quotes the value (serde quotes it: `invalid type: string "hunter2"`).
#[test]
fn config_errors_never_quote_a_value_from_the_environment() {
    let config = TempFile::new(
        "main: {name: app}\nservices:\n  - cls: RedisTransportService\n    settings: {port: '[DB_PASSWORD]'}\n",
    );
    let o = check_with_env(&["-c", config.path()], &[("DB_PASSWORD", "hunter2")]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{err}"
    );
    assert!(
        err.contains("the value of the environment variable DB_PASSWORD") && err.contains("port"),
        "{err}"
    );
    let env_file = TempFile::new("DB_PASSWORD: hunter3\n");
    let o = check_with_env(
        &["-c", config.path(), "-f", env_file.path(), "--no-os-env"],
        &[],
    );
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(!err.contains("hunter3"), "{err}");
    assert!(err.contains("`DB_PASSWORD` of an env file"), "{err}");
    // A secret's name is enough: its value is not quoted either.
    let config = TempFile::new(
        "main: {name: app}\nservices:\n  - cls: RedisTransportService\n    settings: {password: [hunter4]}\n",
    );
    let o = check_with_env(&["-c", config.path(), "--no-os-env"], &[]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(!err.contains("hunter4"), "{err}");
}

/// A config named with `-c` gives the connection over a `KAIJU_REDIS_URL` exported earlier (a
/// review ran `--repair` against the exported staging server while naming the prod config),
/// and kaiju says it left the variable unused.
#[test]
fn a_config_named_on_the_command_line_wins_over_kaiju_redis_url() {
    // The variable names a live server; the config, a port nothing listens on.
    let Some(live) = url() else { return };
    let config_port = kaiju_testkit::free_port(false).unwrap();
    let config = TempFile::new(&format!(
        "main: {{name: app}}\nservices:\n  - cls: RedisTransportService\n    settings: {{host: 127.0.0.1, port: {config_port}}}\n"
    ));
    let o = common::command()
        .args(["cache", "get", "k", "-c", config.path()])
        .env("KAIJU_REDIS_URL", &live)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(
        code(&o),
        3,
        "the config's server, where nothing listens: {err}"
    );
    assert!(err.contains("KAIJU_REDIS_URL is set but not used"), "{err}");
}

/// Passwords in arguments show in `ps`: kaiju warns, and takes them from KAIJU_REDIS_URL or a
/// password file instead.
#[test]
fn a_password_given_as_an_argument_is_warned_about() {
    let port = kaiju_testkit::free_port(false).unwrap();
    let with_password = format!("redis://:pw-s3cret@127.0.0.1:{port}");
    let o = kaiju(&["cache", "get", "k", "--redis-url", &with_password]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "nothing listens there: {err}");
    assert!(err.contains("warning") && err.contains("`ps`"), "{err}");
    assert!(!err.contains("pw-s3cret"), "{err}");
    // The same URL from the environment: no warning.
    let o = common::command()
        .args(["cache", "get", "k"])
        .env("KAIJU_REDIS_URL", &with_password)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "{err}");
    assert!(!err.contains("warning"), "{err}");
    // A template value that looks like a secret.
    let config = TempFile::new("main: {name: app}\n");
    let o = kaiju(&["check", "-c", config.path(), "-e", "db_password=x"]);
    let (_, err) = text(&o);
    assert!(
        err.contains("warning") && err.contains("-e db_password"),
        "{err}"
    );
    assert!(!err.contains("db_password=x"), "{err}");
    let o = kaiju(&[
        "cache",
        "get",
        "k",
        "--redis-url",
        "redis://127.0.0.1:1",
        "--password-file",
        "/nonexistent/password",
    ]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains("cannot read the password file"), "{err}");
}

#[test]
fn environment_variables_that_are_not_utf8_are_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let config = TempFile::new("main: {name: '[main_name:app]'}\n");
    let o = common::command()
        .args(["check", "-c", config.path()])
        .env(
            std::ffi::OsStr::from_bytes(b"bad\xff"),
            std::ffi::OsStr::from_bytes(b"\xfe"),
        )
        .env("main_name", "from-os")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(err.contains("app `from-os`"), "{err}");
    assert!(
        out.contains("<hidden: the environment variable main_name>"),
        "{out}"
    );
}

/// `kaiju ... | head` closes stdout early: kaiju stops quietly with status 0, as Unix tools do,
/// instead of panicking on the broken pipe. The config printed is larger than a pipe's buffer,
/// so kaiju is still writing when the reader goes away.
#[test]
fn a_reader_that_closes_stdout_early_ends_kaiju_quietly() {
    let items: String = (0..6000)
        .map(|i| format!("  - item-{i:05}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"))
        .collect();
    let config = TempFile::new(&format!("main: {{name: app}}\netc:\n big:\n{items}"));
    let mut kaiju = common::command();
    kaiju.args(["check", "-c", config.path(), "--no-os-env"]);
    let o = read_a_little_then_close(kaiju);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("error"),
        "{err}"
    );
    assert_eq!(o.status.code(), Some(0), "{err}");
}

#[test]
fn config_errors_are_one_line_and_exit_2() {
    let bad = TempFile::new(
        "main: {name: app}\nservices:\n  - cls: RedisListener\n    settings: {max_batch_sise: 1}\n",
    );
    let o = kaiju(&["check", "-c", bad.path()]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{}:4:", bad.path())) && err.contains("max_batch_sise"),
        "{err}"
    );
    let o = kaiju(&["check", "-c", "/nonexistent/app.yml"]);
    assert_eq!(code(&o), 2);
    let o = kaiju(&["bogus"]);
    assert_eq!(code(&o), 2, "clap usage errors exit 2");
}

#[test]
fn check_fails_on_dependencies_run_could_not_find_and_names_what_is_left_out() {
    // A cache with no transport: `run` could not start it, so `check` fails (exit 2).
    let missing = TempFile::new("main: {name: app}\nservices:\n  - RedisCache\n");
    let o = kaiju(&["check", "-c", missing.path()]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("no RedisTransportService service is configured"),
        "{err}"
    );
    // An optional listener without a JSONRPCServer is left out, and check says so.
    let optional = TempFile::new(
        "main: {name: app}\nservices:\n  - RedisTransportService\n  - {cls: RedisListener, required: false}\n",
    );
    let o = kaiju(&["check", "-c", optional.path()]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(err.contains("1 services: RedisTransportService"), "{err}");
    assert!(
        err.contains("left out (optional") && err.contains("RedisListener"),
        "{err}"
    );
}

#[test]
fn connection_problems_have_their_own_exit_codes() {
    let o = kaiju(&["cache", "get", "k"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "no connection given: {err}");
    assert!(err.contains("KAIJU_REDIS_URL"), "{err}");
    let port = kaiju_testkit::free_port(false).unwrap();
    let o = kaiju(&[
        "cache",
        "get",
        "k",
        "--redis-url",
        &format!("redis://127.0.0.1:{port}"),
    ]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "nothing listens there: {err}");
    let down = TempFile::new(&format!(
        "main: {{name: x}}\nservices:\n  - cls: RedisTransportService\n    settings: {{port: {port}}}\n"
    ));
    let o = kaiju(&["run", "-c", down.path()]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "an app whose Redis is unreachable: {err}");
    assert!(
        err.contains("RedisTransportService") && err.contains("init"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_get_and_locks_owner() {
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let key = ns.key("user").unwrap();
    let c = conn(&url, &ns);
    let o = kaiju(&[&["cache", "get", key.as_str()][..], &c].concat());
    assert_eq!(code(&o), 4, "a missing value is exit 4");
    kaiju_cache::Cache::new(t.clone())
        .set(
            key.as_str(),
            &serde_json::json!({"name": "bob", "tags": [1, 2]}),
            None,
        )
        .await
        .unwrap();
    let o = kaiju(&[&["cache", "get", key.as_str()][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!({"name": "bob", "tags": [1, 2]})
    );

    let lock = ns.key("lock").unwrap();
    let o = kaiju(&[&["locks", "owner", lock.as_str()][..], &c].concat());
    assert_eq!(code(&o), 4, "an unheld lock is exit 4");
    let locks = kaiju_locks::Locks::new(t.clone(), "owner-42")
        .await
        .unwrap();
    let guard = locks.acquire(lock.as_str()).await.unwrap();
    let o = kaiju(&[&["locks", "owner", lock.as_str()][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert_eq!(out.trim(), "owner-42");
    guard.release().await.unwrap();
}

/// A stream bricked by an entry with the largest id: `kaiju streams` warns, `--repair` mends
/// it (the group and its pending entry kept), and writes work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_warns_about_a_bricked_stream_and_repair_mends_it() {
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let app = ns.prefix().split_once('.').unwrap().1;
    let stream = ns.stream("rpc").unwrap().into_string();
    let c = conn(&url, &ns);
    let _: String = t
        .pool()
        .xadd(stream.as_str(), false, None, "*", vec![("_", "ok")])
        .await
        .unwrap();
    let _: () = t
        .pool()
        .xgroup_create(stream.as_str(), "g", "0", false)
        .await
        .unwrap();
    let _: String = t
        .pool()
        .xadd(
            stream.as_str(),
            false,
            None,
            "18446744073709551615-18446744073709551615",
            vec![("_", "evil")],
        )
        .await
        .unwrap();
    let _: kaiju_transport::fred::types::Value = t
        .pool()
        .xreadgroup("g", "c", None, None, false, stream.as_str(), ">")
        .await
        .unwrap();
    let o = kaiju(&[&["streams", app][..], &c].concat());
    let (_, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        err.contains("warning") && err.contains("is unusable") && err.contains("--repair"),
        "{err}"
    );
    let o = kaiju(&[&["streams", app, "--repair"][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(out.contains("repair: moved 1 entries"), "{out}");
    assert!(out.contains("groups set back: g"), "{out}");
    assert!(!err.contains("warning"), "repaired: {err}");
    let written: Result<String, _> = t
        .pool()
        .xadd(stream.as_str(), false, None, "*", vec![("_", "after")])
        .await;
    assert!(written.is_ok(), "{written:?}");
    let pending: Vec<(String, String, u64, u64)> = t
        .pool()
        .xpending(stream.as_str(), "g", ("-", "+", 10))
        .await
        .unwrap();
    assert_eq!(
        pending.len(),
        2,
        "no pending entry was dropped: {pending:?}"
    );
}

/// Both the stream and its dead-letter stream bricked: the warning for the dead-letter stream
/// gives a command that works, and `--repair` mends the dead-letter stream first (its letters
/// kept), then the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_mends_a_bricked_dead_letter_stream_first() {
    use kaiju_transport::fred::prelude::*;
    const MAX_ID: &str = "18446744073709551615-18446744073709551615";
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let app = ns.prefix().split_once('.').unwrap().1;
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    let c = conn(&url, &ns);
    for key in [&stream, &dead] {
        let _: String = t
            .pool()
            .xadd(key.as_str(), false, None, MAX_ID, vec![("e", "1")])
            .await
            .unwrap();
    }
    let o = kaiju(&[&["streams", app][..], &c].concat());
    let (_, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    let dead_warning = err
        .lines()
        .find(|l| l.contains(&format!("stream {dead} is unusable")))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        dead_warning.contains("`kaiju streams <app> <topic> --repair`")
            && dead_warning.contains("dead letters"),
        "{dead_warning}"
    );
    let o = kaiju(&[&["streams", app, "--repair"][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(
        out.contains(&format!("dead-letter stream {dead}: last id {MAX_ID} ->"))
            && out.contains("repair: moved 1 entries"),
        "{out}"
    );
    assert!(!err.contains("warning"), "repaired: {err}");
    for key in [&stream, &dead] {
        let written: Result<String, _> = t
            .pool()
            .xadd(key.as_str(), false, None, "*", vec![("_", "after")])
            .await;
        assert!(written.is_ok(), "{key}: {written:?}");
    }
    // The dead-letter stream's own letter and the stream's bad entry are both letters now.
    let o = kaiju(&[&["dead", "list", app][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(out.starts_with("3 dead letters"), "{out}");
    assert!(out.contains(MAX_ID), "{out}");
}

/// The review's steps: an entry from the future, then two legitimate ones (ids as far ahead),
/// all read and acked by the app's group. `--repair` moves them as `future-id-handled`, and
/// `kaiju dead replay` does not run them again unless `--include-handled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_of_handled_entries_is_not_replayed_by_default() {
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let app = ns.prefix().split_once('.').unwrap().1;
    let stream = ns.stream("rpc").unwrap().into_string();
    let c = conn(&url, &ns);
    let _: () = t
        .pool()
        .xgroup_create(stream.as_str(), app, "$", true)
        .await
        .unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let future = format!("{}-0", now_ms + 10 * 86_400_000);
    let mut ids = Vec::new();
    for (id, field) in [(future.as_str(), "evil"), ("*", "legit"), ("*", "legit")] {
        let written: String = t
            .pool()
            .xadd(stream.as_str(), false, None, id, vec![(field, "1")])
            .await
            .unwrap();
        ids.push(written);
    }
    let _: kaiju_transport::fred::types::Value = t
        .pool()
        .xreadgroup(app, "c", None, None, false, stream.as_str(), ">")
        .await
        .unwrap();
    let acked: u64 = t.pool().xack(stream.as_str(), app, ids).await.unwrap();
    assert_eq!(acked, 3);
    let o = kaiju(&[&["streams", app, "--repair"][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        out.contains("repair: moved 3 entries")
            && out.contains("3 of the moved entries had already been handled by every group"),
        "{out}"
    );
    let o = kaiju(&[&["dead", "list", app][..], &c].concat());
    let (out, _) = text(&o);
    assert_eq!(out.matches("future-id-handled").count(), 3, "{out}");
    assert!(out.contains("replaying runs it again"), "{out}");
    let o = kaiju(&[&["dead", "replay", app][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        out.contains("replayed 0 into")
            && out.contains("left 3 dead letters of kind future-id-handled alone"),
        "{out}"
    );
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(len, 0, "nothing run again");
    let o = kaiju(&[&["dead", "replay", app, "--include-handled"][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(out.contains("replayed 3 into"), "{out}");
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(len, 3);
}

/// Writes a dead letter the way the listener does (why, what kind, where from, the entry's
/// fields as `field:<name>`) with the id `id` (`*`: a new one) and returns its id.
async fn dead_letter(
    t: &kaiju_transport::Transport,
    dead: &str,
    id: &str,
    kind: &str,
    from: &str,
    payload: &[u8],
) -> String {
    use kaiju_transport::fred::prelude::*;
    let fields: Vec<(&str, Vec<u8>)> = vec![
        (
            "reason",
            format!("the reason of a {kind} letter").into_bytes(),
        ),
        ("kind", kind.as_bytes().to_vec()),
        ("stream", from.as_bytes().to_vec()),
        ("id", b"1-0".to_vec()),
        ("deliveries", b"3".to_vec()),
        ("field:_", payload.to_vec()),
    ];
    t.pool().xadd(dead, false, None, id, fields).await.unwrap()
}

/// An envelope `[("svc.m", i), {Correlation-Id: "c<i>"}]`, as a writer puts it in `_`.
fn envelope(i: i64) -> Vec<u8> {
    let mut headers = kaiju_streams::Headers::new();
    headers.insert("Correlation-Id", format!("c{i}"));
    kaiju_streams::encode(&("svc.m", i), &headers).unwrap()
}

/// The ids of the dead letters left in `dead`, oldest first.
async fn dead_ids(t: &kaiju_transport::Transport, dead: &str) -> Vec<String> {
    use kaiju_transport::fred::prelude::*;
    let entries: Vec<(String, std::collections::HashMap<String, Vec<u8>>)> =
        t.pool().xrange(dead, "-", "+", None).await.unwrap();
    entries.into_iter().map(|(id, _)| id).collect()
}

/// What `kaiju dead` prints for people cannot drive the terminal: the stream keys it names
/// (made of the app, topic and environment given) are escaped as the letters' texts are, and
/// so are the Unicode bidirectional overrides and line separators of a letter's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_output_escapes_terminal_controls_in_keys_and_bidi_overrides() {
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let app = ns.prefix().split_once('.').unwrap().1;
    let c = conn(&url, &ns);
    let hostile = format!("{app}\u{1b}]0;pwned\u{7}");
    let o = kaiju(&[&["dead", "list", &hostile][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 4, "{out}{err}");
    assert!(
        !err.contains('\u{1b}') && !err.contains('\u{7}') && err.contains("\\u{1b}]0;pwned"),
        "{err:?}"
    );
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    let fields = vec![
        ("reason", "evil\u{202e}txt.exe\u{2028}fake line"),
        ("kind", "rejected"),
        ("stream", stream.as_str()),
    ];
    let _: String = t
        .pool()
        .xadd(dead.as_str(), false, None, "*", fields)
        .await
        .unwrap();
    let o = kaiju(&[&["dead", "list", app][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        !out.contains('\u{202e}') && !out.contains('\u{2028}') && out.contains("evil\\u{202e}txt"),
        "{out:?}"
    );
}

/// `kaiju dead` is three subcommands, `list|replay|purge APP [TOPIC]`, each with its own
/// options; the usage line was garbled (`2 values required by '<APP [TOPIC] ACTION> ...'`).
#[test]
fn dead_is_list_replay_purge_subcommands_with_their_own_options() {
    let o = kaiju(&["dead", "--help"]);
    let (out, _) = text(&o);
    assert_eq!(code(&o), 0);
    assert!(
        out.contains("kaiju dead list|replay|purge APP [TOPIC]"),
        "{out}"
    );
    for sub in ["list", "replay", "purge"] {
        assert!(out.contains(&format!("\n  {sub} ")), "{sub}: {out}");
    }
    let o = kaiju(&["dead", "list"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("Usage: kaiju dead list <APP> [TOPIC]"),
        "{err}"
    );
    assert!(!err.contains("values required"), "{err}");
    let refused: [&[&str]; 9] = [
        &["dead", "explode", "app"],
        &["dead", "app", "list"],
        &["dead", "replay", "app", "--count", "3"],
        &["dead", "list", "app", "--include-handled"],
        &["dead", "purge", "app", "--older-than", "5x", "--yes"],
        &["dead", "purge", "app", "--kind", "nope", "--yes"],
        &["dead", "replay", "app", "--id", "abc"],
        // An id past the largest (u64) took nothing, silently; an age past u64 seconds said
        // "not a duration".
        &[
            "dead",
            "purge",
            "app",
            "--id",
            "99999999999999999999-0",
            "--yes",
        ],
        &[
            "dead",
            "purge",
            "app",
            "--older-than",
            "999999999999999d",
            "--yes",
        ],
    ];
    for args in refused {
        let o = kaiju(args);
        assert_eq!(code(&o), 2, "{args:?}: {:?}", text(&o));
    }
    let (_, err) = text(&kaiju(&["dead", "purge", "app", "--older-than", "5x"]));
    assert!(
        err.contains("not a duration") && err.contains("10m"),
        "{err}"
    );
    let (_, err) = text(&kaiju(&[
        "dead",
        "purge",
        "app",
        "--older-than",
        "999999999999999d",
    ]));
    assert!(err.contains("too long"), "{err}");
    let (_, err) = text(&kaiju(&["dead", "purge", "app", "--kind", "nope"]));
    assert!(
        err.contains("malformed") && err.contains("timed_out") && err.contains("future-id"),
        "the kinds that exist are listed: {err}"
    );
}

/// An app and topic with neither a stream nor a dead-letter stream is not found (exit 4) in
/// `list`, `replay` and `purge` (`list` said "0 dead letters", exit 0); an app whose stream
/// exists and has no dead letters is exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_on_an_app_with_no_stream_is_not_found_exit_4() {
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let app = ns.prefix().split_once('.').unwrap().1;
    let c = conn(&url, &ns);
    let commands: [&[&str]; 4] = [
        &["dead", "list", app],
        &["dead", "replay", app],
        &["dead", "purge", app, "--yes"],
        &["dead", "list", app, "billing"],
    ];
    for args in commands {
        let o = kaiju(&[args, &c[..]].concat());
        let (out, err) = text(&o);
        assert_eq!(code(&o), 4, "{args:?}: {out}{err}");
        assert!(
            err.contains("no stream") && err.contains("no dead letters"),
            "{args:?}: {err}"
        );
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    let stream = ns.stream("rpc").unwrap().into_string();
    let _: String = t
        .pool()
        .xadd(stream.as_str(), false, None, "*", vec![("_", "x")])
        .await
        .unwrap();
    let o = kaiju(&[&["dead", "list", app][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(out.starts_with("0 dead letters"), "{out}");
    let o = kaiju(&[&["--json", "dead", "list", app][..], &c].concat());
    let document: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            document["total"].as_u64(),
            document["letters"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let o = kaiju(&[&["dead", "purge", app, "--yes"][..], &c].concat());
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    assert!(text(&o).0.contains("purged 0"), "{:?}", text(&o));
}

/// `purge` without `--yes` refuses when stdin is not a terminal (exit 2, saying to pass
/// --yes) and deletes nothing; `--dry-run` shows what it would delete and deletes nothing;
/// `--yes` deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_purge_asks_and_refuses_without_yes_when_stdin_is_not_a_terminal() {
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let app = ns.prefix().split_once('.').unwrap().1;
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    let c = conn(&url, &ns);
    for i in 0..2 {
        dead_letter(&t, &dead, "*", "rejected", &stream, &envelope(i)).await;
    }
    let o = kaiju(&[&["dead", "purge", app][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 2, "{out}{err}");
    assert!(
        err.contains("not a terminal") && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(t.pool().xlen::<u64, _>(dead.as_str()).await.unwrap(), 2);
    let o = kaiju(&[&["dead", "purge", app, "--dry-run"][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        out.contains("would purge 2") && out.contains("svc.m"),
        "{out}"
    );
    assert_eq!(t.pool().xlen::<u64, _>(dead.as_str()).await.unwrap(), 2);
    let o = kaiju(&[&["dead", "purge", app, "--yes"][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(out.contains("purged 2"), "{out}");
    assert_eq!(t.pool().xlen::<u64, _>(dead.as_str()).await.unwrap(), 0);
}

/// `purge` and `replay` with `--id`, `--kind` and `--older-than` take exactly the letters
/// that pass every filter (purge by id with XDEL, never the whole stream), `--dry-run`
/// changes nothing, and `replay` removes from the dead letters only what it wrote back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_filters_purge_and_replay_exactly_the_letters_they_match() {
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let app = ns.prefix().split_once('.').unwrap().1;
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    let c = conn(&url, &ns);
    let days_ago = |d: u64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        format!("{}-0", now - d * 86_400_000)
    };
    let old_rejected =
        dead_letter(&t, &dead, &days_ago(3), "rejected", &stream, &envelope(1)).await;
    let old_exhausted =
        dead_letter(&t, &dead, &days_ago(2), "exhausted", &stream, &envelope(2)).await;
    let rejected = dead_letter(&t, &dead, "*", "rejected", &stream, &envelope(3)).await;
    let malformed = dead_letter(&t, &dead, "*", "malformed", &stream, b"hello").await;
    let timed_out = dead_letter(&t, &dead, "*", "timed_out", &stream, &envelope(5)).await;
    let rejected_too = dead_letter(&t, &dead, "*", "rejected", &stream, &envelope(6)).await;
    let run = |args: &[&str]| {
        let o = kaiju(&[args, &c[..]].concat());
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "{args:?}: {out}{err}");
        out
    };

    // Old and rejected: one letter of the six.
    let old = [
        "dead",
        "purge",
        app,
        "--kind",
        "rejected",
        "--older-than",
        "1d",
    ];
    let out = run(&[&old[..], &["--dry-run"]].concat());
    assert!(
        out.contains(&old_rejected) && !out.contains(&rejected) && out.contains("would purge 1 "),
        "{out}"
    );
    let out = run(&[&old[..], &["--yes"]].concat());
    assert!(out.contains("purged 1 "), "{out}");
    let left = [
        &old_exhausted,
        &rejected,
        &malformed,
        &timed_out,
        &rejected_too,
    ]
    .map(|s| s.clone());
    assert_eq!(dead_ids(&t, &dead).await, left);

    // By id: a dry run lists them and changes nothing; then exactly those go.
    let by_id = ["dead", "purge", app, "--id", &rejected, "--id", &timed_out];
    let out = run(&[&by_id[..], &["--dry-run"]].concat());
    assert!(
        out.contains(&rejected) && out.contains(&timed_out) && !out.contains(&rejected_too),
        "{out}"
    );
    assert!(out.contains("would purge 2"), "{out}");
    assert_eq!(dead_ids(&t, &dead).await, left);
    let out = run(&[&by_id[..], &["--yes"]].concat());
    assert!(out.contains("purged 2 "), "{out}");
    assert_eq!(
        dead_ids(&t, &dead).await,
        [old_exhausted.clone(), malformed.clone(), rejected_too]
    );

    // Replay by kind: only the rejected letter is written back, and only it leaves.
    let out = run(&["dead", "replay", app, "--kind", "rejected", "--dry-run"]);
    assert!(out.contains("would replay 1 "), "{out}");
    assert_eq!(t.pool().xlen::<u64, _>(stream.as_str()).await.unwrap(), 0);
    let out = run(&["dead", "replay", app, "--kind", "rejected"]);
    assert!(out.contains("replayed 1 "), "{out}");
    assert_eq!(dead_ids(&t, &dead).await, [old_exhausted, malformed]);
    let entries: Vec<(String, std::collections::HashMap<String, Vec<u8>>)> = t
        .pool()
        .xrange(stream.as_str(), "-", "+", None)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    let (body, _): ((String, i64), kaiju_streams::Headers) =
        kaiju_streams::decode(&entries[0].1["_"]).unwrap();
    assert_eq!(body, ("svc.m".to_owned(), 6));
}

/// `replay` leaves dead letters of kind `malformed` alone (they would fail again) and says how
/// many and why; `--include-malformed` replays them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_replay_leaves_malformed_letters_unless_asked() {
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let app = ns.prefix().split_once('.').unwrap().1;
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    let c = conn(&url, &ns);
    dead_letter(&t, &dead, "*", "malformed", &stream, b"hello").await;
    dead_letter(&t, &dead, "*", "malformed", &stream, &[0x05]).await;
    dead_letter(&t, &dead, "*", "exhausted", &stream, &envelope(1)).await;
    let o = kaiju(&[&["dead", "replay", app][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(out.contains("replayed 1 "), "{out}");
    assert!(
        out.contains("left 2 dead letters of kind malformed alone")
            && out.contains("would fail again")
            && out.contains("--include-malformed"),
        "{out}"
    );
    assert_eq!(t.pool().xlen::<u64, _>(stream.as_str()).await.unwrap(), 1);
    assert_eq!(t.pool().xlen::<u64, _>(dead.as_str()).await.unwrap(), 2);
    let o = kaiju(
        &[
            &["--json", "dead", "replay", app, "--include-malformed"][..],
            &c,
        ]
        .concat(),
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    let document: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            document["replayed"].as_u64(),
            document["malformed"].as_u64()
        ),
        (Some(2), Some(0)),
        "{document}"
    );
    assert_eq!(t.pool().xlen::<u64, _>(stream.as_str()).await.unwrap(), 3);
    assert_eq!(t.pool().xlen::<u64, _>(dead.as_str()).await.unwrap(), 0);
}

/// `--json dead list` prints one JSON document: the keys, the total and each letter with its
/// id, kind, origin, deliveries, reason, age, and its body and headers as JSON (or why its
/// payload cannot be read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_list_json_is_one_document_with_every_letter() {
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let app = ns.prefix().split_once('.').unwrap().1;
    let stream = ns.stream("rpc").unwrap().into_string();
    let dead = ns.dead_letter_stream("rpc").unwrap().into_string();
    let c = conn(&url, &ns);
    let first = dead_letter(&t, &dead, "*", "rejected", &stream, &envelope(7)).await;
    let second = dead_letter(&t, &dead, "*", "malformed", &stream, b"hello").await;
    let o = kaiju(&[&["--json", "dead", "list", app][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert_eq!(out.lines().count(), 1, "one document: {out}");
    let document: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(document["stream"], stream.as_str());
    assert_eq!(document["dead_stream"], dead.as_str());
    assert_eq!(document["total"], 2);
    let letters = document["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2);
    let letter = &letters[0];
    assert_eq!(letter["id"], first.as_str());
    assert_eq!(letter["kind"], "rejected");
    assert_eq!(letter["origin_id"], "1-0");
    assert_eq!(letter["stream"], stream.as_str());
    assert_eq!(letter["deliveries"], 3);
    assert_eq!(letter["reason"], "the reason of a rejected letter");
    assert_eq!(letter["body"], serde_json::json!(["svc.m", 7]));
    assert_eq!(letter["headers"]["Correlation-Id"], "c7");
    assert!(
        letter["age_ms"].as_u64().is_some_and(|ms| ms < 600_000),
        "{letter}"
    );
    let letter = &letters[1];
    assert_eq!(letter["id"], second.as_str());
    assert!(letter["body"].is_null());
    let error = letter["payload_error"].as_str().unwrap();
    assert!(
        error.contains("not msgpack") && error.contains("\"hello\""),
        "{error}"
    );
    assert!(!error.contains("::"), "{error}");
    // `--count` bounds the letters, not the total.
    let o = kaiju(&[&["--json", "dead", "list", app, "--count", "1"][..], &c].concat());
    let document: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            document["total"].as_u64(),
            document["letters"].as_array().map(Vec::len)
        ),
        (Some(2), Some(1))
    );
    // Purge's result as JSON too.
    let o = kaiju(&[&["--json", "dead", "purge", app, "--yes"][..], &c].concat());
    let document: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(document["purged"], 2, "{document}");
}

/// Entries that are not kaiju's envelope, written with a plain XADD as redis-cli would, are
/// dead-lettered by a listener reading `Value` bodies (as kaiju-rpc does) with reasons in
/// words: what the payload should be and what it holds. They named Rust types:
/// `cannot decode msgpack as `(kaiju_core::value::Value, kaiju_streams::envelope::Headers)``.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entries_are_dead_lettered_with_reasons_in_words() {
    use kaiju_core::Lifecycle as _;
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let app = kaiju_tests::app(&ns);
    let stream = ns.stream("rpc").unwrap().into_string();
    let c = conn(&url, &ns);
    let payloads: [&[u8]; 4] = [
        b"hello",                // a plain string: msgpack 104, then 4 bytes more
        b"\xa5hello",            // msgpack, a string
        b"\x92\xa1x\xa7headers", // [body, headers] with headers that are no map
        b"\x93\x01\x02\x03",     // an array of 3
    ];
    for payload in payloads {
        let _: String = t
            .pool()
            .xadd(stream.as_str(), false, None, "*", vec![("_", payload)])
            .await
            .unwrap();
    }
    let handler = |_: kaiju_streams::Message<kaiju_core::Value>| {
        std::future::ready(Ok::<(), kaiju_streams::HandlerError>(()))
    };
    let mut listener = kaiju_streams::Listener::new(
        t.clone(),
        &app,
        kaiju_streams::ListenerSettings::default(),
        handler,
    )
    .unwrap();
    listener.start().await.unwrap();
    let dead = listener.dead_letter_key().to_owned();
    kaiju_tests::eventually("4 dead letters", Duration::from_secs(10), || async {
        t.pool().xlen::<u64, _>(dead.as_str()).await.unwrap_or(0) >= 4
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let o = kaiju(&[&["--json", "dead", "list", &app.name][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    let document: serde_json::Value = serde_json::from_str(&out).unwrap();
    let reasons: Vec<&str> = document["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["kind"], "malformed");
            l["reason"].as_str().unwrap()
        })
        .collect();
    assert_eq!(reasons.len(), 4);
    for reason in &reasons {
        assert!(!reason.contains("::"), "{reason}");
        assert!(reason.starts_with("not a kaiju entry: "), "{reason}");
    }
    let has = |text: &str| reasons.iter().any(|r| r.contains(text));
    assert!(
        has("not msgpack: 4 byte(s) left over after the first value (5 bytes: \"hello\")"),
        "{reasons:#?}"
    );
    assert!(
        has("must hold a msgpack array [body, headers]; it holds a string of 5 bytes (\"hello\")"),
        "{reasons:#?}"
    );
    assert!(has("it holds an array of 3 items"), "{reasons:#?}");
    assert!(
        has("the headers (the second item of [body, headers]) must be a map")
            && has("they are a string of 7 bytes (\"headers\")"),
        "{reasons:#?}"
    );
    // The human list shows the same reasons.
    let o = kaiju(&[&["dead", "list", &app.name][..], &c].concat());
    let (out, _) = text(&o);
    assert!(
        out.contains("it holds an array of 3 items") && !out.contains("::"),
        "{out}"
    );
}

/// `--password-file` gives the password of a user Redis knows (an ACL user made here, named
/// in the config).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_file_authenticates() {
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let user = format!("u{}", uuid::Uuid::new_v4().simple());
    let password = format!("pw{}", uuid::Uuid::new_v4().simple());
    kaiju_tests::acl::acl(
        &t,
        &[
            "SETUSER",
            &user,
            "on",
            &format!(">{password}"),
            "~*",
            "+@all",
        ],
    )
    .await;
    let key = ns.key("v").unwrap();
    kaiju_cache::Cache::new(t.clone())
        .set(key.as_str(), &1, None)
        .await
        .unwrap();
    let file = TempFile::new(&format!("{password}\n"));
    let config = TempFile::new(&format!(
        "main: {{name: x}}\nservices:\n  - cls: RedisTransportService\n    settings: {{url: \"{url}\", username: {user}}}\n"
    ));
    let o = kaiju(&[
        "cache",
        "get",
        key.as_str(),
        "-c",
        config.path(),
        "--password-file",
        file.path(),
    ]);
    let (out, err) = text(&o);
    let wrong = TempFile::new("not-the-password\n");
    let refused = kaiju(&[
        "cache",
        "get",
        key.as_str(),
        "-c",
        config.path(),
        "--password-file",
        wrong.path(),
    ]);
    kaiju_tests::acl::acl(&t, &["DELUSER", &user]).await;
    assert_eq!(code(&o), 0, "{err}");
    assert_eq!(out.trim(), "1");
    assert!(!err.contains("warning"), "{err}");
    assert_ne!(code(&refused), 0, "the file's password is the one sent");
}

/// The same after a read from Redis (`kaiju cache get ... | head`): a value larger than a
/// pipe's buffer, and a reader that goes away after 64 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_after_a_redis_read_ends_kaiju_quietly() {
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let key = ns.key("big").unwrap();
    let big: Vec<String> = (0..10_000)
        .map(|i| format!("item-{i:06}-{}", "x".repeat(20)))
        .collect();
    kaiju_cache::Cache::new(t.clone())
        .set(key.as_str(), &big, None)
        .await
        .unwrap();
    let mut kaiju = common::command();
    kaiju
        .args([&["cache", "get", key.as_str()][..], &conn(&url, &ns)].concat())
        .env_remove("KAIJU_REDIS_URL");
    let o = read_a_little_then_close(kaiju);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}

/// A closed stderr (`kaiju ... 2>&1 | head`, a log shipper gone) loses log lines, never ends
/// kaiju with a panic: tracing reported the failed write with `eprintln!`, which panicked
/// (exit 101, found by an adversarial review).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_loses_log_lines_not_the_command() {
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let key = ns.key("value").unwrap();
    kaiju_cache::Cache::new(t.clone())
        .set(key.as_str(), &"v", None)
        .await
        .unwrap();
    let mut child = common::command()
        .args(
            [
                &["cache", "get", key.as_str(), "--log", "trace"][..],
                &conn(&url, &ns),
            ]
            .concat(),
        )
        .env_remove("KAIJU_REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "\"v\"");
}

/// Runs `kaiju`, reads the first 64 bytes of its stdout, as `head` does, then closes the pipe
/// and waits for it to end.
fn read_a_little_then_close(mut kaiju: Command) -> std::process::Output {
    let mut child = kaiju
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    child.wait_with_output().unwrap()
}

/// A running `kaiju run`, stopped with SIGTERM on drop.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_call_write_streams_and_dead() {
    let Some(url) = url() else { return };
    let ns = kaiju_tests::namespace();
    let (env, app) = ns.prefix().split_once('.').unwrap();
    let over = TempFile::new(&kaiju_tests::transport_override(&url, "redis"));
    let (base, server) = (examples().join("app.yml"), examples().join("server.yml"));
    let mut child = common::command()
        .args([
            "run",
            "-c",
            base.to_str().unwrap(),
            "-c",
            server.to_str().unwrap(),
            "-c",
            over.path(),
        ])
        .args([
            "-e",
            &format!("main_name={app}"),
            "-e",
            &format!("main_env={env}"),
            "--no-os-env",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = conn(&url, &ns);
    // Wait until it serves: rpc.status answers.
    let started = Instant::now();
    loop {
        let o = kaiju(
            &[
                &["call", app, "rpc.status", "--wait", "--timeout", "2"][..],
                &c,
            ]
            .concat(),
        );
        if code(&o) == 0 {
            let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(status["app"], app);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "kaiju run did not serve: {:?}",
            text(&o)
        );
        if let Some(s) = child.try_wait().unwrap() {
            panic!("kaiju run exited: {s}");
        }
    }
    let running = Running(child);

    let o = kaiju(
        &[
            &["call", app, "nope.method", "{\"a\": 1}", "--wait"][..],
            &c,
        ]
        .concat(),
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "an RPC error is exit 1: {err}");
    assert!(
        out.contains("\"code\":-32601"),
        "the error object is printed: {out}"
    );
    let o = kaiju(&[&["call", app, "nope.method", "[1, 2]"][..], &c].concat());
    assert_eq!(code(&o), 2, "positional params are a usage error");
    let o = kaiju(&[&["call", app, "nope.method"][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        out.trim().contains('-'),
        "a notification prints its entry id: {out}"
    );
    let stream = ns.stream("rpc").unwrap();
    let o = kaiju(
        &[
            &[
                "write",
                stream.as_str(),
                "[\"nope.raw\", null]",
                "--header",
                "Correlation-Id=abc",
            ][..],
            &c,
        ]
        .concat(),
    );
    assert_eq!(code(&o), 0, "{:?}", text(&o));

    // Three dead letters: the request, the notification, the raw entry.
    let started = Instant::now();
    loop {
        let o = kaiju(&[&["streams", app][..], &c].concat());
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "{err}");
        if out.contains("dead letters 3") {
            assert!(
                out.contains(&format!("group        {app}"))
                    && out.contains("pending            0"),
                "{out}"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let o = kaiju(&[&["dead", "list", app][..], &c].concat());
    let (out, _) = text(&o);
    assert_eq!(code(&o), 0);
    assert!(
        out.starts_with("3 dead letters") && out.contains("nope.raw") && out.contains("rejected"),
        "{out}"
    );
    // A dead letter whose text tries to drive the terminal is shown escaped.
    {
        use kaiju_transport::fred::prelude::*;
        let t = kaiju_tests::connect(Target::Single).await.unwrap();
        let dead = ns.dead_letter_stream("rpc").unwrap();
        let fields = vec![
            ("reason", "bad \u{1b}[31mRED\u{1b}]0;pwned\u{7}\nfake line"),
            ("kind", "rejected\r"),
            ("stream", "elsewhere"),
        ];
        let _: String = t
            .pool()
            .xadd(dead.as_str(), false, None, "*", fields)
            .await
            .unwrap();
    }
    let o = kaiju(&[&["dead", "list", app][..], &c].concat());
    let (out, _) = text(&o);
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\r'),
        "{out:?}"
    );
    assert!(
        out.contains("\\u{1b}[31mRED") && !out.contains("\nfake line"),
        "{out}"
    );
    let o = kaiju(&[&["dead", "replay", app, "rpc"][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        out.contains("replayed 3")
            && out.contains("left 1 dead letters alone: they name another stream"),
        "{out}"
    );
    assert!(err.contains("looked at 4/4"), "progress is shown: {err}");
    // Replayed, they run again (and are dead-lettered again: the method still does not exist).
    let started = Instant::now();
    loop {
        let o = kaiju(&[&["streams", app][..], &c].concat());
        if text(&o).0.contains("dead letters 4") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            text(&o)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let o = kaiju(&[&["dead", "purge", app, "--yes"][..], &c].concat());
    assert_eq!(code(&o), 0);
    assert!(
        text(&o).0.contains("purged 4"),
        "the forged letter was kept, then purged"
    );
    let o = kaiju(&[&["dead", "explode", app][..], &c].concat());
    assert_eq!(code(&o), 2);
    let o = kaiju(&[&["streams", "no-such-app"][..], &c].concat());
    assert_eq!(code(&o), 4, "a stream that never existed is exit 4");

    // SIGTERM: a graceful stop, exit 0.
    let mut running = running;
    let _ = Command::new("kill")
        .args(["-TERM", &running.0.id().to_string()])
        .status();
    let status = running.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// `kaiju functions load` loads every script of kaiju-rs as a function library, named by the
/// script's SHA1, and loading again changes nothing. On a server of the test's own, which had
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_load_loads_every_script_as_a_library() {
    use kaiju_transport::fred::prelude::*;
    use kaiju_transport::fred::types::{CustomCommand, Value};
    let Some((server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let mut expected: Vec<String> = kaiju_cache::scripts()
        .into_iter()
        .chain(kaiju_locks::scripts())
        .chain(kaiju_streams::scripts())
        .map(|s| s.function_name().to_owned())
        .collect();
    expected.sort();
    let libraries = || async {
        let list: Value = t
            .pool()
            .custom(
                CustomCommand::new_static("FUNCTION", None, false),
                vec!["LIST"],
            )
            .await
            .unwrap();
        let text = format!("{list:?}");
        expected
            .iter()
            .filter(|name| text.contains(name.as_str()))
            .count()
    };
    assert_eq!(libraries().await, 0);
    for _ in 0..2 {
        let o = kaiju(&["functions", "load", "--redis-url", &server.url()]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "{err}");
        let mut printed: Vec<String> = out.lines().map(str::to_owned).collect();
        printed.sort();
        assert_eq!(printed, expected);
        assert_eq!(libraries().await, expected.len());
    }
    t.close().await.ok();
}

/// `kaiju streams` shows the counters each kaiju-rs listener publishes (processed, failed),
/// "-" for a consumer without them (a Python kaiju one), and the group's entries read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_shows_each_consumers_published_counters() {
    use kaiju_core::Lifecycle as _;
    use kaiju_streams::{HandlerError, Listener, ListenerSettings, Message};
    use kaiju_transport::fred::prelude::*;
    let Some(url) = url() else { return };
    let t = kaiju_tests::connect(Target::Single).await.unwrap();
    let ns = kaiju_tests::namespace();
    let (_, app_name) = ns.prefix().split_once('.').unwrap();
    let c = conn(&url, &ns);
    let app = kaiju_tests::app(&ns);
    let settings = ListenerSettings {
        consumer_id: Some("rusty".into()),
        max_wait_time_ms: 50,
        retry_backoff_ms: 10,
        max_deliveries: 1,
        ..ListenerSettings::default()
    };
    let handler = |m: Message<kaiju_tests::streams::Body>| async move {
        if m.body.0 == "bad" {
            Err(HandlerError::retry("no"))
        } else {
            Ok(())
        }
    };
    let mut listener = Listener::new(t.clone(), &app, settings, handler).unwrap();
    listener.start().await.unwrap();
    let stream = ns.stream("rpc").unwrap();
    let dead = ns.dead_letter_stream("rpc").unwrap();
    kaiju_tests::streams::write(&t, &stream, 5, "ok").await;
    kaiju_tests::streams::write(&t, &stream, 2, "bad").await;
    let _: () = t
        .pool()
        .xgroup_createconsumer(stream.as_str(), app_name, "python-one")
        .await
        .unwrap();
    let pool = t.pool().clone();
    kaiju_tests::eventually("2 dead letters", Duration::from_secs(20), || {
        let (pool, dead) = (pool.clone(), dead.clone());
        async move { pool.xlen::<u64, _>(dead.as_str()).await.unwrap_or(0) >= 2 }
    })
    .await;
    // Its last counts are published when it stops (and live for 30 s).
    listener.stop(Duration::from_secs(5)).await.unwrap();

    let o = kaiju(&[&["streams", app_name, "--json"][..], &c].concat());
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let group = &json["groups"][0];
    assert_eq!(group["entries_read"], 7, "{out}");
    let of = |name: &str| {
        group["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {out}"))
            .clone()
    };
    let rusty = of("rusty");
    assert_eq!(rusty["processed"], 5, "{out}");
    assert_eq!(rusty["failed"], 2, "{out}");
    assert_eq!(rusty["counters"]["dead_lettered"], 2, "{out}");
    assert!(rusty["counters"]["started_at_ms"].as_u64().unwrap() > 0);
    assert!(of("python-one")["processed"].is_null(), "{out}");
    assert!(of("python-one")["counters"].is_null(), "{out}");

    let o = kaiju(&[&["streams", app_name][..], &c].concat());
    let (out, _) = text(&o);
    assert!(out.contains("processed 5, failed 2"), "{out}");
    assert!(out.contains("processed -, failed -"), "{out}");
    assert!(out.contains("entries read       7"), "{out}");
}
