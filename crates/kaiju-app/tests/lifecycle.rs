//! The app's lifecycle under stress, without Redis: stops racing starts, concurrent stops,
//! stop signals during a failed start's rollback, and services left out at build. Found by an
//! adversarial review; each test failed on the first `&self` version of `App`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kaiju_app::config::ConfigLoader;
use kaiju_app::{
    App, AppError, BoxError, Build, Context, Dependency, Registry, Service, ServiceClass,
};
use serde::Deserialize;

use common::{Log, log_for};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    log: String,
    #[serde(default)]
    fail_check: bool,
    #[serde(default)]
    fail_in: Option<String>,
    /// Hooks that take 200 ms.
    #[serde(default)]
    slow: Vec<String>,
    /// Hooks that never return.
    #[serde(default)]
    hang: Vec<String>,
    /// Hooks that panic.
    #[serde(default)]
    panic_in: Vec<String>,
    #[serde(default = "disabled")]
    needs: Dependency,
}

fn disabled() -> Dependency {
    Dependency::Disabled
}

struct Rec {
    name: String,
    log: Log,
    fail_check: bool,
    fail_in: Option<String>,
    slow: Vec<String>,
    hang: Vec<String>,
    panic_in: Vec<String>,
    needs: Dependency,
    t0: Instant,
}

impl Rec {
    async fn hook(&self, phase: &str) -> Result<(), BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{phase}> {}", self.name));
        if self.slow.iter().any(|s| s == phase) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if self.hang.iter().any(|s| s == phase) {
            std::future::pending::<()>().await;
        }
        if self.panic_in.iter().any(|s| s == phase) {
            panic!("{} panics in {phase}", self.name);
        }
        self.log.lock().unwrap().push(format!(
            "{phase}< {} @{}ms",
            self.name,
            self.t0.elapsed().as_millis() / 50 * 50
        ));
        if self.fail_in.as_deref() == Some(phase) {
            return Err(format!("{} fails in {phase}", self.name).into());
        }
        Ok(())
    }
}

impl ServiceClass for Rec {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        let s: Settings = b.settings()?;
        Ok(Self {
            name: b.name().to_owned(),
            log: log_for(&s.log),
            fail_check: s.fail_check,
            fail_in: s.fail_in,
            slow: s.slow,
            hang: s.hang,
            panic_in: s.panic_in,
            needs: s.needs,
            t0: Instant::now(),
        })
    }
}

impl Service for Rec {
    fn check(&self, cx: &Context) -> Result<(), BoxError> {
        cx.optional::<Rec>(&self.needs)?;
        if self.fail_check {
            return Err(format!("{} cannot start", self.name).into());
        }
        Ok(())
    }
    async fn init(&self, cx: &Context) -> Result<(), BoxError> {
        cx.optional::<Rec>(&self.needs)?;
        self.hook("init").await
    }
    async fn post_init(&self, _cx: &Context) -> Result<(), BoxError> {
        self.hook("post_init").await
    }
    async fn start(&self, _cx: &Context) -> Result<(), BoxError> {
        self.hook("start").await
    }
    async fn close(&self, _deadline: Duration) -> Result<(), BoxError> {
        self.hook("close").await
    }
}

fn build(services: &str) -> (Result<App, AppError>, Log) {
    build_with("", services)
}

fn build_with(sections: &str, services: &str) -> (Result<App, AppError>, Log) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("kaiju-review-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("a.yml");
    std::fs::write(
        &f,
        format!(
            "main: {{name: app}}\n{sections}services:\n{}",
            services.replace("LOG", &id)
        ),
    )
    .unwrap();
    let config = ConfigLoader::new().file(&f).no_os_env().load().unwrap();
    let mut registry = Registry::builtin();
    registry.register::<Rec>("Rec", "Rec").unwrap();
    let app = App::build(&config, &registry);
    let _ = std::fs::remove_dir_all(&dir);
    (app, log_for(&id))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

fn position(log: &[String], entry: &str) -> Option<usize> {
    log.iter().position(|l| l.starts_with(entry))
}

#[tokio::test]
async fn an_optional_service_left_out_at_build_gets_no_hook() {
    let (app, log) = build(
        "  - {cls: Rec, name: bad, required: false, settings: {log: LOG, fail_check: true}}\n  - {cls: Rec, name: ok, settings: {log: LOG}}\n",
    );
    let app = app.unwrap();
    assert!(app.get::<Rec>("bad").is_none(), "not discoverable by name");
    assert_eq!(
        app.service::<Rec>().map(|r| r.name.clone()),
        Some("ok".into())
    );
    app.start().await.unwrap();
    app.stop().await;
    let log = entries(&log);
    assert!(!log.iter().any(|l| l.contains(" bad")), "{log:?}");
    assert!(position(&log, "close< ok").is_some(), "{log:?}");
}

#[tokio::test]
async fn a_service_needing_a_later_optional_one_that_is_left_out_fails_the_build() {
    let (app, _) = build(
        "  - {cls: Rec, name: needy, settings: {log: LOG, needs: dep}}\n  - {cls: Rec, name: dep, required: false, settings: {log: LOG, fail_check: true}}\n",
    );
    let e = app.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("service `needy` (Rec): service `dep` failed to start"),
        "{e}"
    );
}

