//! Every `kaiju` subcommand.

use std::time::Duration;

use kaiju_app::Registry;
use kaiju_cache::Cache;
use kaiju_core::{Codec as _, Key, Namespace, Value};
use kaiju_locks::Locks;
use kaiju_rpc::{CallError, RpcClient};
use kaiju_streams::StreamWriter;
use kaiju_streams::admin::{self, DeadLetters};
use serde_json::Value as Json;

use crate::connect::{build, connect, load};
use crate::json::{self, pretty, to_json};
use crate::out::{errln, outln};
use crate::{CacheCommand, Command, Failure, FunctionsCommand, LocksCommand};

pub(crate) async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run { config } => {
            let config = load(&config)?;
            let app = kaiju_app::App::build(&config, &Registry::builtin())
                .map_err(|e| Failure::usage(e.to_string()))?;
            app.run().await.map_err(redis_failure)
        }
        Command::Check { config } => {
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
        Command::Call {
            conn,
            app,
            method,
            params,
            wait,
            timeout,
            topic,
            headers,
        } => {
            let params = match params {
                Some(p) => json::parse("params", &p)?,
                None => Json::Null,
            };
            if !matches!(params, Json::Object(_) | Json::Null) {
                return Err(Failure::usage(
                    "params must be a JSON object (kaiju takes named params)",
                ));
            }
            let headers = json::headers(&headers)?;
            let (transport, me) = connect(&conn).await?;
            let client = RpcClient::new(transport, &me);
            let timeout = Duration::from_secs(timeout.max(1));
            if wait {
                let mut request = client
                    .request::<_, Value>(method.as_str(), params)
                    .app(app.as_str())
                    .topic(topic.as_str())
                    .timeout(timeout);
                for (name, value) in headers.iter() {
                    request = request.header(name, value.clone());
                }
                match request.await {
                    Ok(result) => {
                        outln!("{}", pretty(&to_json(&result)));
                        Ok(())
                    }
                    Err(CallError::Rpc(e)) => {
                        outln!("{e}");
                        Err(Failure::failed(format!(
                            "{method} answered with an error (code {})",
                            e.code()
                        )))
                    }
                    Err(e) => Err(call_failure(e)),
                }
            } else {
                let mut call = client
                    .call(method.as_str(), params)
                    .app(app.as_str())
                    .topic(topic.as_str())
                    .timeout(timeout);
                for (name, value) in headers.iter() {
                    call = call.header(name, value.clone());
                }
                let id = call.await.map_err(call_failure)?;
                outln!("{id}");
                Ok(())
            }
        }
        Command::Write {
            conn,
            stream_key,
            body,
            headers,
        } => {
            let body = json::parse("the body", &body)?;
            let headers = json::headers(&headers)?;
            let (transport, _) = connect(&conn).await?;
            let id = StreamWriter::new(transport)
                .write(&Key::raw(stream_key), &body, headers)
                .await
                .map_err(redis_failure)?;
            outln!("{id}");
            Ok(())
        }
        Command::Streams {
            conn,
            app,
            topic,
            repair,
            max_ahead_hours,
        } => {
            let (transport, me) = connect(&conn).await?;
            let (stream, dead) = keys(&me.env, &app, &topic)?;
            if repair {
                let max_ahead = Duration::from_secs(max_ahead_hours.saturating_mul(3600));
                // The dead-letter stream first: the repair writes the entries it moves there.
                let mended = admin::repair_dead_ids(&transport, &dead, max_ahead)
                    .await
                    .map_err(|e| repair_failure(&dead, e))?;
                if let Some(after) = &mended.last_id_after {
                    outln!(
                        "repair: dead-letter stream {dead}: last id {} -> {after}; {} dead letters ahead of the clock written again with new ids (kept, field repaired-from-id)",
                        mended.last_id_before,
                        mended.rewritten
                    );
                }
                let done = admin::repair_ids(&transport, &stream, &dead, max_ahead)
                    .await
                    .map_err(|e| repair_failure(&stream, e))?;
                if done.moved_handled > 0 {
                    outln!(
                        "repair: {} of the moved entries had already been handled by every group: dead letters of kind {}, which `kaiju dead` replay skips (they would run again)",
                        done.moved_handled,
                        admin::KIND_FUTURE_ID_HANDLED
                    );
                }
                match &done.last_id_after {
                    None if done.moved == 0 => {
                        outln!("repair: the ids of {stream} are fine; nothing to do")
                    }
                    None => outln!(
                        "repair: moved {} entries ahead of the clock to {dead}",
                        done.moved
                    ),
                    Some(after) => outln!(
                        "repair: moved {} entries ahead of the clock to {dead}; last id {} -> {after}; groups set back: {}",
                        done.moved,
                        done.last_id_before,
                        if done.groups_reset.is_empty() {
                            "none".to_owned()
                        } else {
                            done.groups_reset.join(", ")
                        }
                    ),
                }
            }
            for key in [&stream, &dead] {
                match admin::check_ids(&transport, key).await {
                    Ok(Some(warning)) => errln!("kaiju: warning: {warning}"),
                    Ok(None) => {}
                    Err(e) => errln!("kaiju: warning: cannot check the ids of {key}: {e}"),
                }
            }
            let report = admin::inspect(&transport, &stream, &dead)
                .await
                .map_err(redis_failure)?;
            let exists = report.length > 0 || !report.groups.is_empty();
            outln!("stream       {}", report.stream);
            outln!("length       {}", report.length);
            outln!("dead letters {}  ({dead})", report.dead_letters);
            for g in &report.groups {
                outln!("group        {}", g.name);
                outln!(
                    "  lag                {}",
                    g.lag.map_or("unknown".into(), |l| l.to_string())
                );
                outln!("  pending            {}", g.pending);
                outln!(
                    "  oldest pending age {}",
                    g.oldest_pending_age
                        .map_or("-".into(), |a| format!("{:.1} s", a.as_secs_f64()))
                );
                outln!("  consumers          {}", g.consumers.len());
                for (name, pending, idle) in &g.consumers {
                    outln!(
                        "    {name}: {pending} pending, idle {:.1} s",
                        idle.as_secs_f64()
                    );
                }
            }
            if exists || report.dead_letters > 0 {
                Ok(())
            } else {
                Err(Failure::not_found(format!(
                    "no stream {stream} (nothing was ever written to it)"
                )))
            }
        }
        Command::Dead {
            conn,
            args,
            count,
            include_handled,
        } => {
            let (app, topic, action) = match args.as_slice() {
                [app, action] => (app, "rpc", action),
                [app, topic, action] => (app, topic.as_str(), action),
                _ => {
                    return Err(Failure::usage(
                        "expected `kaiju dead <app> [topic] list|replay|purge`",
                    ));
                }
            };
            let (transport, me) = connect(&conn).await?;
            let (stream, dead) = keys(&me.env, app, topic)?;
            let letters = DeadLetters::new(transport, stream.clone(), dead.clone())
                .include_handled(include_handled);
            match action.as_str() {
                "list" => {
                    let total = letters.len().await.map_err(redis_failure)?;
                    outln!("{total} dead letters in {dead}");
                    let mut after: Option<String> = None;
                    let mut shown = 0;
                    while shown < count {
                        let page = letters
                            .list(after.as_deref(), (count - shown).min(admin::MAX_PAGE))
                            .await
                            .map_err(redis_failure)?;
                        let Some(last) = page.last() else { break };
                        after = Some(last.id.clone());
                        shown += page.len();
                        for d in page {
                            print_dead_letter(&d)?;
                        }
                    }
                    Ok(())
                }
                "replay" => {
                    let done = letters
                        .replay(100, |done, total| errln!("replayed {done}/{total}"))
                        .await
                        .map_err(redis_failure)?;
                    outln!(
                        "replayed {} into {stream}; skipped {} (from another stream or empty)",
                        done.replayed,
                        done.skipped
                    );
                    if done.handled > 0 {
                        outln!(
                            "left {} dead letters of kind {} alone: every group had already handled them, so a replay runs them again (--include-handled replays them)",
                            done.handled,
                            admin::KIND_FUTURE_ID_HANDLED
                        );
                    }
                    Ok(())
                }
                "purge" => {
                    let n = letters.purge().await.map_err(redis_failure)?;
                    outln!("purged {n} dead letters from {dead}");
                    Ok(())
                }
                other => Err(Failure::usage(format!(
                    "unknown action `{other}`: use list, replay or purge"
                ))),
            }
        }
        Command::Locks {
            command: LocksCommand::Owner { conn, key },
        } => {
            let (transport, me) = connect(&conn).await?;
            let locks = Locks::new(transport, me.id.to_string())
                .await
                .map_err(redis_failure)?;
            let owner = locks.owner(&key).await.map_err(redis_failure);
            locks.close().await;
            match owner? {
                Some(owner) => {
                    outln!("{owner}");
                    Ok(())
                }
                None => Err(Failure::not_found(format!("{key} is not locked"))),
            }
        }
        Command::Cache {
            command: CacheCommand::Get { conn, key },
        } => {
            let (transport, _) = connect(&conn).await?;
            match Cache::new(transport)
                .get::<Value>(&key)
                .await
                .map_err(redis_failure)?
            {
                Some(v) => {
                    outln!("{}", pretty(&to_json(&v)));
                    Ok(())
                }
                None => Err(Failure::not_found(format!("no value at {key}"))),
            }
        }
        Command::Functions {
            command: FunctionsCommand::Load { conn },
        } => {
            let (transport, _) = connect(&conn).await?;
            if !transport.capabilities().has_functions() {
                return Err(Failure::failed(format!(
                    "this server ({:?} {}) has no functions; apps use EVALSHA here",
                    transport.capabilities().kind,
                    transport.capabilities().server_version
                )));
            }
            let scripts = kaiju_scripts();
            for script in &scripts {
                script
                    .load_function(&transport)
                    .await
                    .map_err(redis_failure)?;
                outln!("{}", script.function_name());
            }
            errln!("loaded {} function libraries", scripts.len());
            transport.close().await.ok();
            Ok(())
        }
    }
}

