//! Resending a write whose reply was lost, made safe by `XADD ... IDMP` (Redis 8.6+).
//!
//! Each [`StreamWriter`](super::StreamWriter) (and its clones) has a random producer id; each
//! write takes the next number of a counter as its idempotency id. A write sent again with
//! the same pair is not appended a second time: the server answers with the first one's entry
//! id, whatever the fields (it compares the ids, not the content). The server keeps those pairs
//! per stream and producer for `stream-idmp-duration` seconds (default 100) and at most
//! `stream-idmp-maxsize` of them per producer (default 100, oldest dropped first); `XCFGSET`
//! with other values wipes them. So a resend is safe only soon after the first try, which is
//! what [`resend`] does, and never later: this is not long-term exactly-once.
//!
//! The count limit would let a writer's own later writes push out the ids of a write still
//! waiting to be resent (more than 100 writes in flight when a connection drops, or one
//! `write_many` call of 1000 entries). So the producer the server sees changes every
//! [`BLOCK`] writes (`<id>:<counter / BLOCK>`): no producer ever holds more ids than the
//! default limit, and only the time limit applies. The cost: the server keeps every write's
//! ids for `stream-idmp-duration`, about 45 bytes per write (measured on Redis 8.10: 100,000
//! writes took 9.6 MB instead of 5.1 MB), e.g. 45 MB at 10,000 writes per second.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::{Classify, Transport, TransportError};

use crate::{Result, StreamError};

/// How many times a write is sent at most (the first try and its resends).
pub const MAX_SENDS: u32 = 3;

/// The pause before the n-th resend (the connection is being made again meanwhile).
pub(crate) const RESEND_PAUSE: Duration = Duration::from_millis(50);

/// How many consecutive writes share a producer id on the server: at most the default
/// `stream-idmp-maxsize`, so that none of their ids is pushed out by a later write.
pub(crate) const BLOCK: u64 = 100;

/// A writer's IDMP producer: its id and the counter of idempotency ids. Shared by clones.
#[derive(Debug)]
pub(crate) struct Producer {
    id: String,
    next: AtomicU64,
}

impl Producer {
    /// A producer with a random id (`kaiju-rs:` and 32 hex digits), as unlikely to be another
    /// writer's as a UUID.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            id: format!("kaiju-rs:{}", uuid::Uuid::new_v4().simple()),
            next: AtomicU64::new(0),
        })
    }

    /// The producer id (the prefix of the ids the server sees).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The producer and idempotency ids the server sees for write number `n`.
    pub(crate) fn ids(&self, n: u64) -> (String, String) {
        (format!("{}:{}", self.id, n / BLOCK), n.to_string())
    }

    /// `n` idempotency ids, consecutive and never handed out before by this producer.
    pub(crate) fn take(&self, n: u64) -> u64 {
        self.next.fetch_add(n, Ordering::Relaxed)
    }
}

/// Whether a failed send may have been applied (the reply was lost, or none came in time), so
/// that only resending it with the same ids can tell.
pub(crate) fn outcome_unknown(error: &StreamError) -> bool {
    matches!(
        error,
        StreamError::Transport(TransportError::Timeout { .. } | TransportError::Connection { .. })
    )
}

/// Sends `send` (which must carry the same producer and idempotency ids each time) until it
/// gets a reply, at most [`MAX_SENDS`] times: only a send whose outcome is unknown is repeated,
/// and only while `kept` says the server still keeps the first send's ids (see
/// [`still_kept`]); otherwise the unknown outcome is returned. The last error is returned when
/// every send's outcome was unknown: the write may have been applied. The caller's deadline
/// bounds it too: dropping this future sends nothing more.
pub(crate) async fn resend<T, F, Fut, K, KFut>(mut send: F, mut kept: K) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
    K: FnMut(Instant) -> KFut,
    KFut: std::future::Future<Output = bool>,
{
    let first = Instant::now();
    let mut sent = 1;
    loop {
        match send().await {
            Err(error) if outcome_unknown(&error) && sent < MAX_SENDS => {
                tokio::time::sleep(RESEND_PAUSE * sent).await;
                if !kept(first).await {
                    return Err(error);
                }
                sent += 1;
            }
            other => return other,
        }
    }
}

/// Whether `stream` still keeps the ids of a write first sent at `first`, so that a resend
/// cannot append it twice: the stream keeps at least [`BLOCK`] ids per producer (a stream or
/// server set to keep fewer, with `XCFGSET ... IDMP-MAXSIZE` or `stream-idmp-maxsize`, would
/// have dropped them as later writes came) and its `idmp-duration` has not run out since (with
/// a second to spare). A stream that does not exist has no entry to duplicate: the write was
/// not applied (or everything was deleted since). Any failure to find out means no.
pub(crate) async fn still_kept(transport: &Transport, stream: &str, first: Instant) -> bool {
    let pool = transport.pool();
    let exists: std::result::Result<i64, _> = pool.exists(stream).await.classify();
    match exists {
        Ok(0) => return true,
        Ok(_) => {}
        Err(_) => return false,
    }
    let info: std::result::Result<HashMap<String, Value>, _> =
        pool.xinfo_stream(stream, false, None).await.classify();
    let Ok(info) = info else {
        return false;
    };
    let number = |name: &str| info.get(name).and_then(Value::as_i64);
    match (number("idmp-maxsize"), number("idmp-duration")) {
        (Some(max), Some(secs)) => {
            max >= BLOCK as i64
                && first.elapsed() + Duration::from_secs(1)
                    < Duration::from_secs(secs.max(0).unsigned_abs())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_differ_and_ids_never_repeat() {
        let (a, b) = (Producer::new(), Producer::new());
        assert_ne!(a.id(), b.id());
        assert_eq!(a.take(3), 0);
        assert_eq!(a.take(1), 3);
        assert_eq!(b.take(1), 0);
        assert_eq!(a.ids(99).0, format!("{}:0", a.id()));
        assert_eq!(a.ids(100), (format!("{}:1", a.id()), "100".to_owned()));
    }

    #[tokio::test]
    async fn only_an_unknown_outcome_is_resent_and_only_so_often() {
        let lost = || {
            StreamError::Transport(TransportError::Connection {
                message: "reset".into(),
            })
        };
        let kept = |_| std::future::ready(true);
        let mut sends = 0;
        let result: Result<()> = resend(
            || {
                sends += 1;
                std::future::ready(Err(lost()))
            },
            kept,
        )
        .await;
        assert!(result.is_err());
        assert_eq!(sends, MAX_SENDS);

        let mut sends = 0;
        let result = resend(
            || {
                sends += 1;
                std::future::ready(if sends == 1 { Err(lost()) } else { Ok(7) })
            },
            kept,
        )
        .await;
        assert_eq!((result.ok(), sends), (Some(7), 2));

        // Ids the server no longer keeps: the unknown outcome is returned, not resent.
        let mut sends = 0;
        let result: Result<()> = resend(
            || {
                sends += 1;
                std::future::ready(Err(lost()))
            },
            |_| std::future::ready(false),
        )
        .await;
        assert!(result.is_err());
        assert_eq!(sends, 1);

        let mut sends = 0;
        let refused: Result<()> = resend(
            || {
                sends += 1;
                std::future::ready(Err(StreamError::Transport(TransportError::from_reply(
                    "ERR syntax error",
                ))))
            },
            kept,
        )
        .await;
        assert!(refused.is_err());
        assert_eq!(sends, 1, "a refusal is not an unknown outcome");
    }
}
