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
    /// batch run concurrently. At most [`MAX_BATCH_SIZE`](crate::MAX_BATCH_SIZE). Default: `10`.
    pub max_batch_size: usize,
    /// `BLOCK` time of a read, in ms: how long a read waits for new entries. Default: `500`.
    pub max_wait_time_ms: u64,
    /// Batches processed at the same time. In-flight entries are bounded by
    /// `max_batch_size * max_parallel_batches`. At most
    /// [`MAX_PARALLEL_BATCHES`](crate::MAX_PARALLEL_BATCHES). Default: `1`.
    pub max_parallel_batches: usize,
    /// Claim entries another consumer read but did not ack for this long (XAUTOCLAIM) and process
    /// them here, so the entries of a stalled consumer are not stranded. Must be above
    /// `handler_timeout_ms` plus the longest retry backoff, so that an entry a live consumer is
    /// still working on is never claimed. `None` turns claiming off (kaiju's default): no entry
    /// is taken from a live consumer, however slow. Either way, the entries of a consumer that
    /// is gone (its name lease ran out: a crash) are taken over by the group's live consumers
    /// (kaiju left them pending until a consumer of that name returned, which with the default
    /// name, the random app id, never happens). Default: `120000` (2 minutes).
    ///
    /// On a server with `XREADGROUP ... CLAIM` (Redis 8.4) the claim is part of each read of
    /// new entries, and XAUTOCLAIM only sweeps for pending entries deleted from the stream,
    /// every 2 × this time. On a server with `XNACK` (Redis 8.8) a graceful stop hands the
    /// entries waiting here for a retry back to the group, where a running consumer claims them
    /// at once; with `None` they are not handed back (nobody would claim them).
    pub pending_messages_time_ms: Option<u64>,
    /// How long one handler call may run, in ms. A handler that runs longer is cancelled and the
    /// delivery counts as failed (retried, then dead-lettered). Default: `30000`.
    pub handler_timeout_ms: u64,
    /// Remove consumers of the group that have been idle this long and own no pending entries
    /// (checked atomically in Redis, so no entry is ever dropped), so that the consumers of
    /// restarted processes do not pile up. A live consumer is never idle for long, and one that
    /// was removed re-creates itself on its next read. `None` keeps every consumer.
    /// Default: `3600000` (1 hour).
    pub remove_idle_consumers_ms: Option<u64>,
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
    /// Keep about this many entries in the dead-letter stream: each dead letter is written
    /// with `XADD MAXLEN ~ n`, which drops the oldest letters (Redis trims whole nodes of the
    /// stream, so a few more than `n` may remain). A kaiju-rs setting. `None` keeps every
    /// dead letter (a flood of bad entries then grows the stream without end).
    /// Default: `10000`.
    pub dead_letter_max_length: Option<u64>,
    /// The largest payload (the `_` field) an entry may have, in bytes. A larger one is
    /// dead-lettered (kind `too_large`) without being decoded. `XREADGROUP` still reads it
    /// whole: a listener holds up to `max_batch_size` such entries while it reads; bound what
    /// writers may add with `maxmemory` or ACLs. Default: `8388608` (8 MiB).
    pub max_entry_bytes: usize,
    /// The most memory one entry's payload may take once decoded, in bytes, as measured
    /// before decoding it ([`decoded_size`](kaiju_core::codec::decoded_size): the payload as
    /// [`kaiju_core::Value`]s). Small values cost much more decoded than encoded (an array of one
    /// item: 1 byte, 144 decoded); an entry over this is dead-lettered (kind `too_large`) without
    /// being decoded. Default: `16777216` (16 MiB).
    pub max_decoded_bytes: usize,
}

