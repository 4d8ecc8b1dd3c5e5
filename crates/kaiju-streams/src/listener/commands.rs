//! The Redis commands of the listener, and parsing of their replies (RESP2 and RESP3).

use std::collections::HashMap;

use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::{BlockingConnection, TransportError};

use crate::Result;
use crate::error::FredExt;
use crate::listener::Shared;

/// One raw entry: id, fields, deliveries so far (this one included).
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub(crate) id: String,
    pub(crate) fields: HashMap<String, Value>,
    pub(crate) deliveries: u64,
}

impl RawEntry {
    /// Entries as read; delivery counts are filled in later where they can be above 1.
    fn first_deliveries(entries: Vec<(String, HashMap<String, Value>)>) -> Vec<Self> {
        entries
            .into_iter()
            .map(|(id, fields)| Self {
                id,
                fields,
                deliveries: 1,
            })
            .collect()
    }
}

/// Parses `ms-seq` for ordering; malformed ids sort first.
pub(crate) fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn entries_of(value: Value) -> Result<Vec<(String, HashMap<String, Value>)>> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    value
        .into_xread_value::<String, String, Value>()
        .or_stream()
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

    /// `XREADGROUP ... STREAMS <stream> <from>`: `>` for new entries, `0` for our own pending.
    pub(crate) async fn read(
        &self,
        reader: &BlockingConnection,
        from: &str,
        block: bool,
    ) -> Result<Vec<RawEntry>> {
        let count = Some(self.settings.max_batch_size as u64);
        let block = block.then_some(self.settings.max_wait_time_ms);
        let reply: Value = reader
            .client()
            .xreadgroup(
                self.group.as_str(),
                self.consumer.as_str(),
                count,
                block,
                false,
                self.stream.as_str(),
                from,
            )
            .await
            .or_stream()?;
        if reply.is_null() {
            return Ok(Vec::new());
        }
        let mut streams = reply
            .into_xread_response::<String, String, String, Value>()
            .or_stream()?;
        let entries = streams.remove(&self.stream).unwrap_or_default();
        let new = from == ">";
        let mut raw = RawEntry::first_deliveries(entries);
        if !new {
            self.fill_deliveries(&mut raw).await?;
        }
        Ok(raw)
    }

    /// Sets each entry's delivery count from `XPENDING <stream> <group> <id> <id> 1`.
    pub(crate) async fn fill_deliveries(&self, entries: &mut [RawEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let pipeline = self.transport.client().pipeline();
        for entry in entries.iter() {
            let _: Value = pipeline
                .xpending(
                    self.stream.as_str(),
                    self.group.as_str(),
                    (entry.id.as_str(), entry.id.as_str(), 1),
                )
                .await
                .or_stream()?;
        }
        let replies = pipeline.try_all::<Vec<(String, String, u64, u64)>>().await;
        for (entry, reply) in entries.iter_mut().zip(replies) {
            if let Some((_, _, _, deliveries)) = reply.ok().and_then(|r| r.into_iter().next()) {
                entry.deliveries = deliveries.max(1);
            }
        }
        Ok(())
    }

    /// `XCLAIM <stream> <group> <me> 0 <ids>`: takes our own failed entries back for a retry
    /// (this counts as a delivery). Entries deleted meanwhile are skipped.
    pub(crate) async fn reclaim(&self, ids: &[String]) -> Result<Vec<RawEntry>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reply: Value = self
            .transport
            .pool()
            .xclaim(
                self.stream.as_str(),
                self.group.as_str(),
                self.consumer.as_str(),
                0,
                ids.to_vec(),
                None,
                None,
                None,
                false,
                false,
            )
            .await
            .or_stream()?;
        let mut raw = RawEntry::first_deliveries(entries_of(reply)?);
        self.fill_deliveries(&mut raw).await?;
        Ok(raw)
    }

    /// `XAUTOCLAIM` from `cursor`: entries other consumers left pending for longer than
    /// `pending_messages_time_ms`. Returns the next cursor and the entries (not JUSTID: they are
    /// processed here).
    pub(crate) async fn autoclaim(
        &self,
        min_idle_ms: u64,
        cursor: &str,
    ) -> Result<(String, Vec<RawEntry>)> {
        let reply: Value = self
            .transport
            .pool()
            .xautoclaim(
                self.stream.as_str(),
                self.group.as_str(),
                self.consumer.as_str(),
                min_idle_ms,
                cursor,
                Some(self.settings.max_batch_size as u64),
                false,
            )
            .await
            .or_stream()?;
        let mut parts = reply.into_array().into_iter();
        let next = parts
            .next()
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| "0-0".to_owned());
        let entries = entries_of(parts.next().unwrap_or(Value::Null))?;
        let deleted = parts.next().map(|v| v.into_array().len()).unwrap_or(0);
        if deleted > 0 {
            tracing::warn!(stream = %self.stream, deleted, "pending entries were deleted from the stream before anyone processed them");
        }
        let mut raw = RawEntry::first_deliveries(entries);
        self.fill_deliveries(&mut raw).await?;
        Ok((next, raw))
    }

    /// `XACK` the given ids.
    pub(crate) async fn ack(&self, ids: Vec<String>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let _: u64 = self
            .transport
            .pool()
            .xack(self.stream.as_str(), self.group.as_str(), ids)
            .await
            .or_stream()?;
        Ok(())
    }

    /// Appends an entry to the dead-letter stream: the reason, where it came from, how often it
    /// was delivered, and every original field as `field:<name>`.
    pub(crate) async fn dead_letter(&self, entry: &RawEntry, reason: &str) -> Result<()> {
        let mut fields: Vec<(String, Value)> = vec![
            ("reason".into(), reason.into()),
            ("stream".into(), self.stream.as_str().into()),
            ("id".into(), entry.id.as_str().into()),
            ("group".into(), self.group.as_str().into()),
            ("consumer".into(), self.consumer.as_str().into()),
            (
                "deliveries".into(),
                Value::Integer(i64::try_from(entry.deliveries).unwrap_or(i64::MAX)),
            ),
        ];
        for (name, value) in &entry.fields {
            fields.push((format!("field:{name}"), value.clone()));
        }
        let _: String = self
            .transport
            .pool()
            .xadd(self.dead.as_str(), false, None, "*", fields)
            .await
            .or_stream()?;
        Ok(())
    }

    /// Whether the shared pause key exists.
    pub(crate) async fn paused(&self) -> Result<bool> {
        let n: i64 = self
            .transport
            .pool()
            .exists(self.pause_key.as_str())
            .await
            .or_stream()?;
        Ok(n > 0)
    }

    /// Trims what every group has delivered and acknowledged, and/or to `trim_size`.
    pub(crate) async fn trim(&self) -> Result<u64> {
        let pool = self.transport.pool();
        let mut trimmed = 0;
        if self.settings.trim_delivered
            && let Some(cutoff) = self.fully_acked_cutoff().await?
        {
            trimmed += pool
                .xtrim::<u64, _, _>(self.stream.as_str(), ("MINID", "=", cutoff.as_str()))
                .await
                .or_stream()?;
        }
        if let Some(size) = self.settings.trim_size {
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            trimmed += pool
                .xtrim::<u64, _, _>(self.stream.as_str(), ("MAXLEN", "~", size))
                .await
                .or_stream()?;
        }
        Ok(trimmed)
    }

    /// The smallest id any group still needs: its oldest pending entry, or the entry after its
    /// last delivered one. Everything below it was delivered to and acked by every group.
    pub(crate) async fn fully_acked_cutoff(&self) -> Result<Option<String>> {
        let groups: Vec<HashMap<String, Value>> = self
            .transport
            .pool()
            .xinfo_groups(self.stream.as_str())
            .await
            .or_stream()?;
        let mut cutoff: Option<(u64, u64)> = None;
        for group in groups {
            let name = group
                .get("name")
                .and_then(Value::as_string)
                .unwrap_or_default();
            let delivered = group
                .get("last-delivered-id")
                .and_then(Value::as_string)
                .unwrap_or_else(|| "0-0".into());
            let pending = group.get("pending").and_then(Value::as_u64).unwrap_or(0);
            let needed = if pending > 0 {
                let summary: (u64, Option<String>, Option<String>, Value) = self
                    .transport
                    .pool()
                    .xpending(self.stream.as_str(), name.as_str(), ())
                    .await
                    .or_stream()?;
                summary.1.map_or((0, 0), |oldest| parse_id(&oldest))
            } else {
                let (ms, seq) = parse_id(&delivered);
                (ms, seq + 1)
            };
            cutoff = Some(cutoff.map_or(needed, |c| c.min(needed)));
        }
        Ok(cutoff
            .filter(|c| *c > (0, 0))
            .map(|(ms, seq)| format!("{ms}-{seq}")))
    }
}
