//! `kaiju run` and `kaiju check`.

use kaiju_app::App;
use kaiju_app::builtin::TransportService;
use kaiju_app::config::Config;
use kaiju_transport::Transport;
use serde_json::Value as Json;

use super::{connect_failure, redis_failure};
use crate::connect::{build, load};
use crate::json::pretty;
use crate::out::{errln, outln};
use crate::{ConfigArgs, Failure};

/// `kaiju run`: the app until SIGINT or SIGTERM; `--host` and `--port` override the config's
/// `run.host` and `run.port` (kaiju's CLI has both).
pub(super) async fn run(
    config: ConfigArgs,
    host: Option<String>,
    port: Option<u16>,
) -> Result<(), Failure> {
    let mut config = load(&config)?;
    if let Some(host) = host {
        config.project.run.host = Some(host);
    }
    if let Some(port) = port {
        config.project.run.port = Some(port);
    }
    // The same build as `check`'s: what it passes, this starts.
    let app = build(&config)?;
    let transports: Vec<String> = app
        .context()
        .all::<TransportService>()
        .into_iter()
        .map(|(name, _)| name.to_owned())
        .collect();
    app.run().await.map_err(|e| run_failure(e, &transports))
}

/// Why `run` failed, as an exit code: a transport that cannot connect (its `init`) fails as
/// every other command's connection does ([`connect_failure`]: 3 for a server that cannot be
/// reached or refuses the user, whatever the server answered; 2 for settings that cannot
/// work), the rest as [`redis_failure`].
fn run_failure(e: kaiju_app::AppError, transports: &[String]) -> Failure {
    if let kaiju_app::AppError::Service {
        service,
        phase: "init",
        source,
        ..
    } = &e
        && transports.contains(service)
        && let Some(t) = source.downcast_ref::<kaiju_transport::TransportError>()
    {
        let mut failure = connect_failure(t.clone());
        failure.message = e.to_string();
        return failure;
    }
    redis_failure(e)
}

/// `kaiju check`: the config resolved as it will run (overridden services once, disabled ones
/// out), with secrets hidden, and its services; with `connect`, every transport connects and
/// authenticates too.
pub(super) async fn check(config: ConfigArgs, connect: bool, json: bool) -> Result<(), Failure> {
    let config = load(&config)?;
    let app = build(&config)?;
    let resolved = effective(&config, &app);
    let names: Vec<&str> = app.context().names().collect();
    let left_out: Vec<String> = app
        .services()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !names.contains(&n.as_str()))
        .collect();
    let mut connected = Vec::new();
    if connect {
        for (name, transport) in app.context().all::<TransportService>() {
            let t = Transport::connect(transport.settings())
                .await
                .map_err(|e| {
                    let mut failure = connect_failure(e);
                    failure.message = format!("service `{name}`: {}", failure.message);
                    failure
                })?;
            let caps = t.capabilities();
            connected.push(serde_json::json!({
                "service": name,
                "server": format!("{:?}", caps.kind).to_lowercase(),
                "version": caps.server_version.to_string(),
            }));
            t.close().await.ok();
        }
    }
    if json {
        outln!(
            "{}",
            pretty(&serde_json::json!({
                "ok": true,
                "app": config.project.main.name,
                "env": config.project.main.env,
                "services": names,
                "left_out": left_out,
                "connected": if connect { Json::Array(connected) } else { Json::Null },
                "config": resolved,
            }))
        );
        return Ok(());
    }
    outln!("{}", pretty(&resolved));
    errln!(
        "config ok: app `{}` in `{}`, {} services: {}",
        config.project.main.name,
        config.project.main.env,
        names.len(),
        names.join(", ")
    );
    if !left_out.is_empty() {
        errln!(
            "left out (optional, cannot start with this config; see the warnings above): {}",
            left_out.join(", ")
        );
    }
    for c in &connected {
        errln!(
            "connected: service `{}` reached {} {}",
            c["service"].as_str().unwrap_or_default(),
            c["server"].as_str().unwrap_or_default(),
            c["version"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// The config as JSON with secrets hidden, its `services` as they will run: in start order,
/// each once (an `override: true` entry in place of the one it replaces), disabled ones out,
/// each with its `name`.
fn effective(config: &Config, app: &App) -> Json {
    let mut resolved = config.redacted();
    let Some(Json::Array(entries)) = resolved.get("services").cloned() else {
        return resolved;
    };
    if entries.len() != config.project.services.len() {
        return resolved; // not the list the entries were read from: shown as written
    }
    let services = app
        .entries()
        .into_iter()
        .filter_map(|(name, index)| {
            let mut entry = match entries.get(index)? {
                Json::String(cls) => serde_json::json!({ "cls": cls }),
                other => other.clone(),
            };
            if let Json::Object(fields) = &mut entry {
                fields.insert("name".into(), Json::String(name));
                fields.remove("override");
                fields.remove("enabled");
            }
            Some(entry)
        })
        .collect();
    if let Json::Object(top) = &mut resolved {
        top.insert("services".into(), Json::Array(services));
    }
    resolved
}
