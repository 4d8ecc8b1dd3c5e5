//! Looking at a stream from outside its listeners: its groups, lag and pending entries
//! ([`inspect`]), its dead letters ([`DeadLetters`]: list, replay, purge), and its ids
//! ([`check_ids`], [`repair_ids`]: a stream whose ids ran ahead of the clock). The `kaiju`
//! command-line tool is built on these.

mod counters;
mod ids;
mod leases;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::{Classify, Transport};

use crate::id::StreamId;
use crate::{Result, StreamError};

pub use counters::{ConsumerCounters, Counters, consumer_counters};
pub(crate) use ids::check_newest_entry;
use ids::server_time_ms;
pub use ids::{
    IdProblem, IdWarning, KIND_FUTURE_ID, KIND_FUTURE_ID_HANDLED, MAX_AHEAD, Repaired,
    RepairedDead, check_ids, repair_dead_ids, repair_ids,
};
pub use leases::{Leases, Liveness, leases};

/// Most entries one page of [`DeadLetters::list`] or one replay round trip handles.
pub const MAX_PAGE: usize = 1000;

/// The dead-letter `kind` of an entry that is not kaiju's envelope: no `_` field, or not
/// msgpack `[body, headers]` with a body the handler reads. Its reason says what it holds.
/// Written back, it fails the same way, so [`DeadLetters::replay`] leaves it alone unless
/// [`include_malformed`](DeadLetters::include_malformed) says otherwise.
pub const KIND_MALFORMED: &str = "malformed";
/// The dead-letter `kind` of an entry over `max_entry_bytes` or `max_decoded_bytes`: never
/// decoded.
pub const KIND_TOO_LARGE: &str = "too_large";
/// The dead-letter `kind` of an entry its handler rejected (for kaiju-rpc: an unknown or
/// forbidden method, invalid params, a request whose deadline had passed).
pub const KIND_REJECTED: &str = "rejected";
/// The dead-letter `kind` of an entry whose handler failed `max_deliveries` times.
pub const KIND_FAILED: &str = "failed";
/// The dead-letter `kind` of an entry whose handler ran past `handler_timeout_ms`
/// `max_deliveries` times (the last failure decides the kind).
pub const KIND_TIMED_OUT: &str = "timed_out";
/// The dead-letter `kind` of an entry whose handler panicked at its last delivery.
pub const KIND_PANICKED: &str = "panicked";
/// The dead-letter `kind` of an entry delivered more than `max_deliveries` times without an
/// outcome (its consumer stopped or died while handling it): not run again.
pub const KIND_EXHAUSTED: &str = "exhausted";

/// Every dead-letter `kind` kaiju-rs writes.
pub const KINDS: [&str; 9] = [
    KIND_MALFORMED,
    KIND_TOO_LARGE,
    KIND_REJECTED,
    KIND_FAILED,
    KIND_TIMED_OUT,
    KIND_PANICKED,
    KIND_EXHAUSTED,
    KIND_FUTURE_ID,
    KIND_FUTURE_ID_HANDLED,
];

/// Which dead letters [`DeadLetters::replay`] and [`DeadLetters::purge`] take: every one when
/// empty (the default); each filter given narrows the choice (a letter must pass them all).
///
/// ```
/// use std::time::Duration;
/// use kaiju_streams::admin::{DeadFilter, KIND_REJECTED};
///
/// let filter = DeadFilter::default()
///     .kinds([KIND_REJECTED])
///     .older_than(Duration::from_secs(3600));
/// assert!(!filter.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadFilter {
    ids: Vec<StreamId>,
    /// Ids given that are not stream ids: they match nothing (kept so the filter is not empty).
    bad_ids: usize,
    kinds: Vec<String>,
    older_than: Option<Duration>,
    /// The last id taken (inclusive): letters written after a dry run or a question stay.
    up_to: Option<StreamId>,
}

