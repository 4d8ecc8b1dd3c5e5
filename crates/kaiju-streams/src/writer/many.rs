//! `StreamWriter::write_many`: a batch of entries in as few calls as the server allows.
//!
//! fred writes every command of a pipeline to the socket on its own, so a pipeline of 100
//! `XADD`s costs 100 socket writes and 100 commands for the server to read. The entries of a
//! stream that has several in the batch travel instead in one call of a script that runs one
//! `XADD` per entry (`lua/xadd_many.lua`): about half the cost for the server and a fifth for
//! the client. Calls are bounded ([`MAX_ENTRIES_PER_CALL`], [`MAX_BYTES_PER_CALL`]) because a
//! script holds the server while it runs; a stream's calls go one after another (in order),
//! different streams' calls and the pipeline of the rest go at once.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::task::Poll;

use bytes::Bytes;
use kaiju_core::Key;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{ClusterHash, CustomCommand, Value};
use kaiju_transport::{Classify, Script, TransportError};
use serde::Serialize;

use super::{Outgoing, StreamWriter, idmp};
use crate::envelope::PAYLOAD_FIELD;
use crate::{Result, StreamError};

/// The most entries one call appends to a stream.
pub const MAX_ENTRIES_PER_CALL: usize = 1000;

/// The most payload bytes one call carries (at least one entry per call): a script holds the
/// server while it runs, and copies its arguments, so a call of large entries must stay short.
/// Measured here: about 1 ms of server time per call at this size.
pub const MAX_BYTES_PER_CALL: usize = 256 * 1024;

/// Streams with fewer entries than this in a batch go in the pipeline: a call would not save
/// anything for them.
const SCRIPT_MIN_ENTRIES: usize = 4;

static XADD_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/xadd_many.lua")));

/// The script of `write_many`.
pub(crate) fn script() -> &'static Script {
    &XADD_MANY
}

/// The outcome of each entry, by its position in the batch.
type Outcomes = Vec<(usize, Result<String>)>;

type Work<'a> = Boxed<'a, Outcomes>;

