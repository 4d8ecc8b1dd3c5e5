//! Stream ids ahead of the server clock: the check the listener and `kaiju streams` run
//! ([`check_ids`]), and the repair ([`repair_ids`]).
//!
//! Anyone allowed to `XADD` into a stream may choose the new entry's id, and Redis only asks
//! that it be larger than the last one. An entry with the largest id there is
//! (`18446744073709551615-18446744073709551615`) makes every later `XADD` fail with "exhausted
//! the last possible ID"; an entry far in the future makes every later id follow it. No ACL
//! rule can stop this (ACLs name commands and keys, not ids). Deleting the entry does not
//! help: the stream keeps its last id.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{ClusterHash, CustomCommand, Value};
use kaiju_transport::{Classify, Transport};

use crate::id::StreamId;
use crate::{Result, StreamError};

/// How far a stream's last id may be ahead of the server clock before [`check_ids`] reports
/// it, and the default of what [`repair_ids`] moves away: one day. Clocks of servers and
/// clients drift by far less; an id a day ahead was chosen by a writer, not the clock.
pub const MAX_AHEAD: Duration = Duration::from_secs(24 * 60 * 60);

/// Entries [`repair_ids`] moves per round trip.
const MOVE_PAGE: u64 = 100;

/// What is wrong with a stream's last id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdProblem {
    /// The last id is the largest there is: every `XADD` fails until the stream is repaired.
    Exhausted,
    /// The last id's time is the largest there is: only its sequence number can still grow,
    /// and every `XADD` fails once it has.
    NearMaximum,
    /// The last id is ahead of the server clock by this much (more than [`MAX_AHEAD`]): every
    /// new entry gets an id after it, and ids no longer tell when entries were written.
    Ahead(Duration),
}

/// A stream whose last id is wrong, as [`check_ids`] found it. Its `Display` says what it
/// means and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdWarning {
    /// The stream key.
    pub stream: String,
    /// Its last id: the newest entry's, or a group's last delivered id when that is larger.
    pub last_id: String,
    /// What is wrong with it.
    pub problem: IdProblem,
}

impl std::fmt::Display for IdWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (stream, id) = (&self.stream, &self.last_id);
        match self.problem {
            IdProblem::Exhausted => write!(
                f,
                "stream {stream} is unusable: its last id is {id}, the largest there is, so every XADD fails (someone wrote an entry with that id)"
            )?,
            IdProblem::NearMaximum => write!(
                f,
                "stream {stream} is nearly unusable: its last id {id} has the largest time there is, and XADD fails once its sequence runs out (someone wrote an entry with that id)"
            )?,
            IdProblem::Ahead(by) => write!(
                f,
                "stream {stream}: its last id {id} is {} hours ahead of the server clock (someone wrote an entry with an id in the future; every new id follows it)",
                by.as_secs() / 3600
            )?,
        }
        if self.stream.contains("._dead.") {
            // `kaiju streams <app> _dead.<topic>` is no topic: the repair of the stream whose
            // dead letters these are mends its dead-letter stream first.
            f.write_str(
                "; repair it with `kaiju streams <app> <topic> --repair` (the topic whose dead letters these are: it mends the dead-letter stream first)",
            )
        } else {
            f.write_str("; repair it with `kaiju streams <app> <topic> --repair`")
        }
    }
}

/// Checks the last id of `stream` against the server clock: `Some` when it is the largest
/// id there is, or ahead of the clock by more than [`MAX_AHEAD`]. A stream that does not
/// exist is fine. The last id is the largest of the newest entry's and the groups' last
/// delivered ids (an entry a group read stays its last delivered id after it is deleted).
///
/// Read-only, and only commands the listener's ACL rule grants: `TIME`, `EXISTS`,
/// `XREVRANGE ... COUNT 1` and `XINFO GROUPS`. Without `+time`, this process's clock is used
/// (a day of tolerance absorbs the difference).
pub async fn check_ids(transport: &Transport, stream: &str) -> Result<Option<IdWarning>> {
    check(transport, stream, true).await
}

