//! Stream helpers several test areas share: a recording handler, bulk writes, the pending count
//! and the dead letters of a stream.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use kaiju_core::AppSettings;
use kaiju_streams::{HandlerError, Headers, Message, Outgoing, StreamWriter};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;

/// The body of the entries these tests write: `(method, value)`.
pub type Body = (String, Option<i64>);

/// The ids of the entries a [`recorder`] handled, in the order they were handled.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// The stream of `app`'s `rpc` topic.
pub fn rpc_stream(app: &AppSettings) -> kaiju_core::Key {
    app.namespace().unwrap().stream("rpc").unwrap()
}

/// A handler that records the id of each entry in `seen` and succeeds.
pub fn recorder(
    seen: &Seen,
) -> impl Fn(Message<Body>) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
{
    let seen = seen.clone();
    move |m: Message<Body>| {
        seen.lock().unwrap().push(m.id);
        std::future::ready(Ok(()))
    }
}

/// Writes `n` entries `(method, i)` to `stream` (500 per `write_many`), and returns their ids.
pub async fn write(t: &Transport, stream: &kaiju_core::Key, n: usize, method: &str) -> Vec<String> {
    let writer = StreamWriter::new(t.clone());
    let mut ids = Vec::with_capacity(n);
    let bodies: Vec<Body> = (0..n)
        .map(|i| (method.to_owned(), Some(i as i64)))
        .collect();
    for chunk in bodies.chunks(500) {
        let batch = chunk
            .iter()
            .map(|body| Outgoing {
                stream,
                body,
                headers: Headers::new(),
            })
            .collect();
        ids.extend(writer.write_many(batch).await.unwrap());
    }
    ids
}

/// How many different entries were handled (an entry delivered twice counts once).
pub fn distinct(seen: &Seen) -> usize {
    seen.lock().unwrap().iter().collect::<HashSet<_>>().len()
}

/// How many entries of `stream` the group `group` has pending (0 if either does not exist).
pub async fn pending_of(t: &Transport, stream: &str, group: &str) -> u64 {
    let summary: Result<(u64, Value, Value, Value), _> = t.pool().xpending(stream, group, ()).await;
    summary.map(|s| s.0).unwrap_or(0)
}

/// The dead letters, as raw field lists (field names may be any bytes).
pub async fn dead_letters(t: &Transport, key: &str) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let entries: Value = t.pool().xrange(key, "-", "+", None).await.unwrap();
    entries
        .into_array()
        .into_iter()
        .map(|entry| {
            let mut parts = entry.into_array().into_iter();
            let _id = parts.next();
            let flat: Vec<Vec<u8>> = parts
                .next()
                .unwrap()
                .into_array()
                .into_iter()
                .map(|v| v.as_bytes().unwrap().to_vec())
                .collect();
            flat.chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect()
        })
        .collect()
}

/// The field `name` of a dead letter from [`dead_letters`], as text.
pub fn field<'a>(letter: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a str> {
    letter
        .iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}
