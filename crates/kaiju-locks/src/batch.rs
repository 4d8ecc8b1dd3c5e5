//! Natural batching: the first tries and releases of one [`Locks`](crate::Locks) that overlap
//! in time share a script call.
//!
//! Both are calls of `batch.lua`, which takes one call or many. Calls are grouped in lanes: a
//! cluster slot (a script's keys must share one), or the whole server outside a cluster, per
//! Tokio runtime (a lane's flushers run on its callers' runtime, so that no caller waits on
//! another runtime, which may be idle, blocked or gone).
//! - While fewer than [`DIRECT`] calls of its lane are in flight from their callers' tasks and
//!   no batch is being sent, a call goes out at once, from the caller's own task. A lone caller
//!   never waits for another.
//! - Otherwise it joins the lane's queue, which tasks of the lane (up to [`FLUSHERS`]
//!   flushers, each with one batch in flight) send as one call, up to [`MAX_BATCH`] at a
//!   time, in arrival order: while batches are in flight the next one gathers.
//!
//! Under load one `EVALSHA` then carries many lock calls, so what each `EVALSHA` costs on its
//! own (fred's write and flush, the server reading the command, setting up the script and
//! writing the reply, the client's wake-ups) is paid once per batch.
//!
//! What batching keeps:
//! - **Each call's own outcome.** The script runs every call under `pcall`: an error in one
//!   is that call's error, and the others run. A batch refused as a whole with a definite
//!   error (an ACL user that may not touch one of its keys: the server checks them before the
//!   script runs) is sent again call by call, so only the calls it concerns fail. A batch lost
//!   to the connection is every call's error, of the kind a lone call would get, so callers
//!   undo an acquire of unknown outcome as they always do.
//! - **Resends are safe.** First tries (by attempt id) and releases through a guard (by
//!   token) are idempotent, so a batch resent (by fred after a reconnect, or call by call)
//!   returns what it did the first time. A release by owner alone
//!   ([`Locks::release`](crate::Locks::release)) is not, so it is never batched: it goes out on
//!   its own, written at most once ([`call_once`]).
//! - **No caller holds up another.** Queued calls are sent by the flusher, never by a caller's
//!   future, so a caller that is slow to poll its own call (a `select!` arm not taken yet)
//!   delays no one else. A batch that times out fails the calls queued behind it at once,
//!   with the same error, instead of making each wait a timeout of its own.
//! - **Nothing is stranded.** When the last flusher of a lane ends early (a panic, its runtime
//!   shutting down), every call still queued gets an error, and the next call starts a new one.
//! - **A caller that gives up.** Its call still runs (once queued or sent, it is part of a
//!   batch), and its outcome is dropped. A first try is always awaited by a
//!   [`FirstTry`](crate::first_try::FirstTry), which finishes a dropped try in a task and
//!   undoes a lock it took; a release that runs unheard is what its caller asked for.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kaiju_transport::fred::types::{Key, Value};
use kaiju_transport::{Transport, TransportError};
use tokio::runtime::{Handle, Id};
use tokio::sync::oneshot;

use crate::scripts;

/// Calls of one lane sent straight from their callers' tasks before later ones queue.
const DIRECT: usize = 4;
/// Flusher tasks of one lane, each with one batch in flight: while some wait for replies, the
/// next batch gathers, and the server always has one to run.
const FLUSHERS: usize = 2;
/// The most calls in one batch: bounds one script's run time, so a batch does not hold the
/// server up for long.
const MAX_BATCH: usize = 64;

/// Which call of `batch.lua` an item is. Every call takes 3 keys and 3 arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `a`: a first try (take the lock if it is free and nobody waits).
    FirstTry,
    /// `r`: a release.
    Release,
}

impl Kind {
    /// Its letter in `batch.lua`'s first argument.
    fn letter(self) -> char {
        match self {
            Self::FirstTry => 'a',
            Self::Release => 'r',
        }
    }
}

/// Keys, and arguments, of every call of `batch.lua`.
pub(crate) const ARITY: usize = 3;

/// One call of `batch.lua`: which, its [`ARITY`] keys (every one in the first key's slot) and
/// [`ARITY`] arguments. Keys and arguments are cheap to clone (shared bytes), so a batch can
/// be sent again call by call.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) kind: Kind,
    pub(crate) keys: [Key; ARITY],
    pub(crate) args: [Value; ARITY],
}

/// A lane: the callers' runtime, and the cluster slot (0 outside a cluster).
type LaneId = (Id, u16);

/// A call's reply, or why there is none.
pub(crate) type Outcome = Result<Value, TransportError>;

