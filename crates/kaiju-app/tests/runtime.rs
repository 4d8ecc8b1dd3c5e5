//! The config loader and the runtime without Redis: layering, precedence, errors with their
//! places, the registry, discovery, and the order of lifecycle hooks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use kaiju_app::config::{ConfigLoader, Value};
use kaiju_app::{
    App, AppError, BoxError, Build, Context, Dependency, DiscoveryError, Registry, Service,
    ServiceClass,
};
use serde::Deserialize;

use common::{Log, log_for};

/// A directory of its own per test, with files written into it.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("kaiju-app-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/kaiju")
}

#[test]
fn files_layer_in_order_and_services_concatenate() {
    let d = Dir::new();
    let base = d.file(
        "base.yml",
        "main: {name: app, env: dev}\nservices: [Scheduler]\netc: {a: 1, list: [1, 2, 3]}\n",
    );
    let more = d.file(
        "more.yml",
        "main: {env: prod}\nservices: [{cls: LoggingService}]\netc: {b: 2, list: [9]}\n",
    );
    let config = ConfigLoader::new()
        .file(base)
        .file(more)
        .no_os_env()
        .load()
        .unwrap();
    assert_eq!(config.project.main.name, "app");
    assert_eq!(config.project.main.env, "prod");
    let classes: Vec<&str> = config
        .project
        .services
        .iter()
        .map(|s| s.cls.as_str())
        .collect();
    assert_eq!(classes, ["Scheduler", "LoggingService"]);
    assert_eq!(
        config.project.etc.to_json(),
        serde_json::json!({"a": 1, "b": 2, "list": [9, 2, 3]})
    );
}

