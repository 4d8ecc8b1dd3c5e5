//! Typed pipelines and transactions.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use kaiju_core::Msgpack;
use kaiju_transport::fred::error::Error as FredError;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::expiration;
use crate::error::FredExt;
use crate::reply::{all, decode, decode_all, encode, integer};
use crate::{Cache, CacheError, Result};

/// One queued command.
#[derive(Debug, Clone)]
enum Op {
    Get(String),
    Set(String, Bytes, Option<Duration>),
    Del(String),
    Exists(String),
    Expire(String, Duration),
    HSet(String, String, Bytes),
    HGet(String, String),
    RPush(String, Bytes),
    LRange(String, i64, i64),
    LLen(String),
}

/// A typed reply that a [`Handle`] can be turned into. Sealed: implemented for the types the
/// queueing methods promise.
pub trait Reply: Sized + sealed::Sealed {
    #[doc(hidden)]
    fn from_reply(codec: Msgpack, key: &str, value: Value) -> Result<Self>;
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for Option<T> {}
    impl<T> Sealed for Vec<T> {}
    impl Sealed for u64 {}
    impl Sealed for bool {}
    impl Sealed for () {}
}

impl<T: DeserializeOwned> Reply for Option<T> {
    fn from_reply(codec: Msgpack, key: &str, value: Value) -> Result<Self> {
        decode(codec, key, value)
    }
}

impl<T: DeserializeOwned> Reply for Vec<T> {
    fn from_reply(codec: Msgpack, key: &str, value: Value) -> Result<Self> {
        decode_all(codec, key, value)
    }
}

impl Reply for u64 {
    fn from_reply(_: Msgpack, _: &str, value: Value) -> Result<Self> {
        integer(value)
    }
}

impl Reply for bool {
    fn from_reply(_: Msgpack, _: &str, value: Value) -> Result<Self> {
        integer(value).map(|n| n > 0)
    }
}

impl Reply for () {
    fn from_reply(_: Msgpack, _: &str, _: Value) -> Result<Self> {
        Ok(())
    }
}

/// Where the result of one queued command will be, and its type.
#[derive(Debug)]
pub struct Handle<T> {
    index: usize,
    key: String,
    _type: PhantomData<fn() -> T>,
}

/// Commands queued to run in one round trip: [`Cache::pipeline`] (each command on its own) or
/// [`Cache::transaction`] (`MULTI`/`EXEC`: all or nothing, every key in one cluster slot).
///
/// ```no_run
/// # async fn demo(cache: kaiju_cache::Cache) -> kaiju_cache::Result<()> {
/// let mut p = cache.pipeline();
/// p.set("a", &1_i64, None)?;
/// let a = p.get::<i64>("a");
/// let n = p.rpush("log", &"started")?;
/// let results = p.execute().await?;
/// assert_eq!(results.get(a)?, Some(1));
/// let length: u64 = results.get(n)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Batch {
    cache: Cache,
    ops: Vec<Op>,
    atomic: bool,
}

/// The replies of an executed [`Batch`], read with the handles it gave out.
#[derive(Debug)]
pub struct BatchResults {
    codec: Msgpack,
    replies: Vec<std::result::Result<Value, CacheError>>,
}

impl Cache {
    /// A pipeline: commands run in order, each succeeds or fails on its own.
    pub fn pipeline(&self) -> Batch {
        Batch {
            cache: self.clone(),
            ops: Vec::new(),
            atomic: false,
        }
    }

    /// A transaction (`MULTI`/`EXEC`): all commands run together or none does. In a cluster,
    /// every key must be in one slot (use a hash-tagged namespace).
    pub fn transaction(&self) -> Batch {
        Batch {
            atomic: true,
            ..self.pipeline()
        }
    }
}

impl Batch {
    fn push<T>(&mut self, key: &str, op: Op) -> Handle<T> {
        self.ops.push(op);
        Handle {
            index: self.ops.len() - 1,
            key: key.to_owned(),
            _type: PhantomData,
        }
    }

    /// Queues `GET`.
    pub fn get<T: DeserializeOwned>(&mut self, key: impl AsRef<str>) -> Handle<Option<T>> {
        let key = key.as_ref();
        self.push(key, Op::Get(key.to_owned()))
    }

