//! `StreamWriter`: appends entries in kaiju's envelope.

use bytes::Bytes;
use kaiju_core::Key;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::fred::types::streams::XCap;
use kaiju_transport::{Classify, Transport};
use serde::Serialize;

use crate::envelope::{CORRELATION_ID, Headers, PAYLOAD_FIELD, encode, short_uid};
use crate::{Result, StreamError};

/// Writes kaiju stream entries: `XADD <stream> * _ <msgpack [body, headers]>`, readable by Python
/// kaiju listeners and by [`Listener`](crate::Listener). Cheap to clone.
///
/// A `Correlation-Id` header (10 hex characters) is added when the caller gives none, as kaiju's
/// client does.
///
/// ```no_run
/// # async fn demo(transport: kaiju_transport::Transport) -> kaiju_streams::Result<()> {
/// use kaiju_core::Namespace;
/// use kaiju_streams::{Headers, StreamWriter};
/// let writer = StreamWriter::new(transport);
/// let stream = Namespace::new("prod", "billing")?.stream("rpc")?;
/// let body = ("invoices.create", serde_json_like_params());
/// # fn serde_json_like_params() -> std::collections::BTreeMap<String, i64> { Default::default() }
/// let id = writer.write(&stream, &body, Headers::new()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StreamWriter {
    transport: Transport,
    max_len: Option<u64>,
}

/// One entry for [`StreamWriter::write_many`].
#[derive(Debug, Clone)]
pub struct Outgoing<'a, B: ?Sized> {
    /// The stream key.
    pub stream: &'a Key,
    /// The body (`[method, params]` for kaiju RPC).
    pub body: &'a B,
    /// The headers.
    pub headers: Headers,
}

impl StreamWriter {
    /// A writer with no length cap (as kaiju's client).
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            max_len: None,
        }
    }

    /// Caps every written stream at about `max_len` entries (`MAXLEN ~`). Capping removes the
    /// oldest entries whether or not they were processed.
    #[must_use]
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = Some(max_len);
        self
    }

    fn payload<B: Serialize + ?Sized>(body: &B, mut headers: Headers) -> Result<Bytes> {
        headers.ensure_first(CORRELATION_ID, || short_uid().into());
        encode(body, &headers)
            .map(Bytes::from)
            .map_err(StreamError::Encode)
    }

    fn cap(&self) -> XCap {
        let capped = self.max_len.and_then(|n| {
            XCap::try_from(("MAXLEN", "~", i64::try_from(n).unwrap_or(i64::MAX), None)).ok()
        });
        capped.unwrap_or_else(|| XCap::from(None::<()>))
    }

    /// Appends one entry; returns its id.
    ///
    /// The `XADD` is written at most once: if the connection drops before the reply arrives,
    /// the call fails with a [`Connection`](kaiju_transport::TransportError::Connection) error
    /// and the entry may or may not have been written (it is never written twice behind the
    /// caller's back).
    pub async fn write<B: Serialize + ?Sized>(
        &self,
        stream: &Key,
        body: &B,
        headers: Headers,
    ) -> Result<String> {
        let payload = Self::payload(body, headers)?;
        self.transport
            .once()
            .xadd(
                stream.as_str(),
                false,
                self.cap(),
                "*",
                vec![(PAYLOAD_FIELD, payload)],
            )
            .await
            .classify()
            .map_err(StreamError::from)
    }

    /// Appends many entries in one pipeline (one round trip); returns their ids in order.
    ///
    /// Every entry is encoded before anything is sent, so an encoding error writes nothing. If
    /// some entries were written and others failed, the error is
    /// [`StreamError::PartialWrite`] with the id of each entry that was written, so the caller
    /// can write only the rest again. Any other error means no entry is *known* to be written:
    /// after a [`Timeout`](kaiju_transport::TransportError::Timeout) or a lost
    /// [`Connection`](kaiju_transport::TransportError::Connection) they may all have been (the
    /// pipeline is sent once, never resent), so writing them again may duplicate them; give
    /// entries an idempotency key in their headers when that matters.
    pub async fn write_many<B: Serialize + ?Sized>(
        &self,
        entries: Vec<Outgoing<'_, B>>,
    ) -> Result<Vec<String>> {
        let encoded = entries
            .into_iter()
            .map(|entry| Ok((entry.stream, Self::payload(entry.body, entry.headers)?)))
            .collect::<Result<Vec<_>>>()?;
        let pipeline = self.transport.pipeline_once();
        for (stream, payload) in encoded {
            let _: Value = pipeline
                .xadd(
                    stream.as_str(),
                    false,
                    self.cap(),
                    "*",
                    vec![(PAYLOAD_FIELD, payload)],
                )
                .await
                .classify()?;
        }
        let results: Vec<Result<String>> = pipeline
            .try_all::<String>()
            .await
            .into_iter()
            .map(|r| r.classify().map_err(StreamError::from))
            .collect();
        let first_error = results.iter().find_map(|r| r.as_ref().err()).cloned();
        match first_error {
            None => results.into_iter().collect(),
            Some(error) if results.iter().all(Result::is_err) => Err(error),
            Some(error) => Err(StreamError::PartialWrite {
                ids: results.into_iter().map(Result::ok).collect(),
                error: Box::new(error),
            }),
        }
    }
}
