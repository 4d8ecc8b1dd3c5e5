//! Turning Redis replies into typed values.

use bytes::Bytes;
use kaiju_core::{Codec, Msgpack};
use kaiju_transport::fred::clients::{Client, Pipeline};
use kaiju_transport::fred::types::Value;
use kaiju_transport::{Classify, TransportError};
use serde::de::DeserializeOwned;

use crate::{CacheError, Result};

/// Sends a pipeline and returns one result per queued command, in order.
pub(crate) async fn all(pipeline: &Pipeline<Client>) -> Vec<Result<Value>> {
    pipeline
        .try_all::<Value>()
        .await
        .into_iter()
        .map(|r| r.classify().map_err(CacheError::from))
        .collect()
}

/// The bytes of a bulk-string reply; `None` for nil (a missing key).
pub(crate) fn bytes(value: Value) -> Result<Option<Bytes>> {
    match value {
        Value::Null => Ok(None),
        Value::Bytes(b) => Ok(Some(b)),
        other => other.into_bytes().map(Some).ok_or_else(|| {
            CacheError::Transport(TransportError::Protocol {
                message: "expected a string reply".into(),
            })
        }),
    }
}

/// Decodes one stored value. An empty string is treated as missing, as kaiju-redis does.
pub(crate) fn decode<T: DeserializeOwned>(
    codec: Msgpack,
    key: &str,
    value: Value,
) -> Result<Option<T>> {
    decode_bytes(codec, key, bytes(value)?)
}

/// [`decode`] for bytes already taken out of a reply (the near cache keeps those).
pub(crate) fn decode_bytes<T: DeserializeOwned>(
    codec: Msgpack,
    key: &str,
    raw: Option<Bytes>,
) -> Result<Option<T>> {
    match raw {
        Some(b) if !b.is_empty() => codec.decode(&b).map(Some).map_err(|e| {
            crate::metrics::decode_failure();
            CacheError::decode(key, e)
        }),
        _ => Ok(None),
    }
}

/// The elements of an array reply, as bytes (`None` for nil or empty, as kaiju reads them).
pub(crate) fn elements(value: Value) -> Result<Vec<Option<Bytes>>> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        single => vec![single],
    };
    items
        .into_iter()
        .map(|item| Ok(bytes(item)?.filter(|b| !b.is_empty())))
        .collect()
}

/// Decodes every element of an array reply, keeping positions (`None` for an empty element).
pub(crate) fn decode_all<T: DeserializeOwned>(
    codec: Msgpack,
    key: &str,
    value: Value,
) -> Result<Vec<Option<T>>> {
    elements(value)?
        .into_iter()
        .map(|raw| decode_bytes(codec, key, raw))
        .collect()
}

/// Decodes elements that were removed from Redis (pops): if any does not decode, the error
/// carries every removed element's bytes, in order, empty ones included, so the caller loses
/// nothing.
pub(crate) fn decode_removed<T: DeserializeOwned>(
    codec: Msgpack,
    key: &str,
    value: Value,
) -> Result<Vec<Option<T>>> {
    let removed = elements(value)?;
    let decoded: Result<Vec<Option<T>>> = removed
        .iter()
        .map(|raw| decode_bytes(codec, key, raw.clone()))
        .collect();
    decoded.map_err(|e| e.with_raw(removed.into_iter().map(Option::unwrap_or_default).collect()))
}

/// An integer reply.
pub(crate) fn integer(value: Value) -> Result<u64> {
    match value {
        Value::Integer(n) => Ok(u64::try_from(n).unwrap_or(0)),
        Value::Null => Ok(0),
        other => other.as_u64().ok_or_else(|| {
            CacheError::Transport(TransportError::Protocol {
                message: "expected an integer reply".into(),
            })
        }),
    }
}

/// Encodes one value for `key`.
pub(crate) fn encode<T: serde::Serialize + ?Sized>(
    codec: Msgpack,
    key: &str,
    value: &T,
) -> Result<Bytes> {
    codec
        .encode(value)
        .map(Bytes::from)
        .map_err(|source| CacheError::Encode {
            key: key.to_owned(),
            source,
        })
}
