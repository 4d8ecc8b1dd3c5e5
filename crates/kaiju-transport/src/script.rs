//! Lua scripts run with EVALSHA, loaded on demand.

use fred::interfaces::LuaInterface;
use fred::types::{FromValue, MultipleKeys, MultipleValues};
use fred::util::sha1_hash;

use crate::{Result, Transport, TransportError};

/// A Lua script: run by its SHA1 with `EVALSHA`; on `NOSCRIPT` (a restarted server, a new
/// cluster primary after a failover, `SCRIPT FLUSH`) it is loaded on every primary and run again.
///
/// Keep scripts in `.lua` files and load them with `include_str!`. In a cluster every key a
/// script touches must be in one slot (a hash tag), or the server answers `CROSSSLOT`.
///
/// ```no_run
/// # async fn demo(transport: &kaiju_transport::Transport) -> kaiju_transport::Result<()> {
/// use kaiju_transport::Script;
/// static INCR_BY: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
///     Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])")
/// });
/// let n: i64 = INCR_BY.run(transport, vec!["counter"], vec!["5"]).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Script {
    lua: String,
    sha: String,
}

impl Script {
    /// A script from its Lua source.
    pub fn new(lua: impl Into<String>) -> Self {
        let lua = lua.into();
        let sha = sha1_hash(&lua);
        Self { lua, sha }
    }

    /// The script's SHA1 (what `EVALSHA` takes).
    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// The Lua source.
    pub fn source(&self) -> &str {
        &self.lua
    }

    /// Loads the script on every primary (`SCRIPT LOAD`).
    pub async fn load(&self, transport: &Transport) -> Result<()> {
        let _: () = transport
            .client()
            .script_load_cluster(self.lua.as_str())
            .await?;
        Ok(())
    }

    /// Runs the script with `EVALSHA`, loading it first if the server does not know it.
    pub async fn run<R, K, V>(&self, transport: &Transport, keys: K, args: V) -> Result<R>
    where
        R: FromValue,
        K: Into<MultipleKeys> + Send,
        V: TryInto<MultipleValues> + Send,
        V::Error: Into<fred::error::Error> + Send,
    {
        let keys: MultipleKeys = keys.into();
        let args: MultipleValues = args
            .try_into()
            .map_err(|e| TransportError::from(e.into()))?;
        let pool = transport.pool();
        match pool
            .evalsha::<R, _, _, _>(self.sha.as_str(), keys.clone(), args.clone())
            .await
            .map_err(TransportError::from)
        {
            Err(TransportError::NoScript { .. }) => {
                tracing::debug!(sha = %self.sha, "script not cached on the server, loading it");
                self.load(transport).await?;
                Ok(pool.evalsha(self.sha.as_str(), keys, args).await?)
            }
            other => other,
        }
    }
}