impl DeadFilter {
    /// Only the dead letters with these ids (their ids in the dead-letter stream, as
    /// [`DeadLetters::list`] shows them; `<ms>-<seq>`); adds to ids given before. A text that
    /// is not an id matches nothing.
    #[must_use]
    pub fn ids<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for id in ids {
            match StreamId::parse(id.as_ref().as_bytes()) {
                Some(id) => self.ids.push(id),
                None => self.bad_ids += 1,
            }
        }
        self
    }

    /// Only the dead letters of these kinds ([`KINDS`]); adds to kinds given before.
    #[must_use]
    pub fn kinds<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kinds.extend(kinds.into_iter().map(Into::into));
        self
    }

    /// Only the dead letters written at least `age` ago: by the time in their id in the
    /// dead-letter stream (the server's clock when the letter was written) against the
    /// server's clock now.
    #[must_use]
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }

    /// Only the dead letters up to the id `id` (inclusive; as [`DeadLetters::list`] shows
    /// it): those a dry run or a question to the operator showed, not those written since. A
    /// text that is not an id takes nothing. It bounds the letters looked at; it is not a
    /// choice among them ([`is_empty`](Self::is_empty) does not count it).
    #[must_use]
    pub fn up_to(mut self, id: &str) -> Self {
        self.up_to = Some(StreamId::parse(id.as_bytes()).unwrap_or(StreamId::ZERO));
        self
    }

    /// Whether this takes every dead letter.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.bad_ids == 0
            && self.kinds.is_empty()
            && self.older_than.is_none()
    }

    /// Whether `letter` passes the id and kind filters (the age is the range's upper bound).
    fn takes(&self, letter: &DeadLetter) -> bool {
        let id_ok = (self.ids.is_empty() && self.bad_ids == 0)
            || StreamId::parse(letter.id.as_bytes()).is_some_and(|id| self.ids.contains(&id));
        let kind_ok = self.kinds.is_empty() || self.kinds.contains(&letter.kind);
        id_ok && kind_ok
    }
}

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
    /// Entries delivered to the group since it was created (`entries-read` of XINFO GROUPS,
    /// Redis 7; `None` when Redis cannot tell).
    pub entries_read: Option<u64>,
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
        let entries_read = field(&g, "entries-read").and_then(Value::as_u64);
        report.groups.push(GroupReport {
            lag,
            entries_read,
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
        // Idle -1 (Redis 8.8): an entry handed back to the group (XNACK) has no consumer and
        // no delivery time; it waits for the next claim, so it counts as just delivered.
        let first: Vec<(String, String, i64, u64)> = transport
            .pool()
            .xpending(stream, group.as_str(), ("-", "+", 1))
            .await
            .classify()?;
        oldest = first
            .first()
            .map(|(_, _, idle, _)| Duration::from_millis(u64::try_from(*idle).unwrap_or(0)));
    }
    Ok((field(info, "lag").and_then(Value::as_u64), pending, oldest))
}

/// One dead letter: why the listener gave up on an entry, and the entry's original fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub id: String,
    /// One of [`KINDS`]: why the listener gave up on it ([`KIND_MALFORMED`],
    /// [`KIND_REJECTED`], ...), or [`KIND_FUTURE_ID`] or [`KIND_FUTURE_ID_HANDLED`] when
    /// `kaiju streams --repair` moved it.
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

impl DeadLetter {
    /// When it was written, in ms since the Unix epoch by the server's clock: the time in its
    /// id ([`id`](Self::id)). `None` when the id is not a stream id.
    pub fn written_at_ms(&self) -> Option<u64> {
        StreamId::parse(self.id.as_bytes()).map(|id| id.ms)
    }
}

/// The dead-letter stream of one listener stream.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    transport: Transport,
    stream: String,
    dead: String,
    include_handled: bool,
    include_malformed: bool,
    filter: DeadFilter,
}