/// [`check_ids`] on the newest entry alone, without `XINFO GROUPS`: the listener's check, so
/// that every `XINFO` it sends stays inside its trim script (one atomic step, see
/// `trim_delivered.lua`).
pub(crate) async fn check_newest_entry(
    transport: &Transport,
    stream: &str,
) -> Result<Option<IdWarning>> {
    check(transport, stream, false).await
}

async fn check(transport: &Transport, stream: &str, groups: bool) -> Result<Option<IdWarning>> {
    let now = match server_time_ms(transport, stream).await {
        Ok(now) => now,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let exists: i64 = transport.pool().exists(stream).await.classify()?;
    if exists == 0 {
        return Ok(None);
    }
    let reply: Value = transport
        .pool()
        .xrevrange(stream, "+", "-", Some(1))
        .await
        .classify()?;
    let top = super::raw_entries(reply)?
        .first()
        .and_then(|(id, _)| StreamId::parse(id.as_bytes()));
    let delivered = if groups {
        group_ids(transport, stream).await?
    } else {
        Vec::new()
    };
    let last = delivered.into_iter().map(|(_, id)| id).chain(top).max();
    let Some(last) = last else {
        return Ok(None);
    };
    Ok(problem(last, now, MAX_AHEAD).map(|problem| IdWarning {
        stream: stream.to_owned(),
        last_id: last.to_string(),
        problem,
    }))
}

fn problem(last: StreamId, now_ms: u64, max_ahead: Duration) -> Option<IdProblem> {
    if last.ms == u64::MAX && last.seq == u64::MAX {
        Some(IdProblem::Exhausted)
    } else if last.ms == u64::MAX {
        Some(IdProblem::NearMaximum)
    } else if last.ms > cutoff(now_ms, max_ahead).ms {
        Some(IdProblem::Ahead(Duration::from_millis(last.ms - now_ms)))
    } else {
        None
    }
}

/// What [`repair_ids`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Repaired {
    /// Entries whose id was ahead of the cutoff, moved to the dead-letter stream
    /// (`kind:` [`KIND_FUTURE_ID`] or [`KIND_FUTURE_ID_HANDLED`]).
    pub moved: u64,
    /// Of [`moved`](Self::moved), those every group had already been given and acknowledged
    /// (`kind:` [`KIND_FUTURE_ID_HANDLED`]; a replay would run them again).
    pub moved_handled: u64,
    /// The stream's last id before.
    pub last_id_before: String,
    /// The stream's last id after, when it was set (`None`: it was fine and left alone).
    pub last_id_after: Option<String>,
    /// The consumer groups whose last delivered id was ahead of the cutoff and was set back
    /// to the new last id.
    pub groups_reset: Vec<String>,
}

/// The last id an entry may have: `max_ahead` past the server's time `now_ms` (ms).
fn cutoff(now_ms: u64, max_ahead: Duration) -> StreamId {
    let max_ahead_ms = u64::try_from(max_ahead.as_millis()).unwrap_or(u64::MAX);
    StreamId {
        ms: now_ms.saturating_add(max_ahead_ms),
        seq: u64::MAX,
    }
}

