//! kaiju-cache: its operations against every deployment, and its failure modes.

mod faults;
mod operations;
