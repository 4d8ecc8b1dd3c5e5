//! The error type of kaiju-cache.

use std::sync::Arc;

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
    /// The stored bytes are not a msgpack encoding of the requested type. Nothing is changed in
    /// Redis; read the key with another type (or as `kaiju_cache::Raw`) to see what it holds.
    #[error("value at `{key}` is not a `{type_name}`: {message}")]
    Decode {
        /// The key (and `field` for hashes).
        key: String,
        /// The requested Rust type.
        type_name: &'static str,
        /// What the decoder said.
        message: String,
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
        }
    }
}

/// Converts fred results without a public `From<fred::Error>` impl, which would put fred in
/// this crate's API.
pub(crate) trait FredExt<T> {
    fn or_cache(self) -> Result<T>;
}

impl<T> FredExt<T> for std::result::Result<T, kaiju_transport::fred::error::Error> {
    fn or_cache(self) -> Result<T> {
        self.map_err(|e| CacheError::Transport(e.into()))
    }
}

/// `Result` with [`CacheError`] as the default error.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;
