//! Parsing of stream replies (XREADGROUP, XCLAIM, XAUTOCLAIM), entry by entry.
//!
//! Redis accepts any bytes as field names and values, and a pending entry that was deleted from
//! the stream comes back as `[id, nil]`. fred's typed conversions fail the whole reply on either,
//! so the replies are read here as plain values: one odd entry never hides the others.

use bytes::Bytes;
use kaiju_transport::fred::types::Value;

use crate::id::StreamId;

/// One entry as read: id, raw fields, deliveries so far (this one included).
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub(crate) id: StreamId,
    pub(crate) fields: Vec<(Bytes, Bytes)>,
    pub(crate) deliveries: u64,
}

impl RawEntry {
    /// The value of a field, if present.
    pub(crate) fn field(&self, name: &[u8]) -> Option<&Bytes> {
        self.fields
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| v)
    }
}

/// One item of a reply.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// A readable entry.
    Entry(RawEntry),
    /// A pending entry whose content is gone (deleted or trimmed from the stream).
    Deleted(StreamId),
}

/// The reply did not have the shape of a stream reply at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected {command} reply: {what}")]
pub(crate) struct ReplyError {
    pub(crate) command: &'static str,
    pub(crate) what: String,
}

fn bad(command: &'static str, what: impl Into<String>) -> ReplyError {
    ReplyError {
        command,
        what: what.into(),
    }
}

/// The bytes of a string-like value; numbers as their decimal text.
fn bytes_of(value: Value) -> Option<Bytes> {
    match value {
        Value::String(s) => Some(s.into_inner()),
        Value::Bytes(b) => Some(b),
        Value::Integer(i) => Some(Bytes::from(i.to_string())),
        Value::Double(d) => Some(Bytes::from(d.to_string())),
        Value::Boolean(b) => Some(Bytes::from_static(if b { b"1" } else { b"0" })),
        Value::Null | Value::Queued | Value::Map(_) | Value::Array(_) => None,
    }
}

pub(crate) fn id_of(value: Value) -> Option<StreamId> {
    bytes_of(value).and_then(|b| StreamId::parse(&b))
}

/// The entries of the one stream an `XREADGROUP` reply holds: nil (nothing new), or
/// `{stream: entries}` (RESP3) / `[[stream, entries]]` (RESP2). `None` for none.
fn one_stream(cmd: &'static str, reply: Value) -> Result<Option<Value>, ReplyError> {
    Ok(match reply {
        Value::Null => None,
        Value::Map(map) => map.inner().into_values().next(),
        Value::Array(streams) => match streams.into_iter().next() {
            None => None,
            Some(Value::Array(pair)) => pair.into_iter().nth(1),
            Some(other) => return Err(bad(cmd, format!("stream item is {:?}", other.kind()))),
        },
        other => return Err(bad(cmd, format!("{:?} instead of streams", other.kind()))),
    })
}

/// `XREADGROUP` with one stream: nil (nothing new), or `{stream: entries}` (RESP3) /
/// `[[stream, entries]]` (RESP2).
pub(crate) fn xreadgroup(reply: Value) -> Result<Vec<Item>, ReplyError> {
    const CMD: &str = "XREADGROUP";
    match one_stream(CMD, reply)? {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(list) => entry_list(CMD, list),
    }
}

/// `XREADGROUP ... CLAIM <min-idle>` with one stream: the same envelope as [`xreadgroup`], but
/// every entry is `[id, fields, idle ms, delivery count]`: first the pending entries it
/// claimed (idle for at least min-idle, with the count of their deliveries before this one),
/// then new ones (idle 0, count 0).
///
/// Each item comes with whether it was claimed. An entry without a readable id is skipped (it
/// cannot be acked); an entry whose idle time or count is not a non-negative integer fails the
/// whole read ([`ReplyError`]): the entries it delivered are then this consumer's pending
/// entries, and the listener's recovery read (which asks `XPENDING` for the counts) takes them.
pub(crate) fn xreadgroup_claim(reply: Value) -> Result<Vec<(Item, bool)>, ReplyError> {
    const CMD: &str = "XREADGROUP CLAIM";
    let items = match one_stream(CMD, reply)? {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(bad(CMD, format!("{:?} instead of entries", other.kind())));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut parts) = item else {
            tracing::warn!(command = CMD, kind = ?item.kind(), "skipping a stream reply item that is not an entry");
            continue;
        };
        if parts.len() != 4 {
            return Err(bad(
                CMD,
                format!(
                    "an entry of {} parts instead of 4 (id, fields, idle, count)",
                    parts.len()
                ),
            ));
        }
        let count = count_of(parts.pop())
            .ok_or_else(|| bad(CMD, "a delivery count that is not a non-negative integer"))?;
        let idle = count_of(parts.pop())
            .ok_or_else(|| bad(CMD, "an idle time that is not a non-negative integer"))?;
        let Some(item) = entry(CMD, Value::Array(parts)) else {
            continue;
        };
        let item = match item {
            // `count` deliveries before this one.
            Item::Entry(e) => Item::Entry(RawEntry {
                deliveries: count.saturating_add(1),
                ..e
            }),
            deleted => deleted,
        };
        // A new entry has idle time 0 and count 0; a claimed one was idle for min-idle (> 0),
        // or was handed back to the group (XNACK: its idle time counts from the epoch).
        out.push((item, idle > 0 || count > 0));
    }
    Ok(out)
}

