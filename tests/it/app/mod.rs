//! kaiju-app: apps built from kaiju YAML configs, against real Redis.

mod crashes;
mod from_config;
mod http;