/// What a replay does with one dead letter.
enum Choice {
    Replay,
    /// The filter does not take it.
    NotTaken,
    Handled,
    Malformed,
    /// From another stream, or no fields.
    Skipped,
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
    /// Dead letters left alone because they are not kaiju entries (kind [`KIND_MALFORMED`]:
    /// written back, they would fail again; see [`DeadLetters::include_malformed`]).
    pub malformed: u64,
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
            include_malformed: false,
            filter: DeadFilter::default(),
        }
    }

    /// Whether [`replay`](Self::replay) also writes back the dead letters of kind
    /// [`KIND_MALFORMED`]: entries that are not kaiju's envelope, which fail again (and are
    /// dead letters again) unless what reads them changed. By default (`false`) they are left
    /// alone and counted in [`Replayed::malformed`].
    #[must_use]
    pub fn include_malformed(mut self, yes: bool) -> Self {
        self.include_malformed = yes;
        self
    }

    /// Which dead letters [`replay`](Self::replay) and [`purge`](Self::purge) take (and their
    /// dry runs): every one by default.
    #[must_use]
    pub fn filter(mut self, filter: DeadFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Whether the stream or its dead-letter stream exists. `false`: neither was ever written
    /// (a wrong app, topic or environment, say). An empty dead-letter stream of a stream that
    /// exists is not that.
    pub async fn exists(&self) -> Result<bool> {
        for key in [&self.stream, &self.dead] {
            let n: i64 = self
                .transport
                .pool()
                .exists(key.as_str())
                .await
                .classify()?;
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The server's clock, in ms since the Unix epoch (`TIME`, from the node of the
    /// dead-letter stream), to tell a dead letter's age from [`DeadLetter::written_at_ms`].
    pub async fn server_time_ms(&self) -> Result<u64> {
        server_time_ms(&self.transport, &self.dead).await
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
        let start = match after {
            None => "-".to_owned(),
            // Nothing comes after the largest id, and Redis refuses `(<max>`: a dead-letter
            // stream someone wrote that id to still lists, replays and purges.
            Some(id) if StreamId::parse(id.as_bytes()) == Some(StreamId::MAX) => {
                return Ok(Vec::new());
            }
            Some(id) => format!("({id}"),
        };
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

    /// The last id a replay or purge looks at: the newest dead letter when it starts (those
    /// written later are left for next time), or, with [`DeadFilter::older_than`], the last id
    /// old enough when that is earlier. `None`: nothing to look at.
    async fn until(&self) -> Result<Option<String>> {
        let Some(mut newest) = self.newest().await? else {
            return Ok(None);
        };
        if let Some(up_to) = self.filter.up_to {
            match StreamId::parse(newest.as_bytes()) {
                Some(top) if top <= up_to => {}
                _ if up_to == StreamId::ZERO => return Ok(None),
                _ => newest = up_to.to_string(),
            }
        }
        let Some(age) = self.filter.older_than else {
            return Ok(Some(newest));
        };
        let now = self.server_time_ms().await?;
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        let Some(ms) = now.checked_sub(age_ms) else {
            return Ok(None); // older than the clock: nothing is that old
        };
        let cutoff = StreamId { ms, seq: u64::MAX };
        Ok(Some(match StreamId::parse(newest.as_bytes()) {
            Some(top) if top < cutoff => newest,
            _ => cutoff.to_string(),
        }))
    }

    /// What a replay does with `letter`.
    fn choose(&self, letter: &DeadLetter) -> Choice {
        if !self.filter.takes(letter) {
            Choice::NotTaken
        } else if !self.include_handled && letter.kind == KIND_FUTURE_ID_HANDLED {
            Choice::Handled
        } else if !self.include_malformed && letter.kind == KIND_MALFORMED {
            Choice::Malformed
        } else if letter.stream != self.stream || letter.fields.is_empty() {
            Choice::Skipped
        } else {
            Choice::Replay
        }
    }

    /// Writes the dead letters of this stream back to it (their original fields, a new id)
    /// and removes them from the dead letters, `batch` at a time (at most [`MAX_PAGE`]),
    /// calling `progress(looked_at, total)` after each batch. Only the dead letters that exist
    /// when the replay starts are replayed: one that fails again meanwhile stays dead (no
    /// endless loop). With a [`filter`](Self::filter), only the letters it takes are replayed,
    /// and only they are removed.
    ///
    /// Each entry is written before it is removed, and the write is sent once: an interruption
    /// can leave an entry both replayed and still dead (replayed twice if run again), never
    /// lost. Dead letters that came from another stream are skipped, so a forged dead letter
    /// cannot make a replay write elsewhere. Dead letters of kind [`KIND_FUTURE_ID_HANDLED`]
    /// (already handled by every group) and of kind [`KIND_MALFORMED`] (they would fail again)
    /// are left alone unless [`include_handled`](Self::include_handled) or
    /// [`include_malformed`](Self::include_malformed) says otherwise.
    pub async fn replay(&self, batch: usize, progress: impl FnMut(u64, u64)) -> Result<Replayed> {
        self.run_replay(batch, progress, None).await
    }

    /// What [`replay`](Self::replay) would do, doing nothing: the same choice of letters,
    /// counted the same way (`replayed`: those it would write back); `each` is called with
    /// every letter it would write back, oldest first.
    pub async fn replay_dry_run(
        &self,
        batch: usize,
        mut each: impl FnMut(&DeadLetter) + Send,
    ) -> Result<Replayed> {
        self.run_replay(batch, |_, _| {}, Some(&mut each)).await
    }

    async fn run_replay(
        &self,
        batch: usize,
        mut progress: impl FnMut(u64, u64),
        mut dry_run: Option<&mut (dyn FnMut(&DeadLetter) + Send)>,
    ) -> Result<Replayed> {
        let mut done = Replayed::default();
        let Some(until) = self.until().await? else {
            return Ok(done);
        };
        let total = self.len().await?;
        let mut after: Option<String> = None;
        let mut looked_at = 0u64;
        loop {
            let page = self
                .range(after.as_deref(), &until, batch.clamp(1, MAX_PAGE))
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            looked_at += page.len() as u64;
            let mut good = Vec::new();
            for d in page {
                match self.choose(&d) {
                    Choice::Replay => good.push(d),
                    Choice::NotTaken => {}
                    Choice::Handled => done.handled += 1,
                    Choice::Malformed => done.malformed += 1,
                    Choice::Skipped => done.skipped += 1,
                }
            }
            if let Some(each) = dry_run.as_mut() {
                good.iter().for_each(each);
                done.replayed += good.len() as u64;
            } else if !good.is_empty() {
                self.write_back(&good).await?;
                done.replayed += good.len() as u64;
            }
            progress(looked_at, total);
        }
        Ok(done)
    }

    /// Writes `letters` back to the stream (each once: a pipeline never retried), then
    /// removes them, and only them, from the dead letters.
    async fn write_back(&self, letters: &[DeadLetter]) -> Result<()> {
        let pipeline = self.transport.pipeline_once();
        for d in letters {
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
        if written.len() != letters.len() {
            return Err(StreamError::Protocol(format!(
                "replay wrote {} of {} entries",
                written.len(),
                letters.len()
            )));
        }
        let ids: Vec<&str> = letters.iter().map(|d| d.id.as_str()).collect();
        let _: u64 = self
            .transport
            .pool()
            .xdel(self.dead.as_str(), ids)
            .await
            .classify()?;
        Ok(())
    }

    /// Deletes the dead letters; returns how many were deleted. Without a
    /// [`filter`](Self::filter), every one that exists when the purge starts; with one,
    /// exactly the letters it takes among those. Either way by id (`XDEL`), a page at a time:
    /// a letter the listener writes meanwhile stays (an empty dead-letter stream is left, not
    /// deleted).
    pub async fn purge(&self) -> Result<u64> {
        self.run_purge(None).await
    }

    /// What [`purge`](Self::purge) would delete, deleting nothing: `each` is called with every
    /// letter it would delete, oldest first; returns how many.
    pub async fn purge_dry_run(&self, mut each: impl FnMut(&DeadLetter) + Send) -> Result<u64> {
        self.run_purge(Some(&mut each)).await
    }

    async fn run_purge(
        &self,
        mut dry_run: Option<&mut (dyn FnMut(&DeadLetter) + Send)>,
    ) -> Result<u64> {
        let Some(until) = self.until().await? else {
            return Ok(0);
        };
        let mut after: Option<String> = None;
        let mut purged = 0;
        loop {
            let page = self.range(after.as_deref(), &until, MAX_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let taken: Vec<&DeadLetter> = page.iter().filter(|d| self.filter.takes(d)).collect();
            if taken.is_empty() {
                continue;
            }
            if let Some(each) = dry_run.as_mut() {
                taken.iter().for_each(|d| each(d));
                purged += taken.len() as u64;
            } else {
                let ids: Vec<&str> = taken.iter().map(|d| d.id.as_str()).collect();
                let n: u64 = self
                    .transport
                    .pool()
                    .xdel(self.dead.as_str(), ids)
                    .await
                    .classify()?;
                purged += n;
            }
        }
        Ok(purged)
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
