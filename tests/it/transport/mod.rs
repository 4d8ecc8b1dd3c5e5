//! kaiju-transport: commands against every deployment, and a bad network.

mod commands;
mod faults;
mod features;
mod idmp;
