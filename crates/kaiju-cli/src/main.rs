//! `kaiju`: run a kaiju app from its YAML config, and look into a running system.
//!
//! See `kaiju --help` and the crate README.

mod commands;
mod connect;
mod json;
mod out;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Exit codes, for scripts: the same table is in the crate README, and a test holds the two
/// equal.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation failed: an RPC error (its error object is on stdout), a Redis error
  2  usage or config error: a bad argument, or a config `run` would fail on
  3  Redis cannot be reached, or refused the credentials or the certificate
  4  not found: no value, no lock owner, no such stream, no app listening";

/// Run kaiju apps from their YAML config, call their methods, inspect their streams.
#[derive(Debug, Parser)]
#[command(name = "kaiju", version, after_help = EXIT_CODES, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (`info`, `debug`, `kaiju_streams=debug`); default: RUST_LOG, else `info`
    /// for `run` and `warn` otherwise. Logs go to stderr.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    /// Print JSON on stdout instead of the human text (`check`, `streams`, `dead list`,
    /// `locks owner`, `cache get`): one document, stable field names.
    #[arg(long, global = true)]
    json: bool,
}

/// Where the config comes from (kaiju's `-c`, `-e`, `-f`, `--no-os-env`).
#[derive(Debug, Clone, Args)]
struct ConfigArgs {
    /// Config file (.yml, .yaml, .json); repeat to layer several, later ones over earlier.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Template value NAME=VALUE; wins over env files and the OS environment. It shows in `ps`:
    /// give secrets in an env file (-f) or the OS environment.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Env file (YAML or JSON mapping of template values); repeatable.
    #[arg(short = 'f', long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// Do not read template values from OS environment variables.
    #[arg(long)]
    no_os_env: bool,
}

/// How to reach Redis and which environment the keys are in.
#[derive(Debug, Clone, Args)]
struct Conn {
    #[command(flatten)]
    config: ConfigArgs,
    /// Redis URL (`redis://`, `rediss://`, `redis-cluster://`); default: the first
    /// RedisTransportService of the config given with -c, else the environment variable
    /// KAIJU_REDIS_URL. A password in this argument shows in `ps`: give it in KAIJU_REDIS_URL
    /// or with --password-file.
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Read the Redis password from this file (its first line), over the URL's or the
    /// config's: a password on the command line shows in `ps`.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// The kaiju environment (the first part of every key); default: the config's `main.env`,
    /// else `dev`.
    #[arg(long, env = "KAIJU_ENV", value_name = "ENV")]
    environment: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an app from its config until SIGINT or SIGTERM, then stop it gracefully.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Serve JSON-RPC over HTTP on this host (over the config's `run.host`).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Serve JSON-RPC over HTTP on this port (over the config's `run.port`).
        #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
    },
    /// Check a config as `run` would start it (templates, classes, every service's settings
    /// and dependencies) without connecting, and print it resolved, as it will run, with
    /// secrets hidden. Exit 2 when `run` would fail on it.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// Also connect and authenticate to every Redis the config names (exit 3 when one
        /// cannot be reached or refuses the credentials).
        #[arg(long)]
        connect: bool,
    },
    /// Call a method of an app: a notification (prints the entry id), or with --wait a
    /// request that prints the result. Refused (exit 4) when no app listens there.
    Call(CallArgs),
    /// Write one entry (kaiju's envelope: `[body, headers]`) to a stream key.
    Write {
        #[command(flatten)]
        conn: Conn,
        /// The full stream key (e.g. `dev.billing._stream.rpc`).
        stream_key: String,
        /// The body as JSON (for RPC: `["service.method", {"param": 1}]`).
        body: String,
        /// Header NAME=VALUE (VALUE as JSON if it parses, else text); repeatable.
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
    },
    /// Show an app's stream: length, groups, lag, pending, oldest pending age, consumers
    /// (live or stale), dead letters. Warns when the stream's last id is the largest there is or more than a
    /// day ahead of the server clock (someone wrote an entry with such an id: writes fail).
    Streams {
        #[command(flatten)]
        conn: Conn,
        /// The app.
        app: String,
        /// The topic.
        #[arg(default_value = "rpc")]
        topic: String,
        /// Repair a stream whose ids ran ahead of the server clock: move every entry whose id
        /// is more than --max-ahead-hours ahead to the dead letters (`kind: future-id`;
        /// `kaiju dead replay` writes them back with new ids), set the stream's last id
        /// back (XSETID) to its newest remaining entry, a group's last delivered id or the
        /// server's time, whichever is largest, and set groups that were ahead back to it.
        /// Groups, consumers and pending entries are kept.
        #[arg(long)]
        repair: bool,
        /// With --repair: how far ahead of the server clock an id may be, in hours.
        #[arg(long, default_value_t = 24, value_name = "HOURS", requires = "repair")]
        max_ahead_hours: u64,
        /// A consumer without a name lease (a Python kaiju consumer) is shown stale once idle
        /// this long, in seconds. A kaiju-rs listener's lease tells for sure.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        stale_after: u64,
    },
    /// An app's dead letters (the entries its listener gave up on): `kaiju dead list|replay|purge
    /// APP [TOPIC]`.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// Locks.
    Locks {
        #[command(subcommand)]
        command: LocksCommand,
    },
    /// Cache values.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// kaiju's Lua scripts as Redis 7 functions, so that app users need `+fcall` and no Lua
    /// of their own.
    Functions {
        #[command(subcommand)]
        command: FunctionsCommand,
    },
}

