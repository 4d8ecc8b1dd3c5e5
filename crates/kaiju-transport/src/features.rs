//! The optional commands of newer servers, found by trying each one at connect time.
//!
//! A version string cannot say what a server offers: Valkey 9 reports `redis_version:7.2.4`,
//! and an ACL may deny a command the version has. So each feature is probed with a command
//! that can do nothing (it names a key that does not exist, under a condition that cannot
//! hold), and counts as present only if the server answered the way a server that has it
//! answers. An unknown command, a syntax error, `NOPERM`, a timeout: absent. All probes go out
//! in one pipeline, one round trip.
//!
//! In a cluster the probes reach one node: every node is assumed to run the same server.

use std::fmt;

use fred::clients::Pool;
use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};
use kaiju_core::RedisSettings;

use crate::TransportError;

/// The environment variable that turns probed features off: a comma-separated list of
/// [`Feature::name`]s, or `all` (the Redis 7 paths, on any server).
pub const FEATURES_OFF_ENV: &str = "KAIJU_REDIS_FEATURES_OFF";

/// An optional command or option that kaiju-rs uses where the server has it, and replaces
/// with a script or extra round trips where it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// `XREADGROUP ... CLAIM min-idle`: idle pending entries and new ones in one read, with
    /// their delivery counts (Redis 8.4).
    XReadGroupClaim,
    /// `XTRIM ... ACKED`: trims only entries every group has acknowledged (Redis 8.2).
    XTrimAcked,
    /// `XACKDEL`: acknowledge and delete in one command (Redis 8.2).
    XAckDel,
    /// `XADD ... IDMP producer id`: a repeated write returns the first one's id (Redis 8.6).
    XAddIdmp,
    /// `XNACK`: hands pending entries back to the group at once (Redis 8.8).
    XNack,
    /// `SET ... IFEQ value`: compare-and-set (Redis 8.4, Valkey 8.1).
    SetIfEq,
    /// `DELEX key IFEQ value`: compare-and-delete (Redis 8.4).
    DelEx,
    /// `DELIFEQ key value`: compare-and-delete (Valkey 9.0).
    DelIfEq,
    /// `MSETEX`: several strings with one expiry, atomically (Redis 8.4, Valkey 9.1).
    MSetEx,
    /// `HSETEX`: hash fields with an expiry, in one command (Redis 8.0, Valkey 9.0).
    HSetEx,
}

impl Feature {
    /// Every feature, in the order of the capability matrix.
    pub const ALL: [Feature; 10] = [
        Feature::XReadGroupClaim,
        Feature::XTrimAcked,
        Feature::XAckDel,
        Feature::XAddIdmp,
        Feature::XNack,
        Feature::SetIfEq,
        Feature::DelEx,
        Feature::DelIfEq,
        Feature::MSetEx,
        Feature::HSetEx,
    ];

