//! `kaiju streams`: an app's stream, its groups and dead letters; `--repair`.

use std::time::Duration;

use kaiju_core::Namespace;
use kaiju_streams::admin::{self, Liveness};
use serde_json::Value as Json;

use super::{keys, printable, redis_failure};
use crate::connect::connect;
use crate::json::pretty;
use crate::out::{errln, outln};
use crate::{Conn, Failure};

/// `kaiju streams APP [TOPIC]`.
pub(super) async fn streams(
    conn: Conn,
    app: String,
    topic: String,
    repair: bool,
    max_ahead_hours: u64,
    stale_after_secs: u64,
    json: bool,
) -> Result<(), Failure> {
    let (transport, me) = connect(&conn).await?;
    let (stream, dead) = keys(&me.env, &app, &topic)?;
    if repair {
        let max_ahead = Duration::from_secs(max_ahead_hours.saturating_mul(3600));
        // The dead-letter stream first: the repair writes the entries it moves there.
        let mended = admin::repair_dead_ids(&transport, &dead, max_ahead)
            .await
            .map_err(|e| repair_failure(&dead, e))?;
        if let Some(after) = &mended.last_id_after {
            say!(
                json,
                "repair: dead-letter stream {dead}: last id {} -> {after}; {} dead letters ahead of the clock written again with new ids (kept, field repaired-from-id)",
                mended.last_id_before,
                mended.rewritten
            );
        }
        let done = admin::repair_ids(&transport, &stream, &dead, max_ahead)
            .await
            .map_err(|e| repair_failure(&stream, e))?;
        if done.moved_handled > 0 {
            say!(
                json,
                "repair: {} of the moved entries had already been handled by every group: dead letters of kind {}, which `kaiju dead replay` skips (they would run again)",
                done.moved_handled,
                admin::KIND_FUTURE_ID_HANDLED
            );
        }
        match &done.last_id_after {
            None if done.moved == 0 => {
                say!(json, "repair: the ids of {stream} are fine; nothing to do")
            }
            None => say!(
                json,
                "repair: moved {} entries ahead of the clock to {dead}",
                done.moved
            ),
            Some(after) => say!(
                json,
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
    // The leases only refine the report: a lease hash that cannot be read (another type under
    // its key) costs a warning, not the report; consumers are then judged by idle time.
    let lease_key = lease_key(&me.env, &app, &topic)?;
    let leases = match admin::leases(&transport, &lease_key).await {
        Ok(leases) => leases,
        Err(e) => {
            let failure = redis_failure(e);
            if failure.code == 3 {
                return Err(failure);
            }
            errln!(
                "kaiju: warning: cannot read the consumer leases in {}: {}; consumers are judged by idle time",
                printable(&lease_key),
                failure.message
            );
            admin::Leases::default()
        }
    };
    // The counters kaiju-rs listeners publish: a refinement too (a warning when unreadable).
    let stats_key = stats_key(&me.env, &app, &topic)?;
    let consumers = report.groups.iter().flat_map(|g| {
        g.consumers
            .iter()
            .map(|(name, ..)| (g.name.as_str(), name.as_str()))
    });
    let counters = match admin::consumer_counters(&transport, &stats_key, consumers).await {
        Ok(counters) => counters,
        Err(e) => {
            let failure = redis_failure(e);
            if failure.code == 3 {
                return Err(failure);
            }
            errln!(
                "kaiju: warning: cannot read the consumers' counters in {}: {}",
                printable(&stats_key),
                failure.message
            );
            admin::Counters::default()
        }
    };
    let stale_after = Duration::from_secs(stale_after_secs);
    if json {
        let groups: Vec<Json> = report
            .groups
            .iter()
            .map(|g| {
                let consumers: Vec<Json> = g
                    .consumers
                    .iter()
                    .map(|(name, pending, idle)| {
                        let liveness = leases.liveness(&g.name, name, *idle, stale_after);
                        let published = counters.of(&g.name, name);
                        serde_json::json!({
                            "name": name,
                            "pending": pending,
                            "idle_ms": millis(*idle),
                            "live": liveness.is_live(),
                            "state": state(liveness),
                            "lease_left_ms": match liveness {
                                Liveness::Live { lease_left } => Json::from(millis(lease_left)),
                                _ => Json::Null,
                            },
                            "processed": published.map(|c| c.processed),
                            "failed": published.map(|c| c.failed),
                            "counters": published.map(counters_json),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "name": g.name,
                    "lag": g.lag,
                    "entries_read": g.entries_read,
                    "pending": g.pending,
                    "oldest_pending_age_ms": g.oldest_pending_age.map(millis),
                    "consumers": consumers,
                })
            })
            .collect();
        outln!(
            "{}",
            pretty(&serde_json::json!({
                "stream": report.stream,
                "exists": exists,
                "length": report.length,
                "dead_stream": dead,
                "dead_letters": report.dead_letters,
                "groups": groups,
            }))
        );
    } else {
        outln!("stream       {}", report.stream);
        outln!("length       {}", report.length);
        outln!("dead letters {}  ({dead})", report.dead_letters);
        for g in &report.groups {
            // Group and consumer names are anyone's text: escapes are shown, not run.
            outln!("group        {}", printable(&g.name));
            outln!(
                "  lag                {}",
                g.lag.map_or("unknown".into(), |l| l.to_string())
            );
            outln!(
                "  entries read       {}",
                g.entries_read.map_or("unknown".into(), |n| n.to_string())
            );
            outln!("  pending            {}", g.pending);
            outln!(
                "  oldest pending age {}",
                g.oldest_pending_age
                    .map_or("-".into(), |a| format!("{:.1} s", a.as_secs_f64()))
            );
            outln!("  consumers          {}", g.consumers.len());
            for (name, pending, idle) in &g.consumers {
                let liveness = leases.liveness(&g.name, name, *idle, stale_after);
                let how = match liveness {
                    Liveness::Live { lease_left } => {
                        format!(
                            "live (lease renewed, {:.1} s left)",
                            lease_left.as_secs_f64()
                        )
                    }
                    Liveness::Gone => "stale (its lease ran out: stopped or died)".to_owned(),
                    Liveness::Idle { stale: true } => {
                        format!("stale (no lease; idle over {} s)", stale_after.as_secs())
                    }
                    _ => "live (no lease; judged by idle time)".to_owned(),
                };
                // Published by kaiju-rs listeners only: "-" for a Python kaiju consumer.
                let (processed, failed, when) = counters.of(&g.name, name).map_or_else(
                    || ("-".to_owned(), "-".to_owned(), String::new()),
                    |c| {
                        let when = c
                            .published_ago
                            .map(|d| format!(" (as of {:.1} s ago)", d.as_secs_f64()))
                            .unwrap_or_default();
                        (c.processed.to_string(), c.failed.to_string(), when)
                    },
                );
                outln!(
                    "    {}: {how}, {pending} pending, idle {:.1} s, processed {processed}, failed {failed}{when}",
                    printable(name),
                    idle.as_secs_f64()
                );
            }
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

/// The hash of the consumer-name leases of `app`'s listeners on `topic`.
fn lease_key(env: &str, app: &str, topic: &str) -> Result<String, Failure> {
    Namespace::new(env, app)
        .and_then(|ns| ns.stream_consumers(topic))
        .map(kaiju_core::Key::into_string)
        .map_err(|e| Failure::usage(e.to_string()))
}

/// The hash of the counters `app`'s listeners on `topic` publish.
fn stats_key(env: &str, app: &str, topic: &str) -> Result<String, Failure> {
    Namespace::new(env, app)
        .and_then(|ns| ns.stream_stats(topic))
        .map(kaiju_core::Key::into_string)
        .map_err(|e| Failure::usage(e.to_string()))
}

/// A consumer's published counters, for JSON.
fn counters_json(c: &admin::ConsumerCounters) -> Json {
    serde_json::json!({
        "processed": c.processed,
        "failed": c.failed,
        "retried": c.retried,
        "rejected": c.rejected,
        "dead_lettered": c.dead_lettered,
        "claimed": c.claimed,
        "started_at_ms": c.started_at_ms,
        "published_at_ms": c.published_at_ms,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A consumer's state, for JSON: `live`, `gone` (its lease ran out), `idle` or `stale` (no
/// lease: by idle time).
fn state(liveness: Liveness) -> &'static str {
    match liveness {
        Liveness::Live { .. } => "live",
        Liveness::Gone => "gone",
        Liveness::Idle { stale: true } => "stale",
        _ => "idle",
    }
}

/// A line of the repair's report: on stdout, or on stderr when stdout carries JSON.
macro_rules! say {
    ($json:expr, $($arg:tt)*) => {
        if $json {
            errln!($($arg)*)
        } else {
            outln!($($arg)*)
        }
    };
}
use say;

/// A failed repair of `key`, named in the message.
fn repair_failure(key: &str, e: kaiju_streams::StreamError) -> Failure {
    let mut failure = redis_failure(e);
    failure.message = format!("repairing {key}: {}", failure.message);
    failure
}
