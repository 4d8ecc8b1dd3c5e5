//! kaiju's stream envelope (docs/wire.md §2): one field `_` holding msgpack `[body, headers]`.

use std::fmt;

use kaiju_core::{Codec, Msgpack};
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The stream entry field that holds the payload.
pub const PAYLOAD_FIELD: &str = "_";

/// The header carrying the correlation id of a request.
pub const CORRELATION_ID: &str = "Correlation-Id";

/// One header value. kaiju writes strings and integers (`Timeout`, `RPC-Retries`); any other
/// msgpack value is accepted when reading (a peer's custom header may hold a list or a map),
/// so that no header makes an entry unreadable.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HeaderValue {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// `nil`.
    Nil,
    /// Anything else: bytes, a list, a map, an extension.
    Other(kaiju_core::Value),
}

// Hand-written: `#[serde(untagged)]` would buffer every value and build an error per variant
// tried, which showed up in the listener's profile.
impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = HeaderValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean or nil header value")
            }
            fn visit_i64<E>(self, v: i64) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<HeaderValue, E> {
                // Above i64::MAX it is carried as it is, as Python carries any int.
                Ok(HeaderValue::from(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Bool(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Str(v))
            }
            fn visit_unit<E>(self) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Nil)
            }
            fn visit_none<E>(self) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Nil)
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Other(kaiju_core::Value::Bin(v.to_vec())))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<HeaderValue, A::Error> {
                kaiju_core::Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(HeaderValue::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HeaderValue, A::Error> {
                kaiju_core::Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(HeaderValue::Other)
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

impl From<&str> for HeaderValue {
    fn from(v: &str) -> Self {
        Self::Str(v.to_owned())
    }
}

impl From<String> for HeaderValue {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}

impl HeaderValue {
    /// The value as an integer: an `Int`, or an integer above `i64::MAX` (carried as
    /// `Value::UInt`) saturated to `i64::MAX`. `None` for anything else.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            Self::Other(kaiju_core::Value::UInt(_)) => Some(i64::MAX),
            _ => None,
        }
    }

    /// The value as text when it is a string or an integer (ids may be written as either).
    pub fn to_text(&self) -> Option<String> {
        match self {
            Self::Str(s) => Some(s.clone()),
            Self::Int(n) => Some(n.to_string()),
            Self::Other(kaiju_core::Value::UInt(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for HeaderValue {
            fn from(v: $t) -> Self {
                Self::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

/// An integer above `i64::MAX` travels as msgpack's unsigned 64-bit integer.
impl From<u64> for HeaderValue {
    fn from(v: u64) -> Self {
        i64::try_from(v).map_or(Self::Other(kaiju_core::Value::UInt(v)), Self::Int)
    }
}

impl From<usize> for HeaderValue {
    fn from(v: usize) -> Self {
        Self::from(v as u64)
    }
}

impl From<isize> for HeaderValue {
    fn from(v: isize) -> Self {
        Self::Int(v as i64)
    }
}

impl From<f64> for HeaderValue {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<f32> for HeaderValue {
    fn from(v: f32) -> Self {
        Self::Float(f64::from(v))
    }
}

impl From<bool> for HeaderValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<&String> for HeaderValue {
    fn from(v: &String) -> Self {
        Self::Str(v.clone())
    }
}

/// A [`Value`](kaiju_core::Value) as a header: scalars become their own variant, anything else
/// is carried as it is.
impl From<kaiju_core::Value> for HeaderValue {
    fn from(v: kaiju_core::Value) -> Self {
        use kaiju_core::Value;
        match v {
            Value::Nil => Self::Nil,
            Value::Bool(b) => Self::Bool(b),
            Value::Int(n) => Self::Int(n),
            Value::Float(f) => Self::Float(f),
            Value::Str(s) => Self::Str(s),
            other => Self::Other(other),
        }
    }
}

/// A header's name: a string, as kaiju writes them, or any other msgpack value a peer wrote.
///
/// Python kaiju accepts any hashable key in its headers dict (`{7: "v"}` runs), so a
/// listener carries such a header through, and a method can read it with
/// [`Headers::get_other`], instead of refusing the entry.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderName {
    /// A string name (matched in any letter case).
    Str(String),
    /// Any other msgpack value (an integer, bytes, ...), matched exactly.
    Other(kaiju_core::Value),
}

impl HeaderName {
    /// The name, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            Self::Other(_) => None,
        }
    }

    fn is(&self, name: &str) -> bool {
        matches!(self, Self::Str(s) if s.eq_ignore_ascii_case(name))
    }

    fn same(&self, other: &Self) -> bool {
        match other {
            Self::Str(s) => self.is(s),
            Self::Other(v) => matches!(self, Self::Other(w) if w == v),
        }
    }
}

impl From<&str> for HeaderName {
    fn from(v: &str) -> Self {
        Self::Str(v.to_owned())
    }
}

impl From<String> for HeaderName {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}

impl From<&String> for HeaderName {
    fn from(v: &String) -> Self {
        Self::Str(v.clone())
    }
}

impl From<&HeaderName> for HeaderName {
    fn from(v: &HeaderName) -> Self {
        v.clone()
    }
}

/// A [`Value`](kaiju_core::Value) as a name: a string is a [`HeaderName::Str`].
impl From<kaiju_core::Value> for HeaderName {
    fn from(v: kaiju_core::Value) -> Self {
        match v {
            kaiju_core::Value::Str(s) => Self::Str(s),
            other => Self::Other(other),
        }
    }
}

/// A string as it is; any other name as its msgpack value's debug form (`Int(7)`).
impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => f.write_str(s),
            Self::Other(v) => write!(f, "{v:?}"),
        }
    }
}

impl Serialize for HeaderName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Str(s) => serializer.serialize_str(s),
            Self::Other(v) => v.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        kaiju_core::Value::deserialize(deserializer).map(Self::from)
    }
}

/// Message headers, in insertion order (msgpack maps keep the order they are written in, and
/// kaiju writes `Correlation-Id` first).
///
/// Names are strings, except where a peer wrote another msgpack value as a name
/// ([`HeaderName::Other`]): such a header is carried through unchanged, and read with
/// [`get_other`](Self::get_other).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Headers(Vec<(HeaderName, HeaderValue)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a header, replacing an earlier value of the same name (a string name in any letter
    /// case) in place.
    pub fn insert(
        &mut self,
        name: impl Into<HeaderName>,
        value: impl Into<HeaderValue>,
    ) -> &mut Self {
        let (name, value) = (name.into(), value.into());
        let at = match &name {
            HeaderName::Str(s) => self.position(s),
            HeaderName::Other(_) => self.0.iter().rposition(|(n, _)| n.same(&name)),
        };
        match at {
            Some(at) => self.0[at].1 = value,
            None => self.0.push((name, value)),
        }
        self
    }

    /// Where the header `name` is: as Python kaiju reads a headers dict, the last header of
    /// exactly that name (a repeated name's last value wins, as in the dict msgpack decodes
    /// to); without one, the last whose name matches in another letter case.
    fn position(&self, name: &str) -> Option<usize> {
        self.0
            .iter()
            .rposition(|(n, _)| n.as_str() == Some(name))
            .or_else(|| self.0.iter().rposition(|(n, _)| n.is(name)))
    }

    /// A header's value. Names match in any letter case (`correlation-id` finds
    /// `Correlation-Id`), as HTTP headers do; an exact match wins over one in another case,
    /// and of a name written twice, the last value wins (what Python kaiju reads).
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.position(name).map(|at| &self.0[at].1)
    }

    /// The value of a header whose name is not a string (a peer's `{7: "v"}`), matched
    /// exactly.
    ///
    /// ```
    /// use kaiju_core::Value;
    /// use kaiju_streams::{HeaderName, HeaderValue, Headers};
    ///
    /// let mut headers = Headers::new();
    /// headers.insert(HeaderName::Other(Value::Int(7)), "v");
    /// assert_eq!(headers.get_other(&Value::Int(7)), Some(&HeaderValue::from("v")));
    /// assert_eq!(headers.get("7"), None);
    /// ```
    pub fn get_other(&self, name: &kaiju_core::Value) -> Option<&HeaderValue> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| matches!(n, HeaderName::Other(v) if v == name))
            .map(|(_, v)| v)
    }

    /// Removes the header [`get`](Self::get) reads and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<HeaderValue> {
        let at = self.position(name)?;
        Some(self.0.remove(at).1)
    }

    /// The number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The correlation id, if it is a string.
    pub fn correlation_id(&self) -> Option<&str> {
        match self.get(CORRELATION_ID) {
            Some(HeaderValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// Every header, in order, whatever its name.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Puts a header first unless one of that name exists (kaiju writes `Correlation-Id` first).
    pub(crate) fn ensure_first(&mut self, name: &str, value: impl FnOnce() -> HeaderValue) {
        if self.get(name).is_none() {
            self.0.insert(0, (HeaderName::from(name), value()));
        }
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of headers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Headers, A::Error> {
                // The size hint is a length read from the input: never allocate by it beyond a
                // few entries (a 5-byte `df ff ff ff ff` declares four billion).
                let mut headers = Vec::with_capacity(access.size_hint().unwrap_or(1).min(16));
                while let Some(entry) = access.next_entry::<HeaderName, HeaderValue>()? {
                    headers.push(entry);
                }
                Ok(Headers(headers))
            }
        }
        deserializer.deserialize_map(HeadersVisitor)
    }
}

/// 10 lowercase hex characters, as kaiju's `get_short_uid()`.
///
/// A per-thread xorshift generator seeded from a random UUID: correlation ids need to be
/// distinct, not secret, and this runs once per written message.
pub fn short_uid() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(uuid::Uuid::new_v4().as_u64_pair().0 | 1);
    }
    let n = STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    });
    format!("{:010x}", n & 0xff_ffff_ffff)
}

