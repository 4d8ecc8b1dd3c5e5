//! The client side of request/response: one pub/sub subscription per client, and the
//! requests waiting on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kaiju_core::Value;
use kaiju_core::codec::decoded_size;
use kaiju_streams::{
    DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_ENTRY_BYTES, HeaderValue, decode, headers_only,
};
use std::time::Duration;

use kaiju_transport::fred::interfaces::{ClientLike, EventInterface};
use kaiju_transport::fred::types::Message;
use kaiju_transport::{Connection, Transport, TransportError, events};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::Outcome;
use crate::context::headers;
use crate::error::RpcError;
use crate::request::Response;
use crate::subscription;

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Response>>>>;

/// The reply subscription of one client.
pub(crate) struct Replies {
    connection: Connection,
    waiting: Waiting,
    /// Whether the channel is subscribed on the current connection (false from a reconnect
    /// until the subscription is made again).
    subscribed: watch::Receiver<bool>,
}

/// A request waiting for its response; dropping it (a cancelled request) forgets it.
pub(crate) struct Pending {
    id: String,
    waiting: Waiting,
    rx: oneshot::Receiver<Response>,
}

impl Pending {
    /// The response, or `None` if the subscription ended.
    pub(crate) async fn wait(mut self) -> Option<Response> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

fn lock(
    waiting: &Waiting,
) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Response>>> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Routes one published reply to its waiting request. Anything unreadable, unknown or late is
/// dropped (logged at debug): a reply is only ever an answer to a request waiting here.
///
/// A reply larger than a listener accepts for an entry (`DEFAULT_MAX_ENTRY_BYTES`), or that
/// would take more than `DEFAULT_MAX_DECODED_BYTES` decoded, is never decoded: the request it
/// answers fails with an error saying so, read from the reply's headers alone.
fn route(waiting: &Waiting, payload: &[u8]) {
    if payload.len() > DEFAULT_MAX_ENTRY_BYTES
        || decoded_size(payload, DEFAULT_MAX_DECODED_BYTES).is_err()
    {
        refuse_oversized(waiting, payload);
        return;
    }
    let Ok((body, headers)) = decode::<Value>(payload) else {
        tracing::debug!("an unreadable message on the reply channel was dropped");
        return;
    };
    // Matched by the whole id, as sent (a string): never by a prefix, a number or any
    // other form of it.
    let Some(HeaderValue::Str(id)) = headers.get(headers::REQUEST_ID) else {
        return;
    };
    let Some(tx) = lock(waiting).remove(id.as_str()) else {
        tracing::debug!(id = %kaiju_core::shortened(id), "a reply for a request nobody waits for (timed out, or a duplicate)");
        return;
    };
    let response = match &body {
        Value::Array(items) => Some(batch_response(items)),
        single => Response::from_value(single),
    };
    if let Some(response) = response {
        let _ = tx.send(response);
    }
}

/// Fails the request an oversized (or unreadable) reply answers, if its headers say which.
fn refuse_oversized(waiting: &Waiting, payload: &[u8]) {
    let headers = headers_only(payload, HEADERS_MAX_DECODED);
    let Some(HeaderValue::Str(id)) = headers.as_ref().and_then(|h| h.get(headers::REQUEST_ID))
    else {
        tracing::warn!(
            bytes = payload.len(),
            "an oversized message on the reply channel was dropped"
        );
        return;
    };
    let Some(tx) = lock(waiting).remove(id.as_str()) else {
        return;
    };
    tracing::warn!(
        bytes = payload.len(),
        "a reply too large to decode; its request fails"
    );
    let error = RpcError::internal(format!(
        "the response ({} bytes) is larger than a client decodes ({DEFAULT_MAX_ENTRY_BYTES} \
         bytes, or {DEFAULT_MAX_DECODED_BYTES} bytes decoded)",
        payload.len()
    ));
    let _ = tx.send(Response {
        id: Value::Nil,
        result: Err(error),
        outcome: Outcome::Rejected,
    });
}

/// The most a reply's headers may take decoded, when they are read without its body.
const HEADERS_MAX_DECODED: usize = 1 << 20;

/// A batch's responses folded into one response holding the array of results (or the first
/// error).
fn batch_response(items: &[Value]) -> Response {
    let mut results = Vec::with_capacity(items.len().min(1024));
    for item in items {
        match Response::from_value(item) {
            Some(Response { result: Ok(v), .. }) => results.push(v),
            Some(r @ Response { result: Err(_), .. }) => return r,
            None => break,
        }
    }
    Response {
        id: Value::Nil,
        result: Ok(Value::Array(results)),
        outcome: crate::Outcome::Ok,
    }
}

impl Replies {
    /// Subscribes to `channel` on a connection of its own, and waits for the confirmation:
    /// a request written after this returns cannot have its response missed.
    pub(crate) async fn connect(
        transport: &Transport,
        channel: &str,
    ) -> Result<Arc<Self>, TransportError> {
        let connection = transport.dedicated_connection().await?;
        let client = connection.client().clone();
        let waiting: Waiting = Arc::default();
        let routes = waiting.clone();
        events::listen(
            client.message_rx(),
            move |message: Message| {
                if let Some(bytes) = message.value.as_bytes() {
                    route(&routes, bytes);
                }
                std::future::ready(())
            },
            |count| {
                tracing::warn!(
                    count,
                    "replies were missed in a burst; those requests will time out"
                )
            },
        );
        let subscribed = subscription::subscribe_and_keep(&client, channel).await?;
        Ok(Arc::new(Self {
            connection,
            waiting,
            subscribed,
        }))
    }

