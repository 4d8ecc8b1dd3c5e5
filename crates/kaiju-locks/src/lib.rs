#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod batch;
mod error;
mod first_try;
mod guard;
mod holder;
mod keepers;
mod keys;
mod locks;
mod metrics;
mod ops;
mod scripts;
mod wakeups;

pub use error::{LockError, Result};
pub use guard::LockGuard;
pub use holder::Holder;
pub use locks::{AcquireOptions, Locks};

/// The Lua scripts the locks run, for an admin to load as functions
/// ([`Script::load_function`](kaiju_transport::Script::load_function), `kaiju functions load`).
pub fn scripts() -> Vec<&'static kaiju_transport::Script> {
    scripts::all()
}
