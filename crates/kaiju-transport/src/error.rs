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
    /// TLS could not be set up: the server's certificate was refused (a CA the client does not
    /// trust, another host name, expired), or the server refused the client's (mutual TLS).
    /// Not retryable: the same settings meet the same certificate.
    #[error("TLS failed: {message}")]
    Tls {
        /// What rustls or the server said.
        message: String,
    },
    /// The server rejected the credentials (WRONGPASS, NOAUTH, bad user).
    #[error("authentication failed: {message}")]
    Auth {
        /// What the server or client said.
        message: String,
    },
    /// No reply within the command (or connect) timeout. The command may or may not have run.
    /// The message says what timed out (`timed out: ...`, or `cannot connect to Redis at
    /// 127.0.0.1:6379: no answer within 2s`).
    #[error("{message}")]
    Timeout {
        /// What timed out.
        message: String,
    },
    /// The connection is down or was lost while the command was in flight. The message says
    /// where and why (`cannot connect to Redis at 127.0.0.1:7199: connection refused`, or
    /// `connection unavailable: ...` for one lost later).
    #[error("{message}")]
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
    /// `ERR Function not found`: `FCALL` named a function the server has not loaded (kaiju's
    /// function library is loaded by `kaiju functions load`). The call did not run.
    #[error("function not loaded: {message}")]
    NoFunction {
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
    /// `NOPERM`: the ACL user may not run this command or touch this key or channel.
    #[error("permission denied: {message}")]
    NoPermission {
        /// The server's reply.
        message: String,
    },
    /// The server cannot serve the command right now, and will again soon: `LOADING` (a restart
    /// reading its data), `BUSY` (a long script), `TRYAGAIN` (a cluster slot migrating),
    /// `READONLY` (a replica that was a primary, mid-failover), `MASTERDOWN` (a replica lost
    /// its primary), `CLUSTERDOWN`. The command did not run.
    #[error("server unavailable ({code}): {message}")]
    Unavailable {
        /// The reply's leading code.
        code: String,
        /// The full reply.
        message: String,
    },
    /// The reply could not be read as the expected type.
    #[error("unexpected reply: {message}")]
    Protocol {
        /// What did not fit.
        message: String,
    },
    /// Any other error reply from the server, e.g. `ERR ...`.
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
    /// Whether retrying the same call later may succeed: timeouts, lost connections, and a
    /// server that is restarting or failing over ([`Unavailable`](Self::Unavailable)).
    ///
    /// After [`Timeout`](Self::Timeout) or [`Connection`](Self::Connection) the command may
    /// or may not have run: only retry calls that are safe to run twice.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Connection { .. } | Self::Unavailable { .. }
        )
    }

    /// Whether no reply came within the timeout ([`Timeout`](Self::Timeout)).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// Whether the server refused the command because it is over `maxmemory` (`OOM`, with the
    /// `noeviction` policy): the command did not run, and may succeed once memory is freed.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, Self::Server { code, .. } if code == "OOM")
    }

    /// Whether an `XADD` was refused because the stream's last id is the largest there is (a
    /// stream bricked by an entry with that id): every `XADD` there fails until the stream is
    /// repaired (`kaiju streams ... --repair`).
    pub fn is_stream_id_exhausted(&self) -> bool {
        matches!(self, Self::Server { message, .. } if message.contains("exhausted the last possible ID"))
    }

    /// Whether an `XSETID` was refused because the id is below one deleted from the stream:
    /// Redis 7.2+ and Valkey never set a stream's last id back past a deleted entry (Redis 7.0
    /// did, when told the deleted id with `MAXDELETEDID`).
    pub fn is_last_id_below_deleted(&self) -> bool {
        matches!(self, Self::Server { message, .. } if message.contains("smaller than current max_deleted_entry_id"))
    }

    /// Whether the server refused to run a script at all, so none of it ran: the ACL user may
    /// not call `EVALSHA` ([`NoPermission`](Self::NoPermission)), or the command is renamed
    /// away (unknown). The same work sent as plain commands may still succeed; a script refused
    /// one of its keys or commands is not this (the plain commands would fail the same).
    pub fn is_script_refused(&self) -> bool {
        match self {
            Self::NoPermission { message } => message.to_ascii_lowercase().contains("evalsha"),
            Self::Server { message, .. } => {
                let message = message.to_ascii_lowercase();
                message.contains("unknown command") && message.contains("evalsha")
            }
            _ => false,
        }
    }

    /// Whether the server refused to run a function at all, so none of it ran and the same
    /// script may be sent with `EVALSHA` instead: the function is not loaded
    /// ([`NoFunction`](Self::NoFunction)), the ACL user may not call `FCALL`, or the server
    /// has no such command. A function refused one of its keys (the same keys would be refused
    /// to `EVALSHA`) or one of its commands (it may have written before) is not this.
    pub fn is_function_refused(&self) -> bool {
        match self {
            Self::NoFunction { .. } => true,
            Self::NoPermission { message } => message.to_ascii_lowercase().contains("'fcall'"),
            Self::Server { message, .. } => {
                let message = message.to_ascii_lowercase();
                message.contains("unknown command") && message.contains("fcall")
            }
            _ => false,
        }
    }

    /// An error reply the server sent inside a larger reply (a script that collects the errors
    /// of the commands it ran), classified like any other.
    pub fn from_reply(message: &str) -> Self {
        FredError::new(ErrorKind::Unknown, message.to_owned()).into()
    }

    /// A setting fred rejected (a URL it cannot parse, a TLS setup that failed).
    pub(crate) fn config(field: &'static str, what: &str, error: &FredError) -> Self {
        Self::Config(ConfigError::Invalid {
            field,
            reason: format!("{what}: {}", url_reason(error.details())),
        })
    }
}

