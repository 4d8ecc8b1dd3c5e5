//! `kaiju dead`: an app's dead letters, listed, replayed or purged.

use kaiju_core::{Codec as _, Value};
use kaiju_streams::admin::{self, DeadLetters};

use super::{keys, printable, redis_failure};
use crate::connect::connect;
use crate::json::to_json;
use crate::out::{errln, outln};
use crate::{Conn, Failure};

/// `kaiju dead APP [TOPIC] list|replay|purge`.
pub(super) async fn dead(
    conn: Conn,
    args: Vec<String>,
    count: usize,
    include_handled: bool,
    _json: bool,
) -> Result<(), Failure> {
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
    let letters =
        DeadLetters::new(transport, stream.clone(), dead.clone()).include_handled(include_handled);
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
