//! kaiju-rpc behind a real listener: calls against every deployment, then one file per
//! behaviour (single node), each test named after what it checks.

mod calls;
mod deadlines;
mod delivery;
mod forged_replies;
mod hostile_input;
mod memory;
mod replies;
mod shutdown;
mod trace;
