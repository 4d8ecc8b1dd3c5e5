//! kaiju-streams: the listener, `write_many`, the admin API, and failure modes.

mod admin;
mod faults;
mod features;
mod handed_back;
mod ids;
mod listener;
mod takeover;
mod write_many;
