//! Requests and responses as they travel: kaiju's `[method, params]` (or a batch of them), the
//! JSON-RPC object form, and the responses of kaiju-rs request/response.

use kaiju_core::Value;
use kaiju_core::codec::array_header;

use crate::error::RpcError;

/// One request read from a body: its method (or why it is not a request), params and id.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: Result<String, RpcError>,
    pub(crate) params: Value,
    pub(crate) id: Value,
}

/// A body: one request, or a batch.
#[derive(Debug)]
pub(crate) enum Body {
    Single(Call),
    Batch(Vec<Call>),
}

/// Reads one request: `[method, params, ...]` (kaiju's stream form; extra items ignored, as
/// kaiju does) or `{"method", "params", "id"}` (the JSON-RPC object).
fn call(item: Value, default_id: Value) -> Call {
    let invalid = |why: &str| Call {
        method: Err(RpcError::invalid_request(format!("Invalid request: {why}"))),
        params: Value::Nil,
        id: default_id.clone(),
    };
    match item {
        Value::Array(items) => {
            let mut items = items.into_iter();
            match (items.next(), items.next()) {
                (Some(Value::Str(method)), params) => Call {
                    method: Ok(method),
                    params: params.unwrap_or(Value::Nil),
                    id: default_id,
                },
                (None, _) => invalid("an empty request"),
                (Some(_), _) => invalid("the method name must be a string"),
            }
        }
        Value::Map(entries) => {
            let (mut method, mut params, mut id) = (None, Value::Nil, default_id.clone());
            for (k, v) in entries {
                match (k.as_str(), v) {
                    (Some("method"), Value::Str(m)) => method = Some(m),
                    (Some("params"), p) => params = p,
                    (Some("id"), i) => id = i,
                    _ => {}
                }
            }
            match method {
                Some(m) => Call {
                    method: Ok(m),
                    params,
                    id,
                },
                None => Call {
                    id,
                    ..invalid("no method name")
                },
            }
        }
        _ => invalid("a request must be [method, params] or a request object"),
    }
}

impl Body {
    /// Reads a body. kaiju tells a single request from a batch by the type of the first item
    /// (a string: single); a body that is neither is one invalid request. A batch longer than
    /// `max_batch_length` is one invalid request too: one error answer, none of its items read.
    pub(crate) fn read(body: Value, max_batch_length: usize) -> Self {
        match body {
            Value::Array(items)
                if items.len() > max_batch_length
                    && items.first().is_some_and(|v| !matches!(v, Value::Str(_))) =>
            {
                Self::Single(Call {
                    method: Err(RpcError::invalid_request(format!(
                        "Invalid request: a batch of {} requests, at most {max_batch_length} are accepted",
                        items.len()
                    ))
                    .with_data("max_batch_length", max_batch_length)),
                    params: Value::Nil,
                    id: Value::Nil,
                })
            }
            Value::Array(items) if items.first().is_some_and(|v| !matches!(v, Value::Str(_))) => {
                Self::Batch(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, item)| call(item, Value::Int(i as i64)))
                        .collect(),
                )
            }
            other => Self::Single(call(other, Value::Nil)),
        }
    }
}

/// How a request reached the server: the `transport` label of its metrics and a field of its
/// log line and span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Via {
    /// A stream entry read by an [`RpcListener`](crate::RpcListener).
    #[default]
    Stream,
    /// A pub/sub message read by an [`RpcSubscriber`](crate::RpcSubscriber).
    PubSub,
    /// An HTTP request (`POST /public/rpc`).
    Http,
    /// A call from the app's own code ([`Server::call_via`](crate::Server::call_via)).
    Local,
}

impl Via {
    /// The name used as a metrics label and in logs: `stream`, `pubsub`, `http` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::PubSub => "pubsub",
            Self::Http => "http",
            Self::Local => "local",
        }
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one request ended, from the point of view of whoever delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The method returned a result.
    Ok,
    /// The method returned a client error (a kaiju `ClientError`): the call's answer.
    ClientError,
    /// Not run because an earlier request of its batch failed.
    Aborted,
    /// The method failed (an internal error or a panic): worth another delivery.
    Failed,
    /// The deadline passed while the method ran: worth another delivery.
    TimedOut,
    /// Its deadline passed before its method started (a request read late, after its app was
    /// down, say): the method never ran, and the caller has been told there is no answer, or
    /// will be. In a batch, every request after the one that expired expires too.
    Expired,
    /// The request can never succeed as sent: it is wrong (unknown or forbidden method,
    /// invalid params, a template that cannot be filled), or its method ran but its result
    /// cannot be encoded (running it again would redo its work in vain).
    Rejected,
    /// Not run: the server is stopping ([`Server::drain`](crate::Server::drain)). Deliver it
    /// again later or elsewhere.
    Unavailable,
}

