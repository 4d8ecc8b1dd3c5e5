//! The error type of kaiju-locks.

use std::time::Duration;

use kaiju_transport::TransportError;

/// A lock operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Redis could not be reached or answered with an error.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The lock is held (or others are queued for it) and the caller asked not to wait.
    #[error("lock `{key}` exists (owner: {})", owner.as_deref().unwrap_or("unknown"))]
    Exists {
        /// The lock key.
        key: String,
        /// Who holds it, if it was still held when asked.
        owner: Option<String>,
    },
    /// The lock was not acquired within the timeout.
    #[error("lock `{key}` not acquired within {waited:?}")]
    Timeout {
        /// The lock key.
        key: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// A release by someone who does not hold the lock (another owner, or the lock expired).
    #[error("not the owner of lock `{key}` (owner: {})", owner.as_deref().unwrap_or("none"))]
    NotOwner {
        /// The lock key.
        key: String,
        /// Who holds it now, if anyone.
        owner: Option<String>,
    },
    /// The keys of an all-or-nothing acquire are in different cluster slots, so no single
    /// script can take them atomically. Give them one hash tag (`Namespace::hash_tagged`).
    #[error(
        "locks {keys:?} are in different cluster slots; use one hash tag to take them atomically"
    )]
    CrossSlot {
        /// The keys.
        keys: Vec<String>,
    },
    /// The call was given no key.
    #[error("no lock key given")]
    NoKeys,
    /// The same key was given twice to an all-or-nothing acquire.
    #[error("lock `{key}` given twice")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// The acquire task ended without an answer (it panicked). No lock is held for the caller.
    #[error("the acquire was abandoned")]
    Abandoned,
}

/// `Result` with [`LockError`] as the default error.
pub type Result<T, E = LockError> = std::result::Result<T, E>;
