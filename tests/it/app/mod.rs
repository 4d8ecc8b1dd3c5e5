//! kaiju-app: apps built from kaiju YAML configs, against real Redis.

mod from_config;
