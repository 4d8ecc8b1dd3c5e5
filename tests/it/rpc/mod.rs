//! kaiju-rpc behind a real listener: calls, requests and replies, and failure modes.

mod calls;
mod defects;
mod faults;
