//! What a listener calls for each entry.

use std::future::Future;

use crate::envelope::Headers;

/// One decoded entry.
#[derive(Debug, Clone)]
pub struct Message<B> {
    /// The entry id (`<ms>-<seq>`).
    pub id: String,
    /// The body (`[method, params]` or a batch of them, for kaiju RPC).
    pub body: B,
    /// The headers.
    pub headers: Headers,
    /// How many times this entry was delivered, this time included.
    pub deliveries: u64,
}

/// A handler failure: the entry is retried with backoff and dead-lettered after
/// `max_deliveries`.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Processes entries. Implemented for `Fn(Message<B>) -> impl Future<Output = Result<(),
/// HandlerError>>` closures.
pub trait Handler<B>: Send + Sync + 'static {
    /// Handles one entry. `Ok` acks it; `Err` leaves it pending for a retry.
    fn handle(&self, message: Message<B>) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<B, F, Fut> Handler<B> for F
where
    B: Send + 'static,
    F: Fn(Message<B>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(&self, message: Message<B>) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(message)
    }
}
