//! A dedicated connection for blocking reads.

use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::Options;

use crate::Result;
use crate::connection::{Connection, once};

/// A connection of its own for blocking commands (`XREADGROUP BLOCK`, `BLPOP`).
///
/// A blocking command holds its connection until it returns; on a shared connection every other
/// command would wait behind it (measured: a GET waited 1.4 s behind a 1.5 s BLOCK). This
/// connection is used by one reader only, and every call through [`client`](Self::client) has
/// a timeout of the block time plus a margin, so the client-side timeout never fires before the
/// server has answered.
///
/// The connection closes when the last clone is dropped (or on [`close`](Self::close)), so a
/// reader that is aborted or dropped never leaves a connection open on the server.
///
/// Commands on it are sent at most once: a blocking read whose reply is lost to a dropped
/// connection fails instead of being sent again (a resent `XREADGROUP >` would deliver, and
/// leave pending, a second batch the caller never sees).
#[derive(Debug, Clone)]
pub struct BlockingConnection {
    connection: Connection,
    options: Options,
    block: Duration,
}

/// Added to the block time for the client-side timeout.
const MARGIN: Duration = Duration::from_secs(2);

impl BlockingConnection {
    pub(crate) async fn open(
        shared: &Client,
        block: Duration,
        timeout: Duration,
        primary: Option<crate::sentinel::Primary>,
    ) -> Result<Self> {
        let connection = Connection::open(shared, false, primary).await?;
        let options = Options {
            timeout: Some(block + MARGIN.max(timeout)),
            ..once()
        };
        Ok(Self {
            connection,
            options,
            block,
        })
    }

    /// The longest `BLOCK` this connection was opened for.
    pub fn block(&self) -> Duration {
        self.block
    }

    /// The client, with the per-call timeout applied. Use it for one blocking reader only.
    pub fn client(&self) -> fred::clients::WithOptions<Client> {
        self.connection.client().with_options(&self.options)
    }

    /// Ends a blocking command in progress on this connection as if its block time had run out
    /// (`CLIENT UNBLOCK ... TIMEOUT`, sent on a connection of fred's own): the command returns
    /// what it has (nothing, for a read). For a prompt stop that loses nothing: whatever the
    /// read already took is still delivered to its caller.
    pub async fn unblock(&self) -> Result<()> {
        use fred::interfaces::ClientInterface;
        use fred::types::ClientUnblockFlag;
        self.connection
            .client()
            .unblock_self(Some(ClientUnblockFlag::Timeout))
            .await?;
        Ok(())
    }

    /// Closes the connection.
    pub async fn close(&self) -> Result<()> {
        self.connection.close().await
    }
}
