#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod app;
pub mod builtin;
pub mod config;
mod error;
mod hints;
#[cfg(feature = "http")]
mod http;
mod registry;
mod service;

pub use app::{App, AppHandle, stop_signal};
pub use error::{AppError, BoxError, SettingsError};
pub use registry::Registry;
pub use service::{Build, Context, Dependency, DiscoveryError, Service, ServiceClass};