    /// The command as the server's documentation names it, e.g. `XREADGROUP CLAIM`.
    pub fn command(self) -> &'static str {
        match self {
            Feature::XReadGroupClaim => "XREADGROUP CLAIM",
            Feature::XTrimAcked => "XTRIM ACKED",
            Feature::XAckDel => "XACKDEL",
            Feature::XAddIdmp => "XADD IDMP",
            Feature::XNack => "XNACK",
            Feature::SetIfEq => "SET IFEQ",
            Feature::DelEx => "DELEX",
            Feature::DelIfEq => "DELIFEQ",
            Feature::MSetEx => "MSETEX",
            Feature::HSetEx => "HSETEX",
        }
    }

    /// The name `KAIJU_REDIS_FEATURES_OFF` takes, e.g. `xreadgroup_claim`.
    pub fn name(self) -> &'static str {
        match self {
            Feature::XReadGroupClaim => "xreadgroup_claim",
            Feature::XTrimAcked => "xtrim_acked",
            Feature::XAckDel => "xackdel",
            Feature::XAddIdmp => "xadd_idmp",
            Feature::XNack => "xnack",
            Feature::SetIfEq => "set_ifeq",
            Feature::DelEx => "delex",
            Feature::DelIfEq => "delifeq",
            Feature::MSetEx => "msetex",
            Feature::HSetEx => "hsetex",
        }
    }

    /// The feature named `name` ([`Feature::name`], any case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name.trim()))
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// The probe: a command and its arguments, on `key` (a key that does not exist), which
    /// changes nothing on a server that has the feature.
    pub(crate) fn probe(self, key: &str) -> (&'static str, Vec<String>) {
        let args = |parts: &[&str]| parts.iter().map(|p| (*p).to_owned()).collect();
        match self {
            // NOGROUP where CLAIM parses; a syntax error where it does not.
            Feature::XReadGroupClaim => (
                "XREADGROUP",
                args(&[
                    "GROUP",
                    "kaiju-probe",
                    "c",
                    "CLAIM",
                    "1000",
                    "COUNT",
                    "1",
                    "STREAMS",
                    key,
                    ">",
                ]),
            ),
            Feature::XTrimAcked => ("XTRIM", args(&[key, "MAXLEN", "0", "ACKED"])),
            Feature::XAckDel => (
                "XACKDEL",
                args(&[key, "kaiju-probe", "ACKED", "IDS", "1", "0-1"]),
            ),
            // NOMKSTREAM: nothing is written to a key that does not exist.
            Feature::XAddIdmp => (
                "XADD",
                args(&[key, "NOMKSTREAM", "IDMP", "p", "i", "*", "f", "v"]),
            ),
            Feature::XNack => (
                "XNACK",
                args(&[key, "kaiju-probe", "FAIL", "IDS", "1", "0-1"]),
            ),
            Feature::SetIfEq => ("SET", args(&[key, "v", "IFEQ", "x"])),
            Feature::DelEx => ("DELEX", args(&[key, "IFEQ", "x"])),
            Feature::DelIfEq => ("DELIFEQ", args(&[key, "x"])),
            // XX: only keys that exist are written, and this one does not.
            Feature::MSetEx => ("MSETEX", args(&["1", key, "v", "XX", "PX", "1000"])),
            // FXX: only fields that exist are written.
            Feature::HSetEx => (
                "HSETEX",
                args(&[key, "FXX", "PX", "1000", "FIELDS", "1", "f", "v"]),
            ),
        }
    }

    /// Whether `reply` to [`probe`](Self::probe) is the answer of a server that has the
    /// feature: the probe parsed and ran (a reply), or it parsed and found no group (`NOGROUP`,
    /// the stream probes on a key that does not exist). Anything else means absent.
    pub(crate) fn present(self, reply: &Result<Value, TransportError>) -> bool {
        match reply {
            Ok(Value::Null) => matches!(self, Feature::XAddIdmp | Feature::SetIfEq),
            Ok(Value::Integer(_)) => matches!(
                self,
                Feature::XTrimAcked
                    | Feature::DelEx
                    | Feature::DelIfEq
                    | Feature::MSetEx
                    | Feature::HSetEx
            ),
            Ok(Value::Array(_)) => matches!(self, Feature::XAckDel),
            Ok(_) => false,
            Err(TransportError::NoGroup { .. }) => matches!(
                self,
                Feature::XReadGroupClaim | Feature::XNack | Feature::XAckDel
            ),
            Err(_) => false,
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.command())
    }
}

/// A set of [`Feature`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Features(u16);

impl Features {
    /// No feature.
    pub const NONE: Features = Features(0);

    /// Whether `feature` is in the set.
    pub fn has(self, feature: Feature) -> bool {
        self.0 & feature.bit() != 0
    }

    /// The set with `feature` added.
    #[must_use]
    pub fn with(self, feature: Feature) -> Self {
        Self(self.0 | feature.bit())
    }

    /// The set without `feature`.
    #[must_use]
    pub fn without(self, feature: Feature) -> Self {
        Self(self.0 & !feature.bit())
    }

    /// The features in the set, in [`Feature::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Feature> {
        Feature::ALL.into_iter().filter(move |f| self.has(*f))
    }

    /// The features `KAIJU_REDIS_FEATURES_OFF` turns off: a comma-separated list of
    /// [`Feature::name`]s, or `all`. Unknown names are returned apart, to be warned about.
    pub fn parse_off(list: &str) -> (Features, Vec<String>) {
        let mut off = Features::NONE;
        let mut unknown = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name.eq_ignore_ascii_case("all") {
                off = Feature::ALL.into_iter().fold(off, Features::with);
            } else if let Some(feature) = Feature::from_name(name) {
                off = off.with(feature);
            } else {
                unknown.push(name.to_owned());
            }
        }
        (off, unknown)
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Feature::name))
            .finish()
    }
}

impl FromIterator<Feature> for Features {
    fn from_iter<I: IntoIterator<Item = Feature>>(iter: I) -> Self {
        iter.into_iter().fold(Features::NONE, Features::with)
    }
}

