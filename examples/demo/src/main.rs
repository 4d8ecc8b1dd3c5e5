//! The demo `cargo xtask demo` runs.
//!
//! - `kaiju-demo serve -c app.yml [-e NAME=VALUE]...`: runs the app of the config (built-in
//!   classes plus `Inventory`), prints `ready` once it serves, stops on SIGINT/SIGTERM.
//! - `kaiju-demo drive -c app.yml [-e NAME=VALUE]...`: calls it and prints what happened.

mod drive;
mod http;
mod inventory;

use std::process::ExitCode;

use kaiju_app::config::{Config, ConfigLoader};
use kaiju_app::{App, Registry};

/// The built-in classes plus the demo's own.
fn registry() -> Result<Registry, String> {
    let mut r = Registry::builtin();
    r.register::<inventory::Inventory>("Inventory", "inventory")
        .map_err(|e| e.to_string())?;
    Ok(r)
}

fn config(args: &[String]) -> Result<Config, String> {
    let mut loader = ConfigLoader::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" => loader = loader.file(it.next().ok_or("-c needs a file")?),
            "-e" => {
                loader = loader
                    .env_arg(it.next().ok_or("-e needs NAME=VALUE")?)
                    .map_err(|e| e.to_string())?
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    loader.load().map_err(|e| e.to_string())
}

async fn serve(config: Config) -> Result<(), String> {
    let app = App::build(&config, &registry()?).map_err(|e| e.to_string())?;
    app.start().await.map_err(|e| e.to_string())?;
    println!("ready");
    let signal = kaiju_app::stop_signal().await;
    let started = std::time::Instant::now();
    let errors = app.stop().await;
    println!(
        "stopped gracefully in {} ms{}",
        started.elapsed().as_millis(),
        if errors.is_empty() {
            String::new()
        } else {
            format!(" ({} services reported errors)", errors.len())
        }
    );
    signal.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                match args.first().map(String::as_str) {
                    Some("serve") => serve(config(&args[1..])?).await,
                    Some("drive") => drive::run(config(&args[1..])?, registry()?).await,
                    _ => Err("usage: kaiju-demo serve|drive -c app.yml [-e NAME=VALUE]...".into()),
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kaiju-demo: error: {e}");
            ExitCode::FAILURE
        }
    }
}
