#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod blocking;
mod builder;
mod capabilities;
mod connection;
mod error;
pub mod events;
mod features;
mod metrics;
mod script;
mod sentinel;
#[cfg(feature = "tls")]
mod tls;
mod transport;
mod watchdog;

pub use blocking::BlockingConnection;
pub use builder::Deployment;
pub use capabilities::{Capabilities, ServerKind, Version};
pub use connection::Connection;
pub use error::{Classify, Result, TransportError};
pub use features::{FEATURES_OFF_ENV, Feature, Features};
pub use script::Script;
pub use transport::Transport;

/// The fred crate, re-exported so that the other kaiju crates use exactly this version and name
/// no fred dependency of their own.
pub use fred;