    /// Waits until the channel is subscribed on a live connection, or until `deadline`: a
    /// request written while the subscription is being made again after a reconnect would
    /// have its response published to nobody.
    pub(crate) async fn ready(&self, deadline: Instant) {
        let mut subscribed = self.subscribed.clone();
        loop {
            if *subscribed.borrow_and_update() && self.connection.client().is_connected() {
                return;
            }
            tokio::select! {
                _ = subscribed.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Requests waiting for their response now.
    pub(crate) fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }

    /// Registers a request before it is sent.
    pub(crate) fn expect(&self, id: String) -> Pending {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id.clone(), tx);
        Pending {
            id,
            waiting: self.waiting.clone(),
            rx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaiju_streams::Headers;

    /// Arbitrary bytes on the reply channel never panic the router. `cargo xtask fuzz` runs
    /// it with more cases.
    #[test]
    fn fuzz_reply_router() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let waiting: Waiting = Arc::default();
        let cases = kaiju_testkit::fuzz_cases();
        let mut runner = TestRunner::new(Config::with_cases(cases));
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..256), |bytes| {
                let (tx, _rx) = oneshot::channel();
                lock(&waiting).insert("1".into(), tx);
                route(&waiting, &bytes);
                Ok(())
            })
            .unwrap();
        eprintln!("fuzz_reply_router: {cases} inputs routed without a panic");
    }

    #[test]
    fn hostile_replies_are_dropped() {
        let waiting: Waiting = Arc::default();
        for bytes in [
            &b""[..],
            b"\x92\xc0\xdf\xff\xff\xff\xff",
            b"\x92\xc0\x80",
            b"\xc1",
        ] {
            route(&waiting, bytes);
        }
        let (tx, mut rx) = oneshot::channel();
        lock(&waiting).insert("1".into(), tx);
        let mut h = Headers::new();
        h.insert(headers::REQUEST_ID, "1");
        // A reply that is not a response object: the waiter is released without a response.
        route(
            &waiting,
            &kaiju_streams::encode(&Value::Int(5), &h).unwrap(),
        );
        assert!(rx.try_recv().is_err());
        assert!(lock(&waiting).is_empty());
    }
}