#[test]
fn template_precedence_cli_over_os_over_env_files_over_defaults() {
    let d = Dir::new();
    let config = d.file(
        "app.yml",
        "main: {name: '[main_name]', env: '[main_env:dev]', version: '[v:\"1.0.0\"]'}\netc: {port: '[port:1]', host: '[redis.host]', flag: '[flag:yes]'}\n",
    );
    let env1 = d.file(
        "env1.yml",
        "main_name: from-file\nport: 2\nredis: {host: h1}\n",
    );
    let env2 = d.file("env2.json", r#"{"redis": {"host": "h2"}}"#);
    let os = vec![
        ("main_name".to_owned(), "from-os".to_owned()),
        ("port".to_owned(), "3".to_owned()),
    ];
    let load = |cli: &[&str]| {
        let mut l = ConfigLoader::new()
            .file(&config)
            .env_file(&env1)
            .env_file(&env2)
            .os_env(os.clone());
        for arg in cli {
            l = l.env_arg(arg).unwrap();
        }
        l.load().unwrap()
    };
    let c = load(&[]);
    assert_eq!(c.project.main.name, "from-os", "OS beats env files");
    assert_eq!(
        c.project.main.env, "dev",
        "the default when nothing gives it"
    );
    assert_eq!(c.project.main.version, "1.0.0");
    assert_eq!(
        c.project.etc.get("port").unwrap().value,
        Value::Int(3),
        "OS values are typed"
    );
    assert_eq!(
        c.project.etc.get("host").unwrap().value,
        Value::Str("h2".into()),
        "later env files win; dotted keys descend"
    );
    assert_eq!(
        c.project.etc.get("flag").unwrap().value,
        Value::Str("yes".into()),
        "a default that is not a literal is text"
    );
    let c = load(&["main_name=from-cli", "port=4", "main_env=prod"]);
    assert_eq!(
        c.project.main.name, "from-cli",
        "--env beats the OS environment (kaiju had it the other way)"
    );
    assert_eq!(c.project.etc.get("port").unwrap().value, Value::Int(4));
    assert_eq!(c.project.main.env, "prod");
    let c = ConfigLoader::new()
        .file(&config)
        .env_file(&env1)
        .os_env(os.clone())
        .no_os_env()
        .load()
        .unwrap();
    assert_eq!(c.project.main.name, "from-file", "--no-os-env");
    let c = ConfigLoader::new()
        .file(&config)
        .env_file(&env1)
        .env_arg("main_name=a=b")
        .unwrap()
        .no_os_env()
        .load()
        .unwrap();
    assert_eq!(
        c.project.main.name, "a=b",
        "a value may contain `=` (kaiju crashed)"
    );
}

fn error_of(files: &[(&str, &str)], cli: &[&str]) -> String {
    let d = Dir::new();
    let mut loader = ConfigLoader::new().no_os_env();
    for (name, text) in files {
        loader = loader.file(d.file(name, text));
    }
    for arg in cli {
        loader = loader.env_arg(arg).unwrap();
    }
    match loader.load() {
        Err(e) => e.to_string().replace(&d.0.display().to_string(), "<dir>"),
        Ok(config) => match App::build(&config, &Registry::builtin()) {
            Err(e) => e.to_string().replace(&d.0.display().to_string(), "<dir>"),
            Ok(_) => panic!("expected an error"),
        },
    }
}

#[test]
fn errors_name_the_file_the_place_and_the_field() {
    let main = "main: {name: app}\n";
    let e = error_of(
        &[(
            "a.yml",
            &format!(
                "{main}services:\n  - cls: RedisListener\n    settings: {{max_batch_sise: 10}}\n"
            ),
        )],
        &[],
    );
    assert!(e.starts_with("<dir>/a.yml:4:"), "{e}");
    assert!(
        e.contains("RedisListener") && e.contains("max_batch_sise"),
        "{e}"
    );
    let e = error_of(
        &[(
            "a.yml",
            &format!(
                "{main}services:\n  - cls: RedisListener\n    settings:\n      max_batch_size: ten\n"
            ),
        )],
        &[],
    );
    // The place is the key (`max_batch_size:`), not its value.
    assert!(e.starts_with("<dir>/a.yml:5:7"), "{e}");
    assert!(
        e.contains("max_batch_size") && e.contains("invalid type"),
        "{e}"
    );
    let e = error_of(
        &[("a.yml", &format!("{main}services:\n  - cls: RedisCach\n"))],
        &[],
    );
    assert!(
        e.contains("unknown service class `RedisCach`") && e.contains("did you mean `RedisCache`"),
        "{e}"
    );
    let e = error_of(
        &[("a.yml", &format!("{main}services:\n  - HealthService\n"))],
        &[],
    );
    assert!(e.contains("not available in kaiju-rs"), "{e}");
    let e = error_of(
        &[(
            "a.yml",
            &format!("{main}services: [RedisCache, RedisCache]\n"),
        )],
        &[],
    );
    assert!(
        e.contains("already exists") && e.contains("override: true"),
        "{e}"
    );
    let e = error_of(&[("a.yml", "main: {name: '[main_name]'}\n")], &[]);
    assert!(
        e.starts_with("<dir>/a.yml:1:14: template `[main_name]`"),
        "{e}"
    );
    let e = error_of(&[("a.yml", &format!("{main}servics: []\n"))], &[]);
    assert!(e.contains("unknown key `servics`"), "{e}");
    let e = error_of(
        &[(
            "a.yml",
            &format!("{main}services:\n  - cls: RedisListener\n    enabled: 'yes'\n"),
        )],
        &[],
    );
    assert!(e.contains("enabled must be a boolean"), "{e}");
    let e = error_of(
        &[(
            "a.yml",
            &format!("{main}services:\n  - cls: RedisListener\n    settings: {{scope: ROOT}}\n"),
        )],
        &[],
    );
    assert!(e.contains("scope"), "{e}");
    let e = error_of(&[("a.txt", main)], &[]);
    assert!(e.contains("unknown file type"), "{e}");
    let e = error_of(
        &[(
            "a.yml",
            &format!(
                "{main}services:\n  - cls: RedisTransportService\n    settings: {{port: 70000}}\n"
            ),
        )],
        &[],
    );
    assert!(e.contains("port"), "{e}");
}

#[test]
fn disabled_entries_are_skipped_before_their_class_is_looked_up() {
    let d = Dir::new();
    let f = d.file(
        "a.yml",
        "main: {name: app}\nservices:\n  - {cls: HealthService, enabled: false}\n  - {cls: NoSuchClass, enabled: '[on:False]'}\n  - Scheduler\n",
    );
    let config = ConfigLoader::new().file(f).no_os_env().load().unwrap();
    let app = App::build(&config, &Registry::builtin()).unwrap();
    assert_eq!(app.services(), [("Scheduler".to_owned(), false)]);
}

#[test]
fn the_seed_examples_load_unchanged_and_validate() {
    for example in ["transport", "cache", "locks", "server", "client"] {
        let config = ConfigLoader::new()
            .file(examples().join("app.yml"))
            .file(examples().join(format!("{example}.yml")))
            .no_os_env()
            .load()
            .unwrap_or_else(|e| panic!("{example}: {e}"));
        let app =
            App::build(&config, &Registry::builtin()).unwrap_or_else(|e| panic!("{example}: {e}"));
        assert!(!app.services().is_empty(), "{example}");
        let shown = config.redacted().to_string();
        assert!(
            !shown.contains("redis1"),
            "{example}: the password is hidden: {shown}"
        );
    }
}

// ---- lifecycle order, with services that record what happens to them ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecorderSettings {
    log: String,
    #[serde(default)]
    fail_in: Option<String>,
    #[serde(default = "no_dependency")]
    needs: Dependency,
}

