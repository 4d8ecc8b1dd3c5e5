//! Turning Redis replies into typed values.

use bytes::Bytes;
use kaiju_core::{Codec, Msgpack};
use kaiju_transport::TransportError;
use kaiju_transport::fred::clients::{Client, Pipeline};
use kaiju_transport::fred::types::Value;
use serde::de::DeserializeOwned;

use crate::error::FredExt;
use crate::{CacheError, Result};

/// Sends a pipeline and returns one result per queued command, in order.
pub(crate) async fn all(pipeline: &Pipeline<Client>) -> Vec<Result<Value>> {
    pipeline
        .try_all::<Value>()
        .await
        .into_iter()
        .map(FredExt::or_cache)
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
        Some(b) if !b.is_empty() => codec
            .decode(&b)
            .map(Some)
            .map_err(|e| CacheError::decode(key, e)),
        _ => Ok(None),
    }
}

/// Decodes every element of an array reply (nil elements are skipped).
pub(crate) fn decode_all<T: DeserializeOwned>(
    codec: Msgpack,
    key: &str,
    value: Value,
) -> Result<Vec<T>> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        single => vec![single],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(v) = decode(codec, key, item)? {
            out.push(v);
        }
    }
    Ok(out)
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
