#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod collections;
mod error;
mod fill;
mod flights;
mod metrics;
#[cfg(feature = "near-cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "near-cache")))]
mod near;
mod pipeline;
mod reply;

pub use cache::{Cache, Condition, SetOpts};
pub use error::{CacheError, Result};
pub use fill::FillOptions;
#[cfg(feature = "near-cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "near-cache")))]
pub use near::{NearCache, NearCacheOptions, NearCacheStats};
pub use pipeline::{Batch, BatchResults, Handle, Reply};

/// The Lua scripts the cache runs, for an admin to load as functions
/// ([`Script::load_function`](kaiju_transport::Script::load_function), `kaiju functions load`).
pub fn scripts() -> Vec<&'static kaiju_transport::Script> {
    let mut all = fill::scripts().to_vec();
    all.push(pipeline::script());
    all
}
