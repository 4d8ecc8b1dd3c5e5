//! Every Redis command the listener sends, and the reading of its reply.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::fred::types::streams::XCap;
use kaiju_transport::fred::types::{ClusterHash, CustomCommand};
use kaiju_transport::{BlockingConnection, Classify, Feature, Script, TransportError};

use crate::id::StreamId;
use crate::listener::reply::{self, AutoClaim, Item, RawEntry, ReplyError};
use crate::listener::{Counters, Shared, published};
use crate::{Result, StreamError};

static TRIM_DELIVERED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/trim_delivered.lua")));
static REMOVE_IDLE_CONSUMERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/remove_idle_consumers.lua")));
static RECLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/reclaim.lua")));
static TOUCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/touch.lua")));
static CONSUMER_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/consumer_lease.lua")));
static RECOVER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/recover.lua")));
static CONSUMER_STATS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/consumer_stats.lua")));
static NACK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/nack.lua")));

/// At most this many ids per call of the hand-back script (its `unpack` has a limit).
const NACK_PER_CALL: usize = 500;

/// Every script of the listener.
pub(crate) fn scripts() -> [&'static Script; 8] {
    [
        &TRIM_DELIVERED,
        &REMOVE_IDLE_CONSUMERS,
        &RECLAIM,
        &TOUCH,
        &CONSUMER_LEASE,
        &RECOVER,
        &CONSUMER_STATS,
        &NACK,
    ]
}

impl From<ReplyError> for StreamError {
    fn from(e: ReplyError) -> Self {
        StreamError::Transport(TransportError::Protocol {
            message: e.to_string(),
        })
    }
}

/// What Redis says about the stream and this listener's group, for `stats()`.
pub(crate) struct StreamState {
    pub(crate) length: u64,
    pub(crate) lag: Option<u64>,
    pub(crate) pending: u64,
    pub(crate) oldest_pending_idle: Option<Duration>,
}

/// The lease on a consumer name, kept in `<env>.<app>._stream._consumers.<topic>`; its holder
/// publishes its counters next to it, in `<env>.<app>._stream._stats.<topic>`.
pub(crate) struct ConsumerLease {
    transport: kaiju_transport::Transport,
    key: String,
    stats_key: String,
    group: String,
    consumer: String,
    /// This listener instance.
    instance: String,
    /// When this listener was created, unix ms.
    started_at: u64,
}

impl ConsumerLease {
    pub(crate) fn new(
        transport: kaiju_transport::Transport,
        (key, stats_key): (String, String),
        group: &str,
        consumer: &str,
    ) -> Self {
        Self {
            transport,
            key,
            stats_key,
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            started_at: published::unix_ms(),
        }
    }

    /// Writes this process's counters into the stats hash, for `ttl` (a row not written again
    /// by then is dropped: its process stopped or died).
    pub(crate) async fn publish(&self, counters: &Counters, ttl: Duration) -> Result<()> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let _: Value = CONSUMER_STATS
            .run(
                &self.transport,
                vec![self.stats_key.as_str()],
                vec![
                    self.field(&self.consumer),
                    published::format(counters, self.started_at),
                    ttl_ms.to_string(),
                ],
            )
            .await?;
        Ok(())
    }

    pub(crate) fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Takes or renews (`release == false`), or releases, the lease for `ttl`. Taking it also
    /// tells which consumers of the group are gone (their lease ran out).
    pub(crate) async fn run(&self, ttl: Duration, release: bool) -> Result<Lease> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let reply: Value = CONSUMER_LEASE
            .run(
                &self.transport,
                vec![self.key.as_str()],
                vec![
                    self.field(&self.consumer),
                    self.instance.clone(),
                    ttl_ms.to_string(),
                    if release { "release" } else { "take" }.to_owned(),
                    format!("{}/", self.group),
                ],
            )
            .await?;
        let mut parts = reply.into_array().into_iter();
        let held = parts.next().and_then(|v| v.as_i64());
        let left = parts.next().and_then(|v| v.as_i64()).unwrap_or(0);
        Ok(match held {
            Some(1) => Lease::Held(
                parts
                    .filter_map(|v| v.into_string())
                    .filter(|name| *name != self.consumer)
                    .collect(),
            ),
            Some(_) => Lease::Taken(Duration::from_millis(left.max(0).unsigned_abs())),
            None => {
                return Err(StreamError::Transport(TransportError::Protocol {
                    message: "the consumer-lease script answered something else than its reply"
                        .to_owned(),
                }));
            }
        })
    }

    /// Drops the lease of a consumer that is gone, once its entries are taken over (only if
    /// it still has run out: an instance that took the name again keeps it).
    pub(crate) async fn forget(&self, consumer: &str) -> Result<()> {
        let _: Value = CONSUMER_LEASE
            .run(
                &self.transport,
                vec![self.key.as_str()],
                vec![
                    self.field(consumer),
                    self.instance.clone(),
                    "0".to_owned(),
                    "forget".to_owned(),
                ],
            )
            .await?;
        Ok(())
    }

    fn field(&self, consumer: &str) -> String {
        format!("{}/{consumer}", self.group)
    }
}

