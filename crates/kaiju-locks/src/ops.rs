//! The lock scripts and the calls that run them, shared by `Locks` (acquire, release) and
//! `LockGuard` (renew, release).
//!
//! Every script is idempotent for its own call (acquires by attempt id, releases by token,
//! renewals by nature), so a script resent after a lost reply returns what the first run did.
//! The one exception, a release by owner alone, is written at most once.

use std::sync::Arc;
use std::time::Duration;

use kaiju_transport::fred::types::Value;
use kaiju_transport::{Transport, TransportError};

use crate::Result;
use crate::batch::{self, Batcher, Item, Kind};
use crate::keys::LockKeys;
use crate::scripts::{ABANDON, ACQUIRE, ACQUIRE_MANY, RENEW};

/// A duration as whole milliseconds for a script argument, at least 1.
pub(crate) fn ms(duration: Duration) -> String {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
        .to_string()
}

/// A token from a script reply: a decimal string, or an integer.
fn token(value: &Value) -> Option<u64> {
    integer(value)
        .and_then(|n| u64::try_from(n).ok())
        .filter(|t| *t > 0)
}

/// An integer reply, or a decimal string.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(n) => Some(*n),
        other => other.as_str().and_then(|s| s.parse().ok()),
    }
}

/// One acquisition attempt of one lock.
pub(crate) struct Attempt<'a> {
    pub(crate) keys: &'a LockKeys,
    pub(crate) owner: &'a str,
    pub(crate) lease: Duration,
    /// Identifies this acquire call: a resent script returns the token it already got.
    pub(crate) id: &'a str,
    /// The waiter's place in the queue, or `""` to take the lock only if nobody waits.
    pub(crate) ticket: &'a str,
    pub(crate) waiter_alive: Duration,
}

/// What a first try found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstTry {
    /// Taken: the fencing token.
    Taken(u64),
    /// Held by someone.
    Held,
    /// Others wait for it: join the queue ([`acquire`]).
    Waiters,
}

/// A first try (through the batcher): take the lock only if it is free and nobody waits.
pub(crate) async fn first_try(
    batcher: &Arc<Batcher>,
    keys: &LockKeys,
    owner: &str,
    lease: Duration,
    id: &str,
) -> Result<FirstTry> {
    let item = Item {
        kind: Kind::FirstTry,
        keys: [
            keys.lock.as_str().into(),
            keys.fence.as_str().into(),
            keys.queue.as_str().into(),
        ],
        args: [owner.into(), ms(lease).into(), id.into()],
    };
    let reply = batcher.call(item).await?;
    match (integer(&reply), token(&reply)) {
        (_, Some(token)) => Ok(FirstTry::Taken(token)),
        (Some(0), _) => Ok(FirstTry::Held),
        (Some(-1), _) => Ok(FirstTry::Waiters),
        _ => Err(unexpected("first try", &reply)),
    }
}

/// Runs the acquire script (a queued try, or with `ticket: ""` a try that also clears dead
/// waiters): the fencing token, or `None` if the lock is held or others are ahead in the queue.
pub(crate) async fn acquire(transport: &Transport, a: &Attempt<'_>) -> Result<Option<u64>> {
    let k = a.keys;
    let reply: Value = ACQUIRE
        .run(
            transport,
            vec![
                k.lock.as_str(),
                k.fence.as_str(),
                k.queue.as_str(),
                k.alive.as_str(),
                k.arrivals.as_str(),
            ],
            vec![
                a.owner.to_owned(),
                ms(a.lease),
                a.ticket.to_owned(),
                ms(a.waiter_alive),
                a.id.to_owned(),
            ],
        )
        .await?;
    Ok(token(&reply))
}

fn unexpected(script: &str, reply: &Value) -> crate::LockError {
    TransportError::Protocol {
        message: format!("the {script} script returned {reply:?}"),
    }
    .into()
}

/// Runs the all-or-nothing script: the tokens in key order, or `None` if any lock is held.
pub(crate) async fn acquire_many(
    transport: &Transport,
    all: &[LockKeys],
    owner: &str,
    lease: Duration,
    id: &str,
) -> Result<Option<Vec<u64>>> {
    let keys: Vec<&str> = all
        .iter()
        .map(|k| k.lock.as_str())
        .chain(all.iter().map(|k| k.fence.as_str()))
        .collect();
    let reply: Vec<Value> = ACQUIRE_MANY
        .run(
            transport,
            keys,
            vec![owner.to_owned(), ms(lease), id.to_owned()],
        )
        .await?;
    if reply.is_empty() {
        return Ok(None);
    }
    let tokens = reply.iter().map(token).collect::<Option<Vec<u64>>>();
    tokens
        .map(Some)
        .ok_or_else(|| unexpected("acquire-many", &Value::Array(reply)))
}

/// What a release found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    Yes,
    /// Held by another owner, or not at all.
    NotOwner,
    /// Re-acquired since this token (same owner, later acquisition).
    Superseded,
}

/// A release (through the batcher): compare-and-delete on owner and, if given, token.
pub(crate) async fn release(
    batcher: &Arc<Batcher>,
    keys: &LockKeys,
    owner: &str,
    token: Option<u64>,
) -> Result<Released> {
    let item = Item {
        kind: Kind::Release,
        keys: [
            keys.lock.as_str().into(),
            keys.fence.as_str().into(),
            keys.alive.as_str().into(),
        ],
        args: [
            owner.into(),
            token.map(|t| t.to_string()).unwrap_or_default().into(),
            keys.channel.as_str().into(),
        ],
    };
    let reply = match token {
        Some(_) => batcher.call(item).await?,
        // Not idempotent: resent after it ran, it would take away a lock the same owner id
        // took since. Written once, and never batched (a batch may be resent).
        None => batch::call_once(batcher.transport(), item).await?,
    };
    match integer(&reply) {
        Some(1) => Ok(Released::Yes),
        Some(-2) => Ok(Released::Superseded),
        Some(-1) => Ok(Released::NotOwner),
        _ => Err(unexpected("release", &reply)),
    }
}

/// Runs the renew script: whether this acquisition still holds the lock (now for `lease`).
pub(crate) async fn renew(
    transport: &Transport,
    keys: &LockKeys,
    owner: &str,
    token: u64,
    lease: Duration,
) -> Result<bool> {
    let renewed: i64 = RENEW
        .run(
            transport,
            vec![keys.lock.as_str(), keys.fence.as_str()],
            vec![owner.to_owned(), token.to_string(), ms(lease)],
        )
        .await?;
    Ok(renewed == 1)
}

/// Releases the lock if, and only if, the acquire attempt `id` took it: for an acquire whose
/// outcome the caller never learned.
pub(crate) async fn abandon(
    transport: &Transport,
    keys: &LockKeys,
    owner: &str,
    id: &str,
) -> Result<bool> {
    let released: i64 = ABANDON
        .run(
            transport,
            vec![keys.lock.as_str(), keys.fence.as_str(), keys.alive.as_str()],
            vec![owner, id, keys.channel.as_str()],
        )
        .await?;
    Ok(released == 1)
}

/// Who holds `key`, if anyone (the bare owner id, as Python kaiju writes it).
pub(crate) async fn owner(transport: &Transport, key: &str) -> Result<Option<String>> {
    use kaiju_transport::Classify;
    use kaiju_transport::fred::prelude::*;
    Ok(transport.pool().get(key).await.classify()?)
}
