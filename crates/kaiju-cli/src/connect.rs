//! Loading configs and connecting, from the command-line arguments.

use kaiju_app::builtin::TransportService;
use kaiju_app::config::{Config, ConfigLoader};
use kaiju_app::{App, Dependency, Registry};
use kaiju_core::{AppSettings, RedisSettings};
use kaiju_transport::Transport;

use crate::{ConfigArgs, Conn, Failure};

/// Loads the config the arguments name.
pub(crate) fn load(args: &ConfigArgs) -> Result<Config, Failure> {
    let mut loader = ConfigLoader::new();
    for f in &args.files {
        loader = loader.file(f);
    }
    for f in &args.env_files {
        loader = loader.env_file(f);
    }
    for e in &args.env {
        loader = loader
            .env_arg(e)
            .map_err(|e| Failure::usage(e.to_string()))?;
    }
    if args.no_os_env {
        loader = loader.no_os_env();
    }
    loader.load().map_err(|e| Failure::usage(e.to_string()))
}

/// Builds the app of a config (every check short of connecting).
pub(crate) fn build(config: &Config) -> Result<App, Failure> {
    App::build(config, &Registry::builtin()).map_err(|e| Failure::usage(e.to_string()))
}

/// A connection and the kaiju environment, from `--redis-url`/`KAIJU_REDIS_URL` or the
/// config's first transport; the environment from `--environment`, the config, or `dev`.
pub(crate) async fn connect(conn: &Conn) -> Result<(Transport, AppSettings), Failure> {
    let config = if conn.config.files.is_empty() {
        None
    } else {
        Some(load(&conn.config)?)
    };
    let settings = match (&conn.redis_url, &config) {
        (Some(url), _) => RedisSettings::from_url(url.clone()),
        (None, Some(config)) => {
            let app = build(config)?;
            app.context()
                .require::<TransportService>(&Dependency::Any)
                .map_err(|e| Failure::usage(format!("the config has no Redis connection: {e}")))?
                .settings()
                .clone()
        }
        (None, None) => {
            return Err(Failure::usage(
                "no Redis connection: give --redis-url, set KAIJU_REDIS_URL, or -c app.yml",
            ));
        }
    };
    Transport::check(&settings).map_err(|e| Failure::usage(e.to_string()))?;
    let env = conn
        .environment
        .clone()
        .or_else(|| config.as_ref().map(|c| c.project.main.env.clone()))
        .unwrap_or_else(|| "dev".into());
    let transport = Transport::connect(&settings)
        .await
        .map_err(|e| Failure::unreachable(format!("cannot connect to Redis: {e}")))?;
    let app = AppSettings {
        env,
        name: "kaiju-cli".into(),
        ..AppSettings::default()
    };
    Ok((transport, app))
}
