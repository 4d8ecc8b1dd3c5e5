//! Stream entry ids (`<ms>-<seq>`).

use std::fmt;

/// A stream entry id. Both halves are `u64`, as in Redis; an id near the top of the id space
/// (`<ms>-18446744073709551615`) is valid and must not overflow anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct StreamId {
    pub(crate) ms: u64,
    pub(crate) seq: u64,
}

impl StreamId {
    /// `0-0`, below every entry.
    pub(crate) const ZERO: Self = Self { ms: 0, seq: 0 };

    /// `18446744073709551615-18446744073709551615`, the largest id: nothing comes after it
    /// (Redis refuses `(<max>` as the start of a range).
    pub(crate) const MAX: Self = Self {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// Parses `<ms>-<seq>` (or a bare `<ms>`, which Redis reads as `<ms>-0`). Anything else is
    /// `None`.
    pub(crate) fn parse(text: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(text).ok()?;
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(Self {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_strictly() {
        assert_eq!(
            StreamId::parse(b"1700000000000-5"),
            Some(StreamId {
                ms: 1_700_000_000_000,
                seq: 5
            })
        );
        assert_eq!(StreamId::parse(b"7"), Some(StreamId { ms: 7, seq: 0 }));
        for bad in [
            &b""[..],
            b"-",
            b"1-",
            b"-1",
            b"a-1",
            b"1-2-3",
            b"+1-2",
            b"1- 2",
            b"18446744073709551616-0",
            b"\xff-1",
        ] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_at_the_top_of_the_id_space_parse_and_print() {
        let top = StreamId {
            ms: u64::MAX,
            seq: u64::MAX,
        };
        assert_eq!(top.to_string(), "18446744073709551615-18446744073709551615");
        assert_eq!(StreamId::parse(top.to_string().as_bytes()), Some(top));
        assert!(StreamId::parse(b"5-18446744073709551615").unwrap() > StreamId { ms: 5, seq: 0 });
    }
}