/// What claiming a retry back gave.
pub(crate) enum Reclaimed {
    /// The entry, claimed by this consumer again.
    Entry(RawEntry),
    /// It was still this consumer's, but deleted from the stream.
    Deleted,
    /// Not this consumer's any more: another consumer claimed it, or it was acked.
    NotMine,
}

/// What the takeover found about a consumer whose lease ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// Gone: its entries idle for a lease were taken over.
    Taken,
    /// It read within the last lease, so it is alive whatever its lease says (a Python
    /// consumer under a name a kaiju-rs listener once had): nothing taken.
    Alive,
    /// No consumer of that name in the group (removed already, or the name of another group's
    /// consumer, read off an ambiguous `<group>/<consumer>` lease field).
    Absent,
}

/// What taking over a gone consumer's entries gave.
pub(crate) struct Recovered {
    pub(crate) status: Found,
    /// The entries taken over (`Deleted` for those deleted from the stream), in id order.
    pub(crate) items: Vec<Item>,
    /// The gone consumer's pending entries left (0: it was removed from the group); for
    /// [`Found::Alive`], how long ago it read, in ms.
    pub(crate) left: u64,
}

/// Who holds a consumer name.
pub(crate) enum Lease {
    /// This instance; with the names of the group's consumers that are gone (their lease ran
    /// out).
    Held(Vec<String>),
    /// Another live instance, for at least this long.
    Taken(Duration),
}