fn no_dependency() -> Dependency {
    Dependency::Disabled
}

struct Recorder {
    name: String,
    log: Log,
    fail_in: Option<String>,
    needs: Dependency,
}

impl Recorder {
    fn record(&self, phase: &str) -> Result<(), kaiju_app::BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{phase} {}", self.name));
        if self.fail_in.as_deref() == Some(phase) {
            return Err(format!("{} fails in {phase}", self.name).into());
        }
        Ok(())
    }
}

impl ServiceClass for Recorder {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        let s: RecorderSettings = b.settings()?;
        Ok(Self {
            name: b.name().to_owned(),
            log: log_for(&s.log),
            fail_in: s.fail_in,
            needs: s.needs,
        })
    }
}

impl Service for Recorder {
    async fn init(&self, cx: &Context) -> Result<(), BoxError> {
        if let Some(other) = cx.optional::<Recorder>(&self.needs)? {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} found {}", self.name, other.name));
        }
        self.record("init")
    }
    async fn post_init(&self, _cx: &Context) -> Result<(), BoxError> {
        self.record("post_init")
    }
    async fn start(&self, _cx: &Context) -> Result<(), BoxError> {
        self.record("start")
    }
    async fn close(&self, _deadline: Duration) -> Result<(), BoxError> {
        self.record("close")
    }
}

fn recorder_app(services: &str) -> (App, Log) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let d = Dir::new();
    let f = d.file(
        "a.yml",
        &format!(
            "main: {{name: app}}\nservices:\n{}",
            services.replace("LOG", &id)
        ),
    );
    let config = ConfigLoader::new().file(f).no_os_env().load().unwrap();
    let mut registry = Registry::builtin();
    registry
        .register::<Recorder>("Recorder", "Recorder")
        .unwrap();
    (App::build(&config, &registry).unwrap(), log_for(&id))
}

#[tokio::test]
async fn hooks_run_in_config_order_and_close_in_reverse() {
    let (app, log) = recorder_app(
        "  - {cls: Recorder, name: s1, settings: {log: LOG}}\n  - {cls: Recorder, name: s2, settings: {log: LOG, needs: null}}\n  - {cls: Recorder, name: s3, settings: {log: LOG, needs: s2}}\n",
    );
    app.start().await.unwrap();
    assert!(app.stop().await.is_empty());
    assert_eq!(
        *log.lock().unwrap(),
        [
            "init s1",
            "s2 found s1",
            "init s2",
            "s3 found s2",
            "init s3",
            "post_init s1",
            "post_init s2",
            "post_init s3",
            "start s1",
            "start s2",
            "start s3",
            "close s3",
            "close s2",
            "close s1",
        ]
    );
}

#[tokio::test]
async fn a_required_failure_closes_what_started_in_reverse() {
    let (app, log) = recorder_app(
        "  - {cls: Recorder, name: s1, settings: {log: LOG}}\n  - {cls: Recorder, name: s2, settings: {log: LOG}}\n  - {cls: Recorder, name: s3, settings: {log: LOG, fail_in: init}}\n  - {cls: Recorder, name: s4, settings: {log: LOG}}\n",
    );
    let e = app.start().await.unwrap_err().to_string();
    assert!(e.contains("service `s3` (Recorder) failed in init"), "{e}");
    assert_eq!(
        *log.lock().unwrap(),
        ["init s1", "init s2", "init s3", "close s2", "close s1"]
    );
}

#[tokio::test]
async fn an_optional_failure_is_left_out_and_not_discoverable() {
    let (app, log) = recorder_app(
        "  - {cls: Recorder, name: s1, required: false, settings: {log: LOG, fail_in: init}}\n  - {cls: Recorder, name: s2, required: false, settings: {log: LOG, needs: s1}}\n  - {cls: Recorder, name: s3, settings: {log: LOG}}\n",
    );
    app.start().await.unwrap();
    app.stop().await;
    assert_eq!(
        *log.lock().unwrap(),
        ["init s1", "init s3", "post_init s3", "start s3", "close s3"],
        "s1 failed and s2, which needs it, failed too; neither got later hooks (kaiju kept them)"
    );
    assert_eq!(
        app.services(),
        [
            ("s1".into(), false),
            ("s2".into(), false),
            ("s3".into(), false)
        ]
    );
}

