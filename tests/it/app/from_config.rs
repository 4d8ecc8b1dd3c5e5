//! Apps from kaiju YAML against real Redis: the seed examples start unchanged (with the
//! transport pointed at the test server by an override file), a client app calls a server
//! app, and a stop lets in-flight requests finish.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kaiju_app::builtin::{ClientService, ListenerService, RpcServerService};
use kaiju_app::config::{Config, ConfigLoader};
use kaiju_app::{App, AppError, Build, Registry, Service, ServiceClass};
use kaiju_core::Namespace;
use kaiju_rpc::{RegisterError, RpcError, RpcModule, Scope};
use kaiju_tests::{Target, TempFile, eventually, on_both, settings};
use kaiju_transport::Transport;
use serde::Deserialize;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/kaiju")
}

/// An override of the transport named `name`, pointing at `target`'s server.
fn transport_override(target: Target, name: &str) -> TempFile {
    let url = settings(target).unwrap().url.unwrap();
    TempFile::new(&kaiju_tests::transport_override(url.expose(), name))
}

/// `app.yml` + the example + the override, for an app named after `ns`.
fn example_config(example: &str, ns: &Namespace, target: Target, extra: &[&str]) -> Config {
    let transport = if matches!(example, "server" | "client") {
        "redis"
    } else {
        "RedisTransportService"
    };
    let over = transport_override(target, transport);
    let (env, app) = ns.prefix().split_once('.').unwrap();
    let mut loader = ConfigLoader::new()
        .file(examples().join("app.yml"))
        .file(examples().join(format!("{example}.yml")))
        .file(over.path())
        .env_arg(&format!("main_env={env}"))
        .unwrap()
        .env_arg(&format!("main_name={app}"))
        .unwrap()
        .no_os_env();
    for e in extra {
        loader = loader.env_arg(e).unwrap();
    }
    loader.load().unwrap()
}

async fn seed_examples_start_unchanged(_t: &Transport, ns: &Namespace, target: Target) {
    for example in ["transport", "cache", "locks", "server", "client"] {
        let config = example_config(example, ns, target, &[]);
        let app = App::build(&config, &Registry::builtin()).unwrap();
        app.start()
            .await
            .unwrap_or_else(|e| panic!("{example}: {e}"));
        assert!(
            app.services().iter().all(|(_, running)| *running),
            "{example}: {:?}",
            app.services()
        );
        let errors = app.stop().await;
        assert!(errors.is_empty(), "{example}: {errors:?}");
    }
}

async fn a_client_app_calls_a_server_app(_t: &Transport, ns: &Namespace, target: Target) {
    let server = App::build(
        &example_config("server", ns, target, &[]),
        &Registry::builtin(),
    )
    .unwrap();
    server.start().await.unwrap();
    let listener = server.service::<ListenerService>().unwrap();
    assert_eq!(
        listener.scope(),
        Scope::System,
        "scope: SYSTEM from the YAML"
    );
    let (_, server_name) = ns.prefix().split_once('.').unwrap();
    let client_ns = kaiju_tests::namespace();
    let client = App::build(
        &example_config(
            "client",
            &client_ns,
            target,
            &[&format!("client_app={server_name}")],
        ),
        &Registry::builtin(),
    )
    .unwrap();
    client.start().await.unwrap();
    let rpc = client.service::<ClientService>().unwrap().client().unwrap();
    // rpc.status is a SYSTEM method: reachable because the listener runs at SYSTEM.
    let status: serde_json::Value = rpc
        .request("rpc.status", kaiju_rpc::NoParams)
        .await
        .unwrap();
    assert_eq!(status["app"], server_name);
    client.stop().await;
    server.stop().await;
}

on_both!(
    seed_examples_start_unchanged,
    a_client_app_calls_a_server_app
);

// ---- graceful stop with work in flight ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlowSettings {
    ms: u64,
}

/// A service with one method that sleeps, counting starts and finishes.
struct Slow {
    ms: u64,
    started: Arc<AtomicU32>,
    finished: Arc<AtomicU32>,
}

static SLOW: std::sync::Mutex<Vec<(Arc<AtomicU32>, Arc<AtomicU32>)>> =
    std::sync::Mutex::new(Vec::new());

impl ServiceClass for Slow {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        let s: SlowSettings = b.settings()?;
        let (started, finished) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        SLOW.lock()
            .unwrap()
            .push((started.clone(), finished.clone()));
        Ok(Self {
            ms: s.ms,
            started,
            finished,
        })
    }
}

impl Service for Slow {
    fn rpc_module(self: Arc<Self>) -> Result<RpcModule<Self>, RegisterError> {
        let mut m = RpcModule::with_context("slow", self);
        m.method("sleep", |this, _: kaiju_rpc::NoParams, _| async move {
            this.started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(this.ms)).await;
            this.finished.fetch_add(1, Ordering::SeqCst);
            Ok::<_, RpcError>(true)
        })?;
        Ok(m)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_finishes_in_flight_requests_and_acks_them() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let url = settings(Target::Single).unwrap().url.unwrap();
    let (env, name) = ns.prefix().split_once('.').unwrap();
    let config = kaiju_tests::seed_server_config(
        url.expose(),
        env,
        name,
        "  - cls: Slow\n    settings: {ms: 700}\n",
    );
    let mut registry = Registry::builtin();
    registry.register::<Slow>("Slow", "slow").unwrap();
    let app = App::build(&config, &registry).unwrap();
    app.start().await.unwrap();
    let server = app.service::<RpcServerService>().unwrap().server().unwrap();
    assert!(
        server.methods().any(|m| m == "slow.sleep"),
        "routes of every service are registered in post_init"
    );
    let (started, finished) = SLOW.lock().unwrap().last().cloned().unwrap();
    let client = kaiju_rpc::RpcClient::new(
        t.clone(),
        &kaiju_core::AppSettings {
            env: env.into(),
            name: name.into(),
            ..Default::default()
        },
    );
    for _ in 0..3 {
        client
            .call("slow.sleep", kaiju_rpc::NoParams)
            .await
            .unwrap();
    }
    eventually("the three calls run", Duration::from_secs(5), || {
        let n = started.load(Ordering::SeqCst);
        async move { n == 3 }
    })
    .await;
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    let errors = app.stop().await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        3,
        "stop waited for the in-flight requests"
    );
    let stream = ns.stream("rpc").unwrap();
    let pending: Vec<kaiju_transport::fred::types::Value> = {
        use kaiju_transport::fred::prelude::*;
        t.pool()
            .xpending(stream.as_str(), name, ("-", "+", 10))
            .await
            .unwrap()
    };
    assert!(
        pending.is_empty(),
        "every finished entry was acked before the stop returned: {pending:?}"
    );
}
