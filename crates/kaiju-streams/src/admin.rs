//! Looking at a stream from outside its listeners: its groups, lag and pending entries
//! ([`inspect`]), its dead letters ([`DeadLetters`]: list, replay, purge), and its ids
//! ([`check_ids`], [`repair_ids`]: a stream whose ids ran ahead of the clock). The `kaiju`
//! command-line tool is built on these.

mod ids;
mod leases;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::{Classify, Transport};

use crate::{Result, StreamError};

pub(crate) use ids::check_newest_entry;
pub use ids::{
    IdProblem, IdWarning, KIND_FUTURE_ID, KIND_FUTURE_ID_HANDLED, MAX_AHEAD, Repaired,
    RepairedDead, check_ids, repair_dead_ids, repair_ids,
};
pub use leases::{Leases, Liveness, leases};

/// Most entries one page of [`DeadLetters::list`] or one replay round trip handles.
pub const MAX_PAGE: usize = 1000;

/// A stream, its consumer groups and its dead-letter stream, as [`inspect`] saw them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StreamReport {
    /// The stream key.
    pub stream: String,
    /// `XLEN`; `0` when the stream does not exist.
    pub length: u64,
    /// The consumer groups.
    pub groups: Vec<GroupReport>,
    /// `XLEN` of the dead-letter stream.
    pub dead_letters: u64,
}

/// One consumer group of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GroupReport {
    /// The group name.
    pub name: String,
    /// Entries not yet delivered to the group (`None` when Redis cannot tell).
    pub lag: Option<u64>,
    /// Entries delivered and not acknowledged.
    pub pending: u64,
    /// How long the oldest pending entry has waited since its last delivery.
    pub oldest_pending_age: Option<Duration>,
    /// The consumers: name, pending entries, idle time.
    pub consumers: Vec<(String, u64, Duration)>,
}

fn field<'a>(map: &'a HashMap<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name)
}

/// Reports on `stream` and its dead-letter stream `dead` (read-only; the stream need not exist).
pub async fn inspect(transport: &Transport, stream: &str, dead: &str) -> Result<StreamReport> {
    let pool = transport.pool();
    let length: u64 = pool.xlen(stream).await.classify()?;
    let dead_letters: u64 = pool.xlen(dead).await.classify()?;
    let mut report = StreamReport {
        stream: stream.to_owned(),
        length,
        groups: Vec::new(),
        dead_letters,
    };
    if length == 0 {
        let exists: i64 = pool.exists(stream).await.classify()?;
        if exists == 0 {
            return Ok(report);
        }
    }
    let groups: Vec<HashMap<String, Value>> = pool.xinfo_groups(stream).await.classify()?;
    for g in groups {
        let Some(name) = field(&g, "name").and_then(Value::as_string) else {
            continue;
        };
        let (lag, pending, oldest_pending_age) = group_state(transport, stream, &g).await?;
        let consumers: Vec<HashMap<String, Value>> = pool
            .xinfo_consumers(stream, name.as_str())
            .await
            .classify()?;
        report.groups.push(GroupReport {
            lag,
            pending,
            oldest_pending_age,
            consumers: consumers
                .iter()
                .filter_map(|c| {
                    Some((
                        field(c, "name")?.as_string()?,
                        field(c, "pending").and_then(Value::as_u64).unwrap_or(0),
                        Duration::from_millis(
                            field(c, "idle").and_then(Value::as_u64).unwrap_or(0),
                        ),
                    ))
                })
                .collect(),
            name,
        });
    }
    Ok(report)
}

/// A group's lag, pending count and the age of its oldest pending entry, from the group's
/// `XINFO GROUPS` entry (and one `XPENDING` when something is pending). The listener's stats
/// use it too.
pub(crate) async fn group_state(
    transport: &Transport,
    stream: &str,
    info: &HashMap<String, Value>,
) -> Result<(Option<u64>, u64, Option<Duration>)> {
    let pending = field(info, "pending").and_then(Value::as_u64).unwrap_or(0);
    let mut oldest = None;
    if pending > 0
        && let Some(group) = field(info, "name").and_then(Value::as_string)
    {
        let first: Vec<(String, String, u64, u64)> = transport
            .pool()
            .xpending(stream, group.as_str(), ("-", "+", 1))
            .await
            .classify()?;
        oldest = first
            .first()
            .map(|(_, _, idle, _)| Duration::from_millis(*idle));
    }
    Ok((field(info, "lag").and_then(Value::as_u64), pending, oldest))
}

