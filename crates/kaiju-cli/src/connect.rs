//! Loading configs and connecting, from the command-line arguments.

use kaiju_app::builtin::TransportService;
use kaiju_app::config::{Config, ConfigLoader};
use kaiju_app::{App, Dependency, Registry};
use kaiju_core::{AppSettings, RedisSettings};
use kaiju_transport::Transport;

use crate::out::errln;
use crate::{ConfigArgs, Conn, Failure};

/// Warns when `-e NAME=VALUE` looks like it holds a secret: arguments show in `ps`.
fn warn_about_env_arg(arg: &str) {
    let Some((name, value)) = arg.split_once('=') else {
        return;
    };
    if !value.is_empty()
        && (kaiju_app::config::is_secret_name(name) || kaiju_core::redact_url(value) != value)
    {
        errln!(
            "kaiju: warning: -e {name}=... looks like a secret, and arguments show in `ps` to every user of this machine; give it in an env file (-f) or as the environment variable {name} instead"
        );
    }
}

/// The first line of a password file (without its line ending).
fn read_password(path: &std::path::Path) -> Result<kaiju_core::Secret, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read the password file {}: {e}",
            path.display()
        ))
    })?;
    let password = text.lines().next().unwrap_or("");
    if password.is_empty() {
        return Err(Failure::usage(format!(
            "the password file {} is empty; its first line is the password",
            path.display()
        )));
    }
    Ok(kaiju_core::Secret::new(password))
}

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
        warn_about_env_arg(e);
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

/// A connection and the kaiju environment, from `--redis-url`, the config's first transport or
/// `KAIJU_REDIS_URL`, in that order (the password from `--password-file` over theirs); the environment
/// from `--environment`, the config, or `dev`. Warns when a password is given as an argument.
pub(crate) async fn connect(conn: &Conn) -> Result<(Transport, AppSettings), Failure> {
    let config = if conn.config.files.is_empty() {
        None
    } else {
        Some(load(&conn.config)?)
    };
    if let Some(url) = &conn.redis_url
        && kaiju_core::redact_url(url) != *url
    {
        errln!(
            "kaiju: warning: the password in --redis-url shows in `ps` to every user of this machine; set KAIJU_REDIS_URL or use --password-file instead"
        );
    }
    // A config named on the command line is more deliberate than a variable exported earlier.
    let from_env = std::env::var("KAIJU_REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    if from_env.is_some() && (conn.redis_url.is_some() || config.is_some()) {
        errln!(
            "kaiju: note: KAIJU_REDIS_URL is set but not used: {} gives the connection",
            if conn.redis_url.is_some() {
                "--redis-url"
            } else {
                "the config (-c)"
            }
        );
    }
    let url = match (&conn.redis_url, &config) {
        (Some(url), _) => Some(url.clone()),
        (None, Some(_)) => None,
        (None, None) => from_env,
    };
    let mut settings = match (&url, &config) {
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
    if let Some(path) = &conn.password_file {
        settings.password = Some(read_password(path)?);
    }
    Transport::check(&settings).map_err(|e| Failure::usage(e.to_string()))?;
    let env = conn
        .environment
        .clone()
        .or_else(|| config.as_ref().map(|c| c.project.main.env.clone()))
        .unwrap_or_else(|| "dev".into());
    let transport = Transport::connect(&settings)
        .await
        .map_err(connect_failure)?;
    let app = AppSettings {
        env,
        name: "kaiju-cli".into(),
        ..AppSettings::default()
    };
    Ok((transport, app))
}

/// A failed first connection: exit 3, whether nothing answered or the server refused the
/// credentials or the certificate; settings that cannot work are a usage error (2).
pub(crate) fn connect_failure(e: kaiju_transport::TransportError) -> Failure {
    match e {
        kaiju_transport::TransportError::Config(e) => Failure::usage(e.to_string()),
        e => Failure::unreachable(e),
    }
}