/// The `url` crate's error names (which fred passes on as they are) in words.
fn url_reason(details: &str) -> &str {
    match details {
        "EmptyHost" => "the host is empty",
        "IdnaError" => "the host is not a valid international domain name",
        "InvalidPort" => "the port is not a number from 0 to 65535",
        "InvalidIpv4Address" => "the host is not a valid IPv4 address",
        "InvalidIpv6Address" => "the host is not a valid IPv6 address",
        "InvalidDomainCharacter" => "the host holds a character a domain name cannot",
        "RelativeUrlWithoutBase" => "it has no scheme (write redis://host:port)",
        "RelativeUrlWithCannotBeABaseBase" | "SetHostOnCannotBeABaseUrl" => {
            "it is not a URL with a host"
        }
        "Overflow" => "it is too long",
        other => other,
    }
}

/// Server reply codes that mean "you are not who you say".
const AUTH_CODES: [&str; 3] = ["WRONGPASS", "NOAUTH", "INVALIDPASSWORD"];

/// Server reply codes of a server that is temporarily unable to serve (restart, failover).
const UNAVAILABLE_CODES: [&str; 6] = [
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "READONLY",
    "MASTERDOWN",
    "CLUSTERDOWN",
];

impl From<FredError> for TransportError {
    /// Classifies the error, and counts it (`kaiju_transport_errors_total{kind}`).
    fn from(error: FredError) -> Self {
        let classified = Self::classified(error);
        crate::metrics::error(classified.kind());
        classified
    }
}

impl TransportError {
    /// Classifies `error` without counting it: for replies that are expected to be errors
    /// (the capability probes), which are no trouble to report.
    pub(crate) fn uncounted(error: &FredError) -> Self {
        Self::classified(error.clone())
    }