/// Repairs a stream whose ids ran ahead of the server clock (or out of ids), without losing
/// an entry, a consumer group or a pending entry. Any id later than the server's time plus
/// `max_ahead` ([`MAX_AHEAD`] is the usual value) is *ahead*:
///
/// 1. every entry with an id ahead is copied to the dead-letter stream `dead`, its fields
///    kept, then deleted from the stream (copied first and written once: an interruption can
///    leave an entry both copied and still there, never neither). One that some group has not
///    handled yet (pending there, with its delivery count from `XPENDING`, or not yet
///    delivered) is a dead letter of kind [`KIND_FUTURE_ID`], which `kaiju dead replay`
///    writes back with a fresh id. One that every group has been given and acknowledged is of
///    kind [`KIND_FUTURE_ID_HANDLED`], and its reason says so: replay skips it unless forced,
///    since it would run again. The dead-letter stream must accept writes: mend it first
///    with [`repair_dead_ids`];
/// 2. the stream's last id is set (`XSETID`, with `ENTRIESADDED` unchanged and `MAXDELETEDID`
///    on Redis 7) to the largest of: its newest remaining entry, the last delivered id of
///    every group that is not ahead, and the server's time now. New entries get ids after it;
///    none of them can fall behind an id a group has already been given;
/// 3. every group whose last delivered id is ahead is set back to that id (`XGROUP SETID`,
///    with `ENTRIESREAD` on Redis 7 so its lag is known): it has been given every entry up to
///    there, and reads the new ones.
///
/// Groups, consumers and pending lists are left as they are. A pending entry that was moved
/// stays pending until its listener finds it deleted and acks it (kaiju-rs listeners count it
/// in `stats().lost`); its copy is in the dead letters. Nothing is done when the last id and
/// every group are fine. If entries ahead keep arriving while this runs (a writer still at
/// work), it tries three times and then fails, having lost nothing.
pub async fn repair_ids(
    transport: &Transport,
    stream: &str,
    dead: &str,
    max_ahead: Duration,
) -> Result<Repaired> {
    let mut done = Repaired::default();
    for _ in 0..3 {
        let now = server_time_ms(transport, stream).await?;
        let cutoff = cutoff(now, max_ahead);
        if !last_id_settable_back(transport)
            && stream_info(transport, stream)
                .await?
                .is_some_and(|info| info.last_id > cutoff)
        {
            // Refused before anything moves: the last id could never be set back.
            return Err(StreamError::NotRepairableInPlace {
                stream: stream.to_owned(),
            });
        }
        let moved = move_ahead(transport, stream, dead, cutoff, now).await?;
        done.moved += moved.all;
        done.moved_handled += moved.handled;
        let Some(info) = stream_info(transport, stream).await? else {
            return Ok(done);
        };
        if done.last_id_before.is_empty() {
            done.last_id_before = info.last_id.to_string();
        }
        let groups = group_ids(transport, stream).await?;
        let behind = |id: &StreamId| *id <= cutoff;
        if behind(&info.last_id) && groups.iter().all(|(_, id)| behind(id)) {
            return Ok(done);
        }
        let target = groups
            .iter()
            .map(|(_, id)| *id)
            .filter(behind)
            .chain(info.top)
            .chain([StreamId { ms: now, seq: 0 }])
            .max()
            .unwrap_or(StreamId { ms: now, seq: 0 });
        if info.top.is_some_and(|top| !behind(&top)) {
            continue; // an entry ahead arrived after the move: move it too
        }
        let target_text = target.to_string();
        let args = xsetid_args(stream, &target_text, info.entries_added);
        let set: std::result::Result<Value, _> = transport
            .pool()
            .custom(command("XSETID"), args)
            .await
            .classify();
        if let Err(e) = set {
            if e.is_last_id_below_deleted() {
                return Err(StreamError::NotRepairableInPlace {
                    stream: stream.to_owned(),
                });
            }
            // Refused because an entry ahead arrived between the check and XSETID: move it
            // too. Any other refusal (a permission, a server error) is the caller's to see.
            let top = stream_info(transport, stream).await?.and_then(|i| i.top);
            if top.is_some_and(|top| !behind(&top)) {
                continue;
            }
            return Err(e.into());
        }
        done.last_id_after = Some(target_text.clone());
        for (name, id) in &groups {
            if behind(id) {
                continue;
            }
            let mut args: Vec<Value> = vec![
                "SETID".into(),
                stream.into(),
                name.as_str().into(),
                target_text.as_str().into(),
            ];
            if let Some(added) = info.entries_added {
                args.extend(["ENTRIESREAD".into(), added.to_string().into()]);
            }
            let _: Value = transport
                .pool()
                .custom(command_at("XGROUP", stream), args)
                .await
                .classify()?;
            done.groups_reset.push(name.clone());
        }
        return Ok(done);
    }
    Err(StreamError::Protocol(format!(
        "entries with ids ahead of the server clock kept arriving in {stream} while it was repaired (a writer is still at work; stop it and run the repair again); {} were moved to {dead}, nothing was lost",
        done.moved
    )))
}

