//! `kaiju dead list|replay|purge APP [TOPIC]`: an app's dead letters, listed, replayed or
//! purged.

use std::io::IsTerminal as _;

use kaiju_core::{Codec as _, Value};
use kaiju_streams::admin::{self, DeadFilter, DeadLetter, DeadLetters};
use serde_json::{Value as Json, json};

use super::{keys, printable, redis_failure};
use crate::connect::connect;
use crate::json::to_json;
use crate::out::{errln, outln};
use crate::{Conn, DeadCommand, DeadFilterArgs, DeadTarget, Failure};

/// `kaiju dead list|replay|purge APP [TOPIC]`; `json` prints one JSON document instead of text.
pub(super) async fn dead(command: DeadCommand, json: bool) -> Result<(), Failure> {
    match command {
        DeadCommand::List {
            conn,
            target,
            count,
        } => list(conn, target, count, json).await,
        DeadCommand::Replay {
            conn,
            target,
            filter,
            include_handled,
            include_malformed,
        } => {
            let (letters, keys) = open(&conn, &target, &filter).await?;
            let letters = letters
                .include_handled(include_handled)
                .include_malformed(include_malformed);
            replay(&letters, &keys, filter.dry_run, json).await
        }
        DeadCommand::Purge {
            conn,
            target,
            filter,
            yes,
        } => {
            if !yes && !filter.dry_run && !std::io::stdin().is_terminal() {
                // Checked before connecting: nothing is read or changed.
                return Err(Failure::usage(
                    "`kaiju dead purge` deletes dead letters and asks first, but stdin is not a terminal: pass --yes to purge without asking (or --dry-run to see what it would delete)",
                ));
            }
            let (letters, keys) = open(&conn, &target, &filter).await?;
            purge(&letters, &keys, &filter, yes, json).await
        }
    }
}

/// The stream and dead-letter stream keys.
struct Keys {
    stream: String,
    dead: String,
}

impl DeadFilterArgs {
    fn to_filter(&self) -> DeadFilter {
        let mut filter = DeadFilter::default()
            .ids(&self.ids)
            .kinds(self.kinds.clone());
        if let Some(age) = self.older_than {
            filter = filter.older_than(age);
        }
        filter
    }
}

/// Connects, and finds the dead letters of `target`: exit 4 when neither its stream nor its
/// dead-letter stream exists (a wrong app, topic or environment).
async fn open(
    conn: &Conn,
    target: &DeadTarget,
    filter: &DeadFilterArgs,
) -> Result<(DeadLetters, Keys), Failure> {
    let (transport, me) = connect(conn).await?;
    let (stream, dead) = keys(&me.env, &target.app, &target.topic)?;
    let letters =
        DeadLetters::new(transport, stream.clone(), dead.clone()).filter(filter.to_filter());
    if !letters.exists().await.map_err(redis_failure)? {
        return Err(Failure::not_found(format!(
            "no stream {} and no dead letters {}: nothing was ever written to app `{}` topic `{}` in environment `{}`",
            printable(&stream),
            printable(&dead),
            printable(&target.app),
            printable(&target.topic),
            printable(&me.env)
        )));
    }
    Ok((letters, Keys { stream, dead }))
}

/// `kaiju dead list`.
async fn list(conn: Conn, target: DeadTarget, count: usize, json: bool) -> Result<(), Failure> {
    let no_filter = DeadFilterArgs {
        ids: Vec::new(),
        kinds: Vec::new(),
        older_than: None,
        dry_run: false,
    };
    let (letters, keys) = open(&conn, &target, &no_filter).await?;
    let total = letters.len().await.map_err(redis_failure)?;
    let now = letters.server_time_ms().await.ok();
    let mut shown = Vec::new();
    let mut after: Option<String> = None;
    while shown.len() < count {
        let page = letters
            .list(after.as_deref(), (count - shown.len()).min(admin::MAX_PAGE))
            .await
            .map_err(redis_failure)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        shown.extend(page);
    }
    if json {
        let document = json!({
            "stream": keys.stream,
            "dead_stream": keys.dead,
            "total": total,
            "letters": shown.iter().map(|d| letter_json(d, now)).collect::<Vec<_>>(),
        });
        outln!("{document}");
        return Ok(());
    }
    outln!("{total} dead letters in {}", printable(&keys.dead));
    for d in &shown {
        print_dead_letter(d, now)?;
    }
    Ok(())
}

/// `kaiju dead replay`.
async fn replay(
    letters: &DeadLetters,
    keys: &Keys,
    dry_run: bool,
    json: bool,
) -> Result<(), Failure> {
    let mut taken = Vec::new();
    let done = if dry_run {
        letters
            .replay_dry_run(100, |d| taken.push(d.clone()))
            .await
            .map_err(redis_failure)?
    } else {
        letters
            .replay(100, |looked_at, total| {
                errln!("replay: looked at {looked_at}/{total} dead letters")
            })
            .await
            .map_err(redis_failure)?
    };
    if json {
        let mut document = json!({
            "stream": keys.stream,
            "dead_stream": keys.dead,
            "dry_run": dry_run,
            "replayed": done.replayed,
            "skipped": done.skipped,
            "malformed": done.malformed,
            "handled": done.handled,
        });
        if dry_run {
            let now = letters.server_time_ms().await.ok();
            document["letters"] = taken.iter().map(|d| letter_json(d, now)).collect();
        }
        outln!("{document}");
        return Ok(());
    }
    if dry_run {
        let now = letters.server_time_ms().await.ok();
        for d in &taken {
            print_dead_letter(d, now)?;
        }
        outln!(
            "dry run: would replay {} into {}; nothing was changed",
            done.replayed,
            printable(&keys.stream)
        );
    } else {
        outln!(
            "replayed {} into {}",
            done.replayed,
            printable(&keys.stream)
        );
    }
    let would = if dry_run { "would leave" } else { "left" };
    if done.skipped > 0 {
        outln!(
            "{would} {} dead letters alone: they name another stream or hold no fields",
            done.skipped
        );
    }
    if done.malformed > 0 {
        outln!(
            "{would} {} dead letters of kind {} alone: they are not kaiju entries and would fail again (--include-malformed replays them)",
            done.malformed,
            admin::KIND_MALFORMED
        );
    }
    if done.handled > 0 {
        outln!(
            "{would} {} dead letters of kind {} alone: every group had already handled them, so a replay runs them again (--include-handled replays them)",
            done.handled,
            admin::KIND_FUTURE_ID_HANDLED
        );
    }
    Ok(())
}