impl Outcome {
    /// Whether the request may succeed if delivered again.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Failed | Self::TimedOut | Self::Unavailable)
    }
}

/// The response to one request.
#[derive(Debug, Clone)]
pub struct Response {
    /// The request's id: the one sent, the batch index for a kaiju batch item, `nil` for a
    /// kaiju single request.
    pub id: Value,
    /// The method's result, or the error object.
    pub result: Result<Value, RpcError>,
    /// How the request ended.
    pub outcome: Outcome,
}

impl Response {
    pub(crate) fn error(id: Value, error: RpcError, outcome: Outcome) -> Self {
        Self {
            id,
            result: Err(error),
            outcome,
        }
    }

    /// The JSON-RPC response object: `{"jsonrpc": "2.0", "id", "result" | "error"}`.
    pub fn to_value(&self) -> Value {
        let (key, value) = match &self.result {
            Ok(v) => ("result", v.clone()),
            Err(e) => ("error", e.to_value()),
        };
        Value::Map(vec![
            (Value::Str("jsonrpc".into()), Value::Str("2.0".into())),
            (Value::Str("id".into()), self.id.clone()),
            (Value::Str(key.into()), value),
        ])
    }

    /// Reads a response object (the client side of request/response).
    pub(crate) fn from_value(value: &Value) -> Option<Self> {
        let id = value.get("id").cloned().unwrap_or(Value::Nil);
        if let Some(error) = value.get("error") {
            let error = RpcError::from_value(error)?;
            return Some(Self::error(id, error, Outcome::ClientError));
        }
        let result = value.get("result")?.clone();
        Some(Self {
            id,
            result: Ok(result),
            outcome: Outcome::Ok,
        })
    }
}

/// What the server answers to one body: always a value (kaiju returned nothing for a batch
/// whose requests all succeeded, and its listener lost the rest of its read, D10).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The request's correlation id (the caller's, or a new one).
    pub correlation_id: String,
    /// The response, or one per batch request in request order.
    pub body: ReplyBody,
}

/// The response to a single request or to a batch.
#[derive(Debug, Clone)]
pub enum ReplyBody {
    /// A single request's response.
    Single(Response),
    /// A batch's responses, in request order, one per request.
    Batch(Vec<Response>),
}

impl Reply {
    /// Every response (one for a single request).
    pub fn responses(&self) -> &[Response] {
        match &self.body {
            ReplyBody::Single(r) => std::slice::from_ref(r),
            ReplyBody::Batch(rs) => rs,
        }
    }

    /// The worst outcome among the responses (`Ok` for an empty batch): what the body as a
    /// whole amounts to for its delivery.
    pub fn outcome(&self) -> Outcome {
        self.responses()
            .iter()
            .map(|r| r.outcome)
            .max()
            .unwrap_or(Outcome::Ok)
    }

    /// The response body on the wire: one response object, or an array of them.
    pub fn to_value(&self) -> Value {
        match &self.body {
            ReplyBody::Single(r) => r.to_value(),
            ReplyBody::Batch(rs) => Value::Array(rs.iter().map(Response::to_value).collect()),
        }
    }
}

/// The length of the batch an envelope's payload (`[body, headers]`, msgpack) holds, read off
/// the array headers without decoding anything: `None` when the body is not a batch (kaiju's
/// rule: an array whose first item is not a string) or cannot be read so far.
pub(crate) fn batch_length(payload: &[u8]) -> Option<usize> {
    // The envelope in any array form: a peer may write `[body, headers]` as an array 16.
    let (2, body) = array_header(payload)? else {
        return None;
    };
    let (len, items) = array_header(body)?;
    if len == 0 {
        return None;
    }
    let first = *items.first()?;
    let string = matches!(first, 0xa0..=0xbf | 0xd9 | 0xda | 0xdb);
    (!string).then_some(len)
}

