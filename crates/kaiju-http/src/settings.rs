//! `HttpSettings`: where the front listens and the bounds it keeps.

use std::path::PathBuf;
use std::time::Duration;

/// kaiju's `app.client_max_size` default: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Where the HTTP front listens and the bounds it keeps (kaiju's `run:` section and
/// `app.client_max_size`, plus what aiohttp left unbounded).
///
/// ```
/// use std::time::Duration;
/// use kaiju_http::HttpSettings;
///
/// let settings = HttpSettings {
///     port: 8080,
///     max_concurrent_requests: 256,
///     ..HttpSettings::default()
/// };
/// assert_eq!(settings.max_body_bytes, 1024 * 1024);
/// assert_eq!(settings.request_timeout, Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// The TCP host to bind (`run.host`). Default: `127.0.0.1`.
    pub host: String,
    /// The TCP port (`run.port`); `0` picks a free one ([`Running::local_addr`](crate::Running::local_addr)
    /// says which). Default: `0`.
    pub port: u16,
    /// Also serve on this Unix socket (`run.path`, aiohttp's unix socket path). Default: none.
    pub path: Option<PathBuf>,
    /// The largest request body, bytes (`app.client_max_size`): a larger one is refused with
    /// 413 before more than this is read. Default: 1 MiB.
    pub max_body_bytes: usize,
    /// How long reading a request's body may take: a slower sender gets 408. Default: 10 s.
    pub body_read_timeout: Duration,
    /// How long one `/public/rpc` exchange may take, body included; past it the answer is a
    /// JSON-RPC `RequestTimeout` (the server's own deadlines cut methods earlier). Default: 300 s
    /// (the RPC server's largest `max_request_time`).
    pub request_timeout: Duration,
    /// At most this many `/public/rpc` requests are read, queued for a server slot or run at
    /// once; above it a request is answered 503 with `Retry-After: 1` at once (load shedding).
    /// Default: 1024.
    pub max_concurrent_requests: usize,
    /// How long [`Running::shutdown`](crate::Running::shutdown) waits for in-flight requests
    /// by default (`run.shutdown_timeout`). Default: 30 s.
    pub shutdown_grace: Duration,
    /// How long each `/ready` check may take before it counts as failing. Default: 2 s.
    pub ready_timeout: Duration,
    /// Idle keep-alive connections are closed after this long (`run.keepalive_timeout`).
    /// Default: 60 s.
    pub keepalive_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            path: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            max_concurrent_requests: 1024,
            shutdown_grace: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(2),
            keepalive_timeout: Duration::from_secs(60),
        }
    }
}
