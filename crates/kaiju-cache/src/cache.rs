//! `Cache`: strings, expiry and the multi-key operations.

use std::time::Duration;

use bytes::Bytes;
use kaiju_core::{Msgpack, key_slot};
use kaiju_transport::fred::clients::{Client, Pipeline};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{ClusterHash, CustomCommand, Expiration, SetOptions, Value};
use kaiju_transport::{Classify, Feature, Transport};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Result;
use crate::flights::LocalFills;
use crate::reply::{all, bytes, decode, decode_bytes, encode, integer};

/// A typed cache over Redis. Values are msgpack in kaiju-redis's cache layout, so Python
/// `RedisCache` reads what this writes and the other way round. Cheap to clone.
///
/// Typed reads accept what msgspec's typed decoder accepts (a struct with extra or missing
/// trailing fields, a UUID stored as text); read a value as [`kaiju_core::Value`] to get it
/// untyped, as Python's `cache.get(key)` without a `data_type` does.
///
/// Keys are anything `AsRef<str>`: a [`kaiju_core::Key`] from a namespace, or a `&str` used
/// verbatim as kaiju-redis does.
#[derive(Debug, Clone)]
pub struct Cache {
    pub(crate) transport: Transport,
    pub(crate) codec: Msgpack,
    pub(crate) fills: LocalFills,
    pub(crate) metrics: std::sync::Arc<crate::metrics::CacheMetrics>,
}

/// When [`Cache::set_with`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Condition {
    /// Always (plain `SET`).
    #[default]
    Always,
    /// Only if the key does not exist (`NX`).
    IfAbsent,
    /// Only if the key exists (`XX`).
    IfPresent,
}

/// Options of [`Cache::set_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOpts {
    /// Expire after this long. Default: never.
    pub ttl: Option<Duration>,
    /// When to write. Default: always.
    pub condition: Condition,
}

/// A TTL in whole milliseconds, at least 1 (Redis rejects 0).
pub(crate) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

pub(crate) fn expiration(ttl: Option<Duration>) -> Option<Expiration> {
    ttl.map(|t| Expiration::PX(ttl_ms(t)))
}

impl Cache {
    /// A cache on this transport, with kaiju-redis's value layout ([`Msgpack::CACHE`]).
    pub fn new(transport: Transport) -> Self {
        Self::with_codec(transport, Msgpack::CACHE)
    }

    /// A cache with another msgpack layout (e.g. [`Msgpack::WIRE`], structs as maps).
    pub fn with_codec(transport: Transport, codec: Msgpack) -> Self {
        Self {
            transport,
            codec,
            fills: LocalFills::default(),
            metrics: std::sync::Arc::new(crate::metrics::CacheMetrics::new()),
        }
    }

    /// The transport underneath.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The value at `key`, or `None` if there is none. A value that is not a `T` is
    /// [`CacheError::Decode`](crate::CacheError::Decode), naming the key and the type.
    pub async fn get<T: DeserializeOwned>(&self, key: impl AsRef<str>) -> Result<Option<T>> {
        let key = key.as_ref();
        let value: Value = self.transport.pool().get(key).await.classify()?;
        let found = decode(self.codec, key, value)?;
        self.metrics.redis(found.is_some());
        Ok(found)
    }

