//! Redis errors, classified in one place.
//!
//! fred reports most server error replies as `ErrorKind::Unknown` with the reply text in
//! `details()`, so classification goes by the reply's leading code (`BUSYGROUP`, `NOGROUP`, ...)
//! first, then by fred's error kind for client-side failures.

use kaiju_core::ConfigError;

use fred::error::{Error as FredError, ErrorKind};

/// A Redis operation failed.
///
/// Match on the variant to react: [`TransportError::is_retryable`] tells whether the same call
/// may succeed later (timeouts, lost connections), the other variants are definite answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The settings cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server rejected the credentials (WRONGPASS, NOAUTH, bad user).
    #[error("authentication failed: {message}")]
    Auth {
        /// What the server or client said.
        message: String,
    },
    /// No reply within the command (or connect) timeout. The command may or may not have run.
    #[error("timed out: {message}")]
    Timeout {
        /// What timed out.
        message: String,
    },
    /// The connection is down or was lost while the command was in flight.
    #[error("connection unavailable: {message}")]
    Connection {
        /// What the client said.
        message: String,
    },
    /// `BUSYGROUP`: the consumer group already exists.
    #[error("consumer group already exists: {message}")]
    BusyGroup {
        /// The server's reply.
        message: String,
    },
    /// `NOGROUP`: the consumer group or the stream does not exist.
    #[error("consumer group or stream missing: {message}")]
    NoGroup {
        /// The server's reply.
        message: String,
    },
    /// `NOSCRIPT`: the script is not in the server's script cache.
    #[error("script not loaded: {message}")]
    NoScript {
        /// The server's reply.
        message: String,
    },
    /// `CROSSSLOT`: a multi-key command spans cluster slots. Put the keys under one hash tag
    /// ([`kaiju_core::Namespace::hash_tagged`]).
    #[error("keys in different cluster slots: {message}")]
    CrossSlot {
        /// The server's reply.
        message: String,
    },
    /// `WRONGTYPE`: the key holds another data type.
    #[error("wrong type of key: {message}")]
    WrongType {
        /// The server's reply.
        message: String,
    },
    /// The reply could not be read as the expected type.
    #[error("unexpected reply: {message}")]
    Protocol {
        /// What did not fit.
        message: String,
    },
    /// Any other error reply from the server, e.g. `ERR ...` or `NOPERM ...`.
    #[error("server error {code}: {message}")]
    Server {
        /// The reply's leading code (`ERR`, `NOPERM`, `READONLY`, ...).
        code: String,
        /// The full reply.
        message: String,
    },
    /// A client-side failure that fits none of the above.
    #[error("client error ({kind}): {message}")]
    Client {
        /// fred's error kind.
        kind: &'static str,
        /// What the client said.
        message: String,
    },
}

impl TransportError {
    /// Whether retrying the same call later may succeed: timeouts and lost connections.
    /// Only retry calls that are safe to run twice.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Connection { .. })
    }
}

/// Server reply codes that mean "you are not who you say".
const AUTH_CODES: [&str; 3] = ["WRONGPASS", "NOAUTH", "INVALIDPASSWORD"];

impl From<FredError> for TransportError {
    fn from(error: FredError) -> Self {
        let message = error.details().to_owned();
        let code = message.split_whitespace().next().unwrap_or("");
        match code {
            "BUSYGROUP" => return Self::BusyGroup { message },
            "NOGROUP" => return Self::NoGroup { message },
            "NOSCRIPT" => return Self::NoScript { message },
            "CROSSSLOT" => return Self::CrossSlot { message },
            "WRONGTYPE" => return Self::WrongType { message },
            c if AUTH_CODES.contains(&c) => return Self::Auth { message },
            _ => {}
        }
        match error.kind() {
            ErrorKind::Auth => Self::Auth { message },
            ErrorKind::Timeout => Self::Timeout { message },
            ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing | ErrorKind::Cluster => {
                Self::Connection { message }
            }
            ErrorKind::Parse | ErrorKind::Protocol | ErrorKind::NotFound => {
                Self::Protocol { message }
            }
            ErrorKind::Config | ErrorKind::Url => Self::Config(ConfigError::Invalid {
                field: "url",
                reason: message,
            }),
            _ if is_reply_code(code) => Self::Server {
                code: code.to_owned(),
                message,
            },
            kind => Self::Client {
                kind: kind.to_str(),
                message,
            },
        }
    }
}

/// Redis error replies start with an upper-case code: `ERR`, `NOPERM`, `READONLY`, `MOVED`...
fn is_reply_code(code: &str) -> bool {
    !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// `Result` with [`TransportError`] as the default error.
pub type Result<T, E = TransportError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(kind: ErrorKind, details: &str) -> TransportError {
        FredError::new(kind, details.to_owned()).into()
    }

    #[test]
    fn server_replies_are_classified_by_code() {
        use ErrorKind::*;
        let cases = [
            (Unknown, "BUSYGROUP Consumer Group name already exists"),
            (Unknown, "NOGROUP No such key 'x' or consumer group 'g'"),
            (Unknown, "NOSCRIPT No matching script. Please use EVAL."),
            (
                Unknown,
                "CROSSSLOT Keys in request don't hash to the same slot",
            ),
            (
                InvalidArgument,
                "WRONGTYPE Operation against a key holding the wrong kind",
            ),
            (
                Auth,
                "WRONGPASS invalid username-password pair or user is disabled.",
            ),
        ];
        let got: Vec<_> = cases.iter().map(|(k, d)| classify(k.clone(), d)).collect();
        assert!(matches!(got[0], TransportError::BusyGroup { .. }));
        assert!(matches!(got[1], TransportError::NoGroup { .. }));
        assert!(matches!(got[2], TransportError::NoScript { .. }));
        assert!(matches!(got[3], TransportError::CrossSlot { .. }));
        assert!(matches!(got[4], TransportError::WrongType { .. }));
        assert!(matches!(got[5], TransportError::Auth { .. }));
    }

    #[test]
    fn client_failures_are_classified_by_kind() {
        assert!(classify(ErrorKind::Timeout, "Request timed out.").is_retryable());
        assert!(classify(ErrorKind::IO, "Connection reset").is_retryable());
        assert!(classify(ErrorKind::Canceled, "Canceled").is_retryable());
        assert!(matches!(
            classify(ErrorKind::Parse, "Cannot parse into bytes."),
            TransportError::Protocol { .. }
        ));
        assert!(matches!(
            classify(ErrorKind::Unknown, "NOPERM this user has no permissions"),
            TransportError::Server { ref code, .. } if code == "NOPERM"
        ));
        assert!(!classify(ErrorKind::Unknown, "ERR syntax error").is_retryable());
    }
}
