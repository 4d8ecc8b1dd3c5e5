//! The error type of kaiju-streams.

use kaiju_core::{CodecError, ConfigError, KeyError};
use kaiju_transport::TransportError;

/// A stream operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// Redis could not be reached or answered with an error.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A key could not be built (a topic containing `.`, an empty app name).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A message could not be encoded.
    #[error("cannot encode a stream message: {0}")]
    Encode(#[source] CodecError),
}

/// `Result` with [`StreamError`] as the default error.
pub type Result<T, E = StreamError> = std::result::Result<T, E>;

/// Converts fred results without exposing fred in this crate's API.
pub(crate) trait FredExt<T> {
    fn or_stream(self) -> Result<T>;
}

impl<T> FredExt<T> for std::result::Result<T, kaiju_transport::fred::error::Error> {
    fn or_stream(self) -> Result<T> {
        self.map_err(|e| StreamError::Transport(e.into()))
    }
}