/// The default of [`ListenerSettings::max_entry_bytes`]: 8 MiB.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 8 << 20;
/// The default of [`ListenerSettings::max_decoded_bytes`]: 16 MiB.
pub const DEFAULT_MAX_DECODED_BYTES: usize = 16 << 20;

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
            pending_messages_time_ms: Some(120_000),
            handler_timeout_ms: 30_000,
            remove_idle_consumers_ms: Some(3_600_000),
            trim_size: None,
            trim_delivered: true,
            trim_interval_ms: 60_000,
            start_id: "0".into(),
            max_deliveries: 5,
            retry_backoff_ms: 100,
            pause_check_interval_ms: 1000,
            dead_letter_max_length: Some(10_000),
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
        }
    }
}

/// The largest `max_batch_size` accepted.
pub const MAX_BATCH_SIZE: usize = 10_000;
/// The largest `max_parallel_batches` accepted.
pub const MAX_PARALLEL_BATCHES: usize = 1_000;

impl ListenerSettings {
    /// Checks for values that cannot work (a listener checks them when it is built; an app
    /// runtime checks them before anything connects).
    pub fn validate(&self) -> Result<(), kaiju_core::ConfigError> {
        let invalid = |field: &'static str, reason: &str| {
            Err(kaiju_core::ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.max_batch_size == 0 || self.max_batch_size > MAX_BATCH_SIZE {
            return invalid("max_batch_size", "must be 1 to 10000");
        }
        if self.max_parallel_batches == 0 || self.max_parallel_batches > MAX_PARALLEL_BATCHES {
            return invalid("max_parallel_batches", "must be 1 to 1000");
        }
        if self.max_deliveries == 0 {
            return invalid("max_deliveries", "must be at least 1");
        }
        if self.topic.is_empty() {
            return invalid("topic", "must not be empty");
        }
        if self.max_wait_time_ms == 0 {
            return invalid(
                "max_wait_time_ms",
                "must be above 0 (0 would block forever)",
            );
        }
        if self.handler_timeout_ms == 0 {
            return invalid("handler_timeout_ms", "must be above 0");
        }
        if let Some(claim) = self.pending_messages_time_ms {
            let busy = self
                .handler_timeout_ms
                .saturating_add(self.longest_backoff().as_millis() as u64);
            if claim <= busy {
                return invalid(
                    "pending_messages_time_ms",
                    &format!(
                        "must be above handler_timeout_ms plus the longest retry backoff \
                         ({busy} ms), or null to disable claiming; otherwise entries a live \
                         consumer is still working on would be claimed by others"
                    ),
                );
            }
        }
        if self.dead_letter_max_length == Some(0) {
            return invalid(
                "dead_letter_max_length",
                "must be above 0, or null to keep every dead letter",
            );
        }
        if self.max_entry_bytes == 0 {
            return invalid("max_entry_bytes", "must be above 0");
        }
        if self.max_decoded_bytes == 0 {
            return invalid("max_decoded_bytes", "must be above 0");
        }
        if !is_group_start_id(&self.start_id) {
            // Redis would refuse it only when the group is created, after connecting.
            return invalid(
                "start_id",
                "must be \"0\" (everything in the stream), \"$\" (only new entries) or a stream id (`1700000000000-0`)",
            );
        }
        if self.remove_idle_consumers_ms == Some(0) {
            return invalid(
                "remove_idle_consumers_ms",
                "must be above 0, or null to keep every consumer",
            );
        }
        Ok(())
    }

    /// These settings with `handler_timeout_ms` raised to at least `min` and, when claiming is
    /// on, `pending_messages_time_ms` raised (when needed) to stay above the handler timeout
    /// plus the longest retry backoff, by a second. For a component with its own time limit
    /// (an RPC server) that must run out before the listener's.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kaiju_streams::ListenerSettings;
    /// let s = ListenerSettings::default().with_handler_timeout_at_least(Duration::from_secs(601));
    /// assert_eq!(s.handler_timeout_ms, 601_000);
    /// assert!(s.pending_messages_time_ms.unwrap() > 601_000);
    /// ```
    #[must_use]
    pub fn with_handler_timeout_at_least(mut self, min: Duration) -> Self {
        let min = u64::try_from(min.as_millis()).unwrap_or(u64::MAX);
        self.handler_timeout_ms = self.handler_timeout_ms.max(min);
        if let Some(claim) = self.pending_messages_time_ms {
            let busy = self.handler_timeout_ms.saturating_add(
                u64::try_from(self.longest_backoff().as_millis()).unwrap_or(u64::MAX),
            );
            self.pending_messages_time_ms = Some(claim.max(busy.saturating_add(1000)));
        }
        self
    }

    /// The wait before the delivery after `deliveries` failed ones: `retry_backoff_ms`, doubling
    /// per delivery, at most 2^10 times the first.
    pub(crate) fn backoff(&self, deliveries: u64) -> Duration {
        let exponent = u32::try_from(deliveries.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(10);
        Duration::from_millis(self.retry_backoff_ms.saturating_mul(1 << exponent))
    }

    /// The longest wait before a retry.
    pub(crate) fn longest_backoff(&self) -> Duration {
        self.backoff(self.max_deliveries.saturating_sub(1))
    }

    pub(crate) fn handler_timeout(&self) -> Duration {
        Duration::from_millis(self.handler_timeout_ms)
    }

    pub(crate) fn block(&self) -> Duration {
        Duration::from_millis(self.max_wait_time_ms)
    }
}

/// Whether `id` is where `XGROUP CREATE` can start a group: `$`, or a stream id (`<ms>` or
/// `<ms>-<seq>`, each a 64-bit number).
fn is_group_start_id(id: &str) -> bool {
    let number = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok()
    };
    id == "$"
        || match id.split_once('-') {
            Some((ms, seq)) => number(ms) && number(seq),
            None => number(id),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_id_redis_would_refuse_is_refused_before_connecting() {
        for good in ["0", "$", "0-0", "1700000000000", "1700000000000-5"] {
            assert!(is_group_start_id(good), "{good}");
        }
        for bad in [
            "",
            "garbage",
            ">",
            "-",
            "+",
            "1-x",
            "0x1",
            "18446744073709551616",
            "1-",
        ] {
            assert!(!is_group_start_id(bad), "{bad}");
            let settings = ListenerSettings {
                start_id: bad.into(),
                ..ListenerSettings::default()
            };
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains("start_id"), "{err}");
        }
    }

    #[test]
    fn the_defaults_claim_abandoned_entries_and_never_a_live_ones() {
        let defaults = ListenerSettings::default();
        defaults.validate().unwrap();
        let claim = defaults.pending_messages_time_ms.unwrap();
        let busy = defaults.handler_timeout_ms + defaults.longest_backoff().as_millis() as u64;
        assert!(
            claim >= 2 * busy,
            "claim after {claim} ms, busy up to {busy} ms"
        );
        assert!(defaults.remove_idle_consumers_ms.is_some());
    }

    #[test]
    fn claiming_before_the_handler_timeout_is_rejected() {
        let settings = ListenerSettings {
            pending_messages_time_ms: Some(10_000),
            handler_timeout_ms: 10_000,
            ..ListenerSettings::default()
        };
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("pending_messages_time_ms"), "{err}");
        let off = ListenerSettings {
            pending_messages_time_ms: None,
            ..settings
        };
        off.validate().unwrap();
    }

    #[test]
    fn backoff_doubles_and_saturates() {
        let settings = ListenerSettings::default();
        assert_eq!(settings.backoff(1), Duration::from_millis(100));
        assert_eq!(settings.backoff(3), Duration::from_millis(400));
        assert_eq!(settings.backoff(u64::MAX), Duration::from_millis(102_400));
        let huge = ListenerSettings {
            retry_backoff_ms: u64::MAX,
            ..settings
        };
        assert_eq!(huge.backoff(5), Duration::from_millis(u64::MAX));
    }
}
