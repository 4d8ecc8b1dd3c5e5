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
    /// Another live listener instance reads as this consumer of the group: two processes were
    /// given the same `consumer_id`. They would run each other's pending entries.
    #[error(
        "consumer name `{consumer}` is in use by another running listener; give each process its own consumer_id"
    )]
    ConsumerInUse {
        /// The consumer name.
        consumer: String,
    },
    /// Redis answered with something this crate does not understand (a server that is not
    /// Redis-compatible, or a key of another type).
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
    /// A stream's ids cannot be repaired in place on this server: Redis 7.2+ and Valkey never
    /// set a stream's last id back past an entry deleted from it, and the entries ahead were
    /// refused before anything moved (nothing is lost). See the kaiju-streams README,
    /// "A stream bricked by its ids", for what to do.
    #[error(
        "{stream} cannot be repaired in place: this server never sets a stream's last id back past a deleted entry (Redis 7.2+, Valkey); nothing was moved or lost; copy its entries to a new stream to mend it (see the kaiju-streams README, \"A stream bricked by its ids\")"
    )]
    NotRepairableInPlace {
        /// The stream.
        stream: String,
    },
    /// Some entries of a [`write_many`](crate::StreamWriter::write_many) were written and
    /// others were not (or it is not known whether they were). Do not write the whole batch
    /// again: `ids[i]` is the id of entry `i` if it was written.
    #[error("{} of {} entries written; then: {error}", ids.iter().flatten().count(), ids.len())]
    PartialWrite {
        /// Per entry, its id if it was written.
        ids: Vec<Option<String>>,
        /// The first failure.
        error: Box<StreamError>,
    },
}

/// `Result` with [`StreamError`] as the default error.
pub type Result<T, E = StreamError> = std::result::Result<T, E>;
