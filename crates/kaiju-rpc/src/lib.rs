#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod context;
mod dispatch;
mod error;
mod listener;
mod metrics;
mod module;
mod replies;
mod request;
mod scope;
mod server;
mod state;
mod subscriber;
mod subscription;
pub mod template;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
pub mod trace;

pub use client::{
    Batch, Call, CallError, CallResult, DEFAULT_REQUEST_TIMEOUT, Each, MAX_REQUEST_WAIT, Publish,
    Request, RpcClient,
};
pub use context::{RequestContext, headers};
pub use error::{RpcError, codes};
/// The message and header types of the RPC API, from kaiju-streams and kaiju-core, so that a
/// method's signature needs no other crate.
pub use kaiju_core::{Value, to_value};
pub use kaiju_streams::{HeaderName, HeaderValue, Headers};
pub use listener::{RpcListener, RpcListenerOptions};
pub use module::{NoParams, RegisterError, RpcModule};
pub use request::{Outcome, Reply, ReplyBody, Response, Via};
pub use scope::{Permissions, Scope, UnknownScope, fnmatch};
pub use server::Server;
pub use state::{MAX_PARALLEL_TASKS, MAX_REQUEST_TIME, ServerSettings, ServerStats};
pub use subscriber::RpcSubscriber;
pub use trace::TraceParent;