/// A queued call and where its outcome goes.
struct Queued {
    item: Item,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Lane {
    /// Calls sent from their callers' tasks that have not ended yet.
    direct: usize,
    /// Calls waiting for a flusher.
    queue: VecDeque<Queued>,
    /// The lane's flusher tasks that run (at most [`FLUSHERS`]).
    flushers: usize,
}

impl Lane {
    fn idle(&self) -> bool {
        self.direct == 0 && self.flushers == 0 && self.queue.is_empty()
    }
}

/// Sends the first tries and releases of one `Locks` (and its guards), batching those that
/// overlap. See the [module docs](self).
pub(crate) struct Batcher {
    transport: Transport,
    /// Where flushers run when a call is made outside a Tokio runtime: the runtime the `Locks`
    /// was made on. Inside one, they run on the caller's.
    runtime: Handle,
    lanes: Mutex<HashMap<LaneId, Lane>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl Batcher {
    /// A batcher whose flushers run on the current Tokio runtime.
    pub(crate) fn new(transport: Transport) -> Arc<Self> {
        Arc::new(Self {
            transport,
            runtime: Handle::current(),
            lanes: Mutex::default(),
        })
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Runs `item`: at once if its lane has room, else in a batch of its lane.
    pub(crate) async fn call(self: &Arc<Self>, item: Item) -> Outcome {
        let runtime = Handle::try_current().unwrap_or_else(|_| self.runtime.clone());
        let lane = (runtime.id(), self.slot_of(&item));
        let queued = {
            let mut lanes = self.lanes();
            let state = lanes.entry(lane).or_default();
            if state.direct < DIRECT && state.flushers == 0 {
                state.direct += 1;
                Err(item)
            } else {
                let (reply, answer) = oneshot::channel();
                state.queue.push_back(Queued { item, reply });
                let start = state.flushers < FLUSHERS;
                if start {
                    state.flushers += 1;
                }
                Ok((answer, start))
            }
        };
        match queued {
            Err(item) => {
                // Counted out however this future ends.
                let _direct = Direct {
                    batcher: self,
                    lane,
                };
                run_alone(&self.transport, &item, Sending::Resendable).await
            }
            Ok((answer, start)) => {
                if start {
                    let flusher = Flusher {
                        batcher: self.clone(),
                        lane,
                        done: false,
                    };
                    // On the lane's (the caller's) runtime. If it has shut down, the task is
                    // dropped unrun, and the flusher's drop hands the queued calls an error.
                    runtime.spawn(flusher.run());
                }
                answer.await.unwrap_or_else(|_| {
                    Err(TransportError::Connection {
                        message: "connection unavailable: the batch carrying this lock call ended without a reply (its runtime shut down)".into(),
                    })
                })
            }
        }
    }

    fn slot_of(&self, item: &Item) -> u16 {
        if self.transport.is_cluster() {
            kaiju_core::key_slot(item.keys[0].as_bytes())
        } else {
            0
        }
    }

    fn lanes(&self) -> MutexGuard<'_, HashMap<LaneId, Lane>> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A direct call of a lane, counted until it ends.
struct Direct<'a> {
    batcher: &'a Batcher,
    lane: LaneId,
}

impl Drop for Direct<'_> {
    fn drop(&mut self) {
        let mut lanes = self.batcher.lanes();
        if let Some(state) = lanes.get_mut(&self.lane) {
            state.direct = state.direct.saturating_sub(1);
            if state.idle() {
                lanes.remove(&self.lane);
            }
        }
    }
}

/// Sends a lane's queue, batch after batch, until it is empty.
struct Flusher {
    batcher: Arc<Batcher>,
    lane: LaneId,
    /// Ended by emptying the queue (not by a panic or a runtime shutting down).
    done: bool,
}

impl Flusher {
    async fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            if let Some(timeout) = run_batch(&self.batcher.transport, batch).await {
                // The server did not answer in time: what is queued behind would wait a
                // timeout of its own, batch after batch. It fails now, unsent.
                for queued in self.take_queue() {
                    let _ = queued.reply.send(Err(timeout.clone()));
                }
            }
        }
        self.done = true;
    }

    /// The next batch, or `None` (and the flusher stops) once the queue is empty.
    fn next_batch(&self) -> Option<Vec<Queued>> {
        let mut lanes = self.batcher.lanes();
        let state = lanes.get_mut(&self.lane)?;
        if state.queue.is_empty() {
            state.flushers = state.flushers.saturating_sub(1);
            if state.idle() {
                lanes.remove(&self.lane);
            }
            return None;
        }
        let n = state.queue.len().min(MAX_BATCH);
        Some(state.queue.drain(..n).collect())
    }

    fn take_queue(&self) -> VecDeque<Queued> {
        let mut lanes = self.batcher.lanes();
        lanes
            .get_mut(&self.lane)
            .map(|state| std::mem::take(&mut state.queue))
            .unwrap_or_default()
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Ended early (a panic, or its runtime shut down mid-batch or before it ran). If it
        // was the lane's last, the calls still queued get an error (their senders drop with
        // the queue) instead of waiting for a flusher that will not come; the next call
        // starts a new one.
        let queue = {
            let mut lanes = self.batcher.lanes();
            let Some(state) = lanes.get_mut(&self.lane) else {
                return;
            };
            state.flushers = state.flushers.saturating_sub(1);
            let queue = if state.flushers == 0 {
                std::mem::take(&mut state.queue)
            } else {
                VecDeque::new()
            };
            if state.idle() {
                lanes.remove(&self.lane);
            }
            queue
        };
        drop(queue);
    }
}

