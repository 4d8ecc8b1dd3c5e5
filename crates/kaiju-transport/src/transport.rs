//! The shared connection pool.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::{Client, Pool};
use fred::interfaces::ClientLike;
use fred::types::InfoKind;
use kaiju_core::RedisSettings;

use crate::blocking::BlockingConnection;
use crate::builder::{Deployment, builder};
use crate::capabilities::Capabilities;
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
    deployment: Deployment,
    capabilities: Capabilities,
    settings: RedisSettings,
}

impl Transport {
    /// Connects, checks the credentials and reads the server's capabilities.
    ///
    /// Fails fast with [`TransportError::Auth`] on bad credentials and with
    /// [`TransportError::Connection`] or [`TransportError::Timeout`] when no server answers;
    /// after a successful connect, lost connections are re-established in the background.
    pub async fn connect(settings: &RedisSettings) -> Result<Self> {
        let (builder, deployment) = builder(settings)?;
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
                return Err(e.into());
            }
            Err(_) => {
                let _ = pool.quit().await;
                return Err(TransportError::Timeout {
                    message: format!("no connection within {:?}", settings.connect_timeout() * 2),
                });
            }
        };
        let capabilities = Capabilities::from_info(&info);
        tracing::info!(
            ?deployment,
            kind = ?capabilities.kind,
            version = %capabilities.server_version,
            "connected to redis"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                deployment,
                capabilities,
                settings: settings.clone(),
            }),
        })
    }

    /// The shared fred pool. Run any fred command on it; concurrent commands are pipelined.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// One client of the pool (round robin).
    pub fn client(&self) -> &Client {
        self.inner.pool.next()
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

    /// The settings this transport was opened with.
    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    /// Opens a dedicated connection for blocking reads of at most `block`.
    pub async fn blocking_connection(&self, block: Duration) -> Result<BlockingConnection> {
        BlockingConnection::open(self.client(), block, self.inner.settings.command_timeout()).await
    }

    /// `PING` through the pool.
    pub async fn ping(&self) -> Result<()> {
        let _: String = self.inner.pool.ping(None).await?;
        Ok(())
    }

    /// Closes every connection of the pool. Clones of this transport stop working.
    pub async fn close(&self) -> Result<()> {
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
