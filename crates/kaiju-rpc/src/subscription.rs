//! One pub/sub subscription kept alive across reconnects, for the reply channel of a client
//! and the channel of an `RpcSubscriber`.

use std::sync::Arc;
use std::time::Duration;

use kaiju_transport::fred::clients::Client;
use kaiju_transport::fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use kaiju_transport::{Classify, TransportError, events};
use tokio::sync::watch;

type Keep = (Client, String, Arc<watch::Sender<bool>>);

/// Subscribes `client` to `channel` (returning once Redis confirmed it), and subscribes again
/// after every reconnect. The returned state is `true` while the subscription is known to
/// be live: it turns `false` at a connection error (before the reconnect is even noticed) and
/// `true` again once the channel is subscribed on the new connection.
pub(crate) async fn subscribe_and_keep(
    client: &Client,
    channel: &str,
) -> Result<watch::Receiver<bool>, TransportError> {
    let (state, subscribed) = watch::channel(false);
    let keep: Keep = (client.clone(), channel.to_owned(), Arc::new(state));
    let (again, missed, on_error) = (keep.clone(), keep.clone(), keep.clone());
    events::listen(
        client.reconnect_rx(),
        move |_| resubscribe(again.clone()),
        move |_| {
            tokio::spawn(resubscribe(missed.clone()));
        },
    );
    // A connection error comes before the reconnect: waiters hold from here on, not only
    // from when the reconnect is noticed (a message published in between reaches nobody).
    // Subscribing again is harmless if the connection survived.
    events::listen(
        client.error_rx(),
        move |_| {
            on_error.2.send_replace(false);
            tokio::spawn(resubscribe(on_error.clone()));
            std::future::ready(())
        },
        |_| {},
    );
    client.subscribe(channel).await.classify()?;
    keep.2.send_replace(true);
    Ok(subscribed)
}

/// After a reconnect (or an error): the subscription is gone with the old connection; makes
/// it again (retrying while the client is connected), and says when it is back.
async fn resubscribe((client, channel, state): Keep) {
    state.send_replace(false);
    let mut pause = Duration::from_millis(50);
    loop {
        match client.subscribe(channel.as_str()).await {
            Ok(()) => {
                state.send_replace(true);
                return;
            }
            Err(e) if client.is_connected() => {
                tracing::warn!(%channel, error = %e, "could not subscribe again; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            // Disconnected again: the next reconnect subscribes.
            Err(_) => return,
        }
    }
}
