//! Half-open connection detection that works under load.
//!
//! fred declares a connection unresponsive when no reply arrived within a limit after its *last
//! write*; every new command resets that clock, so a connection that went half-open (the peer
//! vanished without a FIN, a network device dropped the flow) and keeps getting commands, for
//! instance from a caller that retries, is never declared dead: every call times out, forever.
//! This watchdog PINGs each connection every command timeout; a PING that gets no answer within
//! the command timeout forces that client to reconnect.

use std::sync::Weak;
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike;

use crate::error::TransportError;

/// Watches the clients that `clients` yields while `alive` can be upgraded.
pub(crate) fn spawn<T, F>(alive: Weak<T>, every: Duration, clients: F)
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> Vec<Client> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(owner) = alive.upgrade() else {
                return;
            };
            let watched = clients(&owner);
            drop(owner);
            for client in watched {
                check(&client, every).await;
            }
        }
    });
}

/// PINGs one client; no answer within `timeout` forces a reconnect.
async fn check(client: &Client, timeout: Duration) {
    if !client.is_connected() {
        return; // fred is reconnecting already
    }
    let answered = tokio::time::timeout(timeout, client.ping::<fred::types::Value>(None)).await;
    let silent = match answered {
        Err(_) => true,
        Ok(Err(e)) => TransportError::from(e).is_timeout(),
        Ok(Ok(_)) => false,
    };
    if silent {
        tracing::warn!(
            client = %client.id(),
            "a connection did not answer PING within {timeout:?}: reconnecting it (half-open?)"
        );
        if let Err(e) = client.force_reconnection().await {
            tracing::warn!(error = %TransportError::from(e), "forcing a reconnection failed");
        }
    }
}