    /// The `kind` label of an error: its variant, in snake case (a fixed set).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            TransportError::Config(_) => "config",
            TransportError::Tls { .. } => "tls",
            TransportError::Auth { .. } => "auth",
            TransportError::Timeout { .. } => "timeout",
            TransportError::Connection { .. } => "connection",
            TransportError::BusyGroup { .. } => "busy_group",
            TransportError::NoGroup { .. } => "no_group",
            TransportError::NoScript { .. } => "no_script",
            TransportError::NoFunction { .. } => "no_function",
            TransportError::CrossSlot { .. } => "cross_slot",
            TransportError::WrongType { .. } => "wrong_type",
            TransportError::NoPermission { .. } => "no_permission",
            TransportError::Unavailable { .. } => "unavailable",
            TransportError::Protocol { .. } => "protocol",
            TransportError::Server { .. } => "server",
            TransportError::Client { .. } => "client",
        }
    }

    fn classified(error: FredError) -> Self {
        let message = error.details().to_owned();
        let code = message.split_whitespace().next().unwrap_or("");
        match code {
            "BUSYGROUP" => return Self::BusyGroup { message },
            "NOGROUP" => return Self::NoGroup { message },
            "NOSCRIPT" => return Self::NoScript { message },
            "CROSSSLOT" => return Self::CrossSlot { message },
            "WRONGTYPE" => return Self::WrongType { message },
            "NOPERM" => return Self::NoPermission { message },
            "ERR" if message == "ERR Function not found" => return Self::NoFunction { message },
            // A command a script runs is checked too, and refused with a plain ERR.
            "ERR"
                if message.contains("The user executing the script can't")
                    || message.contains("ACL failure in script") =>
            {
                return Self::NoPermission { message };
            }
            c if AUTH_CODES.contains(&c) => return Self::Auth { message },
            c if UNAVAILABLE_CODES.contains(&c) => {
                return Self::Unavailable {
                    code: c.to_owned(),
                    message,
                };
            }
            _ => {}
        }
        if message.starts_with("Failed to route command")
            || message.starts_with("Too many failed write attempts")
        {
            // No connection to the node that owns the command (a primary mid-failover), or
            // fred gave up writing it: the command may or may not have run.
            return Self::unavailable(&message);
        }
        match error.kind() {
            // A sentinel-managed primary that cannot be found right now (mid-failover).
            ErrorKind::Sentinel => Self::unavailable(&message),
            #[cfg(feature = "tls")]
            ErrorKind::Tls => Self::Tls { message },
            ErrorKind::IO if is_tls_failure(&message) => Self::Tls {
                message: unwrap_io_debug(&message).to_owned(),
            },
            ErrorKind::Auth => Self::Auth { message },
            ErrorKind::Timeout => Self::Timeout {
                message: format!("timed out: {message}"),
            },
            ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing | ErrorKind::Cluster => {
                Self::unavailable(&message)
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

impl TransportError {
    /// [`Connection`](Self::Connection) for a connection lost (or never made) with fred's
    /// words in `details`.
    fn unavailable(details: &str) -> Self {
        Self::Connection {
            message: format!("connection unavailable: {}", io_reason(details)),
        }
    }

    /// The error of a first connection to `target` (`Redis at 127.0.0.1:6379`, `the Redis
    /// Cluster at ...`), saying where it failed: `cannot connect to Redis at 127.0.0.1:7199:
    /// connection refused`.
    pub(crate) fn connecting(self, target: &str) -> Self {
        let reason = |message: &str, prefix: &str| {
            message.strip_prefix(prefix).unwrap_or(message).to_owned()
        };
        match self {
            Self::Connection { message } => Self::Connection {
                message: format!(
                    "cannot connect to {target}: {}",
                    reason(&message, "connection unavailable: ")
                ),
            },
            Self::Timeout { message } => Self::Timeout {
                message: format!(
                    "cannot connect to {target}: {}",
                    reason(&message, "timed out: ")
                ),
            },
            Self::Auth { message } => Self::Auth {
                message: format!("{target} refused the credentials: {message}"),
            },
            Self::Tls { message } => Self::Tls {
                message: format!("with {target}: {message}"),
            },
            other => other,
        }
    }
}

/// fred's words for a failed I/O call, as a person writes them: an `io::Error`'s `Debug`
/// (`Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }`) becomes
/// `connection refused`, and so does a custom one (`Custom { kind: Uncategorized, error:
/// "failed to lookup address information: Name or service not known" }`, a host name that
/// does not resolve); other text is kept.
fn io_reason(details: &str) -> String {
    let rest = details
        .strip_prefix("Os {")
        .and_then(|rest| rest.split_once("message: \""))
        .or_else(|| {
            details
                .strip_prefix("Custom {")
                .and_then(|rest| rest.split_once("error: \""))
        })
        .map(|(_, rest)| rest);
    let Some(rest) = rest else {
        return details.to_owned();
    };
    let text = rest.strip_suffix("\" }").unwrap_or(rest);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => details.to_owned(),
    }
}

/// fred reports a refused TLS handshake as an I/O error carrying rustls' error:
/// `InvalidCertificate(UnknownIssuer)`, `AlertReceived(CertificateRequired)`, ... (its `Debug`
/// or its `Display` form, depending on the path).
fn is_tls_failure(message: &str) -> bool {
    [
        "InvalidCertificate",
        "invalid peer certificate",
        "AlertReceived",
        "received fatal alert",
        "NoCertificatesPresented",
        "peer sent no certificates",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// `Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }` (an `io::Error`'s
/// `Debug`) → `InvalidCertificate(UnknownIssuer)`.
fn unwrap_io_debug(message: &str) -> &str {
    message
        .split_once("error: ")
        .and_then(|(_, rest)| rest.strip_suffix(" }"))
        .unwrap_or(message)
}

/// Redis error replies start with an upper-case code: `ERR`, `NOPERM`, `READONLY`, `MOVED`...
fn is_reply_code(code: &str) -> bool {
    !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// `Result` with [`TransportError`] as the default error.
pub type Result<T, E = TransportError> = std::result::Result<T, E>;

/// The one way a fred result becomes a kaiju result: `.classify()` turns fred's error into a
/// [`TransportError`], and `?` then converts it into the caller's own error type (every kaiju
/// error enum has `From<TransportError>`). This keeps fred out of every other crate's API.
///
/// ```no_run
/// # async fn demo(transport: kaiju_transport::Transport) -> kaiju_transport::Result<()> {
/// use kaiju_transport::Classify;
/// use kaiju_transport::fred::prelude::*;
/// let value: Option<String> = transport.pool().get("greeting").await.classify()?;
/// # Ok(()) }
/// ```
pub trait Classify<T> {
    /// The result with its error classified.
    fn classify(self) -> Result<T>;
}

impl<T> Classify<T> for std::result::Result<T, FredError> {
    fn classify(self) -> Result<T> {
        self.map_err(TransportError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(kind: ErrorKind, details: &str) -> TransportError {
        FredError::new(kind, details.to_owned()).into()
    }

    #[test]
    fn url_errors_are_in_words() {
        let e = TransportError::config(
            "url",
            "not a valid Redis URL",
            &FredError::new(ErrorKind::Url, "InvalidPort"),
        );
        assert_eq!(
            e.to_string().rsplit(": ").next(),
            Some("the port is not a number from 0 to 65535")
        );
        assert_eq!(url_reason("something else"), "something else");
    }

    #[test]
    fn connect_failures_name_the_server_and_say_why_in_words() {
        let refused = classify(
            ErrorKind::IO,
            r#"Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }"#,
        )
        .connecting("Redis at 127.0.0.1:7199");
        assert_eq!(
            refused.to_string(),
            "cannot connect to Redis at 127.0.0.1:7199: connection refused"
        );
        assert!(refused.is_retryable());
        let later = classify(ErrorKind::Canceled, "Canceled.");
        assert_eq!(later.to_string(), "connection unavailable: Canceled.");
        let slow = classify(ErrorKind::Timeout, "Request timed out.").connecting("Redis at h:1");
        assert_eq!(
            slow.to_string(),
            "cannot connect to Redis at h:1: Request timed out."
        );
        let auth = classify(ErrorKind::Auth, "WRONGPASS invalid").connecting("Redis at h:1");
        assert_eq!(
            auth.to_string(),
            "authentication failed: Redis at h:1 refused the credentials: WRONGPASS invalid"
        );
        assert_eq!(io_reason("Os { code: 1 }"), "Os { code: 1 }");
        // A host name that does not resolve: no `Custom { kind: ... }` for people to read.
        let dns = classify(
            ErrorKind::IO,
            r#"Custom { kind: Uncategorized, error: "failed to lookup address information: Name or service not known" }"#,
        )
        .connecting("Redis at nonexistent.invalid:6379");
        assert_eq!(
            dns.to_string(),
            "cannot connect to Redis at nonexistent.invalid:6379: failed to lookup address information: Name or service not known"
        );
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
    fn acl_denials_are_no_permission_also_inside_scripts() {
        let top = classify(
            ErrorKind::Unknown,
            "NOPERM this user has no permissions to access one of the keys used as arguments",
        );
        assert!(
            matches!(top, TransportError::NoPermission { .. }),
            "{top:?}"
        );
        let script = classify(
            ErrorKind::Unknown,
            "ERR The user executing the script can't run this command or subcommand script: \
             e9e2, on @user_script:11.",
        );
        assert!(
            matches!(script, TransportError::NoPermission { .. }),
            "{script:?}"
        );
        let other = classify(ErrorKind::Unknown, "ERR unknown command 'FOO'");
        assert!(matches!(other, TransportError::Server { .. }), "{other:?}");
    }

    #[test]
    fn client_failures_are_classified_by_kind() {
        assert!(classify(ErrorKind::Timeout, "Request timed out.").is_retryable());
        assert!(classify(ErrorKind::Timeout, "Request timed out.").is_timeout());
        assert!(!classify(ErrorKind::IO, "Connection reset").is_timeout());
        assert!(classify(ErrorKind::IO, "Connection reset").is_retryable());
        assert!(classify(ErrorKind::Canceled, "Canceled").is_retryable());
        assert!(matches!(
            classify(ErrorKind::Parse, "Cannot parse into bytes."),
            TransportError::Protocol { .. }
        ));
        assert!(matches!(
            classify(ErrorKind::Unknown, "NOPERM this user has no permissions"),
            TransportError::NoPermission { .. }
        ));
        assert!(!classify(ErrorKind::Unknown, "ERR syntax error").is_retryable());
    }

    #[test]
    fn a_bricked_stream_is_told_apart() {
        let e = classify(
            ErrorKind::Unknown,
            "ERR The stream has exhausted the last possible ID, unable to add more items",
        );
        assert!(e.is_stream_id_exhausted(), "{e:?}");
        assert!(!classify(ErrorKind::Unknown, "ERR syntax error").is_stream_id_exhausted());
    }

    #[test]
    fn only_a_refusal_of_the_script_itself_is_a_script_refusal() {
        let refused = |reply: &str| classify(ErrorKind::Unknown, reply).is_script_refused();
        assert!(refused(
            "NOPERM this user has no permissions to run the 'evalsha' command"
        ));
        assert!(refused(
            "ERR unknown command 'EVALSHA', with args beginning with: "
        ));
        assert!(!refused(
            "NOPERM this user has no permissions to access one of the keys"
        ));
        assert!(!refused(
            "ERR The user executing the script can't run this command or subcommand script: \
             a1b2, on @user_script:1."
        ));
        assert!(!classify(ErrorKind::Timeout, "timed out").is_script_refused());
    }

    #[test]
    fn only_a_refusal_of_the_function_itself_lets_evalsha_take_over() {
        let refused = |reply: &str| classify(ErrorKind::Unknown, reply).is_function_refused();
        assert!(matches!(
            classify(ErrorKind::Unknown, "ERR Function not found"),
            TransportError::NoFunction { .. }
        ));
        assert!(refused("ERR Function not found"));
        assert!(refused(
            "NOPERM this user has no permissions to run the 'fcall' command"
        ));
        assert!(refused(
            "ERR unknown command 'FCALL', with args beginning with: "
        ));
        // Its keys: EVALSHA would be refused the same. Inside it: it may have written.
        assert!(!refused(
            "NOPERM this user has no permissions to access one of the keys used as arguments"
        ));
        assert!(!refused(
            "ERR The user executing the script can't run this command or subcommand script: \
             kaiju_t1, on @user_function:5."
        ));
        assert!(!classify(ErrorKind::Timeout, "timed out").is_function_refused());
    }

    #[test]
    fn restart_and_failover_replies_are_retryable() {
        for reply in [
            "LOADING Redis is loading the dataset in memory",
            "BUSY Redis is busy running a script.",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "READONLY You can't write against a read only replica.",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "CLUSTERDOWN The cluster is down",
        ] {
            let error = classify(ErrorKind::Unknown, reply);
            assert!(
                matches!(error, TransportError::Unavailable { .. }),
                "{reply}: {error:?}"
            );
            assert!(error.is_retryable(), "{reply}");
        }
        assert!(!classify(ErrorKind::Unknown, "NOPERM no").is_retryable());
    }
}