/// The dead-letter `kind` of an entry [`repair_ids`] moved: ahead of the clock, and not yet
/// handled by every group (pending in one, or not yet delivered to one). Replaying it is right.
pub const KIND_FUTURE_ID: &str = "future-id";

/// The dead-letter `kind` of an entry [`repair_ids`] moved that every consumer group had
/// already been given and acknowledged (its id at or before the group's last delivered id,
/// and not in the group's pending list). Replaying it runs it again (a request handled twice),
/// so [`DeadLetters::replay`](super::DeadLetters::replay) leaves it alone unless told
/// otherwise; it is kept as a record of what the stream held.
pub const KIND_FUTURE_ID_HANDLED: &str = "future-id-handled";

/// How many entries [`move_ahead`] moved, and how many of them every group had handled.
#[derive(Default)]
struct Moved {
    all: u64,
    handled: u64,
}

/// Copies every entry after `cutoff` to `dead`, then deletes it from `stream`.
async fn move_ahead(
    transport: &Transport,
    stream: &str,
    dead: &str,
    cutoff: StreamId,
    now: u64,
) -> Result<Moved> {
    let mut moved = Moved::default();
    // Read before any entry is moved, and before any group is set back.
    let groups = group_ids(transport, stream).await?;
    loop {
        let start = format!("({cutoff}");
        let reply: Value = transport
            .pool()
            .xrange(stream, start.as_str(), "+", Some(MOVE_PAGE))
            .await
            .classify()?;
        let entries = super::raw_entries(reply)?;
        if entries.is_empty() {
            return Ok(moved);
        }
        for (id, fields) in &entries {
            let parsed = StreamId::parse(id.as_bytes());
            let ahead = parsed.map_or(0, |i| i.ms.saturating_sub(now));
            let (handled, deliveries) = delivery_state(transport, stream, &groups, id).await?;
            let hours = ahead / 3_600_000;
            let (kind, reason) = if handled {
                let names: Vec<&str> = groups.iter().map(|(n, _)| n.as_str()).collect();
                (
                    KIND_FUTURE_ID_HANDLED,
                    format!(
                        "its id was {hours} hours ahead of the server clock; moved here by `kaiju streams --repair`; already delivered to and acked by every group ({}): replaying runs it again (`kaiju dead replay` skips it unless given --include-handled)",
                        names.join(", ")
                    ),
                )
            } else {
                (
                    KIND_FUTURE_ID,
                    format!(
                        "its id was {hours} hours ahead of the server clock; moved here by `kaiju streams --repair` (not yet handled by every group; replay writes it back with a new id)"
                    ),
                )
            };
            let text = |s: &str| Bytes::copy_from_slice(s.as_bytes());
            let mut letter: Vec<(Key, Value)> = vec![
                ("reason".into(), Value::Bytes(text(&reason))),
                ("kind".into(), Value::Bytes(text(kind))),
                ("stream".into(), Value::Bytes(text(stream))),
                ("id".into(), Value::Bytes(text(id))),
                (
                    "deliveries".into(),
                    Value::Bytes(text(&deliveries.to_string())),
                ),
            ];
            for (name, value) in fields {
                let mut prefixed = b"field:".to_vec();
                prefixed.extend_from_slice(name);
                letter.push((
                    Key::from(Bytes::from(prefixed)),
                    Value::Bytes(value.clone()),
                ));
            }
            // Written once: a copy sent twice after a lost reply would be a duplicate.
            let _: Value = transport
                .once()
                .xadd(dead, false, None, "*", letter)
                .await
                .classify()
                .map_err(|e| {
                    if e.is_retryable() {
                        StreamError::from(e)
                    } else {
                        // Say which stream refused: the dead-letter stream may be bricked too.
                        StreamError::Protocol(format!(
                            "cannot write the dead letter of {stream} entry {id} to {dead} (repair it first with `repair_dead_ids`): {e}"
                        ))
                    }
                })?;
            moved.handled += u64::from(handled);
        }
        let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
        let _: u64 = transport.pool().xdel(stream, ids).await.classify()?;
        moved.all += entries.len() as u64;
    }
}

