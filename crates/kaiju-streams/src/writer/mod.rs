//! `StreamWriter`: appends entries in kaiju's envelope.

mod idmp;
mod many;

pub(crate) use many::script;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use kaiju_core::Key;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::streams::XCap;
use kaiju_transport::fred::types::{ClusterHash, CustomCommand, Value};
use kaiju_transport::{Classify, Feature, Transport};
use serde::Serialize;

use crate::envelope::{CORRELATION_ID, Headers, PAYLOAD_FIELD, encode, short_uid};
use crate::{Result, StreamError};

pub use idmp::MAX_SENDS;
pub use many::{MAX_BYTES_PER_CALL, MAX_ENTRIES_PER_CALL};

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
    /// The server refused the append script (an ACL without `EVALSHA`, a renamed command):
    /// `write_many` uses pipelines of `XADD` only.
    no_scripts: Arc<AtomicBool>,
    /// This writer's IDMP producer (shared by its clones), used where the server has
    /// `XADD ... IDMP` ([`Feature::XAddIdmp`]).
    producer: Arc<idmp::Producer>,
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
            no_scripts: Arc::default(),
            producer: idmp::Producer::new(),
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

    /// The `MAXLEN ~` cap as Redis takes it (an `i64`; larger values mean no real cap).
    fn cap_value(&self) -> Option<i64> {
        self.max_len.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
    }

    fn cap(&self) -> XCap {
        let capped = self
            .cap_value()
            .and_then(|n| XCap::try_from(("MAXLEN", "~", n, None)).ok());
        capped.unwrap_or_else(|| XCap::from(None::<()>))
    }

    /// Whether writes carry IDMP ids, so that one whose reply was lost can be sent again.
    fn idmp(&self) -> bool {
        self.transport.capabilities().has(Feature::XAddIdmp)
    }

    /// Appends one entry; returns its id.
    ///
    /// Where the server has `XADD ... IDMP` ([`Feature::XAddIdmp`], Redis 8.6+), a write whose
    /// reply was lost (a [`Timeout`](kaiju_transport::TransportError::Timeout) or a lost
    /// [`Connection`](kaiju_transport::TransportError::Connection)) is sent again with the same
    /// producer and idempotency ids, at most [`MAX_SENDS`] times in all, and only while the
    /// stream still keeps those ids (checked with `XINFO STREAM` before each resend: at least
    /// 100 ids per producer, its window not run out): the server appends it once and answers
    /// each send with the same id, so the caller gets that id once. Entries
    /// are ordinary entries (the ids are kept by the server beside the stream, not in it).
    /// Only if every send's reply was lost does the call fail as below. Dropping the future
    /// (the caller's deadline) sends nothing more.
    ///
    /// Elsewhere (and with `KAIJU_REDIS_FEATURES_OFF`) the `XADD` is written at most once: if
    /// the connection drops before the reply arrives, the call fails with a
    /// [`Connection`](kaiju_transport::TransportError::Connection) error and the entry may or
    /// may not have been written (it is never written twice behind the caller's back).
    pub async fn write<B: Serialize + ?Sized>(
        &self,
        stream: &Key,
        body: &B,
        headers: Headers,
    ) -> Result<String> {
        let payload = Self::payload(body, headers)?;
        if self.idmp() {
            let (pid, iid) = self.producer.ids(self.producer.take(1));
            return idmp::resend(
                || self.xadd_idmp(stream, &pid, &iid, payload.clone()),
                |first| idmp::still_kept(&self.transport, stream.as_str(), first),
            )
            .await;
        }
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

    /// The arguments of `XADD <stream> IDMP <pid> <iid> [MAXLEN ~ <cap>] * _ <payload>`.
    fn idmp_args(&self, stream: &Key, pid: &str, iid: &str, payload: Bytes) -> Vec<Value> {
        let mut args: Vec<Value> = vec![
            stream.as_str().into(),
            "IDMP".into(),
            pid.into(),
            iid.into(),
        ];
        if let Some(cap) = self.cap_value() {
            args.extend(["MAXLEN".into(), "~".into(), cap.into()]);
        }
        args.extend(["*".into(), PAYLOAD_FIELD.into(), Value::Bytes(payload)]);
        args
    }

    /// `XADD <stream> IDMP <pid> <iid> [MAXLEN ~ <cap>] * _ <payload>`, written once.
    async fn xadd_idmp(
        &self,
        stream: &Key,
        pid: &str,
        iid: &str,
        payload: Bytes,
    ) -> Result<String> {
        let args = self.idmp_args(stream, pid, iid, payload);
        self.transport
            .once()
            .custom(
                CustomCommand::new_static("XADD", ClusterHash::FirstKey, false),
                args,
            )
            .await
            .classify()
            .map_err(StreamError::from)
    }
}
