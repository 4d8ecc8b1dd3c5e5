//! A connection of its own, closed when the last handle is dropped.

use std::sync::Arc;

use fred::clients::{Client, Pipeline, WithOptions};
use fred::interfaces::ClientLike;
use fred::types::config::Options;

use crate::Result;

/// A dedicated connection (per cluster node, in a cluster) outside the shared pool: for a
/// subscriber, a tracking connection, a blocking reader. Cheap to clone.
///
/// fred keeps a connection open until `QUIT`, whoever still holds the client; this handle sends
/// it when the last clone is dropped (from a task, best effort), so a component that is dropped
/// or aborted never leaves a connection open on the server.
#[derive(Debug, Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Without a runtime the connection tasks are gone already.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

impl Connection {
    /// Opens a new connection with the settings of `shared`. A `watched` one is PINGed every
    /// command timeout and reconnected when it stops answering (see the watchdog); a connection
    /// for blocking reads must not be (a PING would wait behind the read). Through Sentinel
    /// (`primary`), every connection follows the primary the sentinels name.
    pub(crate) async fn open(
        shared: &Client,
        watched: bool,
        primary: Option<crate::sentinel::Primary>,
    ) -> Result<Self> {
        let client = shared.clone_new();
        let _connection_task = client.init().await?;
        let inner = Arc::new(Inner { client });
        let every = shared.perf_config().default_command_timeout;
        if watched && !every.is_zero() {
            crate::watchdog::spawn(Arc::downgrade(&inner), every, |inner: &Inner| {
                vec![inner.client.clone()]
            });
        }
        if let Some(primary) = primary {
            crate::sentinel::follow_primary(Arc::downgrade(&inner), primary, |inner: &Inner| {
                vec![inner.client.clone()]
            });
        }
        Ok(Self { inner })
    }

    /// The fred client of this connection.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// A pipeline on this connection whose commands are written at most once (see
    /// [`Transport::once`](crate::Transport::once)).
    pub fn pipeline_once(&self) -> WithOptions<Pipeline<Client>> {
        self.inner.client.pipeline().with_options(&once())
    }

    /// Closes the connection now (every clone stops working).
    pub async fn close(&self) -> Result<()> {
        self.inner.client.quit().await?;
        Ok(())
    }
}

/// Options that allow a single write attempt: a command whose connection drops before its
/// reply arrives fails instead of being sent again.
pub(crate) fn once() -> Options {
    Options {
        max_attempts: Some(1),
        ..Options::default()
    }
}