impl StreamWriter {
    /// Appends many entries; returns their ids in order.
    ///
    /// The entries of a stream with several of them in the batch travel in one call (a script
    /// that runs one `XADD` per entry, in order; at most [`MAX_ENTRIES_PER_CALL`] entries and
    /// [`MAX_BYTES_PER_CALL`] bytes per call), the others in one pipeline, all at once. Each
    /// entry's `XADD` stands alone, as in a pipeline: one that fails does not stop the next.
    /// Within a stream, entries are written in the order given; entries of different streams
    /// may be written in any order relative to each other. Where the server refuses scripts
    /// (an ACL user without `EVALSHA`), pipelines are used throughout.
    ///
    /// Every entry is encoded before anything is sent, so an encoding error writes nothing. If
    /// some entries were written and others failed, the error is
    /// [`StreamError::PartialWrite`] with the id of each entry that was written, so the caller
    /// can write only the rest again (within a stream, nothing is sent after a call whose
    /// outcome is unknown, so writing the rest again keeps their order). Any other error means
    /// no entry is *known* to be written: after a
    /// [`Timeout`](kaiju_transport::TransportError::Timeout) or a lost
    /// [`Connection`](kaiju_transport::TransportError::Connection) they may all have been, so
    /// writing them again may duplicate them; give entries an idempotency key in their headers
    /// when that matters.
    ///
    /// Where the server has `XADD ... IDMP` ([`Feature::XAddIdmp`](kaiju_transport::Feature),
    /// Redis 8.6+), every entry carries IDMP ids (as [`write`](Self::write)'s), and a call or
    /// pipelined entry whose reply was lost is sent again with the same ids, at most
    /// [`MAX_SENDS`](super::MAX_SENDS) times in all: it is appended once, and its id is
    /// reported. Only when every send's reply was lost is the outcome unknown as above.
    /// Elsewhere every call is sent once, never resent.
    pub async fn write_many<B: Serialize + ?Sized>(
        &self,
        entries: Vec<Outgoing<'_, B>>,
    ) -> Result<Vec<String>> {
        let encoded = entries
            .into_iter()
            .map(|entry| Ok((entry.stream, Self::payload(entry.body, entry.headers)?)))
            .collect::<Result<Vec<_>>>()?;
        let scripts = !self.no_scripts.load(Ordering::Relaxed);
        let mut piped = Vec::new();
        let mut work: Vec<Work<'_>> = Vec::new();
        for (stream, positions) in by_stream(&encoded) {
            if scripts && positions.len() >= SCRIPT_MIN_ENTRIES {
                work.push(Box::pin(self.scripted(stream, &encoded, positions)));
            } else {
                piped.extend(positions);
            }
        }
        if !piped.is_empty() {
            // In input order, as the caller gave them.
            piped.sort_unstable();
            work.push(Box::pin(self.pipelined(&encoded, piped)));
        }
        let mut results: Vec<Option<Result<String>>> = encoded.iter().map(|_| None).collect();
        for (i, outcome) in join_all(work).await.into_iter().flatten() {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(outcome);
            }
        }
        let results: Vec<Result<String>> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(protocol("an entry got no outcome"))))
            .collect();
        let first_error = results.iter().find_map(|r| r.as_ref().err()).cloned();
        match first_error {
            None => results.into_iter().collect(),
            Some(error) if results.iter().all(Result::is_err) => Err(error),
            Some(error) => Err(StreamError::PartialWrite {
                ids: results.into_iter().map(Result::ok).collect(),
                error: Box::new(error),
            }),
        }
    }

    /// One stream's entries, in calls of the append script, one after another.
    async fn scripted(
        &self,
        stream: &Key,
        encoded: &[(&Key, Bytes)],
        positions: Vec<usize>,
    ) -> Outcomes {
        let mut outcomes = Vec::with_capacity(positions.len());
        let mut rest = positions.as_slice();
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(chunk_len(rest, encoded));
            rest = after;
            let payloads: Vec<Bytes> = chunk
                .iter()
                .filter_map(|&i| encoded.get(i).map(|e| e.1.clone()))
                .collect();
            let sent = if self.idmp() {
                // The same numbers on each send: a resend appends nothing twice.
                let first = self.producer.take(chunk.len() as u64);
                idmp::resend(
                    || self.append(stream, &payloads, Some(first)),
                    |since| idmp::still_kept(&self.transport, stream.as_str(), since),
                )
                .await
            } else {
                self.append(stream, &payloads, None).await
            };
            match sent {
                Ok(ids) => {
                    if ids.len() != chunk.len() {
                        let error = protocol("the append script returned a wrong number of ids");
                        outcomes.extend(chunk.iter().chain(rest).map(|&i| (i, Err(error.clone()))));
                        return outcomes;
                    }
                    outcomes.extend(chunk.iter().copied().zip(ids));
                }
                Err(StreamError::Transport(e)) if e.is_script_refused() => {
                    // The script did not run: this stream's entries go in a pipeline instead.
                    self.no_scripts.store(true, Ordering::Relaxed);
                    let unsent = chunk.iter().chain(rest).copied().collect();
                    outcomes.extend(self.pipelined(encoded, unsent).await);
                    return outcomes;
                }
                Err(error) => {
                    // Its entries may or may not be written: the later ones are not sent, so
                    // that writing them all again cannot put them first.
                    outcomes.extend(chunk.iter().chain(rest).map(|&i| (i, Err(error.clone()))));
                    return outcomes;
                }
            }
        }
        outcomes
    }

    /// Appends payloads to one stream in one call (written once): each entry's id or error.
    /// With `first`, the entries carry IDMP ids (numbers `first..`), so the same call may be
    /// sent again.
    async fn append(
        &self,
        stream: &Key,
        payloads: &[Bytes],
        first: Option<u64>,
    ) -> Result<Vec<Result<String>>> {
        let cap = self.cap_value().map(|n| n.to_string()).unwrap_or_default();
        let producer = if first.is_some() {
            self.producer.id()
        } else {
            ""
        };
        let mut args: Vec<Value> = vec![
            PAYLOAD_FIELD.into(),
            cap.into(),
            producer.into(),
            first.unwrap_or(0).to_string().into(),
            idmp::BLOCK.to_string().into(),
        ];
        args.extend(payloads.iter().cloned().map(Value::Bytes));
        let replies: Vec<Value> = XADD_MANY
            .run_once(&self.transport, vec![stream.as_str()], args)
            .await?;
        Ok(replies
            .into_iter()
            .map(|reply| {
                let text = match reply {
                    Value::String(s) => s.to_string(),
                    Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => {
                        return Err(protocol(&format!(
                            "the append script returned {:?} for an entry",
                            other.kind()
                        )));
                    }
                };
                match text.strip_prefix('!') {
                    Some(error) => Err(TransportError::from_reply(error).into()),
                    None => Ok(text),
                }
            })
            .collect())
    }

    /// Entries in one pipeline of `XADD`s (written once). Where the server has `XADD ... IDMP`,
    /// each entry carries IDMP ids and the entries whose reply was lost are sent again (in
    /// order, with the same ids), at most [`MAX_SENDS`](super::MAX_SENDS) times in all.
    async fn pipelined(&self, encoded: &[(&Key, Bytes)], positions: Vec<usize>) -> Outcomes {
        if !self.idmp() {
            return self.pipeline_once(encoded, &positions, None).await;
        }
        let first = self.producer.take(positions.len() as u64);
        let started = std::time::Instant::now();
        // Each position with its number, fixed for every send.
        let mut pending: Vec<(usize, u64)> = positions.into_iter().zip(first..).collect();
        let mut outcomes = Vec::with_capacity(pending.len());
        let mut sent = 1;
        loop {
            let (at, numbers): (Vec<usize>, Vec<u64>) = pending.iter().copied().unzip();
            let replies = self.pipeline_once(encoded, &at, Some(&numbers)).await;
            let mut unknown = Vec::new();
            for ((i, outcome), n) in replies.into_iter().zip(numbers) {
                match outcome {
                    Err(e) if idmp::outcome_unknown(&e) && sent < idmp::MAX_SENDS => {
                        unknown.push((i, n, e));
                    }
                    outcome => outcomes.push((i, outcome)),
                }
            }
            if unknown.is_empty() {
                return outcomes;
            }
            tokio::time::sleep(idmp::RESEND_PAUSE * sent).await;
            // Only entries whose stream still keeps their ids are sent again; the others keep
            // their unknown outcome.
            let mut kept: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
            pending = Vec::with_capacity(unknown.len());
            for (i, n, e) in unknown {
                let Some((stream, _)) = encoded.get(i) else {
                    outcomes.push((i, Err(e)));
                    continue;
                };
                let stream = stream.as_str();
                let still = match kept.get(stream) {
                    Some(still) => *still,
                    None => {
                        let still = idmp::still_kept(&self.transport, stream, started).await;
                        kept.insert(stream, still);
                        still
                    }
                };
                if still {
                    pending.push((i, n));
                } else {
                    outcomes.push((i, Err(e)));
                }
            }
            if pending.is_empty() {
                return outcomes;
            }
            sent += 1;
        }
    }

    /// One pipeline of `XADD`s, written once; with `numbers`, each carries the IDMP ids of its
    /// number.
    async fn pipeline_once(
        &self,
        encoded: &[(&Key, Bytes)],
        positions: &[usize],
        numbers: Option<&[u64]>,
    ) -> Outcomes {
        let pipeline = self.transport.pipeline_once();
        for (k, &i) in positions.iter().enumerate() {
            let Some((stream, payload)) = encoded.get(i) else {
                continue;
            };
            let queued: std::result::Result<Value, _> =
                match numbers.and_then(|numbers| numbers.get(k)) {
                    Some(&n) => {
                        let (pid, iid) = self.producer.ids(n);
                        pipeline
                            .custom(
                                CustomCommand::new_static("XADD", ClusterHash::FirstKey, false),
                                self.idmp_args(stream, &pid, &iid, payload.clone()),
                            )
                            .await
                    }
                    None => {
                        pipeline
                            .xadd(
                                stream.as_str(),
                                false,
                                self.cap(),
                                "*",
                                vec![(PAYLOAD_FIELD, payload.clone())],
                            )
                            .await
                    }
                }
                .classify();
            if let Err(e) = queued {
                let error = StreamError::from(e);
                return positions.iter().map(|&i| (i, Err(error.clone()))).collect();
            }
        }
        let replies = pipeline.try_all::<String>().await;
        positions
            .iter()
            .copied()
            .zip(replies)
            .map(|(i, r)| (i, r.classify().map_err(StreamError::from)))
            .collect()
    }
}