/// Whether every group of `groups` has been given entry `id` and acknowledged it, and the
/// most deliveries it has had in a group where it is pending (`XPENDING`; 0 when it is
/// pending nowhere). With no group, nobody has handled it.
async fn delivery_state(
    transport: &Transport,
    stream: &str,
    groups: &[(String, StreamId)],
    id: &str,
) -> Result<(bool, u64)> {
    let parsed = StreamId::parse(id.as_bytes());
    let mut handled = !groups.is_empty();
    let mut deliveries = 0;
    for (name, last_delivered) in groups {
        // The idle time is -1 for an entry handed back to the group (XNACK, Redis 8.8).
        let pending: Vec<(String, String, i64, u64)> = transport
            .pool()
            .xpending(stream, name.as_str(), (id, id, 1))
            .await
            .classify()?;
        if let Some((_, _, _, count)) = pending.first() {
            deliveries = deliveries.max(*count);
            handled = false;
        } else if parsed.is_none_or(|p| p > *last_delivered) {
            handled = false; // not yet delivered to this group
        }
    }
    Ok((handled, deliveries))
}

/// What [`repair_dead_ids`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RepairedDead {
    /// The dead-letter stream's last id before.
    pub last_id_before: String,
    /// Its last id after (`None`: it was fine and left alone).
    pub last_id_after: Option<String>,
    /// Dead letters whose id was ahead of the clock, written again with a new id (their
    /// fields kept, plus `repaired-from-id`: the id they had).
    pub rewritten: u64,
}

/// Mends a dead-letter stream whose ids ran ahead of the server clock (or out of ids), so
/// that dead letters can be written to it again; [`repair_ids`] needs that, and so does every
/// listener. Run it before [`repair_ids`] (`kaiju streams --repair` does).
///
/// A dead-letter stream is a list of letters; an entry's id there only orders them. So its
/// entries ahead of the clock are kept, not moved: in one `MULTI`/`EXEC` transaction under
/// `WATCH` (applied whole, or not at all when a letter arrived meanwhile: nothing lost) they
/// are deleted, the last id is set (`XSETID`, with
/// `ENTRIESADDED`/`MAXDELETEDID` on Redis 7) to the larger of its newest remaining entry and
/// the server's time, and they are written again in their order with new ids, each with a
/// field `repaired-from-id` holding the id it had. Groups on the dead-letter stream (kaiju
/// creates none) are left alone. Nothing is done when its last id is fine.
pub async fn repair_dead_ids(
    transport: &Transport,
    dead: &str,
    max_ahead: Duration,
) -> Result<RepairedDead> {
    // WATCH and MULTI/EXEC need one connection: EXEC applies nothing if a letter was written
    // (or anything else changed the key) after the WATCH.
    let connection = transport.dedicated_connection().await?;
    let result = repair_dead_on(transport, connection.client(), dead, max_ahead).await;
    let _ = connection.close().await;
    result
}

