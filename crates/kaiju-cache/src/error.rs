//! The error type of kaiju-cache.

use std::sync::Arc;

use bytes::Bytes;
use kaiju_core::CodecError;
use kaiju_transport::TransportError;

/// A cache operation failed. A missing key is not an error: reads return `Ok(None)`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Redis could not be reached or answered with an error (`WRONGTYPE` included: the key holds
    /// a hash where a string was expected, for example).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The stored bytes are not a msgpack encoding of the requested type. Read the key as
    /// [`kaiju_core::Value`] to see what it holds.
    ///
    /// A read changes nothing in Redis. A call that removed or replaced what it could not
    /// decode ([`lpop`](crate::Cache::lpop), [`rpop`](crate::Cache::rpop),
    /// [`swap`](crate::Cache::swap)) hands the removed bytes back in `raw`, so nothing is lost.
    ///
    /// Its `Display` names the key and says what is wrong with the bytes and what they look
    /// like, and names no Rust type (that is in `type_name`, for programs).
    #[error("value at `{key}` cannot be read: {message}")]
    Decode {
        /// The key (and `field` for hashes).
        key: String,
        /// The requested Rust type.
        type_name: &'static str,
        /// What the decoder said.
        message: String,
        /// What the call removed or replaced in Redis, byte for byte (every popped element, or
        /// the value a swap overwrote); empty for reads.
        raw: Vec<Bytes>,
    },
    /// The value could not be encoded (e.g. a map with non-string keys that serde rejects).
    #[error("cannot encode the value for `{key}`: {source}")]
    Encode {
        /// The key.
        key: String,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// The loader of [`Cache::get_or_set_with`](crate::Cache::get_or_set_with) failed, in this
    /// process or in the one that was filling the key for everybody.
    #[error("loading `{key}` failed: {message}")]
    Loader {
        /// The key.
        key: String,
        /// The loader's error, as text (it may come from another process).
        message: String,
        /// The loader's error, when it failed in this process.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// Waiting for another process to fill the key took longer than allowed.
    #[error("timed out waiting for another process to fill `{key}`")]
    FillTimeout {
        /// The key.
        key: String,
    },
}

impl CacheError {
    pub(crate) fn decode(key: &str, error: CodecError) -> Self {
        let (type_name, message) = match error {
            CodecError::Decode { type_name, message }
            | CodecError::Encode { type_name, message } => (type_name, message),
            other => ("unknown", other.to_string()),
        };
        Self::Decode {
            key: key.to_owned(),
            type_name,
            message,
            raw: Vec::new(),
        }
    }

    /// The same error, carrying what the call removed from Redis.
    pub(crate) fn with_raw(self, removed: Vec<Bytes>) -> Self {
        match self {
            Self::Decode {
                key,
                type_name,
                message,
                ..
            } => Self::Decode {
                key,
                type_name,
                message,
                raw: removed,
            },
            other => other,
        }
    }
}

/// `Result` with [`CacheError`] as the default error.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use kaiju_core::{Codec as _, Msgpack, Value};

    use super::CacheError;

    /// A plain string set by redis-cli, read as msgpack: the message says what the bytes look
    /// like and names no Rust type (it named `kaiju_core::value::Value`).
    #[test]
    fn a_value_that_does_not_decode_is_described_not_typed() {
        let error = Msgpack::CACHE.decode::<Value>(b"hello").unwrap_err();
        let text = CacheError::decode("dev.app.k", error).to_string();
        assert_eq!(
            text,
            "value at `dev.app.k` cannot be read: not msgpack: 4 byte(s) left over after the first value (5 bytes: \"hello\")"
        );
        assert!(!text.contains("::"), "{text}");
    }
}
