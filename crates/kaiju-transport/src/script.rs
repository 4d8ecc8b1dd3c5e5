//! Lua scripts, called as functions of kaiju's function library (`FCALL`), or run with
//! `EVALSHA` and loaded on demand where the library is not loaded.

use fred::interfaces::{ClientLike, FunctionInterface, LuaInterface};
use fred::types::{ClusterHash, CustomCommand, FromValue, MultipleKeys, MultipleValues, Value};
use fred::util::sha1_hash;

use crate::{Result, Transport, TransportError};

/// A Lua script: called as a function with `FCALL` where an admin loaded it (Redis 7+,
/// [`load_function`](Self::load_function), `kaiju functions load`), else run by its SHA1 with
/// `EVALSHA`; on `NOSCRIPT` (a restarted server, a new cluster primary after a failover,
/// `SCRIPT FLUSH`) it is loaded on every primary and run again.
///
/// Each script is a function library of its own, named after the script's SHA1
/// ([`function_name`](Self::function_name)): a script that changes is a new function, so an app
/// never calls a function of another version, and apps of several versions share a server.
/// A transport tries `FCALL` first; when the server or the user refuses the call itself (the
/// function is not loaded, no `+fcall`, no functions before Redis 7), which means that nothing
/// ran, it sends the same call with `EVALSHA`, and uses `EVALSHA` from then on: for this script
/// when its function is not loaded, for every script when the user may not call `FCALL`
/// ([`runs_as_function`](Self::runs_as_function)). Functions loaded later are used by
/// transports opened later. A user granted `+fcall` alone runs kaiju's scripts
/// without being able to run Lua of its own.
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
    function: String,
}

impl Script {
    /// A script from its Lua source.
    pub fn new(lua: impl Into<String>) -> Self {
        let lua = lua.into();
        let sha = sha1_hash(&lua);
        let function = format!("kaiju_{sha}");
        Self { lua, sha, function }
    }

    /// The name of the script as a function, and of its function library: `kaiju_<sha1>`.
    pub fn function_name(&self) -> &str {
        &self.function
    }

    /// The script as a Redis 7 function library (what `FUNCTION LOAD` takes): one function,
    /// named as the library, whose body is the script with `KEYS` and `ARGV` as its arguments.
    pub fn library(&self) -> String {
        let name = &self.function;
        format!(
            "#!lua name={name}\nredis.register_function('{name}', function(KEYS, ARGV)\n{}\nend)\n",
            self.lua
        )
    }

    /// Whether `transport` calls this script as a function (`FCALL`): on a server with
    /// functions, until `FCALL` was refused to the user or found no such function there.
    pub fn runs_as_function(&self, transport: &Transport) -> bool {
        transport.scripts_as_functions() && !transport.function_missing(&self.function)
    }

    /// Loads the script as a function library on every primary (`FUNCTION LOAD REPLACE`:
    /// loading it again changes nothing, since the name is the content's hash). Needs a user
    /// allowed `FUNCTION LOAD`: an admin's step, done once per server (functions are kept in
    /// the RDB and AOF files and replicated).
    pub async fn load_function(&self, transport: &Transport) -> Result<()> {
        let _: Value = transport
            .client()
            .function_load_cluster(true, self.library())
            .await?;
        Ok(())
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
        // FCALL <function> | EVALSHA <sha>, then <numkeys> <keys...> <args...>, routed by its
        // first key.
        let keys = keys.inner();
        let args = match args {
            Value::Array(values) => values,
            Value::Null => Vec::new(),
            single => vec![single],
        };
        let mut body: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
        body.push(Value::Null);
        body.push(Value::Integer(
            i64::try_from(keys.len()).unwrap_or(i64::MAX),
        ));
        // In a cluster, to the node of the first key's slot (every key must share it).
        let hash = keys.first().map_or(ClusterHash::Random, |k| {
            ClusterHash::Custom(kaiju_core::key_slot(k.as_bytes()))
        });
        body.extend(keys.into_iter().map(|k| Value::Bytes(k.into_bytes())));
        body.extend(args);
        let send = |name: &'static str, command: Vec<Value>| {
            let command_kind = CustomCommand::new_static(name, hash.clone(), false);
            async move {
                let sent = if once {
                    transport
                        .once()
                        .custom::<Value, Value>(command_kind, command)
                        .await
                } else {
                    transport
                        .pool()
                        .custom::<Value, Value>(command_kind, command)
                        .await
                };
                sent.map_err(TransportError::from)
            }
        };
        let mut unloaded = false;
        let mut refused_oom = None;
        if self.runs_as_function(transport) {
            let mut fcall = body.clone();
            fcall[0] = self.function.as_str().into();
            match send("FCALL", fcall).await {
                // Out of memory, a function that may write is refused whole, before it runs;
                // a script run with EVALSHA is checked per command instead, so one that only
                // frees memory (a lock's release) still runs. This call alone goes by EVALSHA.
                Err(e @ TransportError::Server { .. }) if e.is_out_of_memory() => {
                    refused_oom = Some(e);
                }
                // Refused before it ran: the same call with EVALSHA, and EVALSHA from now on.
                Err(e) if e.is_function_refused() => {
                    tracing::info!(
                        function = %self.function,
                        error = %e,
                        "this function cannot be called here; the script uses EVALSHA"
                    );
                    unloaded = matches!(e, TransportError::NoFunction { .. });
                    if unloaded {
                        transport.mark_function_missing(&self.function);
                    } else {
                        transport.use_evalsha();
                    }
                }
                other => return Ok(R::from_value(other?)?),
            }
        }
        body[0] = self.sha.as_str().into();
        let reply = match send("EVALSHA", body.clone()).await {
            Err(TransportError::NoScript { .. }) => {
                tracing::debug!(sha = %self.sha, "script not cached on the server, loading it");
                self.load(transport).await?;
                send("EVALSHA", body).await?
            }
            Err(TransportError::NoPermission { message }) => {
                return Err(match refused_oom {
                    // A user allowed FCALL alone, on a server out of memory: the function's
                    // refusal is the answer.
                    Some(oom) => oom,
                    // A user allowed FCALL alone, on a server without kaiju's functions.
                    None if unloaded => TransportError::NoPermission {
                        message: format!(
                            "{message} (and {} is not loaded: load kaiju's functions with \
                             `kaiju functions load`)",
                            self.function
                        ),
                    },
                    None => TransportError::NoPermission { message },
                });
            }
            other => other?,
        };
        Ok(R::from_value(reply)?)
    }
}