/// A non-negative integer of a reply.
fn count_of(value: Option<Value>) -> Option<u64> {
    match value? {
        Value::Integer(i) => u64::try_from(i).ok(),
        _ => None,
    }
}

/// A list of `[id, [field, value, ...]]` entries, as XCLAIM returns it.
pub(crate) fn entry_list(command: &'static str, list: Value) -> Result<Vec<Item>, ReplyError> {
    let items = match list {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(bad(
                command,
                format!("{:?} instead of entries", other.kind()),
            ));
        }
    };
    Ok(items
        .into_iter()
        .filter_map(|item| entry(command, item))
        .collect())
}

/// One entry. An item without a readable id cannot be acked or dead-lettered by id, so it is
/// skipped with a warning (Redis never sends one).
fn entry(command: &'static str, item: Value) -> Option<Item> {
    let Value::Array(parts) = item else {
        tracing::warn!(command, kind = ?item.kind(), "skipping a stream reply item that is not an entry");
        return None;
    };
    let mut parts = parts.into_iter();
    let Some(id) = parts.next().and_then(id_of) else {
        tracing::warn!(command, "skipping a stream entry without a readable id");
        return None;
    };
    let fields = match parts.next() {
        None | Some(Value::Null) => return Some(Item::Deleted(id)),
        Some(Value::Array(flat)) => pairs(flat),
        Some(Value::Map(map)) => map
            .inner()
            .into_iter()
            .filter_map(|(k, v)| Some((k.into_bytes(), bytes_of(v)?)))
            .collect(),
        // Not a field list: keep the entry, with no fields, so it is dead-lettered by id.
        Some(_) => Vec::new(),
    };
    Some(Item::Entry(RawEntry {
        id,
        fields,
        deliveries: 1,
    }))
}

fn pairs(flat: Vec<Value>) -> Vec<(Bytes, Bytes)> {
    let mut fields = Vec::with_capacity(flat.len() / 2);
    let mut values = flat.into_iter();
    while let (Some(name), Some(value)) = (values.next(), values.next()) {
        if let (Some(name), Some(value)) = (bytes_of(name), bytes_of(value)) {
            fields.push((name, value));
        }
    }
    fields
}

/// What XAUTOCLAIM returned.
#[derive(Debug, Default)]
pub(crate) struct AutoClaim {
    /// Where the next scan starts; `0-0` when the scan went round.
    pub(crate) next: StreamId,
    pub(crate) items: Vec<Item>,
    /// Pending entries that were deleted from the stream (Redis 7 removes them from the PEL).
    pub(crate) deleted: Vec<StreamId>,
}

/// `XAUTOCLAIM`: `[next, entries]` (Redis 6.2) or `[next, entries, deleted ids]` (Redis 7).
pub(crate) fn xautoclaim(reply: Value) -> Result<AutoClaim, ReplyError> {
    const CMD: &str = "XAUTOCLAIM";
    let Value::Array(parts) = reply else {
        return Err(bad(CMD, format!("{:?} instead of an array", reply.kind())));
    };
    let mut parts = parts.into_iter();
    let next = parts
        .next()
        .and_then(id_of)
        .ok_or_else(|| bad(CMD, "no cursor"))?;
    let items = entry_list(CMD, parts.next().unwrap_or(Value::Null))?;
    let deleted = match parts.next() {
        Some(Value::Array(ids)) => ids.into_iter().filter_map(id_of).collect(),
        _ => Vec::new(),
    };
    Ok(AutoClaim {
        next,
        items,
        deleted,
    })
}

#[cfg(test)]
mod tests;