/// Sends queued calls as one script call and hands each its outcome. Returns the error if the
/// whole call timed out.
async fn run_batch(transport: &Transport, mut batch: Vec<Queued>) -> Option<TransportError> {
    // A first try whose caller is already gone need not be sent at all.
    batch.retain(|q| q.item.kind != Kind::FirstTry || !q.reply.is_closed());
    if batch.is_empty() {
        return None;
    }
    let (items, replies): (Vec<Item>, Vec<oneshot::Sender<Outcome>>) =
        batch.into_iter().map(|q| (q.item, q.reply)).unzip();
    let outcomes = match run_calls(transport, &items, Sending::Resendable).await {
        Ok(outcomes) => outcomes,
        Err(e @ TransportError::Timeout { .. }) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
            return Some(e);
        }
        // Refused as a whole with a definite answer (say, an ACL user that may not touch one
        // call's keys: the server checks them before the script runs): call by call, so only
        // the calls it concerns fail. The server refused the script before it ran; and had
        // part of it run, the calls are idempotent (as much as alone, see the module docs).
        Err(e) if items.len() > 1 && !e.is_retryable() => {
            tracing::debug!(error = %e, calls = items.len(), "a lock batch was refused as a whole; sending its calls one by one");
            let mut outcomes = Vec::with_capacity(items.len());
            for item in &items {
                outcomes.push(run_alone(transport, item, Sending::Resendable).await);
            }
            outcomes
        }
        Err(e) => vec![Err(e); items.len()],
    };
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // A caller that left gets nothing; see "A caller that gives up" in the module docs.
        let _ = reply.send(outcome);
    }
    None
}

/// Sends one call on its own, written at most once (a call that is not idempotent): if the
/// connection drops before the reply, it fails and may or may not have run.
pub(crate) async fn call_once(transport: &Transport, item: Item) -> Outcome {
    run_alone(transport, &item, Sending::Once).await
}

/// Sends one call as a `batch.lua` call of its own.
async fn run_alone(transport: &Transport, item: &Item, sending: Sending) -> Outcome {
    let mut outcomes = run_calls(transport, std::slice::from_ref(item), sending).await?;
    outcomes
        .pop()
        .unwrap_or_else(|| Err(protocol("no outcome".into())))
}

/// Whether a script call may be sent again after a lost connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// Its calls are idempotent: the transport resends it after a reconnect.
    Resendable,
    /// Written at most once.
    Once,
}

async fn run_calls(
    transport: &Transport,
    items: &[Item],
    sending: Sending,
) -> Result<Vec<Outcome>, TransportError> {
    let n = items.len();
    let letters: String = items.iter().map(|i| i.kind.letter()).collect();
    let mut keys: Vec<Key> = Vec::with_capacity(n * ARITY);
    let mut args: Vec<Value> = Vec::with_capacity(1 + n * ARITY);
    args.push(Value::from(letters));
    for item in items {
        keys.extend(item.keys.iter().cloned());
        args.extend(item.args.iter().cloned());
    }
    let reply: Value = match sending {
        Sending::Resendable => scripts::BATCH.run(transport, keys, args).await?,
        Sending::Once => scripts::BATCH.run_once(transport, keys, args).await?,
    };
    let Value::Array(replies) = reply else {
        return Err(protocol(format!(
            "the batch script returned {reply:?}, not an array"
        )));
    };
    if replies.len() != n {
        return Err(protocol(format!(
            "the batch script returned {} replies for {n} calls",
            replies.len()
        )));
    }
    Ok(replies.into_iter().map(outcome).collect())
}

/// One call's reply in a batch: `{message}` is the error that call raised.
fn outcome(reply: Value) -> Outcome {
    match reply {
        Value::Array(error) => match error.as_slice() {
            [Value::String(message)] => Err(TransportError::from_reply(message)),
            [Value::Bytes(message)] => Err(TransportError::from_reply(&String::from_utf8_lossy(
                message,
            ))),
            _ => Err(protocol(format!("a batched lock call returned {error:?}"))),
        },
        other => Ok(other),
    }
}

fn protocol(message: String) -> TransportError {
    TransportError::Protocol { message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batched_error_keeps_its_class() {
        let e = outcome(Value::Array(vec![Value::from(
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        )]));
        assert!(matches!(e, Err(TransportError::WrongType { .. })), "{e:?}");
        assert_eq!(outcome(Value::Integer(1)), Ok(Value::Integer(1)));
        assert!(matches!(
            outcome(Value::Array(vec![])),
            Err(TransportError::Protocol { .. })
        ));
        assert!(matches!(
            outcome(Value::Array(vec![Value::Integer(3)])),
            Err(TransportError::Protocol { .. })
        ));
    }
}
