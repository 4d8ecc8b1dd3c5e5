//! Release notifications: one pub/sub connection per `Locks`, one channel per lock being
//! waited for in this process.
//!
//! A release script publishes on the lock's channel; every local waiter of that lock wakes and
//! tries again (the Redis queue decides who wins). Subscriptions exist only while someone waits.
//! After a reconnect the channels are subscribed again; a wake-up lost meanwhile is covered by
//! the waiters' periodic retry. The connection closes when the last `Locks` clone (and the last
//! waiter) is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kaiju_transport::fred::clients::Client;
use kaiju_transport::fred::interfaces::{EventInterface, PubsubInterface};
use kaiju_transport::fred::types::Message;
use kaiju_transport::{Connection, Transport, TransportError, events};
use tokio::sync::Notify;

type Channels = Arc<Mutex<HashMap<String, (Arc<Notify>, usize)>>>;

#[derive(Debug)]
pub(crate) struct Wakeups {
    connection: Connection,
    channels: Channels,
}

/// A registered interest in one channel; dropping it unsubscribes when it was the last.
pub(crate) struct Waiting {
    wakeups: Arc<Wakeups>,
    channel: String,
    pub(crate) notify: Arc<Notify>,
}

impl Wakeups {
    pub(crate) async fn connect(transport: &Transport) -> Result<Arc<Self>, TransportError> {
        let connection = transport.dedicated_connection().await?;
        let client = connection.client();
        let channels: Channels = Arc::default();
        let routes = channels.clone();
        let all = channels.clone();
        events::listen(
            client.message_rx(),
            move |message: Message| {
                let notify = routes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&*message.channel)
                    .map(|(notify, _)| notify.clone());
                if let Some(notify) = notify {
                    notify.notify_waiters();
                }
                std::future::ready(())
            },
            // Releases were missed in a burst: wake every waiter, each tries again.
            move |_| {
                for (notify, _) in all.lock().unwrap_or_else(PoisonError::into_inner).values() {
                    notify.notify_waiters();
                }
            },
        );
        let resubscribe = (client.clone(), channels.clone());
        let again = resubscribe.clone();
        events::listen(
            client.reconnect_rx(),
            move |_| resubscribe_all(resubscribe.0.clone(), resubscribe.1.clone()),
            move |_| {
                tokio::spawn(resubscribe_all(again.0.clone(), again.1.clone()));
            },
        );
        Ok(Arc::new(Self {
            connection,
            channels,
        }))
    }

    /// Starts listening on `channel` (subscribing if nobody here listens yet).
    pub(crate) async fn wait_on(
        self: &Arc<Self>,
        channel: &str,
    ) -> Result<Waiting, TransportError> {
        let (notify, first) = {
            let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = channels
                .entry(channel.to_owned())
                .or_insert_with(|| (Arc::new(Notify::new()), 0));
            entry.1 += 1;
            (entry.0.clone(), entry.1 == 1)
        };
        let waiting = Waiting {
            wakeups: self.clone(),
            channel: channel.to_owned(),
            notify,
        };
        if first {
            self.connection.client().subscribe(channel).await?;
        }
        Ok(waiting)
    }

    pub(crate) async fn close(&self) {
        let _ = self.connection.close().await;
    }
}

/// Subscribes again to every channel someone here waits on (after a reconnect).
async fn resubscribe_all(client: Client, channels: Channels) {
    let names: Vec<String> = channels
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .keys()
        .cloned()
        .collect();
    if !names.is_empty()
        && let Err(e) = client.subscribe(names).await
    {
        tracing::warn!(error = %e, "could not re-subscribe to lock release channels");
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let last = {
            let mut channels = self
                .wakeups
                .channels
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match channels.get_mut(&self.channel) {
                Some(entry) if entry.1 > 1 => {
                    entry.1 -= 1;
                    false
                }
                Some(_) => {
                    channels.remove(&self.channel);
                    true
                }
                None => false,
            }
        };
        if last && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (wakeups, channel) = (self.wakeups.clone(), self.channel.clone());
            runtime.spawn(async move {
                // A new waiter may have subscribed again in between; then keep the channel.
                let still_unused = !wakeups
                    .channels
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains_key(&channel);
                if still_unused {
                    let _ = wakeups.connection.client().unsubscribe(channel).await;
                }
            });
        }
    }
}
