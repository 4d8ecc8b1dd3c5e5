//! When each guard's keeper starts: one timer task per [`Locks`](crate::Locks) for all of them.
//!
//! A guard needs a keeper (a task that renews it, and says when it may be lost) only from its
//! first renewal on (`lease / 3` after the acquire), or at its loss deadline without renewal.
//! Most guards are released long before: a task per guard, spawned at the acquire and aborted
//! at the release, cost two task wake-ups (often on another thread) and a move of the keeper's
//! large future per lock, about a fifth of an uncontended acquire+release's client time.
//!
//! So a guard only registers when its keeper is due ([`Keepers::schedule`]), and this timer
//! task starts the keeper then. A guard released first takes its entry back
//! ([`Keepers::cancel`]) and no task ever ran for it. The timer task sleeps until the earliest
//! entry; it is woken early only by an entry due before that, and while no entry is due it
//! sleeps as long as the shortest delay it has seen, so that a steady stream of guards with
//! the same lease never wakes it. After one such round with nothing to do it ends; the next
//! entry starts a new one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// What is started when an entry is due.
pub(crate) trait Due: Send + Sync + 'static {
    /// Called once: from the timer task when the entry's time has come, or earlier if the
    /// timer task is dropped with its runtime (so what it starts must wait for its own time).
    fn start(self: Arc<Self>);
}

/// An entry's place: its due time, and a number that tells apart entries due together.
pub(crate) type Entry = (Instant, u64);

/// The timer of one `Locks`: see the [module docs](self).
pub(crate) struct Keepers<T: Due> {
    /// Where the timer task runs when it is started outside a runtime: the runtime the `Locks`
    /// was made on. Inside one (as guards are made), it runs where it was started.
    runtime: tokio::runtime::Handle,
    state: Mutex<State<T>>,
    /// Wakes the timer task for an entry due before it planned to wake.
    wake: Notify,
}

struct State<T> {
    due: BTreeMap<Entry, Arc<T>>,
    next_id: u64,
    /// When the timer task plans to wake next; `None` when no timer task runs.
    wakes_at: Option<Instant>,
    /// The shortest delay of an entry seen: how long the timer task sleeps with nothing due.
    shortest: Duration,
}

impl<T: Due> std::fmt::Debug for Keepers<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keepers").finish_non_exhaustive()
    }
}

