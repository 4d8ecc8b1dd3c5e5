//! When each guard's keeper starts: one timer task per [`Locks`](crate::Locks) and Tokio
//! runtime, for all the guards taken on that runtime.
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
//!
//! Each runtime has its own timer, so a guard never waits on another runtime (one left idle
//! after a `block_on`, blocked, or gone). A timer dropped with its runtime starts what it
//! still held; each keeper then sleeps until it is due.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::runtime::{Handle, Id};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What is started when an entry is due.
pub(crate) trait Due: Send + Sync + 'static {
    /// Called once: from the timer task when the entry's time has come, or earlier if the
    /// timer task is dropped with its runtime (so what it starts must wait for its own time).
    fn start(self: Arc<Self>);
}

/// An entry's place: the runtime whose timer holds it, its due time, and a number that tells
/// apart entries due together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    runtime: Id,
    at: Instant,
    id: u64,
}

/// The timers of one `Locks`: see the [module docs](self).
pub(crate) struct Keepers<T: Due> {
    /// The runtime the `Locks` was made on: where an entry scheduled outside a runtime goes.
    runtime: Handle,
    state: Mutex<State<T>>,
}

struct State<T> {
    next_id: u64,
    /// One timer per runtime that has entries (or a timer task still running).
    timers: HashMap<Id, Lane<T>>,
}

/// The entries of one runtime, and its timer task.
struct Lane<T> {
    due: BTreeMap<(Instant, u64), Arc<T>>,
    /// When the timer task plans to wake next; `None` when none runs.
    wakes_at: Option<Instant>,
    /// The shortest delay of an entry seen: how long the timer task sleeps with nothing due.
    shortest: Duration,
    /// Wakes the timer task for an entry due before it planned to wake.
    wake: Arc<Notify>,
}

impl<T: Due> std::fmt::Debug for Keepers<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keepers").finish_non_exhaustive()
    }
}

impl<T: Due> Keepers<T> {
    /// Timers for a `Locks` made on the current Tokio runtime.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            runtime: Handle::current(),
            state: Mutex::new(State {
                next_id: 0,
                timers: HashMap::new(),
            }),
        })
    }

    /// Starts `what` at `at` (at once if `at` has passed), unless [cancelled](Self::cancel)
    /// first. The timer is the calling runtime's own: a guard never waits on another runtime,
    /// which may be idle, blocked or gone.
    pub(crate) fn schedule(self: &Arc<Self>, at: Instant, what: Arc<T>) -> Entry {
        let handle = Handle::try_current().unwrap_or_else(|_| self.runtime.clone());
        let (entry, start) = {
            let mut state = self.state();
            let entry = Entry {
                runtime: handle.id(),
                at,
                id: state.next_id,
            };
            state.next_id = state.next_id.wrapping_add(1);
            let lane = state.timers.entry(entry.runtime).or_insert_with(|| Lane {
                due: BTreeMap::new(),
                wakes_at: None,
                shortest: Duration::MAX,
                wake: Arc::new(Notify::new()),
            });
            lane.due.insert((at, entry.id), what);
            let delay = at.saturating_duration_since(Instant::now());
            lane.shortest = lane.shortest.min(delay.max(Duration::from_millis(1)));
            let start = match lane.wakes_at {
                None => Some(lane.wake.clone()),
                Some(wakes_at) if at < wakes_at => {
                    lane.wake.notify_one();
                    None
                }
                Some(_) => return entry,
            };
            lane.wakes_at = Some(at);
            (entry, start)
        };
        if let Some(wake) = start {
            // Outside the lock: on a runtime that has shut down, the task is dropped at once,
            // and its drop takes the lock.
            handle.spawn(
                Timer {
                    keepers: self.clone(),
                    runtime: entry.runtime,
                    wake,
                    ended: false,
                }
                .run(),
            );
        }
        entry
    }

    /// Takes back an entry that has not started yet (a no-op once it has).
    pub(crate) fn cancel(&self, entry: Entry) {
        let removed = self
            .state()
            .timers
            .get_mut(&entry.runtime)
            .and_then(|lane| lane.due.remove(&(entry.at, entry.id)));
        // Dropped outside the lock: it may be the last reference to a guard's parts.
        drop(removed);
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The timer task of one runtime. However it ends, the next entry then starts a new one.
struct Timer<T: Due> {
    keepers: Arc<Keepers<T>>,
    runtime: Id,
    wake: Arc<Notify>,
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
                let Some(lane) = state.timers.get_mut(&self.runtime) else {
                    // Not reached: a lane lives as long as its timer task.
                    self.ended = true;
                    return;
                };
                let now = Instant::now();
                let mut started = Vec::new();
                while let Some(first) = lane.due.first_entry() {
                    if first.key().0 > now {
                        break;
                    }
                    started.push(first.remove());
                }
                let wake_at = match lane.due.first_key_value() {
                    Some(((at, _), _)) => {
                        idle = false;
                        *at
                    }
                    None if idle && started.is_empty() => {
                        // A whole round with nothing to do: end. Said under the lock, so that
                        // an entry scheduled from now on starts a new timer.
                        state.timers.remove(&self.runtime);
                        self.ended = true;
                        return;
                    }
                    None => {
                        idle = started.is_empty();
                        now.checked_add(lane.shortest)
                            .unwrap_or(now + Duration::from_secs(3600))
                    }
                };
                lane.wakes_at = Some(wake_at);
                (started, wake_at)
            };
            for what in started {
                what.start();
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {}
                () = self.wake.notified() => {}
            }
        }
    }
}

impl<T: Due> Drop for Timer<T> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Dropped with its runtime. What it held starts now: each keeper runs on its guard's
        // runtime (if that is gone too, it is dropped unrun, as the guard's own release is) and
        // sleeps until it is due.
        let stranded = self.keepers.state().timers.remove(&self.runtime);
        for what in stranded.into_iter().flat_map(|lane| lane.due.into_values()) {
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
        assert!(
            keepers.state().timers.is_empty(),
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
        assert!(keepers.state().timers.is_empty());
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
        assert!(
            keepers.state().timers.is_empty(),
            "a timer that cannot run is recorded"
        );
        // Nothing can time it: it starts now, and waits for its own time where it runs.
        assert_eq!(entry.0.load(Ordering::SeqCst), 1);
        assert!(keepers.state().timers.is_empty());
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
