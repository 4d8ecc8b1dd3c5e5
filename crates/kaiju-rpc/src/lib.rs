#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod context;
mod dispatch;
mod error;
mod listener;
mod module;
mod replies;
mod request;
mod scope;
mod server;
mod state;
mod subscriber;
mod subscription;
mod template;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

pub use client::{
    Batch, Call, CallError, CallResult, DEFAULT_REQUEST_TIMEOUT, MAX_REQUEST_WAIT, Request,
    RpcClient,
};
pub use context::{RequestContext, headers};
pub use error::{RpcError, codes};
pub use listener::RpcListener;
pub use module::{NoParams, RegisterError, RpcModule};
pub use request::{Outcome, Reply, ReplyBody, Response};
pub use scope::{Permissions, Scope, UnknownScope, fnmatch};
pub use server::{MAX_PARALLEL_TASKS, MAX_REQUEST_TIME, Server};
pub use state::{ServerSettings, ServerStats};
pub use subscriber::RpcSubscriber;
