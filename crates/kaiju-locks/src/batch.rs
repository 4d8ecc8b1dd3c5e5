//! Natural batching: the first tries and releases of one [`Locks`](crate::Locks) that overlap
//! in time share a script call.
//!
//! Both are calls of `batch.lua`, which takes one call or many. Calls are grouped in lanes: a
//! cluster slot (a script's keys must share one), or the whole server outside a cluster.
//! - While fewer than [`IN_FLIGHT`] calls of its lane are in flight, a call goes out at once,
//!   from the caller's own task. A lone caller never waits for another.
//! - Beyond that it waits in the lane's queue. When a call of the lane completes, everything
//!   queued (up to [`MAX_BATCH`]) goes out as one call, from a task, in arrival order.
//!
//! Under load one `EVALSHA` then carries many lock calls, so what each `EVALSHA` costs on its
//! own (fred's write and flush, the server reading the command, setting up the script and
//! writing the reply, the client's wake-ups) is paid once per batch.
//!
//! What batching keeps:
//! - **Each call's own outcome.** The script runs every call under `pcall`: an error in one
//!   is that call's error, and the others run. An error of the whole call (a lost connection,
//!   a reply that does not fit) is every call's error, of the kind a lone call would get, so
//!   callers undo an acquire of unknown outcome as they always do.
//! - **Resends are safe.** Every call is idempotent (a first try by attempt id, a release by
//!   token), so a batch resent after a reconnect returns what it did the first time.
//! - **Nothing is stranded.** A lane's place is held by a [`Slot`] whose drop starts the queued
//!   calls or frees the place, however its holder ends (completion, cancellation, a panic, a
//!   runtime shutting down). A queued call whose batch can never run gets an error.
//! - **A caller that gives up.** Its call still runs (once queued or sent, it is part of a
//!   batch), and its outcome is dropped. A first try is always awaited by a
//!   [`FirstTry`](crate::first_try::FirstTry), which finishes a dropped try in a task and
//!   undoes a lock it took; a release that runs unheard is what its caller asked for.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kaiju_transport::fred::types::Value;
use kaiju_transport::{Transport, TransportError};
use tokio::sync::oneshot;

use crate::scripts;

/// Calls of one lane in flight at once before later ones queue to share a call.
const IN_FLIGHT: usize = 4;
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
/// [`ARITY`] arguments.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) kind: Kind,
    pub(crate) keys: [String; ARITY],
    pub(crate) args: [Value; ARITY],
}

/// A call's reply, or why there is none.
pub(crate) type Outcome = Result<Value, TransportError>;