    /// Stores `value` at `key`, expiring after `ttl` if given (the seed's `ex`).
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: impl AsRef<str>,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let key = key.as_ref();
        let bytes = encode(self.codec, key, value)?;
        let _: Value = self
            .transport
            .pool()
            .set(key, bytes, expiration(ttl), None, false)
            .await
            .classify()?;
        Ok(())
    }

    /// Stores `value` under a condition; returns whether it was written.
    ///
    /// Sent at most once (a resend after a lost reply would report `false` for a write that
    /// happened): a lost connection is an error, and the write may or may not have happened.
    pub async fn set_with<T: Serialize + ?Sized>(
        &self,
        key: impl AsRef<str>,
        value: &T,
        opts: SetOpts,
    ) -> Result<bool> {
        let key = key.as_ref();
        let bytes = encode(self.codec, key, value)?;
        let condition = match opts.condition {
            Condition::Always => None,
            Condition::IfAbsent => Some(SetOptions::NX),
            Condition::IfPresent => Some(SetOptions::XX),
        };
        let reply: Value = self
            .transport
            .once()
            .set(key, bytes, expiration(opts.ttl), condition, false)
            .await
            .classify()?;
        Ok(!reply.is_null())
    }

    /// Stores `value` and returns the previous value (`SET ... GET`, the seed's `get=True`).
    ///
    /// The new value is written even if the previous one is not a `T`: the error
    /// ([`CacheError::Decode`](crate::CacheError::Decode)) then carries the previous bytes in
    /// `raw`. Sent at most once (a resend would return the new value as the previous one).
    pub async fn swap<T: Serialize + DeserializeOwned>(
        &self,
        key: impl AsRef<str>,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<Option<T>> {
        let key = key.as_ref();
        let encoded = encode(self.codec, key, value)?;
        let previous: Value = self
            .transport
            .once()
            .set(key, encoded, expiration(ttl), None, true)
            .await
            .classify()?;
        let previous = bytes(previous)?;
        decode_bytes(self.codec, key, previous.clone())
            .map_err(|e| e.with_raw(previous.into_iter().collect()))
    }

    /// Sets a time to live on an existing key; `false` if the key does not exist.
    pub async fn expire(&self, key: impl AsRef<str>, ttl: Duration) -> Result<bool> {
        let n: i64 = self
            .transport
            .pool()
            .pexpire(key.as_ref(), ttl_ms(ttl), None)
            .await
            .classify()?;
        Ok(n == 1)
    }

    /// The values at `keys`, in the same order; `None` where a key is missing.
    ///
    /// In a cluster the keys are grouped by slot (one `MGET` per slot, all in one pipeline), so
    /// keys need no common hash tag.
    pub async fn mget<T: DeserializeOwned, K: AsRef<str>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<T>>> {
        let mut out: Vec<Option<T>> = (0..keys.len()).map(|_| None).collect();
        let groups = self.groups(keys);
        let replies = self.bulk(Bulk::Get, keys, &groups).await?;
        for (group, reply) in groups.iter().zip(replies) {
            for (&index, value) in group.iter().zip(reply.into_array()) {
                out[index] = decode(self.codec, keys[index].as_ref(), value)?;
                self.metrics.redis(out[index].is_some());
            }
        }
        Ok(out)
    }

    /// Stores every `(key, value)`, expiring after `ttl` if given.
    ///
    /// Without a TTL this is one `MSET` per cluster slot (atomic within a slot). With a TTL,
    /// where the server has `MSETEX` ([`Feature::MSetEx`]: Redis 8.4+, Valkey 9.1+), one
    /// `MSETEX ... PX` per cluster slot (atomic within a slot, values and expiries together);
    /// elsewhere each key is a `SET ... PX`, so every value appears together with its expiry.
    /// All in one pipeline.
    pub async fn mset<T: Serialize, K: AsRef<str>>(
        &self,
        items: &[(K, T)],
        ttl: Option<Duration>,
    ) -> Result<()> {
        let mut encoded = Vec::with_capacity(items.len());
        for (key, value) in items {
            encoded.push((key.as_ref(), encode(self.codec, key.as_ref(), value)?));
        }
        let pipeline = self.transport.client().pipeline();
        let msetex = self.transport.capabilities().has(Feature::MSetEx);
        match ttl {
            Some(ttl) if msetex => {
                let keys: Vec<&str> = encoded.iter().map(|(k, _)| *k).collect();
                for group in self.groups(&keys) {
                    let Some(&first) = group.first() else {
                        continue;
                    };
                    // MSETEX numkeys key value ... PX ms; routed by the group's slot.
                    let mut args: Vec<Value> = Vec::with_capacity(group.len() * 2 + 3);
                    args.push(Value::Integer(group.len() as i64));
                    for &i in &group {
                        args.push(encoded[i].0.into());
                        args.push(Value::Bytes(encoded[i].1.clone()));
                    }
                    args.extend(["PX".into(), Value::Integer(ttl_ms(ttl))]);
                    let slot = key_slot(encoded[first].0.as_bytes());
                    let command =
                        CustomCommand::new_static("MSETEX", ClusterHash::Custom(slot), false);
                    let _: Value = pipeline.custom(command, args).await.classify()?;
                }
            }
            _ => self.mset_piped(&pipeline, &encoded, ttl).await?,
        }
        for reply in all(&pipeline).await {
            reply?;
        }
        Ok(())
    }

    /// `mset` without `MSETEX`: queues `SET ... PX` per key (with a TTL) or `MSET` per slot.
    async fn mset_piped(
        &self,
        pipeline: &Pipeline<Client>,
        encoded: &[(&str, Bytes)],
        ttl: Option<Duration>,
    ) -> Result<()> {
        if let Some(ttl) = ttl {
            for (key, bytes) in encoded {
                let _: Value = pipeline
                    .set(
                        *key,
                        bytes.clone(),
                        Some(Expiration::PX(ttl_ms(ttl))),
                        None,
                        false,
                    )
                    .await
                    .classify()?;
            }
        } else {
            let keys: Vec<&str> = encoded.iter().map(|(k, _)| *k).collect();
            for group in self.groups(&keys) {
                let pairs: Vec<(&str, Bytes)> = group
                    .iter()
                    .map(|&i| (encoded[i].0, encoded[i].1.clone()))
                    .collect();
                pipeline.mset(pairs).await.classify()?;
            }
        }
        Ok(())
    }

    /// The values at `keys`, each decoded on its own: a value that is not a `T` is an error in
    /// its own position and does not hide the others (as [`mget`](Self::mget) does).
    pub async fn mget_each<T: DeserializeOwned, K: AsRef<str>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Result<Option<T>>>> {
        let mut out: Vec<Result<Option<T>>> = (0..keys.len()).map(|_| Ok(None)).collect();
        let groups = self.groups(keys);
        let replies = self.bulk(Bulk::Get, keys, &groups).await?;
        for (group, reply) in groups.iter().zip(replies) {
            for (&index, value) in group.iter().zip(reply.into_array()) {
                out[index] = decode(self.codec, keys[index].as_ref(), value);
                if let Ok(found) = &out[index] {
                    self.metrics.redis(found.is_some());
                }
            }
        }
        Ok(out)
    }

    /// Deletes `keys`; returns how many existed.
    pub async fn delete<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        let groups = self.groups(keys);
        let replies = self.bulk(Bulk::Del, keys, &groups).await?;
        replies.into_iter().map(integer).sum()
    }

    /// How many of `keys` exist (a key given twice counts twice, as in Redis).
    pub async fn exists<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        let groups = self.groups(keys);
        let replies = self.bulk(Bulk::Exists, keys, &groups).await?;
        replies.into_iter().map(integer).sum()
    }

    /// Indices of `keys` grouped by cluster slot (one group outside a cluster).
    pub(crate) fn groups<K: AsRef<str>>(&self, keys: &[K]) -> Vec<Vec<usize>> {
        if keys.is_empty() {
            return Vec::new();
        }
        if !self.transport.is_cluster() {
            return vec![(0..keys.len()).collect()];
        }
        let mut by_slot: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
        for (i, key) in keys.iter().enumerate() {
            by_slot
                .entry(key_slot(key.as_ref().as_bytes()))
                .or_default()
                .push(i);
        }
        by_slot.into_values().collect()
    }

    /// One multi-key command per group, all in one pipeline; the replies in group order.
    async fn bulk<K: AsRef<str>>(
        &self,
        command: Bulk,
        keys: &[K],
        groups: &[Vec<usize>],
    ) -> Result<Vec<Value>> {
        let pipeline = self.transport.client().pipeline();
        for group in groups {
            let names: Vec<&str> = group.iter().map(|&i| keys[i].as_ref()).collect();
            let _: Value = match command {
                Bulk::Get => pipeline.mget(names).await,
                Bulk::Del => pipeline.del(names).await,
                Bulk::Exists => pipeline.exists(names).await,
            }
            .classify()?;
        }
        all(&pipeline).await.into_iter().collect()
    }
}

/// The multi-key commands that [`Cache::bulk`] splits by slot.
#[derive(Debug, Clone, Copy)]
enum Bulk {
    Get,
    Del,
    Exists,
}
