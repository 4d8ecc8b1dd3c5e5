#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
mod envelope;
mod error;
mod handler;
mod id;
mod listener;
mod settings;
mod writer;

pub use envelope::{
    CORRELATION_ID, HeaderName, HeaderValue, Headers, PAYLOAD_FIELD, decode, encode, headers_only,
    short_uid,
};
pub use error::{Result, StreamError};
pub use handler::{BoxError, Disposition, Handler, HandlerError, Message};
pub use listener::{Listener, ListenerStats};
pub use settings::{
    DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_ENTRY_BYTES, ListenerSettings, MAX_BATCH_SIZE,
    MAX_PARALLEL_BATCHES,
};
pub use writer::{MAX_BYTES_PER_CALL, MAX_ENTRIES_PER_CALL, MAX_SENDS, Outgoing, StreamWriter};

/// The Lua scripts the writer and the listener run, for an admin to load as functions
/// ([`Script::load_function`](kaiju_transport::Script::load_function), `kaiju functions load`).
pub fn scripts() -> Vec<&'static kaiju_transport::Script> {
    let mut all = listener::scripts().to_vec();
    all.push(writer::script());
    all
}