impl<T: Due> Keepers<T> {
    /// A timer whose task runs on the current Tokio runtime.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            runtime: tokio::runtime::Handle::current(),
            state: Mutex::new(State {
                due: BTreeMap::new(),
                next_id: 0,
                wakes_at: None,
                shortest: Duration::MAX,
            }),
            wake: Notify::new(),
        })
    }

    /// Starts `what` at `at` (at once if `at` has passed), unless [cancelled](Self::cancel)
    /// first.
    pub(crate) fn schedule(self: &Arc<Self>, at: Instant, what: Arc<T>) -> Entry {
        let (entry, start) = {
            let mut state = self.state();
            let entry = (at, state.next_id);
            state.next_id = state.next_id.wrapping_add(1);
            state.due.insert(entry, what);
            let delay = at.saturating_duration_since(Instant::now());
            state.shortest = state.shortest.min(delay.max(Duration::from_millis(1)));
            let start = match state.wakes_at {
                None => true,
                Some(wakes_at) if at < wakes_at => {
                    self.wake.notify_one();
                    false
                }
                Some(_) => return entry,
            };
            state.wakes_at = Some(at);
            (entry, start)
        };
        if start {
            // On the caller's runtime, so that a `Locks` kept across runtimes (a static one
            // shared by tests, each on a runtime of its own) keeps a timer on a live one.
            // Outside the lock: on a runtime that has shut down, the task is dropped at once,
            // and its drop takes the lock.
            let runtime =
                tokio::runtime::Handle::try_current().unwrap_or_else(|_| self.runtime.clone());
            runtime.spawn(
                Timer {
                    keepers: self.clone(),
                    ended: false,
                }
                .run(),
            );
        }
        entry
    }

    /// Takes back an entry that has not started yet (a no-op once it has).
    pub(crate) fn cancel(&self, entry: Entry) {
        let removed = self.state().due.remove(&entry);
        // Dropped outside the lock: it may be the last reference to a guard's parts.
        drop(removed);
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The timer task. However it ends, the next entry then starts a new one.
struct Timer<T: Due> {
    keepers: Arc<Keepers<T>>,
    /// Ended by itself, having said so under the lock (not dropped by a runtime shutting down).
    ended: bool,
}

impl<T: Due> Timer<T> {
    async fn run(mut self) {
        let keepers = self.keepers.clone();
        let mut idle = false;
        loop {
            let (started, wake_at) = {
                let mut state = keepers.state();
                let now = Instant::now();
                let mut started = Vec::new();
                while let Some(first) = state.due.first_entry() {
                    if first.key().0 > now {
                        break;
                    }
                    started.push(first.remove());
                }
                let wake_at = match state.due.first_key_value() {
                    Some(((at, _), _)) => {
                        idle = false;
                        *at
                    }
                    None if idle && started.is_empty() => {
                        // A whole round with nothing to do: end. Said under the lock, so that
                        // an entry scheduled from now on starts a new timer.
                        state.wakes_at = None;
                        self.ended = true;
                        return;
                    }
                    None => {
                        idle = started.is_empty();
                        now.checked_add(state.shortest)
                            .unwrap_or(now + Duration::from_secs(3600))
                    }
                };
                state.wakes_at = Some(wake_at);
                (started, wake_at)
            };
            for what in started {
                what.start();
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {}
                () = keepers.wake.notified() => {}
            }
        }
    }
}

impl<T: Due> Drop for Timer<T> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Dropped with its runtime. Entries of guards on other runtimes would wait for the
        // next entry to start a timer: each starts now instead, and its keeper (on its guard's
        // own runtime) sleeps until it is due, as if it had been spawned with the guard.
        let stranded = {
            let mut state = self.keepers.state();
            state.wakes_at = None;
            std::mem::take(&mut state.due)
        };
        for what in stranded.into_values() {
            what.start();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Count(AtomicUsize);

    impl Due for Count {
        fn start(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn count() -> Arc<Count> {
        Arc::new(Count(AtomicUsize::new(0)))
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_starts_when_due_and_a_cancelled_one_never() {
        let keepers = Keepers::new();
        let (due, cancelled) = (count(), count());
        let now = Instant::now();
        keepers.schedule(now + Duration::from_secs(10), due.clone());
        let entry = keepers.schedule(now + Duration::from_secs(5), cancelled.clone());
        keepers.cancel(entry);
        tokio::time::sleep(Duration::from_millis(9_990)).await;
        assert_eq!(due.0.load(Ordering::SeqCst), 0, "started early");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(due.0.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(cancelled.0.load(Ordering::SeqCst), 0);
        assert_eq!(due.0.load(Ordering::SeqCst), 1, "started twice");
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_entry_wakes_the_timer_and_an_idle_timer_ends_and_restarts() {
        let keepers = Keepers::new();
        let (late, early) = (count(), count());
        let now = Instant::now();
        keepers.schedule(now + Duration::from_secs(100), late.clone());
        tokio::task::yield_now().await;
        keepers.schedule(now + Duration::from_secs(1), early.clone());
        tokio::time::sleep(Duration::from_millis(1_010)).await;
        assert_eq!(
            early.0.load(Ordering::SeqCst),
            1,
            "the earlier entry waited"
        );
        assert_eq!(late.0.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(late.0.load(Ordering::SeqCst), 1);
        // Nothing due for a while: the timer task ends, and a new entry starts another.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            keepers.state().wakes_at,
            None,
            "an idle timer task kept running"
        );
        let again = count();
        keepers.schedule(Instant::now() + Duration::from_secs(2), again.clone());
        tokio::time::sleep(Duration::from_millis(2_010)).await;
        assert_eq!(again.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_timer_dropped_with_its_runtime_starts_what_it_held() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let entry = count();
        let keepers = runtime.block_on(async {
            let keepers = Keepers::new();
            keepers.schedule(Instant::now() + Duration::from_secs(3600), entry.clone());
            tokio::task::yield_now().await;
            keepers
        });
        assert_eq!(entry.0.load(Ordering::SeqCst), 0);
        drop(runtime);
        assert_eq!(
            entry.0.load(Ordering::SeqCst),
            1,
            "stranded with a dead timer"
        );
        assert!(keepers.state().due.is_empty());
        assert_eq!(keepers.state().wakes_at, None);
    }

    #[test]
    fn scheduling_after_the_runtime_shut_down_starts_at_once_without_hanging() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let keepers = runtime.block_on(async { Keepers::new() });
        drop(runtime);
        let entry = count();
        keepers.schedule(Instant::now(), entry.clone());
        assert_eq!(
            keepers.state().wakes_at,
            None,
            "a timer that cannot run is recorded"
        );
        // Nothing can time it: it starts now, and waits for its own time where it runs.
        assert_eq!(entry.0.load(Ordering::SeqCst), 1);
        assert!(keepers.state().due.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_already_due_starts_at_once() {
        let keepers = Keepers::new();
        let past = count();
        keepers.schedule(Instant::now(), past.clone());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(past.0.load(Ordering::SeqCst), 1);
    }
}
