//! Helpers for the integration tests: connecting to the servers `cargo xtask test` started,
//! random namespaces, and [`on_both!`] to run one test body against the single node and the
//! cluster. Every helper that more than one test file uses lives here (the modules by topic);
//! test files never import from each other.
//!
//! A test needing Redis skips (with a message) only when no server is configured; with
//! `KAIJU_REQUIRE_REDIS=1` (set by xtask, so in CI) a missing server fails the test instead.

// Test support: a failed expectation here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kaiju_core::{AppSettings, Namespace, RedisSettings};
use kaiju_transport::Transport;

pub mod acl;
pub mod interop;
pub mod locks;
pub mod observe;
pub mod proxy;
pub mod rpc;
pub mod streams;

/// Which deployment a test body runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The single node (`KAIJU_REDIS_URL`).
    Single,
    /// The 6-node cluster (`KAIJU_REDIS_CLUSTER_URL`).
    Cluster,
    /// A single node that speaks TLS only (`KAIJU_REDIS_TLS_URL`, its certificates in
    /// `KAIJU_REDIS_TLS_DIR`), reached with the CA of that directory.
    Tls,
}

impl Target {
    /// The environment variable holding its URL.
    pub fn url_var(self) -> &'static str {
        match self {
            Self::Single => "KAIJU_REDIS_URL",
            Self::Cluster => "KAIJU_REDIS_CLUSTER_URL",
            Self::Tls => "KAIJU_REDIS_TLS_URL",
        }
    }
}

/// The certificates of the TLS node (`KAIJU_REDIS_TLS_DIR`), if it is configured.
pub fn tls_files() -> Option<kaiju_testkit::TlsFiles> {
    let dir = std::env::var_os("KAIJU_REDIS_TLS_DIR").filter(|d| !d.is_empty());
    if !prerequisite(dir.is_some(), "KAIJU_REDIS_TLS_DIR") {
        return None;
    }
    dir.map(|dir| kaiju_testkit::TlsFiles { dir: dir.into() })
}

/// Whether missing servers must fail tests rather than skip them.
pub fn redis_required() -> bool {
    std::env::var("KAIJU_REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

/// Skips (returns `false`) or fails when a prerequisite is missing.
pub fn prerequisite(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    assert!(
        !redis_required(),
        "{what} is not available but KAIJU_REQUIRE_REDIS=1; run the tests with `cargo xtask test`"
    );
    eprintln!("skipped: {what} is not available (run `cargo xtask test` to start Redis)");
    false
}

/// Settings for a target, if its server is configured.
pub fn settings(target: Target) -> Option<RedisSettings> {
    let url = std::env::var(target.url_var())
        .ok()
        .filter(|u| !u.is_empty());
    if !prerequisite(url.is_some(), target.url_var()) {
        return None;
    }
    let mut settings = RedisSettings::from_url(url?);
    if target == Target::Tls {
        settings.tls_ca_file = Some(tls_files()?.ca());
    }
    Some(settings)
}

/// A transport to a target, or `None` (after a skip message) when it is not configured.
pub async fn connect(target: Target) -> Option<Transport> {
    let settings = settings(target)?;
    Some(
        Transport::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {target:?}: {e}")),
    )
}

/// A fresh namespace `test.<random>`, so tests never see each other's keys.
pub fn namespace() -> Namespace {
    Namespace::new("test", &uuid::Uuid::new_v4().simple().to_string()).unwrap()
}

/// An app in a fresh namespace: env `test`, app name random.
pub fn app(ns: &Namespace) -> AppSettings {
    let name = ns.prefix().split('.').nth(1).unwrap().to_owned();
    AppSettings {
        env: "test".into(),
        name,
        ..AppSettings::default()
    }
}

/// A transport to the single node and a fresh namespace, or `None` (after a skip message) when
/// the single node is not configured.
pub async fn single() -> Option<(Transport, Namespace)> {
    let t = connect(Target::Single).await?;
    Some((t, namespace()))
}

/// Whether `redis-server` can be started by the test itself (for restart and failover tests).
pub fn can_spawn_servers() -> bool {
    prerequisite(
        kaiju_testkit::server_path().is_ok() && kaiju_testkit::cli_path().is_ok(),
        "redis-server / redis-cli binaries",
    )
}

/// Polls `check` every 10 ms until it is true; fails the test after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !check().await {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Runs `async fn name(transport: &Transport, ns: &Namespace, target: Target)` once against the
/// single node and once against the cluster, as the tests `name::single` and `name::cluster`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {$(
        $crate::on_targets!($name: single => Single, cluster => Cluster);
    )+};
}