/// Whether `settings` ask for probing: [`RedisSettings::probe_features`], whose default probes
/// unless the connection is an ACL user other than `default` (a least-privilege user may not
/// touch the probe key, and every refusal would land in the server's `ACL LOG`).
pub(crate) fn wanted(settings: &RedisSettings) -> bool {
    settings.probe_features.unwrap_or_else(|| {
        settings
            .username
            .as_deref()
            .is_none_or(|user| user == "default")
    })
}

/// Probes every feature in one pipeline on one pooled connection, less those
/// [`FEATURES_OFF_ENV`] turns off, if `settings` ask for it ([`wanted`]). A probe that fails in
/// any way counts as absent.
pub(crate) async fn probe(pool: &Pool, settings: &RedisSettings) -> Features {
    if !wanted(settings) {
        tracing::info!(
            "the newer servers' optional commands are not probed for an ACL user (probe_features \
             unset): the Redis 7 paths are used; grant the \"feature probes\" ACL row and set \
             probe_features to use them"
        );
        return Features::NONE;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // One slot for all probes (the hash tag), and a name nobody else uses.
    let key = format!("{{kaiju-probe}}:{}:{nanos}", std::process::id());
    let slot = kaiju_core::key_slot(key.as_bytes());
    let pipeline = pool.next().pipeline();
    for feature in Feature::ALL {
        let (name, args) = feature.probe(&key);
        let command = CustomCommand::new_static(name, ClusterHash::Custom(slot), false);
        // Queued: the reply comes with the pipeline's.
        let _: Result<Value, _> = pipeline.custom(command, args).await;
    }
    let replies: Vec<Result<Value, TransportError>> = pipeline
        .try_all::<Value>()
        .await
        .into_iter()
        .map(|reply| reply.map_err(|e| TransportError::uncounted(&e)))
        .collect();
    let mut found: Features = Feature::ALL
        .into_iter()
        .zip(replies.iter())
        .filter(|(feature, reply)| feature.present(reply))
        .map(|(feature, _)| feature)
        .collect();
    if let Ok(list) = std::env::var(FEATURES_OFF_ENV) {
        let (off, unknown) = Features::parse_off(&list);
        if !unknown.is_empty() {
            tracing::warn!(
                unknown = ?unknown,
                known = ?Feature::ALL.map(Feature::name),
                "{FEATURES_OFF_ENV} names features that do not exist; ignoring them"
            );
        }
        for feature in off.iter() {
            found = found.without(feature);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_users_are_probed_only_when_asked() {
        let mut settings = RedisSettings::default();
        assert!(wanted(&settings));
        settings.username = Some("default".to_owned());
        assert!(wanted(&settings));
        settings.username = Some("shop-app".to_owned());
        assert!(!wanted(&settings));
        settings.probe_features = Some(true);
        assert!(wanted(&settings));
        settings.username = None;
        settings.probe_features = Some(false);
        assert!(!wanted(&settings));
    }

    #[test]
    fn names_round_trip_and_off_lists_parse() {
        for feature in Feature::ALL {
            assert_eq!(Feature::from_name(feature.name()), Some(feature));
        }
        let (off, unknown) = Features::parse_off(" xnack, SET_IFEQ ,,bogus");
        assert!(off.has(Feature::XNack) && off.has(Feature::SetIfEq));
        assert!(!off.has(Feature::DelEx));
        assert_eq!(unknown, vec!["bogus".to_owned()]);
        let (all, _) = Features::parse_off("all");
        assert_eq!(all.iter().count(), Feature::ALL.len());
        assert_eq!(
            all.without(Feature::XNack).iter().count(),
            Feature::ALL.len() - 1
        );
    }

    #[test]
    fn only_the_expected_answer_means_present() {
        let syntax = Err(TransportError::Server {
            code: "ERR".to_owned(),
            message: "ERR syntax error".to_owned(),
        });
        let denied = Err(TransportError::NoPermission {
            message: "denied".to_owned(),
        });
        let nogroup = Err(TransportError::NoGroup {
            message: "no such key or consumer group".to_owned(),
        });
        for feature in Feature::ALL {
            assert!(!feature.present(&syntax), "{feature}");
            assert!(!feature.present(&denied), "{feature}");
        }
        assert!(Feature::XReadGroupClaim.present(&nogroup));
        assert!(!Feature::SetIfEq.present(&nogroup));
        assert!(Feature::SetIfEq.present(&Ok(Value::Null)));
        assert!(!Feature::SetIfEq.present(&Ok(Value::from("OK"))));
        assert!(Feature::DelEx.present(&Ok(Value::Integer(0))));
        assert!(!Feature::XAddIdmp.present(&Ok(Value::from("1-0"))));
    }
}
