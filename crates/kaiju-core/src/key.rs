//! Namespaced Redis keys, built exactly as kaiju-redis builds them.
//!
//! kaiju names every key `<env>.<app>.<sub>...<key>` with `.` as the delimiter (docs/wire.md §1). A
//! [`Namespace`] holds the prefix, [`Namespace::join`] adds a part (Python's `ns / "x"`), and
//! [`Namespace::key`] makes a [`Key`] (Python's `ns.get_key(k)`).
//!
//! Because `.` separates the parts, a part that contains `.` would make two different namespaces
//! collide (`a.b` + `c` and `a` + `b.c`); such parts are rejected with [`KeyError::Delimiter`].
//!
//! # Cluster hash tags
//!
//! Multi-key commands (MGET, MSET, Lua scripts, XREADGROUP on several streams) need every key in
//! one cluster slot. [`Namespace::hash_tagged`] wraps the namespace prefix in `{...}`, so every
//! key made from it hashes to the same slot. This changes the key names, so a Python peer must use
//! the same (braced) names; it is therefore never done implicitly.
//!
//! ```
//! use kaiju_core::Namespace;
//!
//! let ns = Namespace::new("prod", "billing")?;
//! assert_eq!(ns.key("invoice:42")?.as_str(), "prod.billing.invoice:42");
//! assert_eq!(ns.join("cache")?.key("x")?.as_str(), "prod.billing.cache.x");
//!
//! // All keys of a tagged namespace share one cluster slot.
//! let tagged = ns.join("orders")?.hash_tagged();
//! assert_eq!(tagged.key("1")?.as_str(), "{prod.billing.orders}.1");
//! assert_eq!(tagged.key("1")?.slot(), tagged.key("2")?.slot());
//! # Ok::<(), kaiju_core::KeyError>(())
//! ```

use std::borrow::Borrow;
use std::fmt;

use crate::slot::{has_hash_tag, key_slot};

/// The delimiter between the parts of a kaiju key.
pub const DELIMITER: char = '.';

/// The namespace part kaiju uses for resources shared by every app of an environment.
pub const SHARED: &str = "_shared";

/// A key part was not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The part was empty.
    #[error("key part `{what}` is empty")]
    Empty {
        /// Which part (`env`, `app`, `part`, `key`, `topic`).
        what: &'static str,
    },
    /// The part contains the `.` delimiter, which would make keys ambiguous.
    #[error("key part `{what}` = {value:?} contains the delimiter '.'")]
    Delimiter {
        /// Which part.
        what: &'static str,
        /// The rejected value.
        value: String,
    },
    /// The part contains `{` or `}` inside a hash-tagged namespace, which would move the key to
    /// another cluster slot than its siblings.
    #[error("key part `{what}` = {value:?} contains a brace inside a hash-tagged namespace")]
    Brace {
        /// Which part.
        what: &'static str,
        /// The rejected value.
        value: String,
    },
}

