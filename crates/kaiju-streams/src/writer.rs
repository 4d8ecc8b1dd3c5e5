//! `StreamWriter`: appends entries in kaiju's envelope.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;
use kaiju_core::Key;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::fred::types::streams::XCap;
use kaiju_transport::{Classify, Script, Transport, TransportError};
use serde::Serialize;

use crate::envelope::{CORRELATION_ID, Headers, PAYLOAD_FIELD, encode, short_uid};
use crate::{Result, StreamError};

/// The most entries [`StreamWriter::write_many`] appends to one stream in one call; a larger
/// batch takes several calls, one after another (so no call holds the server for long).
pub const MAX_ENTRIES_PER_CALL: usize = 1000;

static XADD_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/xadd_many.lua")));

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

    /// Appends many entries; returns their ids in order.
    ///
    /// The entries of one stream travel in one call (a script that runs one `XADD` per entry,
    /// in order), up to [`MAX_ENTRIES_PER_CALL`] per call; entries for several streams take one
    /// call per stream. Each entry's `XADD` stands alone, as in a pipeline: one that fails does
    /// not stop the next.
    ///
    /// Every entry is encoded before anything is sent, so an encoding error writes nothing. If
    /// some entries were written and others failed, the error is
    /// [`StreamError::PartialWrite`] with the id of each entry that was written, so the caller
    /// can write only the rest again (within a stream, nothing is written after a call whose
    /// outcome is unknown, so writing the rest again keeps their order). Any other error means
    /// no entry is *known* to be written: after a
    /// [`Timeout`](kaiju_transport::TransportError::Timeout) or a lost
    /// [`Connection`](kaiju_transport::TransportError::Connection) they may all have been (a
    /// call is sent once, never resent), so writing them again may duplicate them; give
    /// entries an idempotency key in their headers when that matters.
    pub async fn write_many<B: Serialize + ?Sized>(
        &self,
        entries: Vec<Outgoing<'_, B>>,
    ) -> Result<Vec<String>> {
        let encoded = entries
            .into_iter()
            .map(|entry| Ok((entry.stream, Self::payload(entry.body, entry.headers)?)))
            .collect::<Result<Vec<_>>>()?;
        // Each stream's entries, in the order given.
        let mut streams: Vec<(&Key, Vec<usize>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, (stream, _)) in encoded.iter().enumerate() {
            let at = *index.entry(stream.as_str()).or_insert_with(|| {
                streams.push((stream, Vec::new()));
                streams.len() - 1
            });
            if let Some((_, positions)) = streams.get_mut(at) {
                positions.push(i);
            }
        }
        let cap = self.max_len.map(|n| n.to_string()).unwrap_or_default();
        let mut results: Vec<Option<Result<String>>> = encoded.iter().map(|_| None).collect();
        for (stream, positions) in streams {
            let mut failed: Option<StreamError> = None;
            for chunk in positions.chunks(MAX_ENTRIES_PER_CALL) {
                let outcome = match &failed {
                    // An earlier call for this stream failed: its entries may or may not be
                    // written; writing later ones now could put them first.
                    Some(error) => Err(error.clone()),
                    None => {
                        let payloads = chunk.iter().filter_map(|&i| encoded.get(i));
                        self.append(stream, &cap, payloads.map(|(_, p)| p.clone()))
                            .await
                    }
                };
                match outcome {
                    Ok(ids) => {
                        for (&i, id) in chunk.iter().zip(ids) {
                            results[i] = Some(id);
                        }
                    }
                    Err(error) => {
                        for &i in chunk {
                            results[i] = Some(Err(error.clone()));
                        }
                        failed = Some(error);
                    }
                }
            }
        }
        let results: Vec<Result<String>> = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(StreamError::Transport(TransportError::Protocol {
                        message: "the append script returned fewer ids than it was given entries"
                            .into(),
                    }))
                })
            })
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

    /// Appends payloads to one stream in one call (written once); each entry's id or error.
    async fn append(
        &self,
        stream: &Key,
        cap: &str,
        payloads: impl Iterator<Item = Bytes>,
    ) -> Result<Vec<Result<String>>> {
        let mut args: Vec<Value> = vec![PAYLOAD_FIELD.into(), cap.into()];
        args.extend(payloads.map(Value::Bytes));
        let replies: Vec<Value> = XADD_MANY
            .run_once(&self.transport, vec![stream.as_str()], args)
            .await?;
        Ok(replies
            .into_iter()
            .map(|reply| {
                let text = match reply {
                    Value::String(s) => s.to_string(),
                    Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => {
                        return Err(StreamError::Transport(TransportError::Protocol {
                            message: format!("the append script returned {:?}", other.kind()),
                        }));
                    }
                };
                match text.strip_prefix('!') {
                    Some(error) => Err(TransportError::from_reply(error).into()),
                    None => Ok(text),
                }
            })
            .collect())
    }
}
