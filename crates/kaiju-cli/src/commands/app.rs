//! `kaiju run` and `kaiju check`.

use kaiju_app::Registry;

use super::redis_failure;
use crate::connect::{build, load};
use crate::json::pretty;
use crate::out::{errln, outln};
use crate::{ConfigArgs, Failure};

/// `kaiju run`: the app until SIGINT or SIGTERM.
pub(super) async fn run(config: ConfigArgs) -> Result<(), Failure> {
    let config = load(&config)?;
    let app = kaiju_app::App::build(&config, &Registry::builtin())
        .map_err(|e| Failure::usage(e.to_string()))?;
    app.run().await.map_err(redis_failure)
}

/// `kaiju check`: the config resolved, with secrets hidden, and its services.
pub(super) fn check(config: ConfigArgs, _json: bool) -> Result<(), Failure> {
    let config = load(&config)?;
    let app = build(&config)?;
    outln!("{}", pretty(&config.redacted()));
    let names: Vec<&str> = app.context().names().collect();
    errln!(
        "config ok: app `{}` in `{}`, {} services: {}",
        config.project.main.name,
        config.project.main.env,
        names.len(),
        names.join(", ")
    );
    let left_out: Vec<String> = app
        .services()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !names.contains(&n.as_str()))
        .collect();
    if !left_out.is_empty() {
        errln!(
            "left out (optional, cannot start with this config; see the warnings above): {}",
            left_out.join(", ")
        );
    }
    Ok(())
}