/// Encodes `[body, headers]` in the wire layout.
pub fn encode<B: Serialize + ?Sized>(
    body: &B,
    headers: &Headers,
) -> Result<Vec<u8>, kaiju_core::CodecError> {
    Msgpack::WIRE.encode(&(body, headers))
}

/// Decodes `[body, headers]`.
///
/// The error's `Display` says, for people, which part is wrong and what it holds: `not a kaiju
/// entry: the `_` field must hold a msgpack array [body, headers]; it holds a string of 5 bytes
/// ("hello")`, or what is wrong with the headers or the body. It names no Rust type.
pub fn decode<B: DeserializeOwned>(payload: &[u8]) -> Result<(B, Headers), kaiju_core::CodecError> {
    Msgpack::WIRE
        .decode(payload)
        .map_err(|e| not_an_envelope::<B>(payload, e))
}

/// Why `payload` is not `[body, headers]` with a body `B`, in words; `error` is the codec's.
/// Only the failure path pays for reading the payload again.
#[cold]
fn not_an_envelope<B: DeserializeOwned>(
    payload: &[u8],
    error: kaiju_core::CodecError,
) -> kaiju_core::CodecError {
    use kaiju_core::{CodecError, Value};
    let type_name = match &error {
        CodecError::Decode { type_name, .. } => type_name,
        _ => "",
    };
    let message = match Msgpack::WIRE.decode::<Value>(payload) {
        Err(e) => {
            format!("not a kaiju entry: the `_` field must hold msgpack [body, headers]; {e}")
        }
        Ok(Value::Array(items)) if items.len() == 2 => {
            let (body, headers) = (&items[0], &items[1]);
            if let Err(e) = Headers::deserialize(headers) {
                format!(
                    "not a kaiju entry: the headers (the second item of [body, headers]) must be a map of names to values; {}; they are {}",
                    kaiju_core::shortened(&e.to_string()),
                    headers.describe()
                )
            } else {
                // The body alone, read again through the codec for its message.
                match Msgpack::WIRE
                    .encode(body)
                    .map(|bytes| Msgpack::WIRE.decode::<B>(&bytes))
                {
                    Ok(Err(e)) => format!("the body (the first item of [body, headers]) is {e}"),
                    _ => error.to_string(),
                }
            }
        }
        Ok(other) => format!(
            "not a kaiju entry: the `_` field must hold a msgpack array [body, headers]; it holds {}",
            other.describe()
        ),
    };
    CodecError::Decode { type_name, message }
}

