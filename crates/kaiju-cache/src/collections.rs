//! Hashes and lists of typed values.

use std::collections::HashMap;

use kaiju_transport::Classify;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::reply::{decode, decode_all, decode_removed, encode, integer};
use crate::{Cache, Result};

fn field_key(key: &str, field: &str) -> String {
    format!("{key}[{field}]")
}

impl Cache {
    /// Sets hash fields (`HSET key f v ...`); returns how many fields were new.
    pub async fn hset<T: Serialize, F: AsRef<str>>(
        &self,
        key: impl AsRef<str>,
        fields: &[(F, T)],
    ) -> Result<u64> {
        let key = key.as_ref();
        if fields.is_empty() {
            return Ok(0);
        }
        let mut pairs = Vec::with_capacity(fields.len());
        for (field, value) in fields {
            let field = field.as_ref();
            pairs.push((field, encode(self.codec, &field_key(key, field), value)?));
        }
        let reply: Value = self.transport.pool().hset(key, pairs).await.classify()?;
        integer(reply)
    }

    /// One hash field, or `None` if the key or field is missing.
    pub async fn hget<T: DeserializeOwned>(
        &self,
        key: impl AsRef<str>,
        field: impl AsRef<str>,
    ) -> Result<Option<T>> {
        let (key, field) = (key.as_ref(), field.as_ref());
        let value: Value = self.transport.pool().hget(key, field).await.classify()?;
        decode(self.codec, &field_key(key, field), value)
    }

    /// Every field of a hash (empty if the key is missing). One undecodable field fails the
    /// whole call with [`CacheError::Decode`](crate::CacheError::Decode) naming that field.
    pub async fn hgetall<T: DeserializeOwned>(
        &self,
        key: impl AsRef<str>,
    ) -> Result<HashMap<String, T>> {
        let key = key.as_ref();
        let raw: HashMap<String, Value> = self.transport.pool().hgetall(key).await.classify()?;
        let mut out = HashMap::with_capacity(raw.len());
        for (field, value) in raw {
            if let Some(v) = decode(self.codec, &field_key(key, &field), value)? {
                out.insert(field, v);
            }
        }
        Ok(out)
    }

    /// Deletes hash fields; returns how many existed.
    pub async fn hdel<F: AsRef<str>>(&self, key: impl AsRef<str>, fields: &[F]) -> Result<u64> {
        if fields.is_empty() {
            return Ok(0);
        }
        let fields: Vec<&str> = fields.iter().map(AsRef::as_ref).collect();
        let reply: Value = self
            .transport
            .pool()
            .hdel(key.as_ref(), fields)
            .await
            .classify()?;
        integer(reply)
    }

    /// Prepends values (`LPUSH`, so the last given ends up first); returns the new length.
    /// Sent at most once: after a lost connection the values may or may not have been pushed,
    /// but they are never pushed twice.
    pub async fn lpush<T: Serialize>(&self, key: impl AsRef<str>, values: &[T]) -> Result<u64> {
        self.push(End::Head, key.as_ref(), values).await
    }

    /// Appends values (`RPUSH`); returns the new length. Sent at most once, like
    /// [`lpush`](Self::lpush).
    pub async fn rpush<T: Serialize>(&self, key: impl AsRef<str>, values: &[T]) -> Result<u64> {
        self.push(End::Tail, key.as_ref(), values).await
    }

    /// Elements `start..=stop` (negative indices count from the end, as in Redis), in their
    /// positions: an empty element is `None` (as kaiju reads it), never dropped.
    pub async fn lrange<T: DeserializeOwned>(
        &self,
        key: impl AsRef<str>,
        start: i64,
        stop: i64,
    ) -> Result<Vec<Option<T>>> {
        let key = key.as_ref();
        let reply: Value = self
            .transport
            .pool()
            .lrange(key, start, stop)
            .await
            .classify()?;
        decode_all(self.codec, key, reply)
    }

    /// Removes and returns up to `count` elements from the head (`None` for an empty one).
    ///
    /// The elements are removed whether or not they decode: if one is not a `T`, the error
    /// ([`CacheError::Decode`](crate::CacheError::Decode)) carries the bytes of every removed
    /// element in `raw`. Sent at most once (a resend after a lost reply would remove more).
    pub async fn lpop<T: DeserializeOwned>(
        &self,
        key: impl AsRef<str>,
        count: usize,
    ) -> Result<Vec<Option<T>>> {
        self.pop(End::Head, key.as_ref(), count).await
    }

    /// Removes and returns up to `count` elements from the tail, as [`lpop`](Self::lpop).
    pub async fn rpop<T: DeserializeOwned>(
        &self,
        key: impl AsRef<str>,
        count: usize,
    ) -> Result<Vec<Option<T>>> {
        self.pop(End::Tail, key.as_ref(), count).await
    }

    /// The length of a list (0 if missing).
    pub async fn llen(&self, key: impl AsRef<str>) -> Result<u64> {
        let reply: Value = self.transport.pool().llen(key.as_ref()).await.classify()?;
        integer(reply)
    }

    async fn push<T: Serialize>(&self, end: End, key: &str, values: &[T]) -> Result<u64> {
        let encoded = values
            .iter()
            .map(|v| encode(self.codec, key, v))
            .collect::<Result<Vec<_>>>()?;
        if encoded.is_empty() {
            return self.llen(key).await;
        }
        let once = self.transport.once();
        let reply: Value = match end {
            End::Head => once.lpush(key, encoded).await,
            End::Tail => once.rpush(key, encoded).await,
        }
        .classify()?;
        integer(reply)
    }

    async fn pop<T: DeserializeOwned>(
        &self,
        end: End,
        key: &str,
        count: usize,
    ) -> Result<Vec<Option<T>>> {
        let once = self.transport.once();
        let reply: Value = match end {
            End::Head => once.lpop(key, Some(count)).await,
            End::Tail => once.rpop(key, Some(count)).await,
        }
        .classify()?;
        decode_removed(self.codec, key, reply)
    }
}

/// Which end of a list.
#[derive(Debug, Clone, Copy)]
enum End {
    Head,
    Tail,
}
