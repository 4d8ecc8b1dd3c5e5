//! The context of one request, and the headers it is read from.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kaiju_streams::{CORRELATION_ID, HeaderValue, Headers, short_uid};
use tokio::time::Instant;

use crate::scope::Scope;
use crate::trace::{self, TraceParent};

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
    /// W3C trace context (`00-<trace-id>-<parent-id>-<flags>`), read strictly; every call a
    /// method makes sends a child of it.
    pub const TRACEPARENT: &str = crate::trace::TRACEPARENT;
    /// W3C vendor trace state, passed on verbatim (at most 512 bytes).
    pub const TRACESTATE: &str = crate::trace::TRACESTATE;
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
    /// The caller's W3C `traceparent`, when valid.
    pub(crate) trace: Option<TraceParent>,
}

/// An integer header as kaiju reads it: `int(v) if v else default`, where a `ValueError`
/// gives the default (`_get_int_header`, KAIJU-TOOLS §1.6). `None` stands for "the default".
///
/// What Python's `int()` makes of each msgpack type, matched here:
/// - an integer: itself (one above `i64::MAX` saturates), `0` is falsy: the default;
/// - a float: truncated toward zero (`2.5` → 2, `0.5` → 0, `-0.5` → 0); `0.0` is falsy; NaN is
///   a `ValueError`. An infinity raised `OverflowError` in kaiju (the request failed): here it
///   gives the default;
/// - `true` → 1; `false` and `nil` are falsy;
/// - a string or bytes: decimal digits with an optional sign, surrounding whitespace (ASCII
///   only around bytes) and `_` between digits; `""` is falsy; anything else (`"5.5"`) is a
///   `ValueError`, and so are more than 4,300 digits (Python's limit). Digits beyond the `i64`
///   range saturate, as Python's unbounded int is capped by the caller's `min`. Only ASCII
///   digits are read: Python also takes other Unicode decimal digits (`"５"`), which give the
///   default here;
/// - a list, a map or an extension: kaiju raised `TypeError` (or took an empty one as falsy):
///   the default.
fn int_header(value: Option<&HeaderValue>) -> Option<i64> {
    match value? {
        HeaderValue::Int(0) => None,
        HeaderValue::Int(n) => Some(*n),
        HeaderValue::Float(f) if f.is_finite() && *f != 0.0 => Some(f.trunc() as i64),
        HeaderValue::Float(_) => None,
        HeaderValue::Bool(true) => Some(1),
        HeaderValue::Bool(false) | HeaderValue::Nil => None,
        HeaderValue::Str(s) => parse_int(s.trim()),
        HeaderValue::Other(kaiju_core::Value::UInt(_)) => Some(i64::MAX),
        HeaderValue::Other(kaiju_core::Value::Bin(b)) => {
            parse_int(std::str::from_utf8(b.trim_ascii()).ok()?)
        }
        HeaderValue::Other(_) => None,
    }
}

/// The request's `Deadline` (unix seconds) as the server runs it by: a positive integer once
/// read by [`int_header`]. Anything else (`0`, `"0"`, `0.5`, garbage) is ignored, and the
/// `Timeout` or the default applies (kaiju made it an immediate timeout, D23). The replier
/// reads it here too, so that it never takes a deadline the server ignored for one passed.
pub(crate) fn deadline_header(h: &Headers) -> Option<u64> {
    int_header(h.get(headers::DEADLINE))
        .filter(|d| *d > 0)
        .map(i64::unsigned_abs)
}

