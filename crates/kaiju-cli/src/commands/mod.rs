//! Every `kaiju` subcommand, one file per family: `app` (run, check), `call` (call, write),
//! `streams`, `dead`, `inspect` (locks, cache, functions). This file dispatches, and holds what
//! they share: key names, and how a failure maps to an exit code.

mod app;
mod call;
mod dead;
mod inspect;
mod streams;

use kaiju_core::Namespace;
use kaiju_rpc::CallError;

pub(crate) use crate::connect::connect_failure;

use crate::{CacheCommand, Command, Failure, FunctionsCommand, LocksCommand};

/// Runs `command`; `json` asks for JSON output instead of the human text.
pub(crate) async fn run(command: Command, json: bool) -> Result<(), Failure> {
    // `--json` is global to the parser; a command that prints no JSON refuses it rather than
    // print its text where a script expects one JSON document.
    let text_only = match &command {
        Command::Run { .. } => Some("run"),
        Command::Call(_) => Some("call"),
        Command::Write { .. } => Some("write"),
        Command::Functions { .. } => Some("functions load"),
        _ => None,
    };
    if let (true, Some(name)) = (json, text_only) {
        return Err(Failure::usage(format!(
            "`kaiju {name}` has no --json output; --json is for check, streams, dead, locks owner and cache get"
        )));
    }
    match command {
        Command::Run { config, host, port } => app::run(config, host, port).await,
        Command::Check { config, connect } => app::check(config, connect, json).await,
        Command::Call(args) => call::call(args).await,
        Command::Write {
            conn,
            stream_key,
            body,
            headers,
        } => call::write(conn, stream_key, body, headers).await,
        Command::Streams {
            conn,
            app,
            topic,
            repair,
            max_ahead_hours,
            stale_after,
        } => streams::streams(conn, app, topic, repair, max_ahead_hours, stale_after, json).await,
        Command::Dead { command } => dead::dead(command, json).await,
        Command::Locks {
            command: LocksCommand::Owner { conn, key },
        } => inspect::lock_owner(conn, key, json).await,
        Command::Cache {
            command: CacheCommand::Get { conn, key },
        } => inspect::cache_get(conn, key, json).await,
        Command::Functions {
            command: FunctionsCommand::Load { conn },
        } => inspect::load_functions(conn).await,
    }
}

/// The stream and dead-letter keys of `app`'s `topic`.
pub(super) fn keys(env: &str, app: &str, topic: &str) -> Result<(String, String), Failure> {
    let ns = Namespace::new(env, app).map_err(|e| Failure::usage(e.to_string()))?;
    let stream = ns
        .stream(topic)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let dead = ns
        .dead_letter_stream(topic)
        .map_err(|e| Failure::usage(e.to_string()))?;
    Ok((stream.into_string(), dead.into_string()))
}

/// A failed call: a bad key or params are usage errors, the rest as [`redis_failure`].
pub(super) fn call_failure(e: CallError) -> Failure {
    match e {
        CallError::Key(e) => Failure::usage(e.to_string()),
        CallError::Codec(e) => Failure::usage(e.to_string()),
        other => redis_failure(other),
    }
}

/// A failed Redis operation: exit 3 when Redis could not be reached or refused the
/// credentials (a lost connection, a timeout, a wrong password, a refused certificate), 1
/// otherwise.
pub(super) fn redis_failure(e: impl std::error::Error + 'static) -> Failure {
    use kaiju_transport::TransportError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let unreachable = |t: &TransportError| {
        matches!(
            t,
            TransportError::Connection { .. }
                | TransportError::Timeout { .. }
                | TransportError::Auth { .. }
                | TransportError::Tls { .. }
        )
    };
    while let Some(err) = source {
        // Wrappers marked `transparent` hide the transport error from `source()`.
        let transport = err
            .downcast_ref::<TransportError>()
            .or_else(|| match err.downcast_ref::<kaiju_streams::StreamError>() {
                Some(kaiju_streams::StreamError::Transport(t)) => Some(t),
                _ => None,
            })
            .or_else(|| match err.downcast_ref::<CallError>() {
                Some(CallError::Transport(t)) => Some(t),
                Some(CallError::Stream(kaiju_streams::StreamError::Transport(t))) => Some(t),
                _ => None,
            })
            .or_else(|| match err.downcast_ref::<kaiju_cache::CacheError>() {
                Some(kaiju_cache::CacheError::Transport(t)) => Some(t),
                _ => None,
            })
            .or_else(|| match err.downcast_ref::<kaiju_locks::LockError>() {
                Some(kaiju_locks::LockError::Transport(t)) => Some(t),
                _ => None,
            });
        if transport.is_some_and(unreachable) {
            return Failure::unreachable(&e);
        }
        source = err.source();
    }
    Failure::failed(e)
}

/// Text from Redis, safe for a terminal: control characters (escape sequences, line breaks),
/// the Unicode line and paragraph separators and the bidirectional overrides and isolates
/// (which reorder what a terminal shows after them) are shown escaped.
pub(super) fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let hidden = c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            let shown: Vec<char> = if hidden {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            shown
        })
        .collect()
}