#[tokio::test]
async fn a_stop_during_post_init_ends_the_start_and_no_hook_runs_after_a_close() {
    let (app, log) = build(
        "  - {cls: Rec, name: s1, settings: {log: LOG}}\n  - {cls: Rec, name: s2, settings: {log: LOG, slow: [post_init]}}\n  - {cls: Rec, name: s3, settings: {log: LOG}}\n",
    );
    let app = Arc::new(app.unwrap());
    let a = app.clone();
    let starting = tokio::spawn(async move { a.start().await });
    tokio::time::sleep(Duration::from_millis(80)).await; // s2 is in post_init
    assert!(app.stop().await.is_empty());
    assert!(matches!(starting.await.unwrap(), Err(AppError::Stopped)));
    let log = entries(&log);
    let first_close = position(&log, "close>").unwrap();
    assert!(
        log[first_close..].iter().all(|l| l.starts_with("close")),
        "a hook ran after the first close: {log:?}"
    );
    for s in ["s1", "s2", "s3"] {
        assert!(
            position(&log, &format!("close< {s}")).is_some(),
            "{s}: {log:?}"
        );
    }
    assert!(
        position(&log, "post_init> s3").is_none(),
        "the start ended at s2: {log:?}"
    );
    assert!(app.services().iter().all(|(_, running)| !running));
    assert!(
        app.stop().await.is_empty(),
        "a second stop has nothing to close"
    );
}

#[tokio::test]
async fn a_stop_during_init_starts_no_later_service() {
    let (app, log) = build(
        "  - {cls: Rec, name: s1, settings: {log: LOG}}\n  - {cls: Rec, name: s2, settings: {log: LOG, slow: [init]}}\n  - {cls: Rec, name: s3, settings: {log: LOG}}\n",
    );
    let app = Arc::new(app.unwrap());
    let a = app.clone();
    let starting = tokio::spawn(async move { a.start().await });
    tokio::time::sleep(Duration::from_millis(80)).await;
    app.stop().await;
    assert!(matches!(starting.await.unwrap(), Err(AppError::Stopped)));
    let log = entries(&log);
    assert!(position(&log, "init> s3").is_none(), "{log:?}");
    assert!(
        position(&log, "close< s2").is_some() && position(&log, "close< s1").is_some(),
        "{log:?}"
    );
    assert!(
        position(&log, "close< s2") < position(&log, "close< s1"),
        "{log:?}"
    );
}

#[tokio::test]
async fn concurrent_stops_close_once_in_reverse_order_and_return_after_it() {
    let (app, log) = build(
        "  - {cls: Rec, name: s1, settings: {log: LOG, slow: [close]}}\n  - {cls: Rec, name: s2, settings: {log: LOG, slow: [close]}}\n  - {cls: Rec, name: s3, settings: {log: LOG, slow: [close]}}\n",
    );
    let app = Arc::new(app.unwrap());
    app.start().await.unwrap();
    let stops: Vec<_> = (0..2)
        .map(|n| {
            let (app, log) = (app.clone(), log.clone());
            tokio::spawn(async move {
                app.stop().await;
                log.lock().unwrap().push(format!("stop #{n} returned"));
            })
        })
        .collect();
    for stop in stops {
        stop.await.unwrap();
    }
    let log = entries(&log);
    let closes: Vec<&String> = log.iter().filter(|l| l.starts_with("close")).collect();
    assert_eq!(
        closes.iter().map(|l| &l[..9]).collect::<Vec<_>>(),
        [
            "close> s3",
            "close< s3",
            "close> s2",
            "close< s2",
            "close> s1",
            "close< s1"
        ],
        "{log:?}"
    );
    assert!(
        position(&log, "close< s1") < position(&log, "stop #"),
        "{log:?}"
    );
}

