#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod codec;
pub mod config;
mod error;
mod key;
pub mod lifecycle;
mod secret;
mod shortened;
mod slot;
mod value;

pub use codec::{Codec, CodecError, Layout, Msgpack, to_value};
pub use config::{
    AppSettings, ConfigError, MAX_POOL_SIZE, RedisSettings, SentinelSettings, parse_host_port,
};
pub use error::{Error, Result};
pub use key::{
    DELIMITER, Key, KeyError, Namespace, ReplyChannel, SHARED, is_reply_channel, side_key,
    side_key_prefix,
};
pub use lifecycle::{Lifecycle, LifecycleError, Shutdown};
pub use secret::{Secret, redact_url};
pub use shortened::{SHOWN_CHARS, Shortened, describe_bytes, shortened};
pub use slot::{SLOT_COUNT, key_slot};
pub use value::{Value, ValueError};