/// One dead letter: why the listener gave up on an entry, and the entry's original fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub id: String,
    /// `malformed`, `rejected` or `exhausted`; [`KIND_FUTURE_ID`] or
    /// [`KIND_FUTURE_ID_HANDLED`] when `kaiju streams --repair` moved it.
    pub kind: String,
    /// The error, as text.
    pub reason: String,
    /// The stream it came from.
    pub stream: String,
    /// Its id there.
    pub origin_id: String,
    /// How often it was delivered.
    pub deliveries: u64,
    /// The original fields (normally one, `_`: the msgpack `[body, headers]`).
    pub fields: Vec<(Bytes, Bytes)>,
}

/// The dead-letter stream of one listener stream.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    transport: Transport,
    stream: String,
    dead: String,
    include_handled: bool,
}

/// What [`DeadLetters::replay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Replayed {
    /// Entries written back to the stream and removed from the dead letters.
    pub replayed: u64,
    /// Dead letters left alone: they came from another stream, or hold no fields.
    pub skipped: u64,
    /// Dead letters left alone because every group had already handled them (kind
    /// [`KIND_FUTURE_ID_HANDLED`]; see [`DeadLetters::include_handled`]).
    pub handled: u64,
}

impl DeadLetters {
    /// The dead letters `dead` of the stream `stream` (the keys
    /// [`Namespace::stream`](kaiju_core::Namespace::stream) and
    /// [`Namespace::dead_letter_stream`](kaiju_core::Namespace::dead_letter_stream) give).
    pub fn new(transport: Transport, stream: impl Into<String>, dead: impl Into<String>) -> Self {
        Self {
            transport,
            stream: stream.into(),
            dead: dead.into(),
            include_handled: false,
        }
    }

    /// Whether [`replay`](Self::replay) also writes back the dead letters of kind
    /// [`KIND_FUTURE_ID_HANDLED`]: entries `kaiju streams --repair` moved that every group had
    /// already been given and acknowledged. Replaying them runs them again (a request handled
    /// twice), so by default (`false`) they are left alone and counted in
    /// [`Replayed::handled`].
    #[must_use]
    pub fn include_handled(mut self, yes: bool) -> Self {
        self.include_handled = yes;
        self
    }

    /// How many there are.
    pub async fn len(&self) -> Result<u64> {
        self.transport
            .pool()
            .xlen(self.dead.as_str())
            .await
            .classify()
            .map_err(Into::into)
    }

    /// Up to `count` (at most [`MAX_PAGE`]) dead letters, oldest first, after the id `after`
    /// (exclusive; `None` starts at the oldest).
    pub async fn list(&self, after: Option<&str>, count: usize) -> Result<Vec<DeadLetter>> {
        self.range(after, "+", count).await
    }

    /// Up to `count` dead letters after `after` (exclusive) and up to `until` (inclusive).
    async fn range(
        &self,
        after: Option<&str>,
        until: &str,
        count: usize,
    ) -> Result<Vec<DeadLetter>> {
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let count = Some(count.clamp(1, MAX_PAGE) as u64);
        let reply: Value = self
            .transport
            .pool()
            .xrange(self.dead.as_str(), start.as_str(), until, count)
            .await
            .classify()?;
        parse_entries(reply)
    }

    /// The id of the newest dead letter, if any.
    async fn newest(&self) -> Result<Option<String>> {
        let reply: Value = self
            .transport
            .pool()
            .xrevrange(self.dead.as_str(), "+", "-", Some(1))
            .await
            .classify()?;
        Ok(parse_entries(reply)?.pop().map(|d| d.id))
    }