/// Each stream of the batch with the positions of its entries, in the order given.
fn by_stream<'k>(encoded: &[(&'k Key, Bytes)]) -> Vec<(&'k Key, Vec<usize>)> {
    let mut streams: Vec<(&Key, Vec<usize>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, (stream, _)) in encoded.iter().enumerate() {
        let at = *index.entry(stream.as_str()).or_insert_with(|| {
            streams.push((stream, Vec::new()));
            streams.len() - 1
        });
        if let Some((_, positions)) = streams.get_mut(at) {
            positions.push(i);
        }
    }
    streams
}

/// How many of `positions` (at least one) the next call takes.
fn chunk_len(positions: &[usize], encoded: &[(&Key, Bytes)]) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for &i in positions.iter().take(MAX_ENTRIES_PER_CALL) {
        bytes += encoded.get(i).map_or(0, |e| e.1.len());
        if n > 0 && bytes > MAX_BYTES_PER_CALL {
            break;
        }
        n += 1;
    }
    n.max(1)
}

fn protocol(message: &str) -> StreamError {
    StreamError::Transport(TransportError::Protocol {
        message: message.to_owned(),
    })
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs the futures concurrently in this task; their outputs in order.
async fn join_all<T>(futures: Vec<Boxed<'_, T>>) -> Vec<T> {
    let mut slots: Vec<(Option<Boxed<'_, T>>, Option<T>)> =
        futures.into_iter().map(|f| (Some(f), None)).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in &mut slots {
            if let Some(running) = future {
                match running.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *future = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    slots.into_iter().filter_map(|(_, output)| output).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(stream: &Key, sizes: &[usize]) -> Vec<(&'static Key, Bytes)> {
        let stream: &'static Key = Box::leak(Box::new(stream.clone()));
        sizes
            .iter()
            .map(|&n| (stream, Bytes::from(vec![0_u8; n])))
            .collect()
    }

    #[test]
    fn calls_are_bounded_by_entries_and_by_bytes() {
        let key = Key::raw("s");
        let small = batch(&key, &[100; 2500]);
        let all: Vec<usize> = (0..small.len()).collect();
        assert_eq!(chunk_len(&all, &small), MAX_ENTRIES_PER_CALL);
        // 64 KiB entries: four per call.
        let large = batch(&key, &[64 * 1024; 10]);
        let all: Vec<usize> = (0..large.len()).collect();
        assert_eq!(chunk_len(&all, &large), 4);
        // One entry larger than a call still goes, alone.
        let huge = batch(&key, &[MAX_BYTES_PER_CALL * 3, 10]);
        assert_eq!(chunk_len(&[0, 1], &huge), 1);
        assert_eq!(chunk_len(&[1], &huge), 1);
    }

    #[test]
    fn entries_are_grouped_by_stream_in_the_order_given() {
        let (a, b) = (Key::raw("a"), Key::raw("b"));
        let encoded: Vec<(&Key, Bytes)> = [&a, &b, &a, &a, &b]
            .into_iter()
            .map(|k| (k, Bytes::new()))
            .collect();
        let groups = by_stream(&encoded);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0.as_str(), "a");
        assert_eq!(groups[0].1, vec![0, 2, 3]);
        assert_eq!(groups[1].1, vec![1, 4]);
    }
}