    /// Queues `SET` (with `PX` if a TTL is given). Encoding happens now, so a value that cannot
    /// be encoded is an error before anything is sent.
    pub fn set<T: Serialize + ?Sized>(
        &mut self,
        key: impl AsRef<str>,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<Handle<()>> {
        let key = key.as_ref();
        let bytes = encode(self.cache.codec, key, value)?;
        Ok(self.push(key, Op::Set(key.to_owned(), bytes, ttl)))
    }

    /// Queues `DEL`; the handle gives whether the key existed.
    pub fn delete(&mut self, key: impl AsRef<str>) -> Handle<bool> {
        let key = key.as_ref();
        self.push(key, Op::Del(key.to_owned()))
    }

    /// Queues `EXISTS`.
    pub fn exists(&mut self, key: impl AsRef<str>) -> Handle<bool> {
        let key = key.as_ref();
        self.push(key, Op::Exists(key.to_owned()))
    }

    /// Queues `PEXPIRE`; the handle gives whether the key existed.
    pub fn expire(&mut self, key: impl AsRef<str>, ttl: Duration) -> Handle<bool> {
        let key = key.as_ref();
        self.push(key, Op::Expire(key.to_owned(), ttl))
    }

    /// Queues `HSET` of one field; the handle gives whether the field was new.
    pub fn hset<T: Serialize + ?Sized>(
        &mut self,
        key: impl AsRef<str>,
        field: impl AsRef<str>,
        value: &T,
    ) -> Result<Handle<bool>> {
        let key = key.as_ref();
        let bytes = encode(self.cache.codec, key, value)?;
        Ok(self.push(
            key,
            Op::HSet(key.to_owned(), field.as_ref().to_owned(), bytes),
        ))
    }

    /// Queues `HGET`.
    pub fn hget<T: DeserializeOwned>(
        &mut self,
        key: impl AsRef<str>,
        field: impl AsRef<str>,
    ) -> Handle<Option<T>> {
        let key = key.as_ref();
        self.push(key, Op::HGet(key.to_owned(), field.as_ref().to_owned()))
    }

    /// Queues `RPUSH` of one value; the handle gives the new length.
    pub fn rpush<T: Serialize + ?Sized>(
        &mut self,
        key: impl AsRef<str>,
        value: &T,
    ) -> Result<Handle<u64>> {
        let key = key.as_ref();
        let bytes = encode(self.cache.codec, key, value)?;
        Ok(self.push(key, Op::RPush(key.to_owned(), bytes)))
    }

    /// Queues `LRANGE`.
    pub fn lrange<T: DeserializeOwned>(
        &mut self,
        key: impl AsRef<str>,
        start: i64,
        stop: i64,
    ) -> Handle<Vec<T>> {
        let key = key.as_ref();
        self.push(key, Op::LRange(key.to_owned(), start, stop))
    }

    /// Queues `LLEN`.
    pub fn llen(&mut self, key: impl AsRef<str>) -> Handle<u64> {
        let key = key.as_ref();
        self.push(key, Op::LLen(key.to_owned()))
    }

    /// How many commands are queued.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Sends every queued command in one round trip.
    ///
    /// A pipeline reports each command's error through its handle; a transaction fails as a
    /// whole (nothing was applied) if any command is rejected.
    pub async fn execute(self) -> Result<BatchResults> {
        let codec = self.cache.codec;
        if self.ops.is_empty() {
            return Ok(BatchResults {
                codec,
                replies: Vec::new(),
            });
        }
        let client = self.cache.transport.client();
        let replies = if self.atomic {
            let trx = client.multi();
            for op in &self.ops {
                queue(&trx, op).await.or_cache()?;
            }
            let value: Value = trx.exec(true).await.or_cache()?;
            value.into_array().into_iter().map(Ok).collect()
        } else {
            let pipeline = client.pipeline();
            for op in &self.ops {
                queue(&pipeline, op).await.or_cache()?;
            }
            all(&pipeline).await
        };
        Ok(BatchResults { codec, replies })
    }
}

impl BatchResults {
    /// The typed result of the command behind `handle`.
    pub fn get<T: Reply>(&self, handle: Handle<T>) -> Result<T> {
        let value = match self.replies.get(handle.index) {
            Some(Ok(value)) => value.clone(),
            Some(Err(e)) => return Err(e.clone()),
            None => {
                return Err(CacheError::Transport(
                    kaiju_transport::TransportError::Protocol {
                        message: format!("no reply for command {} of the batch", handle.index),
                    },
                ));
            }
        };
        T::from_reply(self.codec, &handle.key, value)
    }

    /// How many replies there are (one per queued command).
    pub fn len(&self) -> usize {
        self.replies.len()
    }

    /// Whether the batch was empty.
    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }
}

async fn queue<C>(c: &C, op: &Op) -> std::result::Result<(), FredError>
where
    C: KeysInterface + HashesInterface + ListInterface + Sync,
{
    let _: Value = match op {
        Op::Get(k) => c.get(k.as_str()).await?,
        Op::Set(k, v, ttl) => {
            c.set(k.as_str(), v.clone(), expiration(*ttl), None, false)
                .await?
        }
        Op::Del(k) => c.del(k.as_str()).await?,
        Op::Exists(k) => c.exists(k.as_str()).await?,
        Op::Expire(k, ttl) => {
            c.pexpire(k.as_str(), crate::cache::ttl_ms(*ttl), None)
                .await?
        }
        Op::HSet(k, f, v) => c.hset(k.as_str(), (f.as_str(), v.clone())).await?,
        Op::HGet(k, f) => c.hget(k.as_str(), f.as_str()).await?,
        Op::RPush(k, v) => c.rpush(k.as_str(), v.clone()).await?,
        Op::LRange(k, start, stop) => c.lrange(k.as_str(), *start, *stop).await?,
        Op::LLen(k) => c.llen(k.as_str()).await?,
    };
    Ok(())
}