/// Reads only the headers of an envelope (`[body, headers]`), skipping the body without
/// decoding it: for an entry too large to decode whole. `None` when the payload is not an
/// envelope, or its headers would take more than `max_decoded` bytes decoded.
pub fn headers_only(payload: &[u8], max_decoded: usize) -> Option<Headers> {
    // The envelope in any array form: a peer may write `[body, headers]` as an array 16.
    let (2, rest) = kaiju_core::codec::array_header(payload)? else {
        return None;
    };
    let body = kaiju_core::codec::decoded_size(rest, usize::MAX).ok()?;
    let headers = rest.get(body.encoded..)?;
    kaiju_core::codec::decoded_size(headers, max_decoded).ok()?;
    Msgpack::WIRE.decode(headers).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_without_the_body() {
        let mut headers = Headers::new();
        headers.insert(CORRELATION_ID, "c1").insert("Reply-To", "x");
        let payload = encode(&vec![vec![1_i64; 1000]; 100], &headers).unwrap();
        assert_eq!(headers_only(&payload, 1 << 10), Some(headers.clone()));
        assert_eq!(headers_only(&payload[..payload.len() - 1], 1 << 10), None);
        assert_eq!(headers_only(b"\x91\xc0", 1 << 10), None);
        // The envelope as an array 16, which `decode` accepts too.
        let wide = [&b"\xdc\x00\x02"[..], &payload[1..]].concat();
        assert_eq!(headers_only(&wide, 1 << 10), Some(headers));
    }

    /// Why a payload is not an envelope, in words, for dead-letter reasons: which part is
    /// wrong and what it holds, and no Rust type (the reason named
    /// `(kaiju_core::value::Value, kaiju_streams::envelope::Headers)`).
    #[test]
    fn decode_errors_say_which_part_is_wrong_and_name_no_rust_type() {
        use kaiju_core::Value;
        let reason = |payload: &[u8]| decode::<Value>(payload).unwrap_err().to_string();
        assert_eq!(
            reason(b"hello"),
            "not a kaiju entry: the `_` field must hold msgpack [body, headers]; not msgpack: 4 byte(s) left over after the first value (5 bytes: \"hello\")"
        );
        assert_eq!(
            reason(b"\xa5hello"),
            "not a kaiju entry: the `_` field must hold a msgpack array [body, headers]; it holds a string of 5 bytes (\"hello\")"
        );
        assert_eq!(
            reason(b"\x92\x01\x05"),
            "not a kaiju entry: the headers (the second item of [body, headers]) must be a map of names to values; invalid type: integer `5`, expected a map of headers; they are an integer (5)"
        );
        let body = encode(&("svc.m", "x"), &Headers::new()).unwrap();
        let wrong = decode::<(String, u16)>(&body).unwrap_err().to_string();
        assert_eq!(
            wrong,
            "the body (the first item of [body, headers]) is msgpack of the wrong shape: invalid type: string \"x\", expected an integer from 0 to 65535; it holds an array of 2 items"
        );
        let long = vec![b'a'; 1 << 16];
        for text in [reason(b""), reason(&[0xc1]), reason(&long), wrong] {
            assert!(!text.contains("::"), "{text}");
            assert!(text.len() < 400, "{text}");
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn the_captured_envelope_round_trips() {
        // [["ext.record", {"value": "x"}], {"Correlation-Id": "my-corr-id", "Timeout": 5, "RPC-Retries": 2}]
        let capture = hex(
            "92 92 aa 65 78 74 2e 72 65 63 6f 72 64 81 a5 76 61 6c 75 65 a1 78 83 ae 43 6f 72 72 65 \
             6c 61 74 69 6f 6e 2d 49 64 aa 6d 79 2d 63 6f 72 72 2d 69 64 a7 54 69 6d 65 6f 75 74 05 \
             ab 52 50 43 2d 52 65 74 72 69 65 73 02",
        );
        type Body = (String, std::collections::BTreeMap<String, String>);
        let (body, headers): (Body, Headers) = decode(&capture).unwrap();
        assert_eq!(body.0, "ext.record");
        assert_eq!(headers.correlation_id(), Some("my-corr-id"));
        assert_eq!(headers.get("Timeout"), Some(&HeaderValue::Int(5)));
        assert_eq!(encode(&body, &headers).unwrap(), capture);
    }

    #[test]
    fn header_values_convert_from_every_scalar() {
        assert_eq!(HeaderValue::from(7u8), HeaderValue::Int(7));
        assert_eq!(HeaderValue::from(-7i32), HeaderValue::Int(-7));
        assert_eq!(HeaderValue::from(7usize), HeaderValue::Int(7));
        assert_eq!(
            HeaderValue::from(u64::MAX),
            HeaderValue::Other(kaiju_core::Value::UInt(u64::MAX))
        );
        assert_eq!(HeaderValue::from(0.5f32), HeaderValue::Float(0.5));
        assert_eq!(HeaderValue::from(true), HeaderValue::Bool(true));
        assert_eq!(
            HeaderValue::from(kaiju_core::Value::Str("x".into())),
            HeaderValue::from("x")
        );
        assert_eq!(HeaderValue::from(kaiju_core::Value::Nil), HeaderValue::Nil);
        // Each kind survives the wire.
        let mut headers = Headers::new();
        headers
            .insert("f", 2.5)
            .insert("b", false)
            .insert("big", u64::MAX);
        let bytes = encode(&("m", ()), &headers).unwrap();
        let (_, back): ((String, ()), Headers) = decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.get("f"), Some(&HeaderValue::Float(2.5)));
        assert_eq!(back.get("b"), Some(&HeaderValue::Bool(false)));
        assert_eq!(
            back.get("big"),
            Some(&HeaderValue::Other(kaiju_core::Value::UInt(u64::MAX))),
            "an integer above i64::MAX is read back, not a malformed entry"
        );
    }

    #[test]
    fn header_values_of_every_kind_decode() {
        let mut headers = Headers::new();
        headers
            .insert("s", "x")
            .insert("i", -5_i64)
            .insert("f", HeaderValue::Float(1.5))
            .insert("b", HeaderValue::Bool(true))
            .insert("n", HeaderValue::Nil);
        let bytes = Msgpack::WIRE.encode(&headers).unwrap();
        let back: Headers = Msgpack::WIRE.decode(&bytes).unwrap();
        assert_eq!(back, headers);
        // A nested value (a peer's custom header) is kept as it is, not an unreadable entry.
        let nested = Msgpack::WIRE
            .encode(&std::collections::BTreeMap::from([("k", vec![1_i64])]))
            .unwrap();
        let back: Headers = Msgpack::WIRE.decode(&nested).unwrap();
        assert_eq!(
            back.get("k"),
            Some(&HeaderValue::Other(kaiju_core::Value::Array(vec![
                kaiju_core::Value::Int(1)
            ])))
        );
        assert_eq!(Msgpack::WIRE.encode(&back).unwrap(), nested);
    }

    /// Python kaiju runs a call whose headers have a non-string name (`{7: "v"}`); such a
    /// header is read, carried through byte for byte, and readable by its name.
    #[test]
    fn non_string_header_names_are_carried_through() {
        use kaiju_core::Value;
        // {"Correlation-Id": "x", 7: "v", b"k": 1, "X-Big": 2**63}, as msgspec writes it.
        let wire = hex(
            "84 ae 43 6f 72 72 65 6c 61 74 69 6f 6e 2d 49 64 a1 78 07 a1 76 c4 01 6b 01 \
             a5 58 2d 42 69 67 cf 80 00 00 00 00 00 00 00",
        );
        let headers: Headers = Msgpack::WIRE.decode(&wire).unwrap();
        assert_eq!(headers.len(), 4);
        assert_eq!(headers.correlation_id(), Some("x"));
        assert_eq!(
            headers.get_other(&Value::Int(7)),
            Some(&HeaderValue::from("v"))
        );
        assert_eq!(
            headers.get_other(&Value::Bin(b"k".to_vec())),
            Some(&HeaderValue::Int(1))
        );
        assert_eq!(
            headers.get("7"),
            None,
            "an integer name is not the string \"7\""
        );
        assert_eq!(headers.get("x-big"), Some(&HeaderValue::from(1_u64 << 63)));
        assert_eq!(Msgpack::WIRE.encode(&headers).unwrap(), wire);
        let names: Vec<String> = headers.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["Correlation-Id", "Int(7)", "Bin([107])", "X-Big"]);
        // Replacing matches such a name exactly.
        let mut headers = headers;
        headers.insert(HeaderName::Other(Value::Int(7)), "w");
        headers.insert(HeaderName::Other(Value::Int(8)), "new");
        assert_eq!(headers.len(), 5);
        assert_eq!(
            headers.get_other(&Value::Int(7)),
            Some(&HeaderValue::from("w"))
        );
    }

    #[test]
    fn header_names_match_in_any_case() {
        let mut headers = Headers::new();
        headers.insert("Correlation-Id", "a");
        assert_eq!(headers.correlation_id(), Some("a"));
        assert_eq!(headers.get("correlation-id"), Some(&HeaderValue::from("a")));
        headers.insert("CORRELATION-ID", "b");
        assert_eq!(headers.len(), 1);
        assert_eq!(
            headers.remove("correlation-Id"),
            Some(HeaderValue::from("b"))
        );
        assert!(headers.is_empty());
    }

    /// A headers dict in Python: names match exactly and a repeated name's last value wins.
    /// kaiju-rs reads the same, and falls back to a match in another letter case.
    #[test]
    fn a_repeated_or_differently_cased_name_reads_as_python_reads_it() {
        // {"Deadline": 1, "Deadline": 2} and {"deadline": 1, "Deadline": 2}.
        let twice = hex("82 a8 44 65 61 64 6c 69 6e 65 01 a8 44 65 61 64 6c 69 6e 65 02");
        let cased = hex("82 a8 64 65 61 64 6c 69 6e 65 01 a8 44 65 61 64 6c 69 6e 65 02");
        for wire in [twice, cased] {
            let mut headers: Headers = Msgpack::WIRE.decode(&wire).unwrap();
            assert_eq!(headers.len(), 2);
            assert_eq!(headers.get("Deadline"), Some(&HeaderValue::Int(2)));
            assert_eq!(Msgpack::WIRE.encode(&headers).unwrap(), wire);
            headers.insert("Deadline", 3);
            assert_eq!(headers.get("Deadline"), Some(&HeaderValue::Int(3)));
            assert_eq!(headers.len(), 2);
        }
        let cased: Headers = Msgpack::WIRE
            .decode(&hex("81 a8 64 65 61 64 6c 69 6e 65 01"))
            .unwrap();
        assert_eq!(
            cased.get("Deadline"),
            Some(&HeaderValue::Int(1)),
            "another case still matches"
        );
    }

    /// The 10-byte entry of the review: a map header declaring 2^32-1 entries. It must be a
    /// clean error, not an allocation of hundreds of GB.
    #[test]
    fn a_declared_length_never_drives_an_allocation() {
        let hostile: [&[u8]; 4] = [
            b"\x92\xc0\xdf\xff\xff\xff\xff",
            b"\x92\xdd\xff\xff\xff\xff\x80",
            b"\x92\xa1x\xdf\xff\xff\xff\xff\xa1k",
            b"\x92\xc6\xff\xff\xff\xff\x80",
        ];
        type Body = (String, Option<std::collections::BTreeMap<String, i64>>);
        for bytes in hostile {
            assert!(decode::<Body>(bytes).is_err());
            assert!(decode::<Vec<String>>(bytes).is_err());
            assert!(decode::<serde::de::IgnoredAny>(bytes).is_err());
        }
    }

    /// Hostile nesting is rejected before it can exhaust the stack.
    #[test]
    fn deep_nesting_is_rejected() {
        let mut bytes = vec![0x92];
        bytes.extend(std::iter::repeat_n(0x91, 100_000));
        bytes.push(0xc0);
        bytes.push(0x80);
        assert!(decode::<serde::de::IgnoredAny>(&bytes).is_err());
    }

    /// Arbitrary bytes, and mutations of valid envelopes, never panic, abort or hang the
    /// decoder. `cargo xtask fuzz` runs it with more cases.
    #[test]
    fn fuzz_envelope_decoder() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        type Body = (String, Option<std::collections::BTreeMap<String, i64>>);
        let valid = encode(
            &(
                "ext.record",
                std::collections::BTreeMap::from([("value", 42)]),
            ),
            Headers::new().insert(CORRELATION_ID, "67522f3c63"),
        )
        .unwrap();
        // Either random bytes, or a valid envelope with bytes overwritten, inserted or cut.
        let random = proptest::collection::vec(any::<u8>(), 0..256);
        let mutated = (
            proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            any::<usize>(),
        )
            .prop_map(move |(edits, cut)| {
                let mut bytes = kaiju_testkit::mutate(&valid, &edits);
                bytes.truncate(cut % (bytes.len() + 1).max(1) + bytes.len() / 2);
                bytes
            });
        let cases = kaiju_testkit::fuzz_cases();
        let mut runner = TestRunner::new(Config::with_cases(cases));
        runner
            .run(&prop_oneof![random, mutated], |bytes| {
                let _ = decode::<Body>(&bytes);
                let _ = decode::<serde::de::IgnoredAny>(&bytes);
                let _ = decode::<(Vec<Body>, Headers)>(&bytes);
                Ok(())
            })
            .unwrap();
        eprintln!("fuzz_envelope_decoder: {cases} inputs decoded without a panic, abort or hang");
    }

    #[test]
    fn short_uids_look_like_kaijus() {
        let id = short_uid();
        assert_eq!(id.len(), 10);
        assert_ne!(id, short_uid());
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