/// [`on_both!`], plus a third run against the TLS node, as `name::tls`: for the bodies that must
/// work the same over TLS (transport, cache, streams).
#[macro_export]
macro_rules! on_all {
    ($($name:ident),+ $(,)?) => {$(
        $crate::on_targets!($name: single => Single, cluster => Cluster, tls => Tls);
    )+};
}

/// The tests `name::<test>` running the body `name` against each `Target`.
#[doc(hidden)]
#[macro_export]
macro_rules! on_targets {
    ($name:ident: $($test:ident => $target:ident),+) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(t) = $crate::connect($crate::Target::$target).await {
                        super::$name(&t, &$crate::namespace(), $crate::Target::$target).await;
                    }
                }
            )+
        }
    };
}

/// The root README's examples, compiled (and run) as doctests, so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The port of the shared single node, for a [`proxy::Proxy`] in front of it.
pub fn single_port() -> Option<u16> {
    let settings = settings(Target::Single)?;
    let url = settings.url?;
    url.expose()
        .rsplit(':')
        .next()?
        .trim_end_matches('/')
        .parse()
        .ok()
}

/// A proxy in front of the single node, a transport through it (1 s command timeout, so a
/// dropped reply fails fast), and one straight to the server. `None` (after a skip message)
/// when the single node is not configured.
pub async fn through_proxy() -> Option<(proxy::Proxy, Transport, Transport)> {
    let port = single_port()?;
    let proxy = proxy::Proxy::start(port).await.unwrap();
    let through = Transport::connect(&RedisSettings {
        command_timeout_ms: 1000,
        ..proxy.settings()
    })
    .await
    .unwrap();
    let direct = connect(Target::Single).await?;
    Some((proxy, through, direct))
}

/// A redis-server of the test's own (for tests that pause, kill or count its clients), and a
/// transport to it. `None` (after a skip message) where servers cannot be started.
pub async fn own_server() -> Option<(kaiju_testkit::RedisServer, Transport)> {
    if !can_spawn_servers() {
        return None;
    }
    let server = tokio::task::spawn_blocking(|| {
        kaiju_testkit::RedisServer::start(kaiju_testkit::ServerOptions::default())
    })
    .await
    .unwrap()
    .unwrap();
    let transport = Transport::connect(&RedisSettings::from_url(server.url()))
        .await
        .unwrap();
    Some((server, transport))
}

/// How many client connections the server `t` talks to has (`CLIENT LIST`).
pub async fn client_count(t: &Transport) -> usize {
    use kaiju_transport::fred::prelude::*;
    let list: String = t
        .pool()
        .client_list::<String, String>(None, None)
        .await
        .unwrap();
    list.lines().count()
}

/// Sends `signal` (`-STOP`, `-CONT`, ...) to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Waits (up to 5 s) until the server `t` talks to has `baseline` clients again: the
/// connections something opened were closed.
pub async fn connections_back_to(t: &Transport, baseline: usize, what: &str) {
    eventually(what, std::time::Duration::from_secs(5), || async {
        client_count(t).await == baseline
    })
    .await;
}

/// A config file in the temp dir, removed on drop.
pub struct TempFile(std::path::PathBuf);

impl TempFile {
    /// Writes `text` to a new `.yml` file.
    pub fn new(text: &str) -> Self {
        let name = format!("kaiju-test-{}.yml", uuid::Uuid::new_v4().simple());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The seed's server app: `examples/kaiju/app.yml` and `server.yml` verbatim, then a layer
/// pointing the transport `redis` at `url` and adding `services` (YAML list items, each
/// starting with `  - cls: ...`), for the app `<env>.<name>`.
pub fn seed_server_config(
    url: &str,
    env: &str,
    name: &str,
    services: &str,
) -> kaiju_app::config::Config {
    let examples = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/kaiju");
    let layer = TempFile::new(&format!("{}{services}", transport_override(url, "redis")));
    kaiju_app::config::ConfigLoader::new()
        .file(examples.join("app.yml"))
        .file(examples.join("server.yml"))
        .file(layer.path())
        .env_arg(&format!("main_env={env}"))
        .unwrap()
        .env_arg(&format!("main_name={name}"))
        .unwrap()
        .no_os_env()
        .load()
        .unwrap()
}

/// A config layer (YAML) that points the transport named `name` at `url`, as a user layers one
/// over a kaiju config to connect it elsewhere. More `services` entries may be appended.
pub fn transport_override(url: &str, name: &str) -> String {
    format!(
        "services:\n  - cls: RedisTransportService\n    name: {name}\n    override: true\n    settings: {{url: \"{url}\"}}\n"
    )
}