/// Python's `int(text)` for decimal text (already trimmed), saturated to `i64`.
fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    // Digits, with single underscores only between two digits (`1_000`, not `_1` or `1__0`).
    let bytes = digits.as_bytes();
    let well_formed = bytes.first()?.is_ascii_digit()
        && bytes.last()?.is_ascii_digit()
        && bytes.iter().all(|b| b.is_ascii_digit() || *b == b'_')
        && !digits.contains("__");
    // Python refuses more than 4,300 digits (`sys.int_info.str_digits_check_threshold`).
    if !well_formed || bytes.iter().filter(|b| b.is_ascii_digit()).count() > 4300 {
        return None;
    }
    let mut n: i64 = 0;
    for d in bytes.iter().filter(|b| b.is_ascii_digit()) {
        let d = i64::from(d - b'0');
        n = n.saturating_mul(10).saturating_add(d);
    }
    Some(if negative { n.saturating_neg() } else { n })
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
    /// Every integer header is read as kaiju reads it ([`int_header`]), so a float `Timeout`
    /// of 2.5 from a Python client is 2 seconds, as it is for a Python app.
    /// - `Deadline` (unix seconds) wins over `Timeout`, capped at now + max. One that is not a
    ///   positive integer after that reading is ignored (kaiju turned it into an immediate
    ///   timeout, D23).
    /// - `Timeout`: seconds, `max(1, value)` capped at max (a negative one is 1 s, as in kaiju);
    ///   missing, `0` or unparsable gives the default.
    /// - `RPC-Retries`: attempts in total, `0..=10`.
    /// - batch flags: true only for the string `"?1"`.
    ///
    /// The whole-second deadline (`deadline_unix`, reported as `data.request_deadline` and by
    /// [`RequestContext::deadline_unix`]) is kaiju's `request_deadline` (KAIJU-TOOLS §1.6):
    /// the `Deadline` itself, capped at `int(now) + max` (also when it has passed: the
    /// caller's deadline, not the time the request was read); else `int(now) + Timeout + 1`;
    /// else `int(now) + default`. The method is cut at the exact deadline (`now + Timeout`):
    /// with a `Timeout`, the reported second is never before the cut.
    pub(crate) fn read(h: &Headers, limits: Limits) -> Self {
        let now = Instant::now();
        let unix = unix_now();
        let whole = unix.as_secs();
        let (left, deadline_unix) = match deadline_header(h) {
            Some(d) => (
                Duration::from_secs(d).saturating_sub(unix).min(limits.max),
                d.min(whole.saturating_add(limits.max.as_secs())),
            ),
            // kaiju takes the `Timeout` branch whenever the header is there: one that reads as
            // the default (`0`, `""`, `"5.5"`, nil) is `int(now) + default + 1`, and only a
            // request without it is `int(now) + default`.
            None => match h.get(headers::TIMEOUT) {
                Some(v) => {
                    let t = int_header(Some(v))
                        .map_or(limits.default, |t| {
                            Duration::from_secs(t.max(1).unsigned_abs())
                        })
                        .min(limits.max);
                    (t, whole.saturating_add(t.as_secs()).saturating_add(1))
                }
                None => (
                    limits.default,
                    whole.saturating_add(limits.default.as_secs()),
                ),
            },
        };
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
            deadline_unix,
            attempts: int_header(h.get(headers::RETRIES))
                .unwrap_or(0)
                .clamp(0, 10) as u32,
            abort_on_error: flag(h.get(headers::BATCH_ABORT)),
            template: flag(h.get(headers::BATCH_TEMPLATE)),
            trace: TraceParent::from_headers(h),
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
    trace: Option<TraceParent>,
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
            trace: parsed.trace,
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

    /// The deadline in whole unix seconds, as kaiju's `request_deadline` and the
    /// `data.request_deadline` of a `RequestTimeout` give it: the request's `Deadline` (capped
    /// at now + `max_request_time`), else now + `Timeout` + 1 s (kaiju's rounding), else
    /// now + `default_request_time`, now truncated to whole seconds. [`deadline`](Self::deadline)
    /// is when the method is cut.
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

    /// The caller's W3C trace context (its `traceparent` header), if valid. Calls the method
    /// makes with an [`RpcClient`](crate::RpcClient) send a child of it.
    pub fn trace(&self) -> Option<TraceParent> {
        self.0.trace
    }

    /// The caller's `tracestate`, if it is a string of at most
    /// [`MAX_TRACESTATE`](crate::trace::MAX_TRACESTATE) bytes; passed on verbatim.
    pub fn tracestate(&self) -> Option<&str> {
        trace::tracestate(&self.0.headers)
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
        // kaiju's `max(1, int(v))`: a negative Timeout is one second, the string "0" too.
        assert_eq!(left(&with(&[("Timeout", (-3).into())])), 1);
        assert_eq!(left(&with(&[("Timeout", "0".into())])), 1);
        assert_eq!(left(&with(&[("Timeout", "".into())])), 90);
    }

    /// A Python client's `max_timeout=2.5` arrives as a msgpack float: kaiju truncates it
    /// (`int(2.5)`), so 0.5 → 1 s, 2.5 → 2 s, 7.0 → 7 s. Each value type reads as Python's
    /// `int()` reads it.
    #[tokio::test]
    async fn every_value_type_reads_as_pythons_int_reads_it() {
        let timeout = |v: HeaderValue| left(&with(&[("Timeout", v)]));
        assert_eq!(timeout(0.5.into()), 1);
        assert_eq!(timeout(2.5.into()), 2);
        assert_eq!(timeout(7.0.into()), 7);
        assert_eq!(timeout((-0.5).into()), 1);
        assert_eq!(timeout(0.0.into()), 90, "0.0 is falsy: the default");
        assert_eq!(timeout(f64::NAN.into()), 90);
        assert_eq!(timeout(f64::INFINITY.into()), 90);
        assert_eq!(timeout(1e30.into()), 600);
        assert_eq!(timeout(true.into()), 1);
        assert_eq!(timeout(false.into()), 90);
        assert_eq!(timeout(HeaderValue::Nil), 90);
        assert_eq!(timeout(" 7 ".into()), 7);
        assert_eq!(timeout("+7".into()), 7);
        assert_eq!(timeout("1_0".into()), 10);
        assert_eq!(timeout("1__0".into()), 90);
        assert_eq!(timeout("_10".into()), 90);
        assert_eq!(timeout("99999999999999999999999".into()), 600);
        assert_eq!(timeout("5.5".into()), 90);
        assert_eq!(timeout(kaiju_core::Value::Bin(b"8".to_vec()).into()), 8);
        assert_eq!(
            timeout(kaiju_core::Value::Bin(b"\xc2\xa08".to_vec()).into()),
            90,
            "bytes are trimmed of ASCII whitespace only (a ValueError in Python)"
        );
        assert_eq!(
            timeout("\u{a0}8\u{a0}".into()),
            8,
            "a string of any whitespace"
        );
        assert_eq!(timeout("1".repeat(4300).as_str().into()), 600);
        assert_eq!(
            timeout("1".repeat(4301).as_str().into()),
            90,
            "over Python's 4,300 digits: a ValueError"
        );
        assert_eq!(
            timeout(kaiju_core::Value::Array(vec![kaiju_core::Value::Int(5)]).into()),
            90
        );
        let at = (unix_now().as_secs() + 20) as f64 + 0.9;
        let parsed = Parsed::read(&with(&[("Deadline", at.into())]), LIMITS);
        assert_eq!(
            parsed.deadline_unix,
            at.trunc() as u64,
            "a float Deadline is truncated"
        );
        let retries = |v: HeaderValue| Parsed::read(&with(&[("RPC-Retries", v)]), LIMITS).attempts;
        assert_eq!(retries(2.9.into()), 2);
        assert_eq!(retries("3".into()), 3);
        assert_eq!(retries(true.into()), 1);
        assert_eq!(retries((-2.5).into()), 0);
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

    /// `deadline_unix` (a `RequestTimeout`'s `data.request_deadline`) is kaiju's
    /// `request_deadline`: the `Deadline` header even once it has passed (it was the time the
    /// request was read), capped at `int(now) + max`; else `int(now) + Timeout + 1`; else
    /// `int(now) + default`.
    #[tokio::test]
    async fn the_whole_second_deadline_is_kaijus_request_deadline() {
        let reported = |h: &Headers| {
            let before = unix_now().as_secs();
            let d = Parsed::read(h, LIMITS).deadline_unix;
            (d, before, unix_now().as_secs())
        };
        let unix = unix_now().as_secs();
        for d in [unix - 5, unix - 100_000, unix + 20] {
            let (got, _, _) = reported(&with(&[("Deadline", d.into()), ("Timeout", 5.into())]));
            assert_eq!(got, d, "Deadline {d} (now {unix})");
        }
        let (got, before, after) = reported(&with(&[("Deadline", (unix + 100_000).into())]));
        assert!((before + 600..=after + 600).contains(&got), "capped: {got}");
        let (got, before, after) = reported(&with(&[("Timeout", 5.into())]));
        assert!((before + 6..=after + 6).contains(&got), "Timeout 5: {got}");
        let (got, before, after) = reported(&with(&[("Timeout", 100_000.into())]));
        assert!(
            (before + 601..=after + 601).contains(&got),
            "Timeout capped: {got}"
        );
        // A Timeout header that reads as the default is still kaiju's Timeout branch: +1.
        for v in [
            HeaderValue::from(0),
            "5.5".into(),
            "".into(),
            HeaderValue::Nil,
            0.0.into(),
        ] {
            let (got, before, after) = reported(&with(&[("Timeout", v.clone())]));
            assert!(
                (before + 91..=after + 91).contains(&got),
                "Timeout {v:?}: {got}"
            );
        }
        let (got, before, after) = reported(&Headers::new());
        assert!(
            (before + 90..=after + 90).contains(&got),
            "the default: {got}"
        );
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