#[tokio::test]
async fn discovery_errors_are_explicit() {
    let (app, _) =
        recorder_app("  - {cls: Recorder, name: s1, settings: {log: LOG}}\n  - Scheduler\n");
    let cx = app.context();
    assert!(cx.require::<Recorder>(&Dependency::Any).is_ok());
    assert_eq!(
        cx.require::<Recorder>(&Dependency::Named("nope".into()))
            .err(),
        Some(DiscoveryError::NotFound("nope".into()))
    );
    assert!(matches!(
        cx.require::<Recorder>(&Dependency::Named("Scheduler".into())),
        Err(DiscoveryError::WrongClass { .. })
    ));
    assert_eq!(
        cx.require::<Recorder>(&Dependency::Disabled).err(),
        Some(DiscoveryError::Disabled("Recorder".into()))
    );
    assert!(
        cx.optional::<Recorder>(&Dependency::Disabled)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        cx.require::<kaiju_app::builtin::TransportService>(&Dependency::Any)
            .err()
            .map(|e| e.to_string()),
        Some("no RedisTransportService service is configured".into()),
        "the error names the class a user writes in the config"
    );
    #[cfg(feature = "cache")]
    assert_eq!(
        cx.require::<kaiju_app::builtin::CacheService>(&Dependency::Any)
            .err()
            .map(|e| e.to_string()),
        Some("no RedisCache or RedisCacheService service is configured".into())
    );
}

#[tokio::test]
async fn an_app_handle_stops_a_running_app_and_finds_services_by_type() {
    let (app, log) = recorder_app(
        "  - {cls: Recorder, name: s1, settings: {log: LOG}}\n  - {cls: Recorder, name: s2, settings: {log: LOG}}\n",
    );
    let handle = app.handle();
    assert_eq!(
        handle.service::<Recorder>().map(|r| r.name.clone()),
        Some("s1".into())
    );
    assert_eq!(
        handle.get::<Recorder>("s2").map(|r| r.name.clone()),
        Some("s2".into())
    );
    assert_eq!(handle.context().all::<Recorder>().len(), 2);
    let running = tokio::spawn(app.run());
    // Until the app started, a stop would abandon the start; wait for it to be running.
    let started = std::time::Instant::now();
    while !log.lock().unwrap().iter().any(|l| l == "start s2") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the app did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.stop();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("run returns once the handle asks it to stop")
        .unwrap()
        .unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log[log.len() - 2..], ["close s2", "close s1"]);
}

#[tokio::test]
async fn an_app_starts_once() {
    let (app, _) = recorder_app("  - {cls: Recorder, name: s1, settings: {log: LOG}}\n");
    app.start().await.unwrap();
    assert!(matches!(app.start().await, Err(AppError::AlreadyStarted)));
    assert!(app.stop().await.is_empty());
}

#[test]
fn a_class_name_registers_once() {
    let mut registry = Registry::builtin();
    registry
        .register::<Recorder>("Recorder", "Recorder")
        .unwrap();
    // A type may have several class names, but a name has one type.
    registry
        .register::<Recorder>("Recorder2", "Recorder")
        .unwrap();
    let e = registry
        .register::<Recorder>("RedisCache", "x")
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("service class `RedisCache` is already registered; register yours under another name")
    );
    assert!(matches!(
        registry.register::<Recorder>("Recorder", "Recorder"),
        Err(AppError::DuplicateClass { .. })
    ));
}

/// A service whose RPC module registers one route twice.
#[cfg(feature = "rpc")]
struct TwoRoutes;

#[cfg(feature = "rpc")]
impl Service for TwoRoutes {
    fn rpc_module(
        self: std::sync::Arc<Self>,
    ) -> Result<kaiju_rpc::RpcModule<Self>, kaiju_rpc::RegisterError> {
        let mut m = kaiju_rpc::RpcModule::with_context("twice", self);
        m.method("m", |_, _: kaiju_rpc::NoParams, _| async {
            Ok::<_, kaiju_rpc::RpcError>(1)
        })?;
        m.method("m", |_, _: kaiju_rpc::NoParams, _| async {
            Ok::<_, kaiju_rpc::RpcError>(2)
        })?;
        Ok(m)
    }
}

#[cfg(feature = "rpc")]
impl ServiceClass for TwoRoutes {
    fn build(_: &Build<'_>) -> Result<Self, AppError> {
        Ok(Self)
    }
}

#[cfg(feature = "rpc")]
#[tokio::test]
async fn a_route_registered_twice_stops_the_start() {
    let config =
        load_text("main: {name: app}\nservices:\n  - JSONRPCServer\n  - TwoRoutes\n").unwrap();
    let mut registry = Registry::builtin();
    registry
        .register::<TwoRoutes>("TwoRoutes", "twice")
        .unwrap();
    let app = App::build(&config, &registry).unwrap();
    let e = app.start().await.unwrap_err().to_string();
    assert!(
        e.contains("service `rpc` (JSONRPCServer) failed in post_init")
            && e.contains("the methods of service `twice`: method `twice.m` is already registered"),
        "{e}"
    );
}

