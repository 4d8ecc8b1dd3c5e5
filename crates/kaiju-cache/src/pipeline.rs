//! Typed pipelines and transactions.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use kaiju_core::Msgpack;
use std::sync::LazyLock;

use kaiju_transport::fred::error::Error as FredError;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::{Classify, Script, TransportError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{expiration, ttl_ms};
use crate::reply::{all, decode, decode_all, encode, integer};
use crate::{Cache, CacheError, Result};

static TRANSACTION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/transaction.lua")));

/// The script of a transaction.
pub(crate) fn script() -> &'static Script {
    &TRANSACTION
}

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

/// A typed reply that a [`Handle`] can be turned into: `Option<T>` for reads, `Vec<Option<T>>`
/// for ranges, `u64` for counts, `bool` for yes/no replies, `()` for writes. Sealed.
pub trait Reply: sealed::Sealed {}

mod sealed {
    use super::*;

    /// The conversion itself, out of the public API (it takes a fred value).
    pub trait Sealed: Sized {
        fn from_reply(codec: Msgpack, key: &str, value: Value) -> Result<Self>;
    }

    impl<T: DeserializeOwned> Sealed for Option<T> {
        fn from_reply(codec: Msgpack, key: &str, value: Value) -> Result<Self> {
            decode(codec, key, value)
        }
    }

    impl<T: DeserializeOwned> Sealed for Vec<Option<T>> {
        fn from_reply(codec: Msgpack, key: &str, value: Value) -> Result<Self> {
            decode_all(codec, key, value)
        }
    }

    impl Sealed for u64 {
        fn from_reply(_: Msgpack, _: &str, value: Value) -> Result<Self> {
            integer(value)
        }
    }

    impl Sealed for bool {
        fn from_reply(_: Msgpack, _: &str, value: Value) -> Result<Self> {
            integer(value).map(|n| n > 0)
        }
    }

    impl Sealed for () {
        fn from_reply(_: Msgpack, _: &str, _: Value) -> Result<Self> {
            Ok(())
        }
    }
}

impl<T: DeserializeOwned> Reply for Option<T> {}
impl<T: DeserializeOwned> Reply for Vec<Option<T>> {}
impl Reply for u64 {}
impl Reply for bool {}
impl Reply for () {}

/// Where the result of one queued command will be, and its type.
#[derive(Debug)]
pub struct Handle<T> {
    index: usize,
    key: String,
    _type: PhantomData<fn() -> T>,
}

/// Commands queued to run in one round trip: [`Cache::pipeline`] (each command on its own) or
/// [`Cache::transaction`] (isolated: in one atomic step, every key in one cluster slot).
///
/// Neither is all-or-nothing: a command that fails when it runs (say `RPUSH` on a string key:
/// `WRONGTYPE`) reports its error through its handle, and the other commands still apply,
/// exactly as with Redis's `MULTI`/`EXEC`. A batch is sent at most once: if its connection drops
/// before the replies arrive, `execute` fails and its commands may or may not have run.
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

    /// A transaction: the commands run in one atomic step, with no other client's command in
    /// between (one Lua script; the same isolation as `MULTI`/`EXEC`). It is *not* rolled back
    /// when a command fails; see [`Batch`]. In a cluster, every key must be in one slot (use a
    /// hash-tagged namespace).
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
    ) -> Handle<Vec<Option<T>>> {
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

    /// Sends every queued command in one round trip, at most once. Each command's outcome,
    /// its error included, is read through its handle.
    pub async fn execute(self) -> Result<BatchResults> {
        let codec = self.cache.codec;
        if self.ops.is_empty() {
            return Ok(BatchResults {
                codec,
                replies: Vec::new(),
            });
        }
        let replies = if self.atomic {
            self.run_script().await?
        } else {
            let pipeline = self.cache.transport.pipeline_once();
            for op in &self.ops {
                queue(&pipeline, op).await.classify()?;
            }
            all(&pipeline).await
        };
        Ok(BatchResults { codec, replies })
    }

    /// Runs a transaction as one script: keys in KEYS, each command as name, count, arguments.
    async fn run_script(&self) -> Result<Vec<Result<Value>>> {
        let mut keys = Vec::with_capacity(self.ops.len());
        let mut args: Vec<Value> = Vec::new();
        for op in &self.ops {
            let (name, key, rest) = op.command();
            keys.push(key.to_owned());
            args.push(name.into());
            args.push(Value::Integer(
                i64::try_from(rest.len()).unwrap_or(i64::MAX),
            ));
            args.extend(rest);
        }
        let reply: Value = TRANSACTION
            .run_once(&self.cache.transport, keys, args)
            .await?;
        Ok(reply
            .into_array()
            .into_iter()
            .map(|outcome| {
                let mut parts = outcome.into_array().into_iter();
                let ok = parts.next().and_then(|v| v.as_i64()) == Some(1);
                let value = parts.next().unwrap_or(Value::Null);
                if ok {
                    Ok(value)
                } else {
                    let message = value.as_string().unwrap_or_default();
                    Err(TransportError::from_reply(&message).into())
                }
            })
            .collect())
    }
}

impl Op {
    /// The command as the transaction script runs it: name, key, other arguments.
    fn command(&self) -> (&'static str, &str, Vec<Value>) {
        let bytes = |b: &Bytes| Value::Bytes(b.clone());
        let text = |s: &str| Value::String(s.into());
        match self {
            Op::Get(k) => ("GET", k, vec![]),
            Op::Set(k, v, None) => ("SET", k, vec![bytes(v)]),
            Op::Set(k, v, Some(ttl)) => (
                "SET",
                k,
                vec![bytes(v), text("PX"), Value::Integer(ttl_ms(*ttl))],
            ),
            Op::Del(k) => ("DEL", k, vec![]),
            Op::Exists(k) => ("EXISTS", k, vec![]),
            Op::Expire(k, ttl) => ("PEXPIRE", k, vec![Value::Integer(ttl_ms(*ttl))]),
            Op::HSet(k, f, v) => ("HSET", k, vec![text(f), bytes(v)]),
            Op::HGet(k, f) => ("HGET", k, vec![text(f)]),
            Op::RPush(k, v) => ("RPUSH", k, vec![bytes(v)]),
            Op::LRange(k, start, stop) => (
                "LRANGE",
                k,
                vec![Value::Integer(*start), Value::Integer(*stop)],
            ),
            Op::LLen(k) => ("LLEN", k, vec![]),
        }
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
        <T as sealed::Sealed>::from_reply(self.codec, &handle.key, value)
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
        Op::Expire(k, ttl) => c.pexpire(k.as_str(), ttl_ms(*ttl), None).await?,
        Op::HSet(k, f, v) => c.hset(k.as_str(), (f.as_str(), v.clone())).await?,
        Op::HGet(k, f) => c.hget(k.as_str(), f.as_str()).await?,
        Op::RPush(k, v) => c.rpush(k.as_str(), v.clone()).await?,
        Op::LRange(k, start, stop) => c.lrange(k.as_str(), *start, *stop).await?,
        Op::LLen(k) => c.llen(k.as_str()).await?,
    };
    Ok(())
}