impl serde::Serialize for Response {
    /// The same bytes as [`to_value`](Self::to_value), without copying the result.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("jsonrpc", "2.0")?;
        map.serialize_entry("id", &self.id)?;
        match &self.result {
            Ok(value) => map.serialize_entry("result", value)?,
            Err(e) => map.serialize_entry("error", &e.to_value())?,
        }
        map.end()
    }
}

impl serde::Serialize for Reply {
    /// The same bytes as [`to_value`](Self::to_value), without copying the results.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.body {
            ReplyBody::Single(r) => r.serialize(serializer),
            ReplyBody::Batch(rs) => serializer.collect_seq(rs),
        }
    }
}

impl Reply {
    /// Whether the reply's body, encoded, takes at most `max` bytes (measured without encoding
    /// it, and stopping once past `max`).
    pub(crate) fn fits(&self, max: usize) -> bool {
        let mut left = max;
        let header = |n: usize| {
            if n < 16 {
                1
            } else if n <= 0xffff {
                3
            } else {
                5
            }
        };
        if let ReplyBody::Batch(rs) = &self.body {
            match left.checked_sub(header(rs.len())) {
                Some(l) => left = l,
                None => return false,
            }
        }
        for r in self.responses() {
            // `{"jsonrpc": "2.0", "id": …, "result" | "error": …}`: 1 + 8 + 4 + 3 + 7 at most.
            let Some(l) = left.checked_sub(23) else {
                return false;
            };
            left = l;
            for value in [Some(&r.id), r.result.as_ref().ok()].into_iter().flatten() {
                match encoded_len(value, left) {
                    Some(n) => left -= n,
                    None => return false,
                }
            }
            if let Err(e) = &r.result {
                match encoded_len(&e.to_value(), left) {
                    Some(n) => left -= n,
                    None => return false,
                }
            }
        }
        true
    }
}