/// A queued call and where its outcome goes.
struct Queued {
    item: Item,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Lane {
    in_flight: usize,
    queue: VecDeque<Queued>,
}

/// Sends the acquire and release calls of one `Locks` (and its guards), batching those that
/// overlap. See the [module docs](self).
pub(crate) struct Batcher {
    transport: Transport,
    /// Where batches run: the runtime the `Locks` was made on, wherever a slot is freed.
    runtime: tokio::runtime::Handle,
    lanes: Mutex<HashMap<u16, Lane>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl Batcher {
    /// A batcher whose batches run on the current Tokio runtime.
    pub(crate) fn new(transport: Transport) -> Arc<Self> {
        Arc::new(Self {
            transport,
            runtime: tokio::runtime::Handle::current(),
            lanes: Mutex::default(),
        })
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Runs `item`: at once if its lane has room, else in the next batch of its lane.
    pub(crate) async fn call(self: &Arc<Self>, item: Item) -> Outcome {
        let lane = self.lane_of(&item);
        let queued = {
            let mut lanes = self.lanes();
            let state = lanes.entry(lane).or_default();
            if state.in_flight < IN_FLIGHT {
                state.in_flight += 1;
                Err(item)
            } else {
                let (reply, answer) = oneshot::channel();
                state.queue.push_back(Queued { item, reply });
                Ok(answer)
            }
        };
        match queued {
            Err(item) => {
                // Freed (and the queue started) however this future ends.
                let _slot = Slot {
                    batcher: self.clone(),
                    lane,
                    held: true,
                };
                let mut outcomes = run(&self.transport, vec![item]).await;
                outcomes.pop().unwrap_or_else(|| Err(protocol("no outcome".into())))
            }
            Ok(answer) => answer.await.unwrap_or_else(|_| {
                Err(TransportError::Connection {
                    message: "the batch carrying this lock call ended without a reply (its runtime shut down)".into(),
                })
            }),
        }
    }

    fn lane_of(&self, item: &Item) -> u16 {
        if self.transport.is_cluster() {
            item.keys
                .first()
                .map_or(0, |k| kaiju_core::key_slot(k.as_bytes()))
        } else {
            0
        }
    }

    fn lanes(&self) -> MutexGuard<'_, HashMap<u16, Lane>> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// For the holder of a slot of `lane` that is done: the next batch of its queue, with the
    /// slot passed on to it, or `None` with the slot freed.
    fn next_batch(&self, lane: u16) -> Option<Vec<Queued>> {
        let mut lanes = self.lanes();
        let state = lanes.get_mut(&lane)?;
        if state.queue.is_empty() {
            state.in_flight = state.in_flight.saturating_sub(1);
            if state.in_flight == 0 {
                lanes.remove(&lane);
            }
            return None;
        }
        let n = state.queue.len().min(MAX_BATCH);
        Some(state.queue.drain(..n).collect())
    }
}

/// A held place among a lane's [`IN_FLIGHT`] calls. Dropped, it hands the place to the lane's
/// queued calls (a batch in a task of its own) or frees it.
struct Slot {
    batcher: Arc<Batcher>,
    lane: u16,
    /// Still to be handed on or freed (false once a batch loop did it itself).
    held: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        if let Some(batch) = self.batcher.next_batch(self.lane) {
            let slot = Slot {
                batcher: self.batcher.clone(),
                lane: self.lane,
                held: true,
            };
            // If the runtime has shut down, the task is dropped unrun: its calls' senders go
            // with it, and their callers get an error instead of waiting forever.
            self.batcher.runtime.spawn(run_batches(slot, batch));
        }
    }
}

/// Runs batches of a lane while its queue has calls, then frees the slot.
async fn run_batches(mut slot: Slot, mut batch: Vec<Queued>) {
    loop {
        run_batch(&slot.batcher.transport, batch).await;
        match slot.batcher.next_batch(slot.lane) {
            Some(next) => batch = next,
            None => {
                slot.held = false;
                return;
            }
        }
    }
}

/// Sends queued calls as one script call and hands each its outcome.
async fn run_batch(transport: &Transport, mut batch: Vec<Queued>) {
    // A first try whose caller is already gone need not be sent at all.
    batch.retain(|q| q.item.kind != Kind::FirstTry || !q.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let (items, replies): (Vec<Item>, Vec<oneshot::Sender<Outcome>>) =
        batch.into_iter().map(|q| (q.item, q.reply)).unzip();
    let outcomes = run(transport, items).await;
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // A caller that left gets nothing; see "A caller that gives up" in the module docs.
        let _ = reply.send(outcome);
    }
}

/// Sends calls as one `batch.lua` call: one outcome per call, in order.
async fn run(transport: &Transport, items: Vec<Item>) -> Vec<Outcome> {
    let n = items.len();
    match run_calls(transport, items).await {
        Ok(outcomes) => outcomes,
        Err(e) => vec![Err(e); n],
    }
}

async fn run_calls(
    transport: &Transport,
    items: Vec<Item>,
) -> Result<Vec<Outcome>, TransportError> {
    let n = items.len();
    let letters: String = items.iter().map(|i| i.kind.letter()).collect();
    let mut keys = Vec::with_capacity(n * ARITY);
    let mut args = Vec::with_capacity(1 + n * ARITY);
    args.push(Value::from(letters));
    for item in items {
        keys.extend(item.keys);
        args.extend(item.args);
    }
    let reply: Value = scripts::BATCH.run(transport, keys, args).await?;
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
