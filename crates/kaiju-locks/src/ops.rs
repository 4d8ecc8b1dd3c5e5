//! The lock scripts and the calls that run them, shared by `Locks` (acquire, release) and
//! `LockGuard` (renew, release).
//!
//! Every script is idempotent for its own call (acquires by attempt id, releases by token,
//! renewals by nature), so a script resent after a lost reply returns what the first run did.

use std::sync::LazyLock;
use std::time::Duration;

use kaiju_transport::fred::types::Value;
use kaiju_transport::{Script, Transport, TransportError};

use crate::Result;
use crate::keys::LockKeys;

/// The next-token and replay functions, included by the scripts that take locks.
const TOKEN: &str = include_str!("../lua/token.lua");

/// A script that takes locks, with [`TOKEN`] in place of its include line.
fn with_token(lua: &str) -> Script {
    Script::new(lua.replacen("-- #include token.lua", TOKEN, 1))
}

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| with_token(include_str!("../lua/acquire.lua")));
static ACQUIRE_MANY: LazyLock<Script> =
    LazyLock::new(|| with_token(include_str!("../lua/acquire_many.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/release.lua")));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/renew.lua")));
static ABANDON: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/abandon.lua")));

/// A duration as whole milliseconds for a script argument, at least 1.
pub(crate) fn ms(duration: Duration) -> String {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
        .to_string()
}

/// A token from a script reply: a decimal string, or an integer.
fn token(value: &Value) -> Option<u64> {
    match value {
        Value::Integer(n) => u64::try_from(*n).ok(),
        other => other.as_str().and_then(|s| s.parse().ok()),
    }
    .filter(|t| *t > 0)
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

/// Runs the acquire script: the fencing token, or `None` if the lock is held or others are
/// ahead in the queue.
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
    tokens.map(Some).ok_or_else(|| {
        TransportError::Protocol {
            message: "the acquire script returned a token that is not a number".into(),
        }
        .into()
    })
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

/// Runs the release script (compare-and-delete on owner and, if given, token).
pub(crate) async fn release(
    transport: &Transport,
    keys: &LockKeys,
    owner: &str,
    token: Option<u64>,
) -> Result<Released> {
    let token = token.map(|t| t.to_string()).unwrap_or_default();
    let result: i64 = RELEASE
        .run(
            transport,
            vec![keys.lock.as_str(), keys.fence.as_str(), keys.alive.as_str()],
            vec![owner, token.as_str(), keys.channel.as_str()],
        )
        .await?;
    Ok(match result {
        1 => Released::Yes,
        -2 => Released::Superseded,
        _ => Released::NotOwner,
    })
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