    /// Writes every dead letter of this stream back to it (its original fields, a new id) and
    /// removes it from the dead letters, `batch` at a time (at most [`MAX_PAGE`]), calling
    /// `progress(done, total)` after each batch. Only the dead letters that exist when the
    /// replay starts are replayed: one that fails again meanwhile stays dead (no endless loop).
    ///
    /// Each entry is written before it is removed, and the write is sent once: an interruption
    /// can leave an entry both replayed and still dead (replayed twice if run again), never
    /// lost. Dead letters that came from another stream are skipped, so a forged dead letter
    /// cannot make a replay write elsewhere. Dead letters of kind [`KIND_FUTURE_ID_HANDLED`]
    /// (already handled by every group) are left alone unless
    /// [`include_handled`](Self::include_handled) says otherwise.
    pub async fn replay(
        &self,
        batch: usize,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Replayed> {
        let mut done = Replayed::default();
        let Some(until) = self.newest().await? else {
            return Ok(done);
        };
        let total = self.len().await?;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .range(after.as_deref(), &until, batch.clamp(1, MAX_PAGE))
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let (page, handled): (Vec<_>, Vec<_>) = page
                .into_iter()
                .partition(|d| self.include_handled || d.kind != KIND_FUTURE_ID_HANDLED);
            done.handled += handled.len() as u64;
            let (good, bad): (Vec<_>, Vec<_>) = page
                .into_iter()
                .partition(|d| d.stream == self.stream && !d.fields.is_empty());
            done.skipped += bad.len() as u64;
            if !good.is_empty() {
                let pipeline = self.transport.pipeline_once();
                for d in &good {
                    let fields: Vec<(Key, Value)> = d
                        .fields
                        .iter()
                        .map(|(k, v)| (Key::from(k.clone()), Value::Bytes(v.clone())))
                        .collect();
                    let _: () = pipeline
                        .xadd(self.stream.as_str(), false, None, "*", fields)
                        .await
                        .classify()?;
                }
                let written: Vec<Value> = pipeline.all().await.classify()?;
                if written.len() != good.len() {
                    return Err(StreamError::Protocol(format!(
                        "replay wrote {} of {} entries",
                        written.len(),
                        good.len()
                    )));
                }
                let ids: Vec<&str> = good.iter().map(|d| d.id.as_str()).collect();
                let _: u64 = self
                    .transport
                    .pool()
                    .xdel(self.dead.as_str(), ids)
                    .await
                    .classify()?;
                done.replayed += good.len() as u64;
            }
            progress(done.replayed + done.skipped + done.handled, total);
        }
        Ok(done)
    }

    /// Deletes every dead letter; returns how many there were.
    pub async fn purge(&self) -> Result<u64> {
        let n = self.len().await?;
        let _: i64 = self
            .transport
            .pool()
            .del(self.dead.as_str())
            .await
            .classify()?;
        Ok(n)
    }
}

/// `XRANGE` entries as dead letters. Entries that are not dead letters still list, with the
/// fields they have.
pub(crate) fn parse_entries(reply: Value) -> Result<Vec<DeadLetter>> {
    let entries = raw_entries(reply)?;
    let mut out = Vec::with_capacity(entries.len());
    for (id, pairs) in entries {
        let mut d = DeadLetter {
            id,
            kind: String::new(),
            reason: String::new(),
            stream: String::new(),
            origin_id: String::new(),
            deliveries: 0,
            fields: Vec::new(),
        };
        for (k, v) in pairs {
            let text = || String::from_utf8_lossy(&v).into_owned();
            match &k[..] {
                b"kind" => d.kind = text(),
                b"reason" => d.reason = text(),
                b"stream" => d.stream = text(),
                b"id" => d.origin_id = text(),
                b"deliveries" => d.deliveries = text().parse().unwrap_or(0),
                _ => {
                    if let Some(name) = k.strip_prefix(b"field:") {
                        d.fields.push((Bytes::copy_from_slice(name), v));
                    }
                }
            }
        }
        out.push(d);
    }
    Ok(out)
}

/// An entry's id and its fields.
type RawEntry = (String, Vec<(Bytes, Bytes)>);

/// `XRANGE` entries as ids and fields.
fn raw_entries(reply: Value) -> Result<Vec<RawEntry>> {
    let entries = match reply {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => return Err(StreamError::Protocol(format!("XRANGE replied {other:?}"))),
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            return Err(StreamError::Protocol(
                "an XRANGE entry is not an array".into(),
            ));
        };
        if parts.len() != 2 {
            return Err(StreamError::Protocol(
                "an XRANGE entry is not [id, fields]".into(),
            ));
        }
        let raw_fields = parts.pop().unwrap_or(Value::Null);
        let id = parts.pop().and_then(|v| v.as_string()).unwrap_or_default();
        let pairs: Vec<(Bytes, Bytes)> = match raw_fields {
            Value::Array(flat) => flat
                .chunks(2)
                .filter_map(|p| Some((bytes(p.first()?)?, bytes(p.get(1)?)?)))
                .collect(),
            Value::Map(map) => map
                .inner()
                .into_iter()
                .filter_map(|(k, v)| Some((Bytes::from(k.as_bytes().to_vec()), bytes(&v)?)))
                .collect(),
            _ => Vec::new(),
        };
        out.push((id, pairs));
    }
    Ok(out)
}

fn bytes(v: &Value) -> Option<Bytes> {
    match v {
        Value::Bytes(b) => Some(b.clone()),
        Value::String(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
        Value::Integer(i) => Some(Bytes::from(i.to_string())),
        _ => None,
    }
}
