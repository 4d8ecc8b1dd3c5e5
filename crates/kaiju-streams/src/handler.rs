//! What a listener calls for each entry, and what a handler can answer.

use std::fmt;
use std::future::Future;

use crate::envelope::Headers;

/// One decoded entry.
#[derive(Debug, Clone)]
#[non_exhaustive]
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

impl<B> Message<B> {
    /// A message, as a listener hands it to its handler. For tests of handlers.
    pub fn new(id: impl Into<String>, body: B, headers: Headers, deliveries: u64) -> Self {
        Self {
            id: id.into(),
            body,
            headers,
            deliveries,
        }
    }
}

/// The boxed error inside a [`HandlerError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the listener should do with an entry whose handler failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Disposition {
    /// A transient failure: deliver the entry again after a backoff, and dead-letter it after
    /// `max_deliveries`.
    Retry,
    /// A permanent failure: dead-letter the entry now, with the reason; never retry it.
    Reject,
    /// Not this consumer's to handle now (it is shutting down, say): leave the entry pending
    /// without counting a failure. It is delivered again when this consumer starts again, or
    /// claimed by another one after `pending_messages_time_ms`. (Redis still counts the
    /// delivery, so an entry deferred `max_deliveries` times is dead-lettered.)
    Defer,
    /// Nothing left to do and nobody to tell (a request whose caller has given up): ack the
    /// entry without a dead letter, count it in `discarded`, and log the reason at debug level.
    Discard,
}

/// A handler failure, and what to do about it: [`retry`](Self::retry) (transient) or
/// [`reject`](Self::reject) (permanent).
///
/// Any error converts into a *retry* with `?`, so a handler that does not care needs nothing
/// special; a handler that knows an entry can never succeed (an unknown RPC method, invalid
/// params) rejects it, and it goes to the dead-letter stream at once instead of being retried.
///
/// Like `anyhow::Error`, this type does not implement `std::error::Error` itself, so that every
/// error type can convert into it.
///
/// ```
/// use kaiju_streams::{HandlerError, Message};
///
/// async fn handle(m: Message<(String, Option<i64>)>) -> Result<(), HandlerError> {
///     let amount = m.body.1.ok_or_else(|| HandlerError::reject("no amount"))?;
///     let _reply = std::fs::read_to_string("/etc/hostname")?; // an io::Error: retried
///     println!("{amount}");
///     Ok(())
/// }
/// ```
pub struct HandlerError {
    disposition: Disposition,
    error: BoxError,
}

impl HandlerError {
    /// A transient failure: the entry is delivered again after a backoff.
    pub fn retry(error: impl Into<BoxError>) -> Self {
        Self {
            disposition: Disposition::Retry,
            error: error.into(),
        }
    }

    /// A permanent failure: the entry is dead-lettered now with this error as the reason.
    pub fn reject(error: impl Into<BoxError>) -> Self {
        Self {
            disposition: Disposition::Reject,
            error: error.into(),
        }
    }

    /// Not handled here and now: the entry stays pending for a later delivery (see
    /// [`Disposition::Defer`]).
    pub fn defer(error: impl Into<BoxError>) -> Self {
        Self {
            disposition: Disposition::Defer,
            error: error.into(),
        }
    }

    /// Nothing left to do: the entry is acked without a dead letter, and counted (see
    /// [`Disposition::Discard`]). For an entry that can no longer be of use to anyone, such as
    /// a request whose deadline passed before it started while its caller was waiting for the
    /// answer (and has been told there is none).
    pub fn discard(reason: impl Into<BoxError>) -> Self {
        Self {
            disposition: Disposition::Discard,
            error: reason.into(),
        }
    }

    /// Whether the entry is retried, rejected, deferred or discarded.
    pub fn disposition(&self) -> Disposition {
        self.disposition
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }

    /// The underlying error, by value.
    pub fn into_error(self) -> BoxError {
        self.error
    }
}

impl<E: Into<BoxError>> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::retry(error)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("disposition", &self.disposition)
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// Processes entries. Implemented for `Fn(Message<B>) -> impl Future<Output = Result<(),
/// HandlerError>>` closures.
///
/// The listener runs each entry's handler in a task of its own, under `handler_timeout_ms`: a
/// handler that panics or runs out of time counts as a failed delivery (retried, then
/// dead-lettered), and never stalls the other entries.
pub trait Handler<B>: Send + Sync + 'static {
    /// Handles one entry. `Ok` acks it; [`HandlerError::retry`] redelivers it later;
    /// [`HandlerError::reject`] dead-letters it now.
    fn handle(&self, message: Message<B>) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Looks at an entry's payload (the msgpack `[body, headers]`) before it is decoded, after
    /// the listener's own limits passed: `Err(reason)` refuses it, and it is dead-lettered
    /// undecoded (kind `too_large`) after [`refused`](Self::refused). For limits a handler can
    /// read off the encoding's headers (an RPC batch's length). Default: every payload passes.
    fn check_payload(&self, payload: &[u8]) -> Result<(), String> {
        let _ = payload;
        Ok(())
    }

    /// Called for an entry the listener refuses without decoding it (a payload over
    /// `max_entry_bytes`, or over `max_decoded_bytes` once decoded, or one
    /// [`check_payload`](Self::check_payload) refused), just before it is
    /// dead-lettered, with the entry's headers when they can be read on their own (`None`
    /// otherwise) and the reason. A handler that answers requests tells the requester here.
    /// Default: nothing.
    fn refused(&self, headers: Option<Headers>, reason: &str) -> impl Future<Output = ()> + Send {
        let _ = (headers, reason);
        std::future::ready(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_mark_retries_and_reject_is_explicit() {
        fn parse(s: &str) -> Result<i64, HandlerError> {
            Ok(s.parse::<i64>()?)
        }
        let err = parse("x").unwrap_err();
        assert_eq!(err.disposition(), Disposition::Retry);
        assert!(err.to_string().contains("invalid digit"), "{err}");
        let err = HandlerError::reject("unknown method");
        assert_eq!(err.disposition(), Disposition::Reject);
        assert_eq!(err.to_string(), "unknown method");
        let err: HandlerError = "boom".into();
        assert_eq!(err.disposition(), Disposition::Retry);
    }
}