#[test]
fn a_config_whose_dependencies_cannot_be_found_fails_at_build() {
    for (services, wanted) in [
        (
            "  - RedisCache\n",
            "a.yml:3:5: service `RedisCache` (RedisCache): no RedisTransportService service is configured",
        ),
        (
            "  - {cls: RedisTransportService, enabled: false}\n  - RedisLocksService\n",
            "service `locks` (RedisLocksService): no RedisTransportService service is configured",
        ),
        (
            "  - RedisTransportService\n  - {cls: RedisCache, settings: {transport: nosuch}}\n",
            "service `RedisCache` (RedisCache): no service is named `nosuch`",
        ),
        (
            "  - RedisTransportService\n  - RedisListener\n",
            "service `RedisListener` (RedisListener): no JSONRPCServer service is configured",
        ),
        (
            "  - RedisTransportService\n  - {cls: Scheduler, name: s}\n  - {cls: RedisStreamRPCClient, settings: {transport: s}}\n",
            "service `s` is a `Scheduler`, not a RedisTransportService",
        ),
    ] {
        let e = build_text(&format!("main: {{name: a}}\nservices:\n{services}"))
            .err()
            .unwrap_or_else(|| panic!("{services} built"));
        assert!(e.contains(wanted), "{services}: {e}");
    }
}

#[cfg(feature = "cache")]
#[test]
fn an_optional_service_whose_dependency_is_missing_is_left_out_at_build() {
    let app = build_text(
        "main: {name: a}\nservices:\n  - {cls: RedisCache, required: false}\n  - Scheduler\n",
    )
    .unwrap();
    assert!(
        app.service::<kaiju_app::builtin::CacheService>().is_none(),
        "left out, as if its start had failed"
    );
    assert!(app.service::<kaiju_app::builtin::Accepted>().is_some());
}

#[test]
fn a_claim_time_is_checked_against_the_handler_timeout_the_server_imposes() {
    let config = |listener: &str, server: &str| {
        format!(
            "main: {{name: a}}\nservices:\n  - RedisTransportService\n  - {{cls: JSONRPCServer, settings: {server}}}\n  - cls: RedisListener\n    settings: {listener}\n"
        )
    };
    // Valid against the listener's own 30 s default timeout, but the server's default
    // max_request_time (600 s) raises that timeout to 601 s.
    let e = build_text(&config("{pending_messages_time_ms: 60000}", "{}"))
        .err()
        .unwrap();
    assert!(
        e.contains("a.yml:6:")
            && e.contains("setting `pending_messages_time_ms`: must be at least 602800 ms")
            && e.contains("max_request_time (600 s)"),
        "{e}"
    );
    // The bound is exact: one below is refused, the bound itself is what the listener runs.
    assert!(build_text(&config("{pending_messages_time_ms: 602799}", "{}")).is_err());
    build_text(&config("{pending_messages_time_ms: 602800}", "{}")).unwrap();
    // With the server's limit low enough, the same value works.
    build_text(&config(
        "{pending_messages_time_ms: 60000}",
        "{max_request_time: 10, default_request_time: 10}",
    ))
    .unwrap();
    // Not written: the raise is the listener's own business.
    build_text(&config("{}", "{}")).unwrap();
    build_text(&config("{pending_messages_time_ms: null}", "{}")).unwrap();
}

#[test]
fn an_override_replaces_the_earlier_service_in_its_position() {
    let (app, _) = recorder_app(
        "  - {cls: Recorder, name: a, settings: {log: LOG}}\n  - Scheduler\n  - {cls: Recorder, name: a, override: true, settings: {log: LOG}}\n",
    );
    let names: Vec<String> = app.services().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["a", "Scheduler"]);
}

#[test]
fn kaiju_transport_settings_map_onto_redis_settings() {
    let d = Dir::new();
    let f = d.file(
        "a.yml",
        "main: {name: app}\nservices:\n  - cls: RedisTransportService\n    settings: {host: h, port: 6380, password: 12345, db: 2, connect_timeout: 3, protocol_version: 2, max_idle_time: 60, decode_responses: false, startup_nodes: [{host: a, port: 1}]}\n",
    );
    let config = ConfigLoader::new().file(f).no_os_env().load().unwrap();
    let app = App::build(&config, &Registry::builtin()).unwrap();
    let t = app
        .get::<kaiju_app::builtin::TransportService>("RedisTransportService")
        .unwrap();
    let s = t.settings();
    assert_eq!((s.host.as_str(), s.port, s.db), ("h", 6380, Some(2)));
    assert_eq!(
        s.password.as_ref().map(|p| p.expose()),
        Some("12345"),
        "an unquoted numeric password is its text"
    );
    assert_eq!((s.connect_timeout_ms, s.resp3), (3000, false));
    assert_eq!(s.nodes, ["a:1"]);
    assert!(!format!("{s:?}").contains("12345"));
}