/// `kaiju dead purge`.
async fn purge(
    letters: &DeadLetters,
    keys: &Keys,
    filter: &DeadFilterArgs,
    yes: bool,
    json: bool,
) -> Result<(), Failure> {
    let dead = &keys.dead;
    if filter.dry_run {
        let mut taken = Vec::new();
        let n = letters
            .purge_dry_run(|d| taken.push(d.clone()))
            .await
            .map_err(redis_failure)?;
        let now = letters.server_time_ms().await.ok();
        if json {
            let document = json!({
                "dead_stream": dead,
                "dry_run": true,
                "purged": n,
                "letters": taken.iter().map(|d| letter_json(d, now)).collect::<Vec<_>>(),
            });
            outln!("{document}");
        } else {
            for d in &taken {
                print_dead_letter(d, now)?;
            }
            outln!(
                "dry run: would purge {n} dead letters from {}; nothing was changed",
                printable(dead)
            );
        }
        return Ok(());
    }
    let n = if yes {
        letters.purge().await
    } else {
        // A terminal (checked before connecting): ask, then delete the letters counted in the
        // question and no other (not those the listener writes while the operator reads it).
        let mut last = None;
        let n = letters
            .purge_dry_run(|d| last = Some(d.id.clone()))
            .await
            .map_err(redis_failure)?;
        match last {
            None => Ok(0),
            Some(last) => {
                let shown = printable(dead);
                if !confirm(&format!("delete {n} dead letters from {shown}? [y/N] ")) {
                    return Err(Failure::failed("not confirmed: nothing was purged"));
                }
                letters
                    .clone()
                    .filter(filter.to_filter().up_to(&last))
                    .purge()
                    .await
            }
        }
    }
    .map_err(redis_failure)?;
    if json {
        outln!(
            "{}",
            json!({"dead_stream": dead, "dry_run": false, "purged": n})
        );
    } else {
        outln!("purged {n} dead letters from {}", printable(dead));
    }
    Ok(())
}

/// Asks `question` on stderr and reads the answer from stdin: `y` or `yes` is a yes.
fn confirm(question: &str) -> bool {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err
        .write_all(question.as_bytes())
        .and_then(|()| err.flush());
    drop(err);
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// A dead letter's payload (the field `_`): `Ok(Some([body, headers] or whatever it holds))`,
/// `Ok(None)` without a `_` field, `Err` when it is not msgpack.
fn payload(d: &DeadLetter) -> Result<Option<Value>, String> {
    match d.fields.iter().find(|(k, _)| &k[..] == b"_") {
        None => Ok(None),
        Some((_, v)) => kaiju_core::Msgpack::WIRE
            .decode::<Value>(v)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// How long ago `d` was written, by the server's clock `now` (ms).
fn age_ms(d: &DeadLetter, now: Option<u64>) -> Option<u64> {
    Some(now?.saturating_sub(d.written_at_ms()?))
}

/// One dead letter as JSON: `body` and `headers` when its payload is `[body, headers]`, else
/// `payload` (what it holds) or `payload_error` (why it cannot be read).
fn letter_json(d: &DeadLetter, now: Option<u64>) -> Json {
    let mut letter = json!({
        "id": d.id,
        "kind": d.kind,
        "reason": d.reason,
        "stream": d.stream,
        "origin_id": d.origin_id,
        "deliveries": d.deliveries,
        "age_ms": age_ms(d, now),
        "body": null,
        "headers": null,
    });
    match payload(d) {
        Ok(Some(Value::Array(items))) if items.len() == 2 => {
            letter["body"] = to_json(&items[0]);
            letter["headers"] = to_json(&items[1]);
        }
        Ok(Some(other)) => letter["payload"] = to_json(&other),
        Ok(None) => letter["payload_error"] = json!("no `_` field"),
        Err(e) => letter["payload_error"] = json!(e),
    }
    letter
}

/// `5m`, `3h`, `2d`: an age, roughly.
fn age_text(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn print_dead_letter(d: &DeadLetter, now: Option<u64>) -> Result<(), Failure> {
    let body = match payload(d) {
        Ok(Some(v)) => to_json(&v).to_string(),
        Ok(None) => "<no `_` field>".to_owned(),
        Err(e) => format!("<{e}>"),
    };
    let age = age_ms(d, now).map_or(String::new(), |ms| format!(", {} ago", age_text(ms)));
    outln!(
        "{}  {}  from {} (delivered {}x{age}): {}",
        printable(&d.id),
        printable(&d.kind),
        printable(&d.origin_id),
        d.deliveries,
        printable(&d.reason)
    );
    outln!("    {}", printable(&body));
    Ok(())
}
