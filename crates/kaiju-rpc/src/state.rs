//! What a server holds: its settings, methods, slots and counters (shared by `server.rs`,
//! which owns the lifecycle, and `dispatch.rs`, which runs requests).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kaiju_core::AppSettings;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::context::Limits;
use crate::module::Method;
use crate::request::Outcome;
use crate::scope::Scope;

/// The most requests a server runs at once (`max_parallel_tasks` is clamped to it).
pub const MAX_PARALLEL_TASKS: usize = 1 << 20;

/// The longest time limit of a request, in seconds (one day; settings are clamped to it).
pub const MAX_REQUEST_TIME: u64 = 86_400;

/// Server settings, named as kaiju's `JSONRPCServer` settings (times in seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Requests (a batch counts once) running at the same time; more wait for a slot, and a
    /// listener stops reading meanwhile. Clamped to `1..=`[`MAX_PARALLEL_TASKS`]. Default: `128`.
    pub max_parallel_tasks: usize,
    /// Time limit of a request without `Timeout` or `Deadline`, seconds, at least 1 and at
    /// most [`MAX_REQUEST_TIME`]. Default: `90`.
    pub default_request_time: u64,
    /// Upper bound of any request's time limit, seconds (at least `default_request_time`, at
    /// most [`MAX_REQUEST_TIME`]). An
    /// [`RpcListener`](crate::RpcListener) raises its `handler_timeout_ms` above it.
    /// Default: `600`.
    pub max_request_time: u64,
    /// Check scopes. `false` lets every caller reach every method. Default: `true`.
    pub enable_permissions: bool,
    /// Log one info line per request when it is done: its outcome and `duration_ms`, in the
    /// `rpc` span that carries its method, transport (`via`), correlation id and W3C
    /// `trace_id`/`parent_id`. `false` logs only failures of methods that ran, at the level
    /// they always had (client errors info, internal errors error). Default: `true`.
    pub access_log: bool,
    /// Log every request's params (secrets redacted) when it starts. Default: `false`.
    pub request_logs: bool,
    /// Log every response's result. Default: `false`.
    pub response_logs: bool,
    /// fnmatch patterns on full method names (`svc.*`) that are not registered. Default: none.
    pub blacklist_routes: Vec<String>,
    /// Methods whose permission value is at most this are not registered (`0` removes every
    /// SYSTEM method). Default: `-1` (none).
    pub blacklist_scope: i64,
    /// The longest batch accepted; a longer one gets one error answer (`InvalidRequest`, id
    /// `null`) and none of its requests is read or run (kaiju had no limit). Default: `100`.
    pub max_batch_length: usize,
    /// The memory a batch's templates may hold, in bytes as values take them (32 bytes a
    /// value, plus the heap blocks of its strings, arrays and maps): every copy out of earlier
    /// results, every `!f` output, and every result held for later templates (only batches with
    /// `RPC-Batch-Template` hold results for later), and 16 bytes for each map entry a
    /// template's lookup passes over, so that it bounds the batch's work too. Past it, the
    /// request fails and the rest of the batch is aborted. Default: `8388608` (8 MiB).
    pub max_batch_bytes: usize,
    /// The largest reply, in bytes of msgpack: a reply over it is not sent, and the caller gets
    /// an `InternalError` (−32603) with `data.max_reply_bytes` instead (measured before
    /// encoding). The request's outcome is [`Rejected`](crate::Outcome::Rejected): running it
    /// again would give the same. Default: `8388608` (8 MiB).
    pub max_reply_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_parallel_tasks: 128,
            default_request_time: 90,
            max_request_time: 600,
            enable_permissions: true,
            access_log: true,
            request_logs: false,
            response_logs: false,
            blacklist_routes: Vec::new(),
            blacklist_scope: -1,
            max_batch_length: 100,
            max_batch_bytes: 8 << 20,
            max_reply_bytes: 8 << 20,
        }
    }
}

impl ServerSettings {
    /// These settings as a [`Server`](crate::Server) runs them: each clamped to its range.
    ///
    /// ```
    /// use kaiju_rpc::ServerSettings;
    /// let s = ServerSettings { default_request_time: 900, max_request_time: 60, ..Default::default() };
    /// assert_eq!(s.clamped().max_request_time, 900);
    /// ```
    #[must_use]
    pub fn clamped(mut self) -> Self {
        self.max_parallel_tasks = self.max_parallel_tasks.clamp(1, MAX_PARALLEL_TASKS);
        self.default_request_time = self.default_request_time.clamp(1, MAX_REQUEST_TIME);
        self.max_request_time = self.clamped_max_request_time();
        self
    }

    /// `max_request_time` as a server runs it (clamped as in [`clamped`](Self::clamped)),
    /// seconds.
    pub fn clamped_max_request_time(&self) -> u64 {
        let default = self.default_request_time.clamp(1, MAX_REQUEST_TIME);
        self.max_request_time.clamp(default, MAX_REQUEST_TIME)
    }
}

/// Counters of a server since it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Requests received (each batch item counts).
    pub requests: u64,
    /// Requests whose method returned a result.
    pub ok: u64,
    /// Requests whose method returned a client error.
    pub client_errors: u64,
    /// Requests rejected before their method ran (unknown, forbidden, invalid params,
    /// template).
    pub rejected: u64,
    /// Requests whose deadline passed before their method started: never run.
    pub expired: u64,
    /// Requests whose method failed (internal error or panic).
    pub failed: u64,
    /// Requests cancelled at their deadline.
    pub timed_out: u64,
    /// Batch requests not run after an earlier failure.
    pub aborted: u64,
    /// Requests refused because the server was stopping.
    pub unavailable: u64,
    /// Requests (or batches) running now.
    pub running: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) ok: AtomicU64,
    pub(crate) client_errors: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) aborted: AtomicU64,
    pub(crate) unavailable: AtomicU64,
}

impl Counters {
    pub(crate) fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::ClientError => &self.client_errors,
            Outcome::Rejected => &self.rejected,
            Outcome::Expired => &self.expired,
            Outcome::Failed => &self.failed,
            Outcome::TimedOut => &self.timed_out,
            Outcome::Aborted => &self.aborted,
            Outcome::Unavailable => &self.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) struct Inner {
    pub(crate) methods: BTreeMap<String, Method>,
    pub(crate) settings: ServerSettings,
    pub(crate) limits: Limits,
    pub(crate) app: AppSettings,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) closing: AtomicBool,
    pub(crate) counters: Counters,
    pub(crate) metrics: crate::metrics::Metrics,
}

impl Inner {
    /// Requests (or batches) holding a slot now.
    pub(crate) fn running(&self) -> usize {
        self.settings
            .max_parallel_tasks
            .saturating_sub(self.slots.available_permits())
    }

    /// Whether a caller at `scope` sees the method.
    pub(crate) fn visible(&self, scope: Scope, method: &Method) -> bool {
        !self.settings.enable_permissions || scope.reaches(method.permission)
    }
}