/// How many bytes `value` takes as msgpack (as the codec writes it), or `None` once past
/// `max`. Iterative: a deep value cannot exhaust the stack.
pub(crate) fn encoded_len(value: &Value, max: usize) -> Option<usize> {
    // The header of a string, bytes, array or map of `n`: the smallest form that holds `n`.
    fn header(n: usize, fix: usize, eight: bool) -> usize {
        if n < fix {
            1
        } else if eight && n <= 0xff {
            2
        } else if n <= 0xffff {
            3
        } else {
            5
        }
    }
    fn int(n: i64) -> usize {
        match n {
            -32..=127 => 1,
            -128..=255 => 2,
            -32_768..=65_535 => 3,
            -2_147_483_648..=4_294_967_295 => 5,
            _ => 9,
        }
    }
    let mut stack = vec![value];
    let mut len: usize = 0;
    while let Some(value) = stack.pop() {
        len = len.saturating_add(match value {
            Value::Nil | Value::Bool(_) => 1,
            Value::Int(n) => int(*n),
            Value::UInt(_) | Value::Float(_) => 9,
            Value::Str(s) => header(s.len(), 32, true).saturating_add(s.len()),
            Value::Bin(b) => header(b.len(), 0, true).saturating_add(b.len()),
            Value::Ext(_, d) => match d.len() {
                1 | 2 | 4 | 8 | 16 => 2 + d.len(),
                n => header(n, 0, true).saturating_add(1).saturating_add(n),
            },
            Value::Array(items) => {
                stack.extend(items.iter());
                header(items.len(), 16, false)
            }
            Value::Map(entries) => {
                stack.extend(entries.iter().flat_map(|(k, v)| [k, v]));
                header(entries.len(), 16, false)
            }
        });
        if len > max {
            return None;
        }
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn kaijus_bodies_are_read() {
        let Body::Single(c) = Body::read(Value::Array(vec![s("a.b"), Value::Nil]), 100) else {
            panic!("single")
        };
        assert_eq!(c.method.unwrap(), "a.b");
        let Body::Batch(cs) = Body::read(
            Value::Array(vec![
                Value::Array(vec![s("a.b"), Value::Map(vec![])]),
                Value::Int(5),
                Value::Array(vec![]),
                Value::Map(vec![(s("method"), s("x.y")), (s("id"), s("q"))]),
            ]),
            100,
        ) else {
            panic!("batch")
        };
        assert_eq!(cs.len(), 4);
        assert!(cs[0].method.is_ok());
        assert_eq!(cs[0].id, Value::Int(0));
        assert!(
            cs[1].method.is_err(),
            "a bad item is its own error, not the batch's"
        );
        assert!(cs[2].method.is_err());
        assert_eq!(cs[3].id, s("q"));
        for body in [
            Value::Array(vec![]),
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![s("only")]),
        ] {
            if let Body::Single(c) = Body::read(body.clone(), 100) {
                // `["only"]` is a request without params (kaiju crashes on it, D27).
                assert_eq!(c.method.is_ok(), body == Value::Array(vec![s("only")]));
            }
        }
    }

    #[test]
    fn batch_lengths_are_read_off_the_headers() {
        use kaiju_core::{Codec, Msgpack};
        let envelope =
            |body: &Value| kaiju_streams::encode(body, &kaiju_streams::Headers::new()).unwrap();
        let item = Value::Array(vec![s("a.b"), Value::Nil]);
        for n in [1, 15, 16, 70_000] {
            let batch = Value::Array(vec![item.clone(); n]);
            assert_eq!(batch_length(&envelope(&batch)), Some(n));
        }
        assert_eq!(batch_length(&envelope(&item)), None, "a single request");
        assert_eq!(batch_length(&envelope(&Value::Array(vec![]))), None);
        assert_eq!(batch_length(&envelope(&Value::Nil)), None);
        let long = Value::Array(vec![s(&"x".repeat(300)), Value::Nil]);
        assert_eq!(batch_length(&envelope(&long)), None, "str8 is a string");
        assert_eq!(batch_length(b"\x92\xdd\xff\xff"), None, "cut short");
        assert_eq!(batch_length(&Msgpack::WIRE.encode(&1).unwrap()), None);
        // The envelope written as an array 16 (`dc 00 02`), which decoders accept as well
        // (found by an adversarial review: it skipped the check).
        let batch = Value::Array(vec![item.clone(); 70_000]);
        let wide = [&b"\xdc\x00\x02"[..], &envelope(&batch)[1..]].concat();
        assert_eq!(batch_length(&wide), Some(70_000));
    }

    #[test]
    fn encoded_lengths_are_the_codecs() {
        use kaiju_core::{Codec, Msgpack};
        let value = Value::Array(vec![
            Value::Nil,
            Value::Bool(true),
            Value::Int(-1),
            Value::Int(-33),
            Value::Int(200),
            Value::Int(-200),
            Value::Int(70_000),
            Value::Int(-70_000),
            Value::Int(5_000_000_000),
            Value::UInt(u64::MAX),
            Value::Float(0.5),
            s(&"x".repeat(31)),
            s(&"x".repeat(32)),
            s(&"x".repeat(300)),
            s(&"x".repeat(70_000)),
            Value::Bin(vec![0; 3]),
            Value::Bin(vec![0; 300]),
            Value::Ext(1, vec![0; 4]),
            Value::Ext(1, vec![0; 5]),
            Value::Array(vec![Value::Nil; 20]),
            Value::Map(vec![(s("k"), Value::Nil); 20]),
        ]);
        let bytes = Msgpack::WIRE.encode(&value).unwrap();
        assert_eq!(encoded_len(&value, usize::MAX), Some(bytes.len()));
        assert_eq!(encoded_len(&value, bytes.len() - 1), None);
        let reply = Reply {
            correlation_id: "c".into(),
            body: ReplyBody::Batch(vec![
                Response {
                    id: Value::Int(0),
                    result: Ok(value),
                    outcome: Outcome::Ok,
                },
                Response::error(Value::Int(1), RpcError::aborted(), Outcome::Aborted),
            ]),
        };
        let bytes = Msgpack::WIRE.encode(&reply).unwrap();
        assert_eq!(bytes, Msgpack::WIRE.encode(&reply.to_value()).unwrap());
        assert!(reply.fits(bytes.len() + 10));
        assert!(!reply.fits(bytes.len() / 2));
    }
}