/// Every Lua script kaiju-rs runs: the cache's, the locks', the streams'.
fn kaiju_scripts() -> Vec<&'static kaiju_transport::Script> {
    let mut all = kaiju_cache::scripts();
    all.extend(kaiju_locks::scripts());
    all.extend(kaiju_streams::scripts());
    all
}

/// The stream and dead-letter keys of `app`'s `topic`.
fn keys(env: &str, app: &str, topic: &str) -> Result<(String, String), Failure> {
    let ns = Namespace::new(env, app).map_err(|e| Failure::usage(e.to_string()))?;
    let stream = ns
        .stream(topic)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let dead = ns
        .dead_letter_stream(topic)
        .map_err(|e| Failure::usage(e.to_string()))?;
    Ok((stream.into_string(), dead.into_string()))
}

fn call_failure(e: CallError) -> Failure {
    match e {
        CallError::Key(e) => Failure::usage(e.to_string()),
        CallError::Codec(e) => Failure::usage(e.to_string()),
        other => redis_failure(other),
    }
}

fn print_dead_letter(d: &admin::DeadLetter) -> Result<(), Failure> {
    let body = d
        .fields
        .iter()
        .find(|(k, _)| &k[..] == b"_")
        .map(
            |(_, v)| match kaiju_core::Msgpack::WIRE.decode::<Value>(v) {
                Ok(v) => to_json(&v).to_string(),
                Err(_) => format!("<{} bytes that are not msgpack>", v.len()),
            },
        )
        .unwrap_or_else(|| "<no `_` field>".into());
    outln!(
        "{}  {}  from {} (delivered {}x): {}",
        printable(&d.id),
        printable(&d.kind),
        printable(&d.origin_id),
        d.deliveries,
        printable(&d.reason)
    );
    outln!("    {body}");
    Ok(())
}

/// A failed Redis operation: exit 3 when Redis could not be reached (a lost connection, a
/// timeout), 1 otherwise.
/// A failed repair of `key`, named in the message.
fn repair_failure(key: &str, e: kaiju_streams::StreamError) -> Failure {
    let mut failure = redis_failure(e);
    failure.message = format!("repairing {key}: {}", failure.message);
    failure
}

fn redis_failure(e: impl std::error::Error + 'static) -> Failure {
    use kaiju_transport::TransportError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let unreachable = |t: &TransportError| {
        matches!(
            t,
            TransportError::Connection { .. } | TransportError::Timeout { .. }
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

/// Text from Redis, safe for a terminal: control characters (escape sequences, line breaks)
/// are shown escaped.
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let shown: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            shown
        })
        .collect()
}