/// `kaiju call`'s arguments.
#[derive(Debug, Args)]
struct CallArgs {
    #[command(flatten)]
    conn: Conn,
    /// The app to call (its stream is `<env>.<app>._stream.<topic>`).
    app: String,
    /// The method, `service.method`.
    method: String,
    /// Params as a JSON object.
    params: Option<String>,
    /// Wait for the result (request/response; kaiju-rs servers only).
    #[arg(long)]
    wait: bool,
    /// Seconds the call may take (sent as the `Timeout`/`Deadline` header).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// The topic.
    #[arg(long, default_value = "rpc")]
    topic: String,
    /// Extra header NAME=VALUE (VALUE as JSON if it parses, else text); repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Write a notification even when no app listens there yet (no consumer group reads the
    /// stream): it waits in the stream until the app starts. Without it, such a call is
    /// refused, so that a typo in the app, topic or environment does not leave a stray stream.
    #[arg(long, conflicts_with = "wait")]
    create: bool,
}

/// The app and topic whose dead letters these are.
#[derive(Debug, Clone, Args)]
struct DeadTarget {
    /// The app (its dead letters are `<env>.<app>._stream._dead.<topic>`).
    app: String,
    /// The topic.
    #[arg(default_value = "rpc")]
    topic: String,
}

/// Which dead letters `replay` and `purge` take: every one, unless filters narrow the choice
/// (a letter must pass every filter given).
#[derive(Debug, Clone, Args)]
struct DeadFilterArgs {
    /// Only the dead letter with this id (as `kaiju dead list` shows it); repeatable.
    #[arg(long = "id", value_name = "ID", value_parser = parse_dead_id)]
    ids: Vec<String>,
    /// Only dead letters of this kind; repeatable.
    #[arg(
        long = "kind",
        value_name = "KIND",
        value_parser = clap::builder::PossibleValuesParser::new(kaiju_streams::admin::KINDS)
    )]
    kinds: Vec<String>,
    /// Only dead letters written at least this long ago: `90` (seconds), `90s`, `10m`, `2h`,
    /// `3d`.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    older_than: Option<std::time::Duration>,
    /// Print the dead letters it would take and what it would do; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
