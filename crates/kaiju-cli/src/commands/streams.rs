//! `kaiju streams`: an app's stream, its groups and dead letters; `--repair`.

use std::time::Duration;

use kaiju_streams::admin;

use super::{keys, redis_failure};
use crate::connect::connect;
use crate::out::{errln, outln};
use crate::{Conn, Failure};

/// `kaiju streams APP [TOPIC]`.
pub(super) async fn streams(
    conn: Conn,
    app: String,
    topic: String,
    repair: bool,
    max_ahead_hours: u64,
    _json: bool,
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
                "repair: {} of the moved entries had already been handled by every group: dead letters of kind {}, which `kaiju dead replay` skips (they would run again)",
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

/// A failed repair of `key`, named in the message.
fn repair_failure(key: &str, e: kaiju_streams::StreamError) -> Failure {
    let mut failure = redis_failure(e);
    failure.message = format!("repairing {key}: {}", failure.message);
    failure
}
