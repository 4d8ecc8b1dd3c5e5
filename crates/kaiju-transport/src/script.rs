//! Lua scripts run with EVALSHA, loaded on demand.

use fred::interfaces::{ClientLike, LuaInterface};
use fred::types::{ClusterHash, CustomCommand, FromValue, MultipleKeys, MultipleValues, Value};
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

    /// Runs the script with `EVALSHA`, loading it first if the server does not know it. The
    /// call may be sent again after a reconnect (as on [`Transport::pool`]): use it for scripts
    /// that are safe to run twice, and [`run_once`](Self::run_once) for the others.
    ///
    /// Unlike fred's own `evalsha`, scripts are pipelined with other commands on a connection
    /// (fred waits for every reply before it writes an `EVALSHA`, which serialises scripts per
    /// connection); a `NOSCRIPT` reply only means this call did not run, and it is sent again.
    pub async fn run<R, K, V>(&self, transport: &Transport, keys: K, args: V) -> Result<R>
    where
        R: FromValue,
        K: Into<MultipleKeys> + Send,
        V: TryInto<MultipleValues> + Send,
        V::Error: Into<fred::error::Error> + Send,
    {
        self.eval(transport, keys, args, false).await
    }

    /// Runs the script with `EVALSHA`, written at most once (as on [`Transport::once`]): if the
    /// connection drops before the reply, the call fails with
    /// [`TransportError::Connection`] and the script may or may not have run. `NOSCRIPT` means
    /// it did not run, so it is loaded and sent again.
    pub async fn run_once<R, K, V>(&self, transport: &Transport, keys: K, args: V) -> Result<R>
    where
        R: FromValue,
        K: Into<MultipleKeys> + Send,
        V: TryInto<MultipleValues> + Send,
        V::Error: Into<fred::error::Error> + Send,
    {
        self.eval(transport, keys, args, true).await
    }

    async fn eval<R, K, V>(&self, transport: &Transport, keys: K, args: V, once: bool) -> Result<R>
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
        // EVALSHA <sha> <numkeys> <keys...> <args...>, routed by its first key.
        let keys = keys.inner();
        let args = match args {
            Value::Array(values) => values,
            Value::Null => Vec::new(),
            single => vec![single],
        };
        let mut command: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
        command.push(self.sha.as_str().into());
        command.push(Value::Integer(
            i64::try_from(keys.len()).unwrap_or(i64::MAX),
        ));
        // In a cluster, to the node of the first key's slot (every key must share it).
        let hash = keys.first().map_or(ClusterHash::Random, |k| {
            ClusterHash::Custom(kaiju_core::key_slot(k.as_bytes()))
        });
        command.extend(keys.into_iter().map(|k| Value::Bytes(k.into_bytes())));
        command.extend(args);
        let evalsha = CustomCommand::new_static("EVALSHA", hash, false);
        let send = |command: Vec<Value>| {
            let evalsha = evalsha.clone();
            async move {
                if once {
                    transport
                        .once()
                        .custom::<Value, Value>(evalsha, command)
                        .await
                } else {
                    transport
                        .pool()
                        .custom::<Value, Value>(evalsha, command)
                        .await
                }
            }
        };
        let reply = match send(command.clone()).await.map_err(TransportError::from) {
            Err(TransportError::NoScript { .. }) => {
                tracing::debug!(sha = %self.sha, "script not cached on the server, loading it");
                self.load(transport).await?;
                send(command).await?
            }
            other => other?,
        };
        Ok(R::from_value(reply)?)
    }
}