impl<B, H> Shared<B, H> {
    /// `XGROUP CREATE <stream> <group> <start> MKSTREAM`; an existing group is fine.
    pub(crate) async fn ensure_group(&self) -> Result<()> {
        let created: std::result::Result<Value, _> = self
            .transport
            .pool()
            .xgroup_create(
                self.stream.as_str(),
                self.group.as_str(),
                self.settings.start_id.as_str(),
                true,
            )
            .await;
        match created.map_err(TransportError::from) {
            Ok(_) | Err(TransportError::BusyGroup { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `XREADGROUP ... COUNT <count> [BLOCK <ms>] STREAMS <stream> <from>`: `>` for new entries;
    /// an id for this consumer's own pending entries after it (delivery counts are filled in).
    pub(crate) async fn read(
        &self,
        reader: &BlockingConnection,
        from: &str,
        count: usize,
        block_ms: Option<u64>,
    ) -> Result<Vec<Item>> {
        let reply: Value = reader
            .client()
            .xreadgroup(
                self.group.as_str(),
                self.consumer.as_str(),
                Some(count as u64),
                block_ms,
                false,
                self.stream.as_str(),
                from,
            )
            .await
            .classify()?;
        let mut items = reply::xreadgroup(reply)?;
        if from != ">" {
            self.fill_deliveries(&mut items).await?;
        }
        Ok(items)
    }

    /// `XREADGROUP ... COUNT <count> [BLOCK <ms>] CLAIM <min_idle_ms> STREAMS <stream> >`
    /// (Redis 8.4): the pending entries of the group idle for `min_idle_ms` (claimed), then new
    /// ones, in one read, each with its delivery count (no `XPENDING`). Each item says whether
    /// it was claimed.
    pub(crate) async fn read_claiming(
        &self,
        reader: &BlockingConnection,
        count: usize,
        block_ms: Option<u64>,
        min_idle_ms: u64,
    ) -> Result<Vec<(Item, bool)>> {
        let mut args: Vec<String> = vec![
            "GROUP".into(),
            self.group.clone(),
            self.consumer.clone(),
            "COUNT".into(),
            count.to_string(),
        ];
        if let Some(ms) = block_ms {
            args.extend(["BLOCK".into(), ms.to_string()]);
        }
        args.extend([
            "CLAIM".into(),
            min_idle_ms.to_string(),
            "STREAMS".into(),
            self.stream.clone(),
            ">".into(),
        ]);
        let command = CustomCommand::new_static(
            "XREADGROUP",
            ClusterHash::Custom(kaiju_core::key_slot(self.stream.as_bytes())),
            block_ms.is_some(),
        );
        let reply: Value = reader.client().custom(command, args).await.classify()?;
        Ok(reply::xreadgroup_claim(reply)?)
    }

    /// Whether reads claim idle pending entries themselves (`XREADGROUP ... CLAIM`): claiming
    /// is on and the server has it.
    pub(crate) fn claims_in_reads(&self) -> bool {
        self.settings.pending_messages_time_ms.is_some()
            && self.transport.capabilities().has(Feature::XReadGroupClaim)
    }

    /// Whether entries this listener gives up on are handed back to the group (`XNACK`, Redis
    /// 8.8): claiming is on (an entry handed back has no consumer; only a claim takes it) and
    /// the server has it.
    pub(crate) fn hands_back(&self) -> bool {
        self.settings.pending_messages_time_ms.is_some()
            && self.transport.capabilities().has(Feature::XNack)
    }

    /// Hands `ids` back to the group (`XNACK ... FAIL`, keeping their delivery counts), those
    /// this consumer still owns only (a script checks the owner: XNACK itself takes an entry
    /// from whoever has it). Returns how many were handed back.
    pub(crate) async fn nack(&self, ids: &[StreamId]) -> Result<u64> {
        let mut nacked = 0;
        for chunk in ids.chunks(NACK_PER_CALL) {
            let mut args = vec![self.group.clone(), self.consumer.clone()];
            args.extend(chunk.iter().map(ToString::to_string));
            nacked += NACK
                .run::<u64, _, _>(&self.transport, vec![self.stream.as_str()], args)
                .await?;
        }
        Ok(nacked)
    }

    /// Sets each entry's delivery count from `XPENDING <stream> <group> <id> <id> 1`.
    async fn fill_deliveries(&self, items: &mut [Item]) -> Result<()> {
        let mut entries: Vec<&mut RawEntry> = items
            .iter_mut()
            .filter_map(|i| match i {
                Item::Entry(e) => Some(e),
                Item::Deleted(_) => None,
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        let pipeline = self.transport.client().pipeline();
        for entry in &entries {
            let id = entry.id.to_string();
            let _: Value = pipeline
                .xpending(
                    self.stream.as_str(),
                    self.group.as_str(),
                    (id.as_str(), id.as_str(), 1),
                )
                .await
                .classify()?;
        }
        let replies = pipeline.try_all::<Vec<(String, String, u64, u64)>>().await;
        for (entry, reply) in entries.iter_mut().zip(replies) {
            if let Some((_, _, _, deliveries)) = reply.ok().and_then(|r| r.into_iter().next()) {
                entry.deliveries = deliveries.max(1);
            }
        }
        Ok(())
    }

    /// Claims an entry back for its retry, only if this consumer still owns it (a script:
    /// XPENDING then XCLAIM), so an entry another consumer claimed meanwhile is never taken
    /// from it. The claim counts as a delivery.
    pub(crate) async fn reclaim(&self, id: StreamId) -> Result<Reclaimed> {
        let reply: Value = RECLAIM
            .run_once(
                &self.transport,
                vec![self.stream.as_str()],
                vec![self.group.clone(), self.consumer.clone(), id.to_string()],
            )
            .await?;
        let mut parts = reply.into_array().into_iter();
        if parts.next().and_then(|v| v.as_u64()) != Some(1) {
            return Ok(Reclaimed::NotMine);
        }
        let deliveries = parts.next().and_then(|v| v.as_u64()).unwrap_or(1);
        let items = reply::entry_list("XCLAIM", parts.next().unwrap_or(Value::Null))?;
        Ok(match items.into_iter().next() {
            Some(Item::Entry(entry)) => Reclaimed::Entry(RawEntry {
                deliveries: deliveries.max(1),
                ..entry
            }),
            _ => Reclaimed::Deleted,
        })
    }

    /// `XAUTOCLAIM` from `cursor`: entries other consumers left pending for longer than
    /// `min_idle_ms`, with their delivery counts (not JUSTID: they are processed here).
    pub(crate) async fn autoclaim(
        &self,
        min_idle_ms: u64,
        cursor: StreamId,
        count: usize,
    ) -> Result<AutoClaim> {
        // Once: a claim resent after a lost reply would take entries the caller never sees
        // (they would wait as this consumer's pending entries until the next recovery).
        let reply: Value = self
            .transport
            .once()
            .xautoclaim(
                self.stream.as_str(),
                self.group.as_str(),
                self.consumer.as_str(),
                min_idle_ms,
                cursor.to_string(),
                Some(count as u64),
                false,
            )
            .await
            .classify()?;
        let mut claimed = reply::xautoclaim(reply)?;
        self.fill_deliveries(&mut claimed.items).await?;
        Ok(claimed)
    }

    /// Takes over up to `count` pending entries of `gone` (a consumer whose name lease ran
    /// out) that were idle for `min_idle` (a script: XPENDING, XCLAIM, and XGROUP DELCONSUMER
    /// once it owns nothing). Sent once: a claim resent after a lost reply would take entries
    /// the caller never sees (they wait as this consumer's pending entries until its next
    /// recovery read).
    pub(crate) async fn recover(
        &self,
        gone: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Recovered> {
        let min_idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let reply: Value = RECOVER
            .run_once(
                &self.transport,
                vec![self.stream.as_str()],
                vec![
                    self.group.clone(),
                    gone.to_owned(),
                    self.consumer.clone(),
                    min_idle_ms.to_string(),
                    count.to_string(),
                ],
            )
            .await?;
        let mut parts = reply.into_array().into_iter();
        let mut next = || parts.next().unwrap_or(Value::Null);
        let status = match next().as_str().as_deref() {
            Some("taken") => Found::Taken,
            Some("alive") => Found::Alive,
            Some("absent") => Found::Absent,
            _ => {
                return Err(StreamError::Transport(TransportError::Protocol {
                    message: "the takeover script answered something else than its reply"
                        .to_owned(),
                }));
            }
        };
        let ids: Vec<StreamId> = next()
            .into_array()
            .into_iter()
            .filter_map(|v| v.as_bytes().and_then(StreamId::parse))
            .collect();
        let counts: Vec<u64> = next()
            .into_array()
            .into_iter()
            .map(|v| v.as_u64().unwrap_or(0))
            .collect();
        let claimed = reply::entry_list("XCLAIM", next())?;
        let left = next().as_u64().unwrap_or(0);
        let mut entries: HashMap<StreamId, RawEntry> = claimed
            .into_iter()
            .filter_map(|item| match item {
                Item::Entry(entry) => Some((entry.id, entry)),
                Item::Deleted(_) => None,
            })
            .collect();
        let items = ids
            .iter()
            .zip(counts.iter().copied().chain(std::iter::repeat(0)))
            .map(|(id, count)| match entries.remove(id) {
                // The claim counts as a delivery.
                Some(entry) => Item::Entry(RawEntry {
                    deliveries: count.saturating_add(1),
                    ..entry
                }),
                None => Item::Deleted(*id),
            })
            .collect();
        Ok(Recovered {
            status,
            items,
            left,
        })
    }

    /// Marks entries this consumer still owns as just delivered (XCLAIM JUSTID in a script
    /// that checks the owner), so other consumers' claim passes leave them alone.
    pub(crate) async fn touch(&self, ids: &[StreamId]) -> Result<u64> {
        let mut args = vec![self.group.clone(), self.consumer.clone()];
        args.extend(ids.iter().map(ToString::to_string));
        Ok(TOUCH
            .run(&self.transport, vec![self.stream.as_str()], args)
            .await?)
    }

    /// `XACK` the given ids. Acking twice is harmless, so a failed ack may be sent again.
    pub(crate) async fn ack(&self, ids: &[StreamId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let _: u64 = self
            .transport
            .pool()
            .xack(self.stream.as_str(), self.group.as_str(), ids)
            .await
            .classify()?;
        Ok(())
    }

    /// Appends an entry to the dead-letter stream: why (`kind`, `reason`), where it came from,
    /// how often it was delivered, and every original field as `field:<name>` (raw bytes).
    pub(crate) async fn dead_letter(
        &self,
        entry: &RawEntry,
        kind: &str,
        reason: &str,
    ) -> Result<()> {
        let text = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let mut fields: Vec<(Bytes, Bytes)> = vec![
            (text("reason"), text(reason)),
            (text("kind"), text(kind)),
            (text("stream"), text(&self.stream)),
            (text("id"), Bytes::from(entry.id.to_string())),
            (text("group"), text(&self.group)),
            (text("consumer"), text(&self.consumer)),
            (
                text("deliveries"),
                Bytes::from(entry.deliveries.to_string()),
            ),
        ];
        for (name, value) in &entry.fields {
            let mut prefixed = b"field:".to_vec();
            prefixed.extend_from_slice(name);
            fields.push((Bytes::from(prefixed), value.clone()));
        }
        let fields: Vec<(Key, Value)> = fields
            .into_iter()
            .map(|(name, value)| (Key::from(name), Value::Bytes(value)))
            .collect();
        // Bounded by `dead_letter_max_length` (about: `~` trims whole nodes, the cheap way).
        let cap = self
            .settings
            .dead_letter_max_length
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
            .and_then(|n| XCap::try_from(("MAXLEN", "~", n, None)).ok())
            .unwrap_or_else(|| XCap::from(None::<()>));
        // Written once: a dead letter sent twice after a lost reply would be a duplicate.
        let _: Value = self
            .transport
            .once()
            .xadd(self.dead.as_str(), false, cap, "*", fields)
            .await
            .classify()?;
        Ok(())
    }

    /// Whether the shared pause key exists.
    pub(crate) async fn paused(&self) -> Result<bool> {
        let n: i64 = self
            .transport
            .pool()
            .exists(self.pause_key.as_str())
            .await
            .classify()?;
        Ok(n > 0)
    }

    /// Trims what every group has delivered and acknowledged (atomically, in a script), and/or
    /// to `trim_size`.
    pub(crate) async fn trim(&self) -> Result<u64> {
        let mut trimmed = 0;
        if self.settings.trim_delivered {
            // With `XTRIM ... ACKED` (Redis 8.2), the server keeps what a group still needs,
            // entry by entry; without it, the script stops at the oldest entry pending anywhere.
            let acked = self.transport.capabilities().has(Feature::XTrimAcked);
            let args: Vec<String> = if acked {
                vec!["ACKED".into()]
            } else {
                Vec::new()
            };
            trimmed += TRIM_DELIVERED
                .run::<u64, _, _>(&self.transport, vec![self.stream.as_str()], args)
                .await?;
        }
        if let Some(size) = self.settings.trim_size {
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            trimmed += self
                .transport
                .pool()
                .xtrim::<u64, _, _>(self.stream.as_str(), ("MAXLEN", "~", size))
                .await
                .classify()?;
        }
        Ok(trimmed)
    }

    /// Removes the group's consumers idle for `idle` that own no pending entry (never this one).
    pub(crate) async fn remove_idle_consumers(&self, idle: Duration) -> Result<u64> {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let removed = REMOVE_IDLE_CONSUMERS
            .run::<u64, _, _>(
                &self.transport,
                vec![self.stream.as_str()],
                vec![
                    self.group.clone(),
                    idle_ms.to_string(),
                    self.consumer.clone(),
                ],
            )
            .await?;
        Ok(removed)
    }

    /// Length, lag, pending count and oldest pending entry of this group.
    pub(crate) async fn state(&self) -> Result<StreamState> {
        let pool = self.transport.pool();
        let length: u64 = pool.xlen(self.stream.as_str()).await.classify()?;
        let groups: Vec<HashMap<String, Value>> =
            pool.xinfo_groups(self.stream.as_str()).await.classify()?;
        let mine = groups.into_iter().find(|g| {
            g.get("name").and_then(Value::as_string).as_deref() == Some(self.group.as_str())
        });
        let (lag, pending, oldest_pending_idle) = match &mine {
            Some(info) => crate::admin::group_state(&self.transport, &self.stream, info).await?,
            None => (None, 0, None),
        };
        Ok(StreamState {
            length,
            lag,
            pending,
            oldest_pending_idle,
        })
    }
}