#[tokio::test]
async fn run_after_a_start_waits_for_the_stop_and_closes() {
    let (app, log) = build("  - {cls: Rec, name: s1, settings: {log: LOG}}\n");
    let app = app.unwrap();
    let handle = app.handle();
    app.start().await.unwrap();
    let running = tokio::spawn(app.run());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        position(&entries(&log), "close> s1").is_none(),
        "run waits for a stop"
    );
    handle.stop();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(position(&entries(&log), "close< s1").is_some());
}

#[tokio::test]
async fn a_stop_during_a_failed_starts_rollback_still_closes_all_and_reports_the_failure() {
    let (app, log) = build(
        "  - {cls: Rec, name: s1, settings: {log: LOG}}\n  - {cls: Rec, name: s2, settings: {log: LOG, slow: [close]}}\n  - {cls: Rec, name: s3, settings: {log: LOG, fail_in: init}}\n",
    );
    let app = app.unwrap();
    let handle = app.handle();
    let running = tokio::spawn(app.run());
    tokio::time::sleep(Duration::from_millis(80)).await; // s2's close is running
    handle.stop();
    let r = running.await.unwrap();
    let log = entries(&log);
    let e = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("service `s3` (Rec) failed in init"), "{e}");
    assert!(
        position(&log, "close< s2").is_some(),
        "s2's close was finished: {log:?}"
    );
    assert!(position(&log, "close< s1").is_some(), "{log:?}");
}

#[tokio::test]
async fn a_stop_before_run_leaves_nothing_open() {
    for _ in 0..20 {
        let (app, log) = build(
            "  - {cls: Rec, name: s1, settings: {log: LOG}}\n  - {cls: Rec, name: s2, settings: {log: LOG}}\n",
        );
        let app = app.unwrap();
        app.handle().stop();
        app.run().await.unwrap();
        let log = entries(&log);
        let opened = log.iter().filter(|l| l.starts_with("init<")).count();
        let closed = log.iter().filter(|l| l.starts_with("close<")).count();
        assert_eq!(opened, closed, "{log:?}");
    }
}

#[tokio::test]
async fn a_stop_keeps_to_the_shutdown_timeout_when_a_start_hook_hangs() {
    let (app, log) = build_with(
        "run: {shutdown_timeout: 1}\n",
        "  - {cls: Rec, name: s1, settings: {log: LOG}}\n  - {cls: Rec, name: s2, settings: {log: LOG, hang: [init]}}\n",
    );
    let app = Arc::new(app.unwrap());
    let a = app.clone();
    let starting = tokio::spawn(async move { a.start().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let errors = tokio::time::timeout(Duration::from_secs(5), app.stop())
        .await
        .expect("stop returns within the shutdown timeout");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].1.contains("nothing was closed"), "{errors:?}");
    starting.abort();
    // Once the hanging start is gone, a stop closes what it had started.
    let _ = starting.await;
    assert!(app.stop().await.is_empty());
    assert!(position(&entries(&log), "close< s1").is_some());
}

#[tokio::test]
async fn a_close_that_panics_does_not_keep_the_services_before_it_open() {
    let (app, log) = build(
        "  - {cls: Rec, name: s1, settings: {log: LOG}}\n  - {cls: Rec, name: s2, settings: {log: LOG, panic_in: [close]}}\n",
    );
    let app = Arc::new(app.unwrap());
    app.start().await.unwrap();
    let a = app.clone();
    assert!(
        tokio::spawn(async move { a.stop().await }).await.is_err(),
        "the panic reaches the stop's caller"
    );
    // The panicking close is not run again; the next stop closes s1.
    assert!(app.stop().await.is_empty());
    let log = entries(&log);
    assert_eq!(
        log.iter().filter(|l| l.starts_with("close> s2")).count(),
        1,
        "{log:?}"
    );
    assert!(position(&log, "close< s1").is_some(), "{log:?}");
}

#[tokio::test]
async fn run_after_a_cancelled_start_closes_what_started() {
    let (app, log) = build(
        "  - {cls: Rec, name: s1, settings: {log: LOG}}\n  - {cls: Rec, name: s2, settings: {log: LOG, slow: [init]}}\n",
    );
    let app = app.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(50), app.start())
            .await
            .is_err()
    );
    assert!(matches!(app.run().await, Err(AppError::AlreadyStarted)));
    assert!(position(&entries(&log), "close< s1").is_some());
}

#[tokio::test]
async fn run_after_a_failed_start_returns_its_failure() {
    let (app, _) = build("  - {cls: Rec, name: s1, settings: {log: LOG, fail_in: init}}\n");
    let app = app.unwrap();
    assert!(app.start().await.is_err());
    let e = app
        .run()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("service `s1` (Rec) failed in init"), "{e}");
}
