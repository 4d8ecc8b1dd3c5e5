//! kaiju-locks: locking against every deployment, natural batching, and failure modes.

mod batching;
mod faults;
mod locking;
