//! Listening to a client's events (pub/sub messages, invalidations, reconnects) without ever
//! going deaf.
//!
//! fred's `on_message`-style helpers end their task at the first `Lagged` error of the
//! broadcast channel behind them, silently: one burst of more events than the channel holds
//! (33 key invalidations from one `DEL`, 33 lock releases at once) and no event is ever handled
//! again. [`listen`] keeps listening, and tells the caller that events were missed, so it can
//! act as if every one of them had arrived (drop every cached copy, wake every waiter).

use std::future::Future;

use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

/// Runs `handle` for every event of `events`, and `missed` (with how many) after a burst that
/// overflowed the channel, until the client closes the channel (on `QUIT`). Spawns a task on
/// the current runtime.
pub fn listen<T, H, HF, M>(mut events: Receiver<T>, mut handle: H, mut missed: M)
where
    T: Clone + Send + 'static,
    H: FnMut(T) -> HF + Send + 'static,
    HF: Future<Output = ()> + Send,
    M: FnMut(u64) + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => handle(event).await,
                Err(RecvError::Lagged(count)) => {
                    tracing::debug!(count, "events were missed after a burst; recovering");
                    missed(count);
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use tokio::sync::broadcast;

    use super::*;

    #[tokio::test]
    async fn a_burst_that_overflows_the_channel_is_survived() {
        let (tx, rx) = broadcast::channel::<u64>(2);
        let (handled, missed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (h, m) = (handled.clone(), missed.clone());
        // Fill the channel past its capacity before the listener reads anything.
        for i in 0..10 {
            let _ = tx.send(i);
        }
        listen(
            rx,
            move |_| {
                h.fetch_add(1, Ordering::SeqCst);
                std::future::ready(())
            },
            move |n| {
                m.fetch_add(n, Ordering::SeqCst);
            },
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(missed.load(Ordering::SeqCst), 8);
        assert_eq!(handled.load(Ordering::SeqCst), 2);
        // Still listening after the burst.
        let _ = tx.send(99);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(handled.load(Ordering::SeqCst), 3);
    }
}
