//! The error type of kaiju-core.

use crate::codec::CodecError;
use crate::config::ConfigError;
use crate::key::KeyError;
use crate::lifecycle::LifecycleError;

/// Any error raised by kaiju-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key part was rejected.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A value could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A component failed to start or stop.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