async fn repair_dead_on(
    transport: &Transport,
    client: &Client,
    dead: &str,
    max_ahead: Duration,
) -> Result<RepairedDead> {
    let mut done = RepairedDead::default();
    for _ in 0..3 {
        let now = server_time_ms(transport, dead).await?;
        let cutoff = cutoff(now, max_ahead);
        let _: () = client.watch(dead).await.classify()?;
        let Some(info) = stream_info_on(client, dead).await? else {
            let _: () = client.unwatch().await.classify()?;
            return Ok(done);
        };
        done.last_id_before = info.last_id.to_string();
        if info.last_id <= cutoff {
            let _: () = client.unwatch().await.classify()?;
            return Ok(done);
        }
        let start = format!("({cutoff}");
        let reply: Value = client
            .xrange(dead, start.as_str(), "+", None)
            .await
            .classify()?;
        let ahead = super::raw_entries(reply)?;
        let kept: Value = client
            .xrevrange(dead, cutoff.to_string().as_str(), "-", Some(1))
            .await
            .classify()?;
        let kept_top = super::raw_entries(kept)?
            .first()
            .and_then(|(id, _)| StreamId::parse(id.as_bytes()));
        let target = kept_top
            .into_iter()
            .chain([StreamId { ms: now, seq: 0 }])
            .max()
            .unwrap_or(StreamId { ms: now, seq: 0 });
        let target_text = target.to_string();
        let groups: Vec<HashMap<String, Value>> = client.xinfo_groups(dead).await.classify()?;
        // No group reads it (kaiju creates none): the stream is written again whole, which
        // every server allows (Redis 7.2+ and Valkey never set a last id back in place).
        let rewrite = groups.is_empty();
        let kept = if rewrite {
            let kept: Value = client
                .xrange(dead, "-", cutoff.to_string().as_str(), None)
                .await
                .classify()?;
            super::raw_entries(kept)?
        } else if last_id_settable_back(transport) {
            Vec::new()
        } else {
            let _: () = client.unwatch().await.classify()?;
            return Err(StreamError::NotRepairableInPlace {
                stream: dead.to_owned(),
            });
        };
        let tx = client.multi();
        if rewrite {
            let _: () = tx.del(dead).await.classify()?;
            for (id, fields) in &kept {
                let _: () = tx
                    .xadd(dead, false, None, id.as_str(), entry_fields(fields))
                    .await
                    .classify()?;
            }
        } else {
            if !ahead.is_empty() {
                let ids: Vec<&str> = ahead.iter().map(|(id, _)| id.as_str()).collect();
                let _: () = tx.xdel(dead, ids).await.classify()?;
            }
            let args = xsetid_args(dead, &target_text, info.entries_added);
            let _: () = tx.custom(command("XSETID"), args).await.classify()?;
        }
        // The letters ahead, after the others, in their order, with new ids.
        for (id, fields) in &ahead {
            let mut entry = entry_fields(fields);
            entry.push((
                "repaired-from-id".into(),
                Value::Bytes(Bytes::copy_from_slice(id.as_bytes())),
            ));
            let _: () = tx.xadd(dead, false, None, "*", entry).await.classify()?;
        }
        if !exec_applied(tx, dead).await? {
            continue; // the key changed after WATCH (a letter was written): nothing applied
        }
        done.last_id_after = Some(target_text);
        done.rewritten += ahead.len() as u64;
        return Ok(done);
    }
    Err(StreamError::Protocol(format!(
        "{dead} kept changing while it was repaired (a writer is still at work; stop it and run the repair again); nothing was changed"
    )))
}

/// Runs a `MULTI` under `WATCH`: `false` when the watched key changed, so nothing was applied.
async fn exec_applied(tx: kaiju_transport::fred::clients::Transaction, dead: &str) -> Result<bool> {
    let applied: Value = tx
        .exec(true)
        .await
        .classify()
        .map_err(|e| StreamError::Protocol(format!("cannot repair {dead}: {e}")))?;
    Ok(!applied.is_null())
}

/// `XSETID <stream> <target>`, with `ENTRIESADDED <unchanged> MAXDELETEDID <target>` where
/// the server reports entries added (Redis 7+), so `XINFO`'s lag does not stay unknown.
fn xsetid_args(stream: &str, target: &str, entries_added: Option<u64>) -> Vec<Value> {
    let mut args: Vec<Value> = vec![stream.into(), target.into()];
    if let Some(added) = entries_added {
        args.extend([
            "ENTRIESADDED".into(),
            added.to_string().into(),
            "MAXDELETEDID".into(),
            target.into(),
        ]);
    }
    args
}

/// A raw entry's fields as XADD takes them.
fn entry_fields(fields: &[(Bytes, Bytes)]) -> Vec<(Key, Value)> {
    fields
        .iter()
        .map(|(k, v)| (Key::from(k.clone()), Value::Bytes(v.clone())))
        .collect()
}

/// Whether the server sets a stream's last id back past a deleted entry when told that entry
/// (`XSETID ... MAXDELETEDID`): Redis before 7.2 only. Redis 7.2 made it refuse, and Valkey
/// (which reports `redis_version:7.2.4`) followed. A behaviour, not a command: no probe finds
/// it without changing a stream.
fn last_id_settable_back(transport: &Transport) -> bool {
    let caps = transport.capabilities();
    caps.kind == kaiju_transport::ServerKind::Redis
        && caps.redis_version < kaiju_transport::Version::new(7, 2, 0)
}

