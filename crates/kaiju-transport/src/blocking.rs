//! A dedicated connection for blocking reads.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::Options;

use crate::Result;

/// A connection of its own for blocking commands (`XREADGROUP BLOCK`, `BLPOP`).
///
/// A blocking command holds its connection until it returns; on a shared connection every other
/// command would wait behind it (a GET waited 1.4 s behind a 1.5 s BLOCK, STACK-NOTES §3). This
/// connection is used by one reader only, and every call through [`client`](Self::client) has
/// a timeout of the block time plus a margin, so the client-side timeout never fires before the
/// server has answered.
///
/// The connection closes when the last clone is dropped (or on [`close`](Self::close)), so a
/// reader that is aborted or dropped never leaves a connection open on the server.
#[derive(Debug, Clone)]
pub struct BlockingConnection {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    options: Options,
    block: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // fred keeps a connection open until QUIT, whoever holds the client; send it from a task
        // (best effort: without a runtime the connection tasks are gone anyway).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

/// Added to the block time for the client-side timeout.
const MARGIN: Duration = Duration::from_secs(2);

impl BlockingConnection {
    pub(crate) async fn open(shared: &Client, block: Duration, timeout: Duration) -> Result<Self> {
        let client = shared.clone_new();
        let _connection_task = client.init().await?;
        let options = Options {
            timeout: Some(block + MARGIN.max(timeout)),
            ..Options::default()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                options,
                block,
            }),
        })
    }

    /// The longest `BLOCK` this connection was opened for.
    pub fn block(&self) -> Duration {
        self.inner.block
    }

    /// The client, with the per-call timeout applied. Use it for one blocking reader only.
    pub fn client(&self) -> fred::clients::WithOptions<Client> {
        self.inner.client.with_options(&self.inner.options)
    }

    /// Closes the connection.
    pub async fn close(&self) -> Result<()> {
        self.inner.client.quit().await?;
        Ok(())
    }
}
