//! The context of one request, and the headers it is read from.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kaiju_streams::{CORRELATION_ID, HeaderValue, Headers, short_uid};
use tokio::time::Instant;

use crate::scope::Scope;

/// Header names kaiju reads and writes (written in this case; read in any case).
pub mod headers {
    /// The correlation id of a request, propagated through every call it makes.
    pub const CORRELATION_ID: &str = "Correlation-Id";
    /// Relative time limit, integer seconds.
    pub const TIMEOUT: &str = "Timeout";
    /// Absolute deadline, integer unix seconds; takes precedence over `Timeout`.
    pub const DEADLINE: &str = "Deadline";
    /// Attempts in total (kaiju's meaning: 3 = the first try and two more), at most 10.
    pub const RETRIES: &str = "RPC-Retries";
    /// `"?1"`: stop a batch at its first failure (later requests get `Aborted`).
    pub const BATCH_ABORT: &str = "RPC-Batch-Abort-Error";
    /// `"?1"`: fill the batch's params from earlier results (`[0.id]`).
    pub const BATCH_TEMPLATE: &str = "RPC-Batch-Template";
    /// The credentials of the caller (read by an auth layer, not by the server itself).
    pub const AUTHORIZATION: &str = "Authorization";
    /// kaiju-rs request/response: the pub/sub channel the response goes to. A server answers
    /// only `<env>.<app>._reply.<client>` channels of its own env.
    pub const REPLY_TO: &str = "Reply-To";
    /// kaiju-rs request/response: the id the response carries back. A client makes it from 128
    /// bits of the operating system's secure generator (32 hex characters) and accepts a
    /// response only for the whole id; Python kaiju ignores it.
    pub const REQUEST_ID: &str = "Request-Id";
    /// kaiju's value for a true flag header.
    pub const TRUE: &str = "?1";
}

/// Time limits of the server (kaiju's `default_request_time` and `max_request_time`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) default: Duration,
    pub(crate) max: Duration,
}

/// The longest `Correlation-Id` kept, in bytes: a longer one is cut to this (kaiju's own are
/// 10 characters).
pub(crate) const MAX_CORRELATION_ID: usize = 128;

/// What the server reads from a request's headers (kaiju's rules, KAIJU-TOOLS §1.6).
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) correlation_id: String,
    pub(crate) deadline: Instant,
    pub(crate) deadline_unix: u64,
    pub(crate) attempts: u32,
    pub(crate) abort_on_error: bool,
    pub(crate) template: bool,
}

fn int(value: Option<&HeaderValue>) -> Option<i64> {
    match value? {
        HeaderValue::Str(s) => s.trim().parse().ok(),
        other => other.as_i64(),
    }
}

