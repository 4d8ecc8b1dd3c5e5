//! The shared connection pool.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::clients::{Client, Pipeline, Pool, WithOptions};
use fred::interfaces::ClientLike;
use fred::types::InfoKind;
use kaiju_core::RedisSettings;

use crate::blocking::BlockingConnection;
use crate::builder::{Deployment, builder};
use crate::capabilities::Capabilities;
use crate::connection::{Connection, once};
use crate::{Result, TransportError};

/// A connection to Redis, KeyDB or Valkey: a pool of auto-pipelining connections shared by every
/// component of an app. Cheap to clone.
///
/// ```no_run
/// use kaiju_core::RedisSettings;
/// use kaiju_transport::Transport;
///
/// # async fn demo() -> kaiju_transport::Result<()> {
/// let transport = Transport::connect(&RedisSettings::from_url("redis://127.0.0.1:6379")).await?;
/// println!("{:?} {}", transport.capabilities().kind, transport.capabilities().redis_version);
/// transport.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The pool, with commands written at most once.
    once: WithOptions<Pool>,
    deployment: Deployment,
    capabilities: Capabilities,
    settings: RedisSettings,
    /// Through Sentinel: where the sentinels say the primary is, for every connection to follow.
    primary: Option<crate::sentinel::Primary>,
    /// Set by `close`: the primary's asker stops too (it also stops once nothing follows it).
    closed: Arc<AtomicBool>,
    /// Whether scripts are called as functions (`FCALL`) or by `EVALSHA`: see
    /// [`Transport::scripts_as_functions`].
    functions: AtomicBool,
    /// The functions `FCALL` did not find on this transport's server: their scripts use
    /// `EVALSHA`.
    missing_functions: std::sync::RwLock<std::collections::HashSet<String>>,
}

impl Transport {
    /// Checks `settings` as [`connect`](Self::connect) would, without connecting: values that
    /// cannot work and URLs that do not parse are [`TransportError::Config`] naming the field.
    pub fn check(settings: &RedisSettings) -> Result<()> {
        builder(settings).map(|_| ())
    }

