//! What the server can do, detected once at connect time: the product and versions from
//! `INFO server`, and the optional commands of newer servers by trying them ([`Feature`]).
//!
//! Forks report a Redis compatibility version in `redis_version` and their own version in
//! `keydb_version` / `valkey_version`. The commands every supported server has follow the
//! compatibility version; the newer ones are probed, since a version string cannot tell
//! (Valkey 9 reports `redis_version:7.2.4`).

use std::fmt;

use crate::features::{Feature, Features};

/// The server product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerKind {
    /// Redis.
    Redis,
    /// KeyDB (a multithreaded Redis fork).
    KeyDb,
    /// Valkey (the Linux Foundation fork).
    Valkey,
    /// Dragonfly or another server speaking the Redis protocol.
    Other,
}

/// A `major.minor.patch` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    /// Major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Patch.
    pub patch: u16,
}

impl Version {
    /// A version.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `7.0.15` (missing parts are 0; anything after a non-digit is ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u16>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The server's product and versions, and the optional commands it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The product.
    pub kind: ServerKind,
    /// The Redis version it is compatible with (`redis_version`).
    pub redis_version: Version,
    /// The product's own version (`keydb_version`, `valkey_version`; for Redis the same as
    /// `redis_version`).
    pub server_version: Version,
    /// The optional commands the server answered when probed at connect time, less those
    /// `KAIJU_REDIS_FEATURES_OFF` turns off. Empty when read from `INFO` alone.
    pub features: Features,
}

impl Capabilities {
    /// Reads the `INFO server` text.
    pub fn from_info(info: &str) -> Self {
        let field = |name: &str| {
            info.lines().find_map(|line| {
                line.trim()
                    .strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .and_then(Version::parse)
            })
        };
        let redis_version = field("redis_version").unwrap_or_default();
        let (kind, own) = if let Some(v) = field("keydb_version") {
            (ServerKind::KeyDb, v)
        } else if let Some(v) = field("valkey_version") {
            (ServerKind::Valkey, v)
        } else if info.contains("dragonfly_version") {
            (ServerKind::Other, redis_version)
        } else {
            (ServerKind::Redis, redis_version)
        };
        Self {
            kind,
            redis_version,
            server_version: own,
            features: Features::NONE,
        }
    }

    /// Whether the server has `feature` (probed at connect time; see [`Feature`]).
    pub fn has(&self, feature: Feature) -> bool {
        self.features.has(feature)
    }

    fn redis_at_least(&self, major: u16, minor: u16) -> bool {
        self.redis_version >= Version::new(major, minor, 0)
    }

    /// `HELLO 3` (RESP3) and client-side caching (`CLIENT TRACKING`): Redis 6.0+.
    pub fn has_resp3(&self) -> bool {
        self.redis_at_least(6, 0)
    }

    /// `CLIENT TRACKINGINFO` (whether this connection is tracked): Redis 6.2+.
    pub fn has_tracking_info(&self) -> bool {
        self.redis_at_least(6, 2)
    }

    /// `XAUTOCLAIM`: Redis 6.2+.
    pub fn has_xautoclaim(&self) -> bool {
        self.redis_at_least(6, 2)
    }

    /// `SET ... GET` (write a string and read its old value in one command): Redis 6.2+.
    pub fn has_set_get(&self) -> bool {
        self.redis_at_least(6, 2)
    }

    /// `XAUTOCLAIM` also reports entries deleted while pending: Redis 7.0+.
    pub fn has_xautoclaim_deleted_ids(&self) -> bool {
        self.redis_at_least(7, 0)
    }

    /// Functions (`FUNCTION LOAD`, `FCALL`): Redis 7.0+ and Valkey (KeyDB has none, and other
    /// servers are not assumed to).
    pub fn has_functions(&self) -> bool {
        matches!(self.kind, ServerKind::Redis | ServerKind::Valkey) && self.redis_at_least(7, 0)
    }

    /// `XTRIM ... ACKED` (trim only what every group acknowledged), as probed.
    pub fn has_xtrim_acked(&self) -> bool {
        self.has(Feature::XTrimAcked)
    }

    /// `XREADGROUP ... CLAIM` (read new and idle pending entries in one call), as probed.
    pub fn has_xreadgroup_claim(&self) -> bool {
        self.has(Feature::XReadGroupClaim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_redis() {
        let c =
            Capabilities::from_info("# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\n");
        assert_eq!(c.kind, ServerKind::Redis);
        assert_eq!(c.redis_version, Version::new(7, 0, 15));
        assert!(c.has_xautoclaim() && c.has_xautoclaim_deleted_ids() && c.has_set_get());
        assert!(!c.has_xtrim_acked() && !c.has_xreadgroup_claim());
        assert!(c.has_functions());
        let r6 = Capabilities::from_info("redis_version:6.0.16\n");
        assert!(r6.has_resp3() && !r6.has_set_get() && !r6.has_xautoclaim());
        assert!(!r6.has_functions());
        // Newer commands are probed, never read off the version.
        let r8 = Capabilities::from_info("redis_version:8.4.0\n");
        assert!(!r8.has_xtrim_acked() && !r8.has(Feature::XReadGroupClaim));
    }

    #[test]
    fn forks_follow_their_compatibility_version() {
        let k = Capabilities::from_info("redis_version:6.3.4\r\nkeydb_version:6.3.4\r\n");
        assert_eq!(k.kind, ServerKind::KeyDb);
        assert!(k.has_xautoclaim() && !k.has_xautoclaim_deleted_ids() && k.has_set_get());
        assert!(!k.has_functions());
        let v = Capabilities::from_info(
            "redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.0\r\n",
        );
        assert_eq!(v.kind, ServerKind::Valkey);
        assert_eq!(v.server_version, Version::new(8, 1, 0));
        assert!(!v.has_xtrim_acked());
    }

    #[test]
    fn versions_parse_leniently() {
        assert_eq!(Version::parse("7.2"), Some(Version::new(7, 2, 0)));
        assert_eq!(
            Version::parse("255.255.255"),
            Some(Version::new(255, 255, 255))
        );
        assert_eq!(Version::parse("x"), None);
    }
}
