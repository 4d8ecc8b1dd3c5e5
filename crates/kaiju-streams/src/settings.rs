//! Listener settings, named as kaiju's `RedisListener` settings.

use std::time::Duration;

use serde::Deserialize;

/// Settings of a [`Listener`](crate::Listener). Field names follow kaiju's YAML; every field has a
/// default, so a settings file names only what differs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerSettings {
    /// Topic: the stream is `<env>.<app>._stream.<topic>`. Must not contain `.`. Default: `"rpc"`.
    pub topic: String,
    /// Listen on the environment's shared stream `<env>._shared._stream.<topic>`. Default: `false`.
    pub shared: bool,
    /// Consumer group. Default: `None` (the app name).
    pub group_id: Option<String>,
    /// Consumer name within the group. Default: `None` (the app id). Use a name that is stable
    /// across restarts (a pod name) so a restarted process finds its own pending entries.
    pub consumer_id: Option<String>,
    /// Entries read per batch. 1 processes strictly one at a time; otherwise the entries of a
    /// batch run concurrently. Default: `10`.
    pub max_batch_size: usize,
    /// `BLOCK` time of a read, in ms: how long a read waits for new entries. Default: `500`.
    pub max_wait_time_ms: u64,
    /// Batches processed at the same time. In-flight entries are bounded by
    /// `max_batch_size * max_parallel_batches`. Default: `1`.
    pub max_parallel_batches: usize,
    /// Claim entries another consumer read but did not ack for this long (XAUTOCLAIM) and process
    /// them here. Default: `None` (off, as in kaiju). Set it when consumer names change across
    /// restarts, or the entries of a crashed consumer stay pending.
    pub pending_messages_time_ms: Option<u64>,
    /// Trim the stream to about this many entries (`XTRIM MAXLEN ~`) every `trim_interval_ms`.
    /// This removes the oldest entries **whether or not they were processed**. Default: `None`.
    pub trim_size: Option<u64>,
    /// Trim only entries every group of the stream has delivered and acknowledged, every
    /// `trim_interval_ms`. Never removes an entry any group still needs. Default: `true`.
    pub trim_delivered: bool,
    /// How often trimming runs, in ms. Default: `60000`.
    pub trim_interval_ms: u64,
    /// Where a new group starts: `"0"` delivers everything already in the stream, `"$"` only new
    /// entries. Default: `"0"`.
    pub start_id: String,
    /// Deliveries of one entry before it is dead-lettered (handler failures count). Default: `5`.
    pub max_deliveries: u64,
    /// Wait before re-running a failed entry, in ms; doubles with each delivery. Default: `100`.
    pub retry_backoff_ms: u64,
    /// How often the shared pause key is checked, in ms. Default: `1000`.
    pub pause_check_interval_ms: u64,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            topic: "rpc".into(),
            shared: false,
            group_id: None,
            consumer_id: None,
            max_batch_size: 10,
            max_wait_time_ms: 500,
            max_parallel_batches: 1,
            pending_messages_time_ms: None,
            trim_size: None,
            trim_delivered: true,
            trim_interval_ms: 60_000,
            start_id: "0".into(),
            max_deliveries: 5,
            retry_backoff_ms: 100,
            pause_check_interval_ms: 1000,
        }
    }
}

impl ListenerSettings {
    pub(crate) fn validate(&self) -> Result<(), kaiju_core::ConfigError> {
        let invalid = |field: &'static str, reason: &str| {
            Err(kaiju_core::ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.max_batch_size == 0 {
            return invalid("max_batch_size", "must be at least 1");
        }
        if self.max_parallel_batches == 0 {
            return invalid("max_parallel_batches", "must be at least 1");
        }
        if self.max_deliveries == 0 {
            return invalid("max_deliveries", "must be at least 1");
        }
        if self.max_wait_time_ms == 0 {
            return invalid(
                "max_wait_time_ms",
                "must be above 0 (0 would block forever)",
            );
        }
        if self.pending_messages_time_ms == Some(0) {
            return invalid(
                "pending_messages_time_ms",
                "must be above 0, or null to disable",
            );
        }
        Ok(())
    }

    pub(crate) fn block(&self) -> Duration {
        Duration::from_millis(self.max_wait_time_ms)
    }
}