    /// Connects, checks the credentials and reads the server's capabilities.
    ///
    /// Fails fast with [`TransportError::Auth`] on bad credentials and with
    /// [`TransportError::Connection`] or [`TransportError::Timeout`] when no server answers;
    /// after a successful connect, lost connections are re-established in the background.
    pub async fn connect(settings: &RedisSettings) -> Result<Self> {
        let (builder, deployment) = builder(settings)?;
        let target = builder.get_config().map_or_else(
            || "the configured Redis server".to_owned(),
            crate::builder::target,
        );
        let sentinels = builder
            .get_config()
            .and_then(|config| crate::sentinel::Sentinels::of(config, settings));
        let pool = builder.build_pool(settings.pool_size)?;
        let connect = async {
            let _connection_tasks = pool.init().await?;
            let info: String = pool.info(Some(InfoKind::Server)).await?;
            Ok::<_, fred::error::Error>(info)
        };
        // fred's connect timeout applies per attempt; bound the whole handshake as well.
        let info = match tokio::time::timeout(settings.connect_timeout() * 2, connect).await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                let _ = pool.quit().await;
                let e = TransportError::from(e);
                if let Some(sentinels) = &sentinels
                    && !matches!(e, TransportError::Auth { .. })
                {
                    return Err(crate::sentinel::diagnose(sentinels, e)
                        .await
                        .connecting(&target));
                }
                return Err(e.connecting(&target));
            }
            Err(_) => {
                let _ = pool.quit().await;
                return Err(TransportError::Timeout {
                    message: format!("no answer within {:?}", settings.connect_timeout() * 2),
                }
                .connecting(&target));
            }
        };
        let mut capabilities = Capabilities::from_info(&info);
        capabilities.features = crate::features::probe(&pool, settings).await;
        tracing::info!(
            ?deployment,
            kind = ?capabilities.kind,
            version = %capabilities.server_version,
            features = ?capabilities.features,
            "connected to redis"
        );
        let closed = Arc::new(AtomicBool::new(false));
        let primary = sentinels
            .and_then(|sentinels| crate::sentinel::ask_for_primary(closed.clone(), sentinels));
        let inner = Arc::new(Inner {
            once: pool.with_options(&once()),
            pool,
            deployment,
            functions: AtomicBool::new(capabilities.has_functions()),
            missing_functions: std::sync::RwLock::default(),
            capabilities,
            settings: settings.clone(),
            primary,
            closed,
        });
        crate::metrics::count_reconnects(inner.pool.clients());
        crate::watchdog::spawn(
            Arc::downgrade(&inner),
            settings.command_timeout(),
            |inner: &Inner| inner.pool.clients().to_vec(),
        );
        if let Some(primary) = &inner.primary {
            crate::sentinel::follow_primary(
                Arc::downgrade(&inner),
                primary.clone(),
                |inner: &Inner| inner.pool.clients().to_vec(),
            );
        }
        Ok(Self { inner })
    }

    /// The shared fred pool, for commands that are safe to run twice: concurrent commands are
    /// pipelined, and a command whose connection drops before its reply arrives is sent again
    /// after the reconnect (within the command timeout), so a failover costs a delay, not an
    /// error. Reads, `SET`, `DEL`, `EXPIRE`, `XACK`, `HSET` are fine here.
    ///
    /// Commands that must not run twice (`XADD`, `LPUSH`, `INCR`, `SET ... NX`, `SET ... GET`,
    /// pops, most scripts) go through [`once`](Self::once) instead.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The shared pool, with every command written at most once. If the connection drops
    /// after a command was written and before its reply arrived, the call fails with
    /// [`TransportError::Connection`] (the command may or may not have run; the caller decides
    /// what to do) instead of being sent again behind the caller's back.
    pub fn once(&self) -> &WithOptions<Pool> {
        &self.inner.once
    }

    /// One client of the pool (round robin).
    pub fn client(&self) -> &Client {
        self.inner.pool.next()
    }

    /// One client of the pool with every command written at most once (as on
    /// [`once`](Self::once)), for the commands the pool does not offer (`PUBLISH`).
    pub fn client_once(&self) -> WithOptions<Client> {
        self.client().with_options(&once())
    }

    /// A pipeline (one round trip for many commands) on one client of the pool. Its commands
    /// may be sent again after a reconnect, as on [`pool`](Self::pool).
    pub fn pipeline(&self) -> Pipeline<Client> {
        self.client().pipeline()
    }

    /// A pipeline whose commands are written at most once, as on [`once`](Self::once).
    pub fn pipeline_once(&self) -> WithOptions<Pipeline<Client>> {
        self.client().pipeline().with_options(&once())
    }

    /// Opens a connection of its own (for a subscriber or a tracking connection), closed when
    /// its last handle is dropped.
    pub async fn dedicated_connection(&self) -> Result<Connection> {
        Connection::open(self.client(), true, self.inner.primary.clone()).await
    }

    /// Single node, cluster or sentinel.
    pub fn deployment(&self) -> Deployment {
        self.inner.deployment
    }

    /// Whether keys are sharded over cluster slots.
    pub fn is_cluster(&self) -> bool {
        self.inner.deployment == Deployment::Cluster
    }

    /// What the server is and can do, as read at connect time.
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// Whether [`Script`](crate::Script)s may be called as functions (`FCALL`), rather than
    /// with `EVALSHA`. True on a server with functions (Redis 7+) until an `FCALL` shows that
    /// this user or server cannot run any (the user may not call `FCALL`); from then on this
    /// transport uses `EVALSHA`. A function that is not loaded is remembered on its own
    /// ([`Script::runs_as_function`](crate::Script::runs_as_function)).
    pub fn scripts_as_functions(&self) -> bool {
        self.inner.functions.load(Ordering::Relaxed)
    }

    /// Makes this transport call every script with `EVALSHA` from now on.
    pub(crate) fn use_evalsha(&self) {
        self.inner.functions.store(false, Ordering::Relaxed);
    }

    /// Whether `FCALL` found no function `name` on this transport's server.
    pub(crate) fn function_missing(&self, name: &str) -> bool {
        self.inner
            .missing_functions
            .read()
            .map_or(true, |missing| missing.contains(name))
    }

    /// Makes this transport run the script of function `name` with `EVALSHA` from now on.
    pub(crate) fn mark_function_missing(&self, name: &str) {
        if let Ok(mut missing) = self.inner.missing_functions.write() {
            missing.insert(name.to_owned());
        }
    }

    /// The settings this transport was opened with.
    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    /// Opens a dedicated connection for blocking reads of at most `block`.
    pub async fn blocking_connection(&self, block: Duration) -> Result<BlockingConnection> {
        BlockingConnection::open(
            self.client(),
            block,
            self.inner.settings.command_timeout(),
            self.inner.primary.clone(),
        )
        .await
    }

    /// `PING` through the pool.
    pub async fn ping(&self) -> Result<()> {
        let _: String = self.inner.pool.ping(None).await?;
        Ok(())
    }

    /// Closes every connection of the pool. Clones of this transport stop working.
    pub async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.pool.quit().await?;
        Ok(())
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("deployment", &self.inner.deployment)
            .field("capabilities", &self.inner.capabilities)
            .field("settings", &self.inner.settings)
            .finish()
    }
}