/// A `command` sent to the node of `key`.
fn command_at(name: &'static str, key: &str) -> CustomCommand {
    CustomCommand::new_static(
        name,
        ClusterHash::Custom(kaiju_core::key_slot(key.as_bytes())),
        false,
    )
}

/// A `command` whose first argument is its key.
fn command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// The server's time in ms (`TIME`), from the node of `key`.
pub(crate) async fn server_time_ms(transport: &Transport, key: &str) -> Result<u64> {
    let reply: Vec<String> = transport
        .pool()
        .custom(command_at("TIME", key), Vec::<Value>::new())
        .await
        .classify()?;
    let number = |i: usize| reply.get(i).and_then(|s| s.parse::<u64>().ok());
    match (number(0), number(1)) {
        (Some(secs), Some(micros)) => Ok(secs.saturating_mul(1000) + micros / 1000),
        _ => Err(StreamError::Protocol(format!("TIME replied {reply:?}"))),
    }
}

/// What `XINFO STREAM` says about ids.
struct StreamInfo {
    last_id: StreamId,
    /// The newest entry's id.
    top: Option<StreamId>,
    /// Redis 7 and later.
    entries_added: Option<u64>,
}

async fn stream_info(transport: &Transport, stream: &str) -> Result<Option<StreamInfo>> {
    let exists: i64 = transport.pool().exists(stream).await.classify()?;
    if exists == 0 {
        return Ok(None);
    }
    let info: HashMap<String, Value> = transport
        .pool()
        .xinfo_stream(stream, false, None)
        .await
        .classify()?;
    parse_stream_info(&info).map(Some)
}

/// [`stream_info`] on one connection (inside a `WATCH`).
async fn stream_info_on(client: &Client, stream: &str) -> Result<Option<StreamInfo>> {
    let exists: i64 = client.exists(stream).await.classify()?;
    if exists == 0 {
        return Ok(None);
    }
    let info: HashMap<String, Value> = client.xinfo_stream(stream, false, None).await.classify()?;
    parse_stream_info(&info).map(Some)
}

fn parse_stream_info(info: &HashMap<String, Value>) -> Result<StreamInfo> {
    let id = |v: Option<&Value>| {
        v.and_then(Value::as_string)
            .and_then(|s| StreamId::parse(s.as_bytes()))
    };
    let last_id = id(info.get("last-generated-id"))
        .ok_or_else(|| StreamError::Protocol("XINFO STREAM has no last-generated-id".into()))?;
    let top = match info.get("last-entry") {
        Some(Value::Array(entry)) => id(entry.first()),
        _ => None,
    };
    Ok(StreamInfo {
        last_id,
        top,
        entries_added: info.get("entries-added").and_then(Value::as_u64),
    })
}

/// Each group's name and last delivered id.
async fn group_ids(transport: &Transport, stream: &str) -> Result<Vec<(String, StreamId)>> {
    let groups: Vec<HashMap<String, Value>> =
        transport.pool().xinfo_groups(stream).await.classify()?;
    Ok(groups
        .iter()
        .filter_map(|g| {
            let name = g.get("name")?.as_string()?;
            let id = g.get("last-delivered-id")?.as_string()?;
            Some((name, StreamId::parse(id.as_bytes())?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_the_top_of_the_id_space_and_a_day_ahead() {
        let now = 1_700_000_000_000;
        let at = |ms, seq| problem(StreamId { ms, seq }, now, MAX_AHEAD);
        assert_eq!(at(u64::MAX, u64::MAX), Some(IdProblem::Exhausted));
        assert_eq!(at(u64::MAX, 3), Some(IdProblem::NearMaximum));
        assert_eq!(at(now + 86_400_000, 9), None, "a day ahead is tolerated");
        assert_eq!(
            at(now + 86_400_001, 0),
            Some(IdProblem::Ahead(Duration::from_millis(86_400_001)))
        );
        assert_eq!(at(now - 5, 0), None);
        assert_eq!(
            problem(StreamId { ms: 5, seq: 0 }, u64::MAX, MAX_AHEAD),
            None
        );
    }
}