// ---- the adversarial review's findings, each pinned ----

fn load_text(text: &str) -> Result<kaiju_app::config::Config, String> {
    let d = Dir::new();
    let f = d.file("a.yml", text);
    ConfigLoader::new()
        .file(f)
        .no_os_env()
        .load()
        .map_err(|e| e.to_string())
}

fn build_text(text: &str) -> Result<App, String> {
    let config = load_text(text)?;
    App::build(&config, &Registry::builtin()).map_err(|e| e.to_string())
}

#[test]
fn review_values_that_cannot_work_fail_at_build_with_their_place() {
    let e =
        load_text("main: {name: a}\nrun: {shutdown_timeout: 9223372036854775807}\n").unwrap_err();
    assert!(
        e.contains("a.yml:2:7") && e.contains("shutdown_timeout"),
        "{e}"
    );
    for (settings, field) in [
        ("{max_batch_size: 99999999999}", "max_batch_size"),
        ("{max_batch_size: 0}", "max_batch_size"),
        ("{max_parallel_batches: 5000}", "max_parallel_batches"),
        ("{max_wait_time_ms: 0}", "max_wait_time_ms"),
        ("{topic: ''}", "topic"),
        ("{topic: a.b}", "topic"),
    ] {
        let e = build_text(&format!(
            "main: {{name: a}}\nservices:\n  - cls: RedisListener\n    settings: {settings}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("a.yml:4:") && e.contains(&format!("setting `{field}`")),
            "{settings}: {e}"
        );
    }
    for (settings, field) in [
        ("{url: 'redis://h:notaport'}", "url"),
        ("{url: 'redis://h:6379/abc'}", "url"),
        ("{port: 0}", "port"),
        ("{host: ''}", "host"),
        ("{unix_socket_path: /tmp/r.sock}", "unix_socket_path"),
        ("{ssl_ca_certs: /etc/ca.pem}", "ssl_ca_certs"),
        ("{decode_responses: true}", "decode_responses"),
    ] {
        let e = build_text(&format!("main: {{name: a}}\nservices:\n  - cls: RedisTransportService\n    settings: {settings}\n")).unwrap_err();
        assert!(e.contains(&format!("setting `{field}`")), "{settings}: {e}");
    }
    let e =
        build_text("main: {name: a}\nservices:\n  - cls: Scheduler\n    settings: {bogus: 1}\n")
            .unwrap_err();
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn review_kaiju_null_defaults_and_accepted_keys_load() {
    build_text(
        "main: {name: a}\nservices:\n  - cls: RedisTransportService\n    settings: {ssl: false, unix_socket_path: null, ssl_keyfile: null}\n  - cls: JSONRPCServer\n    settings: {blacklist_routes: null}\n  - cls: RedisListener\n    settings: {max_parallel_batches: null, pending_messages_time_ms: null}\n  - cls: Scheduler\n    settings: {refresh_rate: 1.0}\n  - cls: LoggingService\n    settings: {loggers: [], handlers: [], loglevel: INFO}\n",
    )
    .unwrap();
}

#[test]
fn review_secrets_stay_hidden_in_errors_and_printed_configs() {
    let e = load_text("main: {name: a}\netc: {url: 'redis://:s3cret@h:[port]'}\n").unwrap_err();
    assert!(!e.contains("s3cret"), "{e}");
    let e = load_text("main: {name: a}\netc: {password: '[s3cret'}\n").unwrap_err();
    assert!(!e.contains("s3cret") && e.contains("<hidden>"), "{e}");
    let c = load_text("main: {name: a}\netc: {passwd: s1, pwd: s2, apikey: s3, requirepass: s4, private_key: s5, user: bob}\n").unwrap();
    let shown = c.redacted().to_string();
    for secret in ["s1", "s2", "s3", "s4", "s5"] {
        assert!(
            !shown.contains(&format!("\"{secret}\"")),
            "{secret}: {shown}"
        );
    }
    assert!(shown.contains("bob"));
}

#[test]
fn review_hostile_yaml_is_an_error_not_a_crash() {
    // Chained aliases, each adding 100 levels: the depth limit counts what aliases paste in.
    let mut text = String::from("main: {name: a}\netc:\n");
    for i in 0..60 {
        let inner = if i == 0 {
            "x".to_owned()
        } else {
            format!("*a{}", i - 1)
        };
        text.push_str(&format!(
            "  k{i}: &a{i} {}{inner}{}\n",
            "[".repeat(100),
            "]".repeat(100)
        ));
    }
    let e = load_text(&text).unwrap_err();
    assert!(e.contains("nested deeper"), "{}", &e[..e.len().min(200)]);
    // A large mapping loads (in linear time: it used to take minutes).
    let mut big = String::from("main: {name: a}\netc:\n");
    for i in 0..30_000 {
        big.push_str(&format!("  key{i}: {i}\n"));
    }
    let c = load_text(&big).unwrap();
    assert_eq!(
        c.project.etc.get("key29999").unwrap().value,
        Value::Int(29_999)
    );
    assert!(
        load_text("main: {name: a}\netc: {v: !custom x}\n")
            .unwrap_err()
            .contains("unknown tag")
    );
}

#[test]
fn review_scalars_pyyaml_keeps_as_strings() {
    let c = load_text("main: {name: a}\netc: {a: 0x-1, b: 0b-1, c: 0+7, d: 0-7, e: -.5, f: .5, g: '[k:(1)]', h: '[k:(1,)]'}\n").unwrap();
    let get = |k: &str| c.project.etc.get(k).unwrap().value.clone();
    for (k, text) in [
        ("a", "0x-1"),
        ("b", "0b-1"),
        ("c", "0+7"),
        ("d", "0-7"),
        ("e", "-.5"),
    ] {
        assert_eq!(get(k), Value::Str(text.into()), "{k}");
    }
    assert_eq!(get("f"), Value::Float(0.5));
    assert_eq!(get("g"), Value::Int(1), "(1) is 1 in Python");
    assert!(
        matches!(get("h"), Value::Seq(ref v) if v.len() == 1),
        "(1,) is a tuple"
    );
}

#[test]
fn review_an_error_about_a_value_from_env_names_its_source() {
    let d = Dir::new();
    let f = d.file("a.yml", "main: {name: a, version: '[v:\"1.0.0\"]'}\n");
    let e = ConfigLoader::new()
        .file(f)
        .env_arg("v=1.0")
        .unwrap()
        .no_os_env()
        .load()
        .unwrap_err()
        .to_string();
    // The place names the variable, never its value (which may be a secret).
    assert!(
        e.contains("a.yml:1:17") && e.contains("(the value of --env v)"),
        "{e}"
    );
    assert!(!e.contains("v=1.0"), "{e}");
}

#[test]
fn kaiju_transport_names_are_typed_and_errors_name_the_key_as_written() {
    for (setting, wanted) in [
        (
            "connect_timeout: soon",
            "setting `connect_timeout`: expected seconds",
        ),
        (
            "connect_timeout: -1",
            "setting `connect_timeout`: expected seconds",
        ),
        // Not read as null (the default): YAML's non-finite floats are refused.
        ("connect_timeout: .inf", "setting `connect_timeout`"),
        ("connect_timeout: .nan", "setting `connect_timeout`"),
        (
            "connect_timeout: 1.0e+300",
            "setting `connect_timeout`: expected seconds",
        ),
        (
            "connect_timeout: 0",
            "setting `connect_timeout`: must be above 0",
        ),
        (
            "connect_timeout_ms: 9223372036854775807",
            "setting `connect_timeout_ms`: must be at most",
        ),
        (
            "startup_nodes: [{host: a, port: '0'}]",
            "expected a port number",
        ),
        (
            "protocol_version: 4",
            "setting `protocol_version`: expected 2 or 3",
        ),
        ("password: [1, 2]", "setting `password`: expected text"),
        (
            "startup_nodes: [{host: a, port: 99999}]",
            "setting `startup_nodes[0].port`",
        ),
        (
            "startup_nodes: [{hots: a}]",
            "setting `startup_nodes[0].hots`: not a setting",
        ),
        (
            "prot: 1",
            "setting `prot`: not a setting of this class (did you mean `port`?)",
        ),
    ] {
        let e = build_text(&format!(
            "main: {{name: app}}\nservices:\n  - cls: RedisTransportService\n    settings: {{{setting}}}\n"
        ))
        .err()
        .unwrap_or_else(|| panic!("{setting} built"));
        assert!(
            e.contains("a.yml:4:") && e.contains(wanted),
            "{setting}: {e}"
        );
    }
    // kaiju's `null` for "the default" is the default.
    let app = build_text(
        "main: {name: app}\nservices:\n  - cls: RedisTransportService\n    settings: {protocol_version: null, unix_socket_path: null, ssl_ciphers: null, connect_timeout: 0.25}\n",
    )
    .unwrap();
    let t = app
        .service::<kaiju_app::builtin::TransportService>()
        .unwrap();
    assert_eq!(
        (t.settings().resp3, t.settings().connect_timeout_ms),
        (true, 250)
    );
    let app = build_text(
        "main: {name: app}\nservices:\n  - cls: RedisTransportService\n    settings: {protocol_version: 2.0, startup_nodes: [{host: a, port: '7000'}], password: .nan}\n",
    )
    .unwrap();
    let t = app
        .service::<kaiju_app::builtin::TransportService>()
        .unwrap();
    assert_eq!(
        (t.settings().resp3, t.settings().nodes.clone()),
        (false, vec!["a:7000".to_owned()])
    );
    assert_eq!(
        t.settings().password.as_ref().map(|p| p.expose()),
        Some("nan"),
        "a YAML float in a text setting is the text Python sends"
    );
}

#[cfg(feature = "rpc")]
#[test]
fn listener_and_server_settings_reject_unknown_keys_and_read_kaiju_nulls() {
    let base = "main: {name: app}\nservices:\n  - RedisTransportService\n";
    for (entry, wanted) in [
        (
            "  - JSONRPCServer\n  - {cls: RedisListener, settings: {max_batch_sise: 3}}\n",
            "a.yml:5:",
        ),
        (
            "  - {cls: JSONRPCServer, settings: {max_parallel_task: 3}}\n",
            "a.yml:4:",
        ),
        (
            "  - JSONRPCServer\n  - {cls: RedisListener, settings: {scope: ROOT}}\n",
            "setting `scope`",
        ),
    ] {
        let e = build_text(&format!("{base}{entry}"))
            .err()
            .unwrap_or_else(|| panic!("{entry}"));
        assert!(
            e.contains(wanted) && (e.contains("not a setting") || e.contains("scope")),
            "{entry}: {e}"
        );
    }
    let app = build_text(&format!(
        "{base}  - {{cls: JSONRPCServer, settings: {{blacklist_routes: null, max_parallel_tasks: null, scheduler: null}}}}\n  - {{cls: RedisListener, settings: {{max_batch_size: null, topic: null, locks_service: null}}}}\n"
    ))
    .unwrap();
    let listener = app
        .service::<kaiju_app::builtin::ListenerService>()
        .unwrap();
    assert_eq!(listener.scope(), kaiju_rpc::Scope::Guest);
}

#[cfg(feature = "tls")]
#[test]
fn kaiju_ssl_settings_map_onto_tls_files_and_never_turn_verification_off() {
    let app = build_text(
        "main: {name: app}\nservices:\n  - cls: RedisTransportService\n    settings: {ssl: true, ssl_ca_certs: /etc/ca.pem, ssl_certfile: /etc/c.pem, ssl_keyfile: /etc/k.pem, ssl_cert_reqs: required, ssl_check_hostname: true}\n",
    );
    // The files do not exist: building reads them, and the error names the key as written.
    let e = app.err().unwrap();
    assert!(
        e.contains("setting `ssl_ca_certs`") && e.contains("/etc/ca.pem"),
        "{e}"
    );
    for (setting, field) in [
        ("tls: true, ssl: false", "ssl"),
        ("ssl: false, tls: true", "ssl"),
        (
            "tls: true, tls_ca_file: /a.pem, ssl_ca_certs: /b.pem",
            "ssl_ca_certs",
        ),
        ("ssl: true, ssl_cert_reqs: none", "ssl_cert_reqs"),
        ("ssl: true, ssl_check_hostname: false", "ssl_check_hostname"),
        ("ssl: true, ssl_ciphers: ALL", "ssl_ciphers"),
    ] {
        let e = build_text(&format!(
            "main: {{name: app}}\nservices:\n  - cls: RedisTransportService\n    settings: {{{setting}}}\n"
        ))
        .err()
        .unwrap();
        assert!(e.contains(field), "{setting}: {e}");
    }
}

/// `access_log` is a JSONRPCServer setting (one info line per request; on by default); a
/// misspelling of it is an error, as for every setting.
#[test]
fn the_rpc_servers_access_log_is_a_setting() {
    let server = |settings: &str| {
        build_text(&format!(
            "main: {{name: a}}\nservices:\n  - {{cls: JSONRPCServer, settings: {settings}}}\n"
        ))
    };
    let on = server("{}").unwrap();
    let on = on
        .service::<kaiju_app::builtin::RpcServerService>()
        .unwrap();
    assert!(on.settings().access_log);
    let off = server("{access_log: false, request_logs: true}").unwrap();
    let off = off
        .service::<kaiju_app::builtin::RpcServerService>()
        .unwrap();
    assert!(!off.settings().access_log && off.settings().request_logs);
    let e = server("{acces_log: false}").err().unwrap();
    assert!(e.contains("acces_log"), "{e}");
}