fn check_part(what: &'static str, value: &str) -> Result<(), KeyError> {
    if value.is_empty() {
        return Err(KeyError::Empty { what });
    }
    if value.contains(DELIMITER) {
        return Err(KeyError::Delimiter {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// A key prefix: `<env>.<app>[.<part>...]`.
///
/// Cheap to clone; build it once at start-up and derive keys from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    /// The joined parts, without braces.
    prefix: String,
    /// Whether keys are written as `{prefix}.key`.
    tagged: bool,
}

impl Namespace {
    /// The namespace of one app in one environment: `<env>.<app>`.
    pub fn new(env: &str, app: &str) -> Result<Self, KeyError> {
        check_part("env", env)?;
        check_part("app", app)?;
        Ok(Self {
            prefix: format!("{env}{DELIMITER}{app}"),
            tagged: false,
        })
    }

    /// The namespace shared by every app of an environment: `<env>._shared`.
    pub fn shared(env: &str) -> Result<Self, KeyError> {
        Self::new(env, SHARED)
    }

    /// A child namespace: `<self>.<part>` (Python's `ns / part`).
    pub fn join(&self, part: &str) -> Result<Self, KeyError> {
        self.check("part", part)?;
        Ok(Self {
            prefix: format!("{}{DELIMITER}{part}", self.prefix),
            tagged: self.tagged,
        })
    }

    /// The same namespace with its prefix as a cluster hash tag: keys become `{<prefix>}.<key>`,
    /// so every key of this namespace lives in one cluster slot.
    #[must_use]
    pub fn hash_tagged(&self) -> Self {
        Self {
            prefix: self.prefix.clone(),
            tagged: true,
        }
    }

    /// Whether keys of this namespace carry a hash tag.
    pub fn is_hash_tagged(&self) -> bool {
        self.tagged
    }

    /// The prefix without any braces, e.g. `prod.billing`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key in this namespace: `<prefix>.<key>` (Python's `ns.get_key(key)`).
    pub fn key(&self, key: &str) -> Result<Key, KeyError> {
        self.check("key", key)?;
        let name = if self.tagged {
            format!("{{{}}}{DELIMITER}{key}", self.prefix)
        } else {
            format!("{}{DELIMITER}{key}", self.prefix)
        };
        Ok(Key(name))
    }

    /// The key of a listener stream: `<prefix>._stream.<topic>`.
    pub fn stream(&self, topic: &str) -> Result<Key, KeyError> {
        check_part("topic", topic)?;
        self.join("_stream")?.key(topic)
    }

    /// The pause ("exclusive lock") key of a listener: `<prefix>._stream._lock.<topic>`.
    pub fn stream_lock(&self, topic: &str) -> Result<Key, KeyError> {
        check_part("topic", topic)?;
        self.join("_stream")?.join("_lock")?.key(topic)
    }

    /// The dead-letter stream of a listener: `<prefix>._stream._dead.<topic>`.
    pub fn dead_letter_stream(&self, topic: &str) -> Result<Key, KeyError> {
        check_part("topic", topic)?;
        self.join("_stream")?.join("_dead")?.key(topic)
    }

    /// The consumer leases of a listener: `<prefix>._stream._consumers.<topic>`, a hash from
    /// consumer to the instance that holds the name (a kaiju-rs extension; Python kaiju does
    /// not read it).
    pub fn stream_consumers(&self, topic: &str) -> Result<Key, KeyError> {
        check_part("topic", topic)?;
        self.join("_stream")?.join("_consumers")?.key(topic)
    }

    /// The published counters of a listener's consumers: `<prefix>._stream._stats.<topic>`,
    /// a hash from `<group>/<consumer>` to the counters of the process reading as that
    /// consumer, each row with its own expiry (a kaiju-rs extension; Python kaiju does not
    /// write it, so its consumers have no row).
    pub fn stream_stats(&self, topic: &str) -> Result<Key, KeyError> {
        check_part("topic", topic)?;
        self.join("_stream")?.join("_stats")?.key(topic)
    }

    /// The pub/sub channel of a topic: `<prefix>._sub.<topic>`.
    pub fn channel(&self, topic: &str) -> Result<Key, KeyError> {
        check_part("topic", topic)?;
        self.join("_sub")?.key(topic)
    }

    /// The pub/sub channel on which one RPC client receives its responses:
    /// `<prefix>._reply.<client>` (a kaiju-rs extension; Python kaiju has no responses over
    /// Redis).
    pub fn reply_channel(&self, client: &str) -> Result<Key, KeyError> {
        check_part("client", client)?;
        self.join("_reply")?.key(client)
    }

    fn check(&self, what: &'static str, value: &str) -> Result<(), KeyError> {
        check_part(what, value)?;
        if self.tagged && value.contains(['{', '}']) {
            return Err(KeyError::Brace {
                what,
                value: value.to_owned(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tagged {
            write!(f, "{{{}}}", self.prefix)
        } else {
            f.write_str(&self.prefix)
        }
    }
}

/// Whether `name` is named exactly as [`Namespace::reply_channel`] names reply channels
/// ([`Key::parse_reply_channel`]). An RPC server publishes responses only to such channels of
/// its own environment, so a request cannot make it publish into another component's channels
/// (a lock's release channel, a topic, a keyspace notification) or into another environment.
pub fn is_reply_channel(name: &str) -> bool {
    Key::parse_reply_channel(name).is_some()
}

/// The parts of a reply channel, `<env>.<app>._reply.<client>` ([`Key::parse_reply_channel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplyChannel<'a> {
    /// The environment of the client's app.
    pub env: &'a str,
    /// The client's app.
    pub app: &'a str,
    /// The client.
    pub client: &'a str,
}

/// The name of a side key kept next to `key` (a lock's fencing counter and wait queue, a
/// cache fill lock), always in `key`'s cluster slot, so one Lua script may touch both. These
/// are kaiju-rs extensions; Python kaiju never reads them.
///
/// - A key without a hash tag becomes the tag: `a.b` → `{a.b}:__fence` (hashes like `a.b`).
/// - A key with a hash tag keeps it: `{t}.x` → `{t}.x.__fence`.
/// - A key with a stray `}` that is not a tag (`a}b`) cannot be wrapped (that would make another
///   tag); it gets a short tag chosen to hash to its slot: `{<n>}.a}b#__fence`.
///
/// The three forms end in different separators (`:`, `.`, `#` before `__<suffix>`), so two
/// different keys never share a side key (`x` and `{x}` once did).
///
/// ```
/// use kaiju_core::{key_slot, side_key};
/// assert_eq!(side_key("app.lock.x", "fence"), "{app.lock.x}:__fence");
/// assert_eq!(side_key("{t}.x", "queue"), "{t}.x.__queue");
/// assert_ne!(side_key("x", "fence"), side_key("{x}", "fence"));
/// let odd = side_key("a}b", "fence");
/// assert_eq!(key_slot(odd.as_bytes()), key_slot(b"a}b"));
/// ```
pub fn side_key(key: &str, suffix: &str) -> String {
    let mut name = side_key_prefix(key);
    name.push_str(suffix);
    name
}

/// What every [`side_key`] of `key` starts with: `side_key(key, s)` is this followed by `s`.
/// For callers that name several side keys of one key, so the rules run once.
///
/// ```
/// use kaiju_core::{side_key, side_key_prefix};
/// for key in ["app.lock.x", "{t}.x", "a}b"] {
///     assert_eq!(side_key_prefix(key) + "fence", side_key(key, "fence"));
/// }
/// ```
pub fn side_key_prefix(key: &str) -> String {
    if has_hash_tag(key.as_bytes()) {
        format!("{key}.__")
    } else if !key.contains('}') {
        format!("{{{key}}}:__")
    } else {
        format!("{{{}}}.{key}#__", tag_for_slot(key_slot(key.as_bytes())))
    }
}

/// The first of `0`, `1`, `2`, ... whose slot is `slot` (found within a few thousand tries).
fn tag_for_slot(slot: u16) -> String {
    (0_u32..)
        .map(|n| n.to_string())
        .find(|tag| key_slot(tag.as_bytes()) == slot)
        .unwrap_or_default()
}

/// A full Redis key name.
///
/// Made by [`Namespace::key`], or taken verbatim with [`Key::raw`] (kaiju-redis uses cache and
/// lock keys verbatim, so a key written by a Python service can be addressed as it is).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// A key used verbatim, with no namespace checks.
    pub fn raw(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The channel on which RPC client `client` of app `<env>.<app>` receives its responses:
    /// [`Namespace::reply_channel`]. Settings that name no namespace (an empty part, or one
    /// holding the delimiter) still give the client a reply channel, `kaiju._reply.<client>`,
    /// which `client` keeps apart from every other client's.
    pub fn reply_channel(env: &str, app: &str, client: &str) -> Self {
        Namespace::new(env, app)
            .and_then(|ns| ns.reply_channel(client))
            .unwrap_or_else(|_| Self(format!("kaiju{DELIMITER}_reply{DELIMITER}{client}")))
    }

    /// `name` read as a reply channel named by [`Namespace::reply_channel`]: exactly
    /// `<env>.<app>._reply.<client>`, four parts, none empty. Anything else is `None`: a
    /// channel with more parts (`a.b.c._reply.x`), the fallback `kaiju._reply.<client>` of
    /// [`Key::reply_channel`] (it names no environment), or a hash-tagged name. Check the
    /// environment too: a prefixed name (`__keyspace@0__:prod.shop._reply.c1`) parses, with
    /// another environment.
    ///
    /// ```
    /// use kaiju_core::{Key, Namespace};
    /// let channel = Namespace::new("prod", "shop")?.reply_channel("c1")?;
    /// let parts = Key::parse_reply_channel(channel.as_str()).unwrap();
    /// assert_eq!((parts.env, parts.app, parts.client), ("prod", "shop", "c1"));
    /// let ours = |name: &str| Key::parse_reply_channel(name).is_some_and(|c| c.env == "prod");
    /// assert!(!ours("__keyspace@0__:prod.shop._reply.c1"));
    /// assert!(!ours("staging.shop._reply.c1"));
    /// # Ok::<(), kaiju_core::KeyError>(())
    /// ```
    pub fn parse_reply_channel(name: &str) -> Option<ReplyChannel<'_>> {
        let mut parts = name.split(DELIMITER);
        let (env, app, reply, client) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = |part: &str| check_part("part", part).is_ok() && !part.contains(['{', '}']);
        let exact = parts.next().is_none()
            && reply == "_reply"
            && [env, app, client].into_iter().all(valid)
            && Namespace::new(env, app)
                .and_then(|ns| ns.reply_channel(client))
                .is_ok_and(|key| key.as_str() == name);
        exact.then_some(ReplyChannel { env, app, client })
    }

    /// The key name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key name, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The Redis Cluster slot (0..16384) of this key, honouring hash tags.
    pub fn slot(&self) -> u16 {
        key_slot(self.0.as_bytes())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<Key> for String {
    fn from(key: Key) -> Self {
        key.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_captures_of_kaiju_redis() {
        let ns = Namespace::new("cap", "peer").unwrap();
        assert_eq!(ns.stream("rpc").unwrap().as_str(), "cap.peer._stream.rpc");
        assert_eq!(
            ns.stream_lock("rpc").unwrap().as_str(),
            "cap.peer._stream._lock.rpc"
        );
        assert_eq!(ns.channel("rpc").unwrap().as_str(), "cap.peer._sub.rpc");
        assert_eq!(
            ns.reply_channel("c1").unwrap().as_str(),
            "cap.peer._reply.c1"
        );
        assert!(is_reply_channel(ns.reply_channel("c1").unwrap().as_str()));
        assert!(!is_reply_channel("cap.peer._sub.rpc"));
        assert!(!is_reply_channel("{lock}:__release"));
        assert!(!is_reply_channel("._reply.x"));
        // Only the exact form: no prefix, no extra part, no tag.
        for name in [
            "x.cap.peer._reply.c1",
            "cap.peer._reply.c1.x",
            "cap.peer._reply.",
            "cap._reply.c1",
            "cap.peer._sub.c1",
            "{cap.peer}._reply.c1",
            "cap.{peer}._reply.c1",
        ] {
            assert!(!is_reply_channel(name), "{name}");
        }
        let parts = Key::parse_reply_channel("cap.peer._reply.c1").unwrap();
        assert_eq!((parts.env, parts.app, parts.client), ("cap", "peer", "c1"));
        assert_eq!(
            Namespace::shared("cap")
                .unwrap()
                .stream("rpc")
                .unwrap()
                .as_str(),
            "cap._shared._stream.rpc"
        );
        assert_eq!(
            ns.dead_letter_stream("rpc").unwrap().as_str(),
            "cap.peer._stream._dead.rpc"
        );
        assert_eq!(
            ns.stream_consumers("rpc").unwrap().as_str(),
            "cap.peer._stream._consumers.rpc"
        );
        assert_eq!(
            ns.stream_stats("rpc").unwrap().as_str(),
            "cap.peer._stream._stats.rpc"
        );
    }

    #[test]
    fn side_keys_share_the_slot_of_their_key() {
        for key in [
            "plain",
            "app.locks.x",
            "{tag}.x",
            "a{t}b",
            "{}odd",
            "x{",
            "a}b",
            "}",
        ] {
            let side = side_key(key, "fence");
            assert_eq!(
                key_slot(side.as_bytes()),
                key_slot(key.as_bytes()),
                "{key} -> {side}"
            );
            assert!(side.ends_with("__fence"), "{side}");
        }
        assert_eq!(side_key("a.b", "fence"), "{a.b}:__fence");
        assert_eq!(side_key("{t}.b", "fence"), "{t}.b.__fence");
        // Keys that once collided: a key, and the same key as a hash tag.
        for (a, b) in [("x", "{x}"), ("a}b", "{7}.a}b"), ("{x}:", "x")] {
            assert_ne!(side_key(a, "fence"), side_key(b, "fence"), "{a} vs {b}");
        }
    }

    #[test]
    fn parts_with_the_delimiter_are_rejected() {
        assert!(matches!(
            Namespace::new("a.b", "c"),
            Err(KeyError::Delimiter { what: "env", .. })
        ));
        assert!(matches!(
            Namespace::new("a", "b.c"),
            Err(KeyError::Delimiter { what: "app", .. })
        ));
        let ns = Namespace::new("a", "b").unwrap();
        assert!(matches!(
            ns.join("x.y"),
            Err(KeyError::Delimiter { what: "part", .. })
        ));
        assert!(matches!(
            ns.key("k.1"),
            Err(KeyError::Delimiter { what: "key", .. })
        ));
        assert!(matches!(
            ns.stream("r.pc"),
            Err(KeyError::Delimiter { what: "topic", .. })
        ));
        assert!(matches!(
            Namespace::new("", "b"),
            Err(KeyError::Empty { what: "env" })
        ));
        assert!(matches!(ns.key(""), Err(KeyError::Empty { what: "key" })));
    }

    #[test]
    fn hash_tagged_namespaces_keep_every_key_in_one_slot() {
        let ns = Namespace::new("env", "app").unwrap().hash_tagged();
        let sub = ns.join("users").unwrap();
        assert_eq!(sub.to_string(), "{env.app.users}");
        let slots: Vec<u16> = (0..100)
            .map(|i| sub.key(&format!("u{i}")).unwrap().slot())
            .collect();
        assert!(slots.iter().all(|s| *s == slots[0]));
        assert!(matches!(
            sub.key("x{y}"),
            Err(KeyError::Brace { what: "key", .. })
        ));
        // Without the tag, keys spread over slots.
        let plain = Namespace::new("env", "app").unwrap();
        let spread: std::collections::HashSet<u16> = (0..100)
            .map(|i| plain.key(&format!("u{i}")).unwrap().slot())
            .collect();
        assert!(spread.len() > 50);
    }

    #[test]
    fn a_client_gets_a_reply_channel_whatever_its_settings() {
        assert_eq!(Key::reply_channel("e", "a", "c1").as_str(), "e.a._reply.c1");
        for (env, app) in [("e", "a.b"), ("", "a")] {
            let channel = Key::reply_channel(env, app, "c1");
            assert_eq!(channel.as_str(), "kaiju._reply.c1");
            // It names no environment: no server answers on it.
            assert!(!is_reply_channel(channel.as_str()));
        }
    }

    #[test]
    fn raw_keys_are_verbatim() {
        let k = Key::raw("any.thing{with}.dots");
        assert_eq!(k.as_str(), "any.thing{with}.dots");
        assert_eq!(String::from(k), "any.thing{with}.dots");
    }
}