enum DeadCommand {
    /// List the dead letters, oldest first: id, kind, origin, deliveries, age, reason, body.
    /// An app and topic with no stream and no dead letters is exit 4.
    List {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        target: DeadTarget,
        /// How many to list.
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
    /// Write dead letters back to the app's stream (each with a new id, written once), then
    /// remove them, and only them, from the dead letters. Leaves alone letters that name
    /// another stream, letters of kind `malformed` (not kaiju entries: they would fail again)
    /// unless --include-malformed, and of kind `future-id-handled` unless --include-handled.
    Replay {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        target: DeadTarget,
        #[command(flatten)]
        filter: DeadFilterArgs,
        /// Also replay the dead letters of kind `future-id-handled`: entries `kaiju streams
        /// --repair` moved that every group had already handled (they run again).
        #[arg(long)]
        include_handled: bool,
        /// Also replay the dead letters of kind `malformed` (entries that are not kaiju's
        /// envelope; they fail again unless what reads them changed).
        #[arg(long)]
        include_malformed: bool,
    },
    /// Delete dead letters: every one there when it starts (or, after the question, every one
    /// it counted), or exactly those of them the filters take; letters written meanwhile stay.
    /// Asks first when stdin is a terminal; otherwise refuses without --yes.
    Purge {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        target: DeadTarget,
        #[command(flatten)]
        filter: DeadFilterArgs,
        /// Delete without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// A dead letter's id: `<ms>-<seq>` (or `<ms>`).
fn parse_dead_id(text: &str) -> Result<String, String> {
    let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
    // Each half a u64, as in Redis: a larger one is no letter's id (it matched nothing).
    let number = |s: &str| s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok();
    if number(ms) && number(seq) {
        Ok(text.to_owned())
    } else {
        Err("not a dead letter id: expected <ms>-<seq>, as `kaiju dead list` shows it".to_owned())
    }
}

/// An age: seconds (`90`), or a number with a unit (`90s`, `10m`, `2h`, `3d`).
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let bad = || {
        format!(
            "not a duration: expected seconds (`90`) or a number with s, m, h or d (`10m`, `2h`, `3d`), got `{text}`"
        )
    };
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let too_long = || format!("`{text}` is too long an age: at most {} seconds", u64::MAX);
    let n: u64 = match number.parse() {
        Ok(n) => n,
        // Digits only (cut at the first other character): too many of them.
        Err(_) if !number.is_empty() => return Err(too_long()),
        Err(_) => return Err(bad()),
    };
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => return Err(bad()),
    }
    .ok_or_else(too_long)?;
    Ok(std::time::Duration::from_secs(seconds))
}

#[derive(Debug, Subcommand)]
enum FunctionsCommand {
    /// Load every script of this kaiju as a function library (`kaiju_<sha1>`) on every
    /// primary: an admin's step (the user needs `FUNCTION LOAD`; Redis 7+), done once per
    /// server and again after an upgrade of kaiju-rs. Loading again changes nothing.
    Load {
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Subcommand)]
enum LocksCommand {
    /// Who holds a lock (exit 4 when nobody does).
    Owner {
        #[command(flatten)]
        conn: Conn,
        /// The full lock key.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// A cached value, msgpack shown as JSON (exit 4 when there is none).
    Get {
        #[command(flatten)]
        conn: Conn,
        /// The full key.
        key: String,
    },
}

/// A failure, with the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }

    pub(crate) fn failed(message: impl std::fmt::Display) -> Self {
        Self {
            code: 1,
            message: message.to_string(),
        }
    }

    pub(crate) fn unreachable(message: impl std::fmt::Display) -> Self {
        Self {
            code: 3,
            message: message.to_string(),
        }
    }

    /// Stdout was closed by its reader (`kaiju ... | head`): stop, print nothing more, and
    /// exit with status 0, as Unix tools do.
    pub(crate) fn output_closed() -> Self {
        Self {
            code: 0,
            message: String::new(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: 4,
            message: message.into(),
        }
    }
}

fn init_logs(filter: Option<&str>, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::try_new(f),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(default)),
    }
    .unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr closed: `kaiju run 2>&1 | head`, a log
        // shipper gone) is lost, never a panic: tracing would report it with `eprintln!`,
        // which panics on the closed stderr, in the middle of a graceful stop.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    init_logs(cli.log.as_deref(), default_log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            out::note(format_args!(
                "kaiju: error: cannot start the async runtime: {e}"
            ));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli.command, cli.json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if f.message.is_empty() => ExitCode::from(f.code),
        Err(f) => {
            out::note(format_args!(
                "kaiju: error: {}",
                f.message.replace('\n', " ")
            ));
            ExitCode::from(f.code)
        }
    }
}