fn flag(value: Option<&HeaderValue>) -> bool {
    matches!(value, Some(HeaderValue::Str(s)) if s == headers::TRUE)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Parsed {
    /// - `Deadline` (int unix seconds, or an int string) wins over `Timeout`, capped at now +
    ///   max. One that does not parse is ignored (kaiju turned it into an immediate timeout).
    /// - `Timeout`: integer seconds in `1..=max`; `0`/missing/unparsable gives the default.
    /// - `RPC-Retries`: attempts in total, `0..=10`.
    /// - batch flags: true only for the string `"?1"`.
    pub(crate) fn read(h: &Headers, limits: Limits) -> Self {
        let now = Instant::now();
        let unix = unix_now();
        let by_deadline = int(h.get(headers::DEADLINE)).filter(|d| *d > 0).map(|d| {
            Duration::from_secs(d.unsigned_abs())
                .saturating_sub(unix)
                .min(limits.max)
        });
        let by_timeout = || match int(h.get(headers::TIMEOUT)) {
            Some(t) if t > 0 => Duration::from_secs(t.unsigned_abs()).min(limits.max),
            _ => limits.default,
        };
        let left = by_deadline.unwrap_or_else(by_timeout);
        // Cut to its first `MAX_CORRELATION_ID` bytes: a caller's id of any length would be
        // copied into every log line, the reply and every call the method makes onwards.
        let correlation_id = h
            .get(CORRELATION_ID)
            .and_then(HeaderValue::to_text)
            .filter(|id| !id.is_empty())
            .map(|mut id| {
                if id.len() > MAX_CORRELATION_ID {
                    let mut end = MAX_CORRELATION_ID;
                    while !id.is_char_boundary(end) {
                        end -= 1;
                    }
                    id.truncate(end);
                }
                id
            })
            .unwrap_or_else(short_uid);
        Self {
            correlation_id,
            deadline: now + left,
            deadline_unix: (unix + left).as_secs(),
            attempts: int(h.get(headers::RETRIES)).unwrap_or(0).clamp(0, 10) as u32,
            abort_on_error: flag(h.get(headers::BATCH_ABORT)),
            template: flag(h.get(headers::BATCH_TEMPLATE)),
        }
    }
}

/// The context of one request, handed to its method: correlation id, deadline, headers, and
/// the caller's scope. Each request gets its own (kaiju shared one dict between concurrent
/// requests, D25).
///
/// Calls a method makes with an [`RpcClient`](crate::RpcClient) carry its correlation id (and
/// [`request`](crate::RpcClient::request)s its deadline) by themselves: the context is in a
/// task-local while the method runs. A task the method spawns does not inherit it; pass the
/// context along.
#[derive(Debug, Clone)]
pub struct RequestContext(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    method: String,
    correlation_id: String,
    deadline: Instant,
    deadline_unix: u64,
    headers: Headers,
    scope: Scope,
}

impl RequestContext {
    pub(crate) fn new(method: &str, parsed: &Parsed, headers: &Headers, scope: Scope) -> Self {
        Self(Arc::new(Inner {
            method: method.to_owned(),
            correlation_id: parsed.correlation_id.clone(),
            deadline: parsed.deadline,
            deadline_unix: parsed.deadline_unix,
            headers: headers.clone(),
            scope,
        }))
    }

    /// A context for tests of methods.
    pub fn for_test(method: &str, headers: Headers, scope: Scope) -> Self {
        let limits = Limits {
            default: Duration::from_secs(90),
            max: Duration::from_secs(600),
        };
        Self::new(method, &Parsed::read(&headers, limits), &headers, scope)
    }

    /// The full method name (`service.method`).
    pub fn method(&self) -> &str {
        &self.0.method
    }

    /// The correlation id: the caller's `Correlation-Id`, or a new 10-hex-character one.
    pub fn correlation_id(&self) -> &str {
        &self.0.correlation_id
    }

    /// When the request (the whole batch, for a batch) must be done.
    pub fn deadline(&self) -> Instant {
        self.0.deadline
    }

    /// The deadline in unix seconds (what a `Deadline` header carries).
    pub fn deadline_unix(&self) -> u64 {
        self.0.deadline_unix
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.0.deadline.saturating_duration_since(Instant::now())
    }

    /// Every header of the request, as sent.
    pub fn headers(&self) -> &Headers {
        &self.0.headers
    }

    /// The caller's scope.
    pub fn scope(&self) -> Scope {
        self.0.scope
    }

    /// The context of the request whose method is running in this task, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    pub(crate) async fn scope_over<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        default: Duration::from_secs(90),
        max: Duration::from_secs(600),
    };

    fn left(h: &Headers) -> u64 {
        let parsed = Parsed::read(h, LIMITS);
        parsed
            .deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
            .ceil() as u64
    }

    fn with(pairs: &[(&str, HeaderValue)]) -> Headers {
        let mut h = Headers::new();
        for (k, v) in pairs {
            h.insert(*k, v.clone());
        }
        h
    }

    #[tokio::test]
    async fn timeouts_follow_kaiju() {
        assert_eq!(left(&Headers::new()), 90);
        assert_eq!(left(&with(&[("Timeout", 5.into())])), 5);
        assert_eq!(left(&with(&[("timeout", "7".into())])), 7);
        assert_eq!(left(&with(&[("Timeout", 0.into())])), 90);
        assert_eq!(left(&with(&[("Timeout", "5.5".into())])), 90);
        assert_eq!(left(&with(&[("Timeout", 100_000.into())])), 600);
        assert_eq!(left(&with(&[("Timeout", (-3).into())])), 90);
    }

    #[tokio::test]
    async fn integers_above_i64_max_read_as_the_largest_integer() {
        let big = || HeaderValue::from(u64::MAX);
        assert_eq!(
            left(&with(&[("Timeout", big())])),
            600,
            "capped, as i64::MAX is"
        );
        let parsed = Parsed::read(
            &with(&[("RPC-Retries", big()), ("Correlation-Id", big())]),
            LIMITS,
        );
        assert_eq!(parsed.attempts, 10);
        assert_eq!(parsed.correlation_id, u64::MAX.to_string());
    }

    #[tokio::test]
    async fn a_deadline_wins_over_a_timeout_and_garbage_is_ignored() {
        let unix = unix_now().as_secs() as i64;
        assert_eq!(
            left(&with(&[
                ("Deadline", (unix + 20).into()),
                ("Timeout", 5.into())
            ])),
            20
        );
        assert_eq!(left(&with(&[("Deadline", (unix + 100_000).into())])), 600);
        // Expired: no time left.
        assert_eq!(left(&with(&[("Deadline", (unix - 5).into())])), 0);
        // Garbage (kaiju: deadline 0, an instant timeout): the Timeout or the default applies.
        assert_eq!(
            left(&with(&[("Deadline", "soon".into()), ("Timeout", 5.into())])),
            5
        );
        assert_eq!(left(&with(&[("Deadline", "1700000000.5".into())])), 90);
    }

    #[tokio::test]
    async fn retries_flags_and_correlation_ids() {
        let p = Parsed::read(
            &with(&[
                ("rpc-retries", 50.into()),
                ("RPC-Batch-Abort-Error", "?1".into()),
                ("RPC-Batch-Template", HeaderValue::Bool(true)),
                ("correlation-id", "abc".into()),
            ]),
            LIMITS,
        );
        assert_eq!(p.attempts, 10);
        assert!(p.abort_on_error);
        assert!(!p.template, "only the string ?1 is true, as in kaiju");
        assert_eq!(p.correlation_id, "abc");
        let p = Parsed::read(&with(&[("RPC-Retries", (-1).into())]), LIMITS);
        assert_eq!(p.attempts, 0);
        assert_eq!(p.correlation_id.len(), 10);
        // A caller's id of any length is cut (on a character boundary), not carried whole.
        let long = format!(
            "{}é{}",
            "x".repeat(MAX_CORRELATION_ID - 1),
            "x".repeat(1 << 20)
        );
        let p = Parsed::read(&with(&[("Correlation-Id", long.as_str().into())]), LIMITS);
        assert_eq!(p.correlation_id.len(), MAX_CORRELATION_ID - 1);
        assert!(long.starts_with(&p.correlation_id));
    }
}
