//! W3C trace context (<https://www.w3.org/TR/trace-context/>): the `traceparent` header a
//! request may carry, read strictly, and the child a call made inside it sends on.

use std::fmt;

use kaiju_streams::{HeaderValue, Headers};

/// The header carrying the trace context (`00-<trace-id>-<parent-id>-<flags>`).
pub const TRACEPARENT: &str = "traceparent";
/// The vendor trace state; passed on verbatim when at most [`MAX_TRACESTATE`] bytes.
pub const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` passed on, in bytes (the W3C limit a platform must propagate is
/// 512 characters); a longer one is dropped, not cut (a cut list could be misread).
pub const MAX_TRACESTATE: usize = 512;

/// The length of a version-00 `traceparent`: `2 + 1 + 32 + 1 + 16 + 1 + 2`.
const LEN: usize = 55;

/// A valid `traceparent`: the trace id shared by every call of a trace, the id of the span
/// that made this call (`parent_id`), and the flags (bit 0: sampled).
///
/// Read strictly: version `00` only, exactly 55 characters, lowercase hex, neither id all
/// zeros. Anything else is no trace context (ignored, as the W3C text says a receiver does).
///
/// ```
/// use kaiju_rpc::TraceParent;
/// let t = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(t.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(t.sampled());
/// assert!(TraceParent::parse(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

/// Lowercase hex of an id, written without allocating (a log field or a header).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex<const N: usize>([u8; N]);

impl<const N: usize> fmt::Display for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0_u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

impl TraceParent {
    /// Reads a `traceparent` value; `None` unless it is valid (see the type).
    pub fn parse(s: &[u8]) -> Option<Self> {
        if s.len() != LEN || s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
            return None;
        }
        let [version] = hex::<1>(&s[0..2])?;
        if version != 0 {
            return None;
        }
        let trace_id = hex::<16>(&s[3..35])?;
        let parent_id = hex::<8>(&s[36..52])?;
        let [flags] = hex::<1>(&s[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The request's trace context, if its `traceparent` header (any letter case) is a valid
    /// string.
    pub fn from_headers(h: &Headers) -> Option<Self> {
        match h.get(TRACEPARENT)? {
            HeaderValue::Str(s) => Self::parse(s.as_bytes()),
            _ => None,
        }
    }

    /// A new trace (sampled): for a caller outside any request that wants its calls traced,
    /// sent with `.header(TRACEPARENT, root.to_string())`. Calls outside a request carry no
    /// `traceparent` otherwise.
    pub fn new_root() -> Result<Self, getrandom::Error> {
        let mut trace_id = [0_u8; 16];
        getrandom::fill(&mut trace_id)?;
        trace_id[15] |= u8::from(trace_id == [0; 16]);
        let mut root = Self {
            trace_id,
            parent_id: [0; 8],
            flags: 1,
        };
        root = root.child()?;
        Ok(root)
    }

    /// What a call made inside this trace sends: the same trace id and flags, a new random
    /// parent id (the calling span's).
    pub fn child(&self) -> Result<Self, getrandom::Error> {
        let mut parent_id = [0_u8; 8];
        getrandom::fill(&mut parent_id)?;
        // All zeros is invalid; one chance in 2^64, made valid rather than retried.
        parent_id[7] |= u8::from(parent_id == [0; 8]);
        Ok(Self {
            trace_id: self.trace_id,
            parent_id,
            flags: self.flags,
        })
    }

    /// The trace id, 32 hex characters when displayed.
    pub fn trace_id(&self) -> Hex<16> {
        Hex(self.trace_id)
    }

    /// The id of the caller's span, 16 hex characters when displayed.
    pub fn parent_id(&self) -> Hex<8> {
        Hex(self.parent_id)
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled the trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl fmt::Display for TraceParent {
    /// The header value: `00-<trace-id>-<parent-id>-<flags>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id(),
            self.parent_id(),
            self.flags
        )
    }
}

/// The request's `tracestate`, if it is a string of at most [`MAX_TRACESTATE`] bytes.
pub(crate) fn tracestate(h: &Headers) -> Option<&str> {
    match h.get(TRACESTATE)? {
        HeaderValue::Str(s) if s.len() <= MAX_TRACESTATE => Some(s),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips() {
        let t = TraceParent::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(t.to_string(), GOOD);
        assert_eq!(t.parent_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(t.flags(), 1);
        let u =
            TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!u.sampled());
    }

    #[test]
    fn invalid_headers_are_ignored() {
        for bad in [
            "",
            "00",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // uppercase hex
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // other versions, including the forbidden ff
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // wrong separators, lengths, trailing data
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_with_a_new_parent() {
        let t = TraceParent::parse(GOOD.as_bytes()).unwrap();
        let c = t.child().unwrap();
        assert_eq!(c.trace_id(), t.trace_id());
        assert_eq!(c.flags(), t.flags());
        assert_ne!(c.parent_id(), t.parent_id());
        assert_eq!(TraceParent::parse(c.to_string().as_bytes()), Some(c));
        let root = TraceParent::new_root().unwrap();
        assert!(root.sampled());
        assert_eq!(TraceParent::parse(root.to_string().as_bytes()), Some(root));
    }

    #[test]
    fn headers_are_read_in_any_case_and_tracestate_is_bounded() {
        let mut h = Headers::new();
        h.insert("TraceParent", GOOD);
        h.insert("tracestate", "a=1,b=2");
        assert!(TraceParent::from_headers(&h).is_some());
        assert_eq!(tracestate(&h), Some("a=1,b=2"));
        h.insert("tracestate", "x".repeat(MAX_TRACESTATE + 1));
        assert_eq!(tracestate(&h), None);
        let mut h = Headers::new();
        h.insert("traceparent", 5);
        assert_eq!(TraceParent::from_headers(&h), None);
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic_and_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(t) = TraceParent::parse(&bytes) {
                let text = t.to_string();
                prop_assert_eq!(text.as_bytes(), &bytes[..]);
            }
        }

        #[test]
        fn any_valid_ids_parse(trace in any::<[u8; 16]>(), parent in any::<[u8; 8]>(), flags in any::<u8>()) {
            let text = format!("00-{}-{}-{flags:02x}", Hex(trace), Hex(parent));
            let parsed = TraceParent::parse(text.as_bytes());
            prop_assert_eq!(parsed.is_some(), trace != [0; 16] && parent != [0; 8]);
        }
    }
}
