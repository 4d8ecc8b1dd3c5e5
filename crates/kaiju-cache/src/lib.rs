#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod collections;
mod error;
mod fill;
mod pipeline;
mod reply;

pub use cache::{Cache, Condition, SetOpts};
pub use error::{CacheError, Result};
pub use fill::FillOptions;
pub use pipeline::{Batch, BatchResults, Handle, Reply};
