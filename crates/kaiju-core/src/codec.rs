//! The msgpack codec, with the two layouts kaiju-redis 2.4 puts on the wire (docs/wire.md §2,
//! §3).
//!
//! | layout | used for | structs | UUIDs | binary |
//! |---|---|---|---|---|
//! | [`Layout::Cache`] | cache values (`RedisCache`) | positional arrays, every field | 16-byte `bin` | `bin` |
//! | [`Layout::Wire`] | stream and pub/sub payloads | maps keyed by field name | 36-char strings | `bin` |
//!
//! Both write the smallest integer encoding, `f64` as `cb` (as msgspec does for Python floats),
//! tuples and sequences as arrays, `None` as `nil`. Binary fields need `serde_bytes` or
//! [`bytes::Bytes`](https://docs.rs/bytes) (with its `serde` feature); a plain `Vec<u8>` is
//! written as an array of integers, which Python reads as a list.
//!
//! Decoding reads what msgspec's typed decoder reads, so a fleet can roll out a schema change
//! in either order: a struct stored as an array may carry extra trailing items (a Python
//! service added a field) or lack trailing fields (this type added one: an `Option` field is
//! `None`, a `#[serde(default)]` field its default), and a UUID field accepts the 36-char
//! string as well as the 16 bytes. Trailing bytes after the value are an error, so a truncated
//! or concatenated value is never half-read. Decoding is also safe on hostile input: no length read
//! from the input sizes an allocation beyond what the input holds, and values nested deeper than
//! [`MAX_DEPTH`] are rejected, so a small input can exhaust neither memory nor the stack.
//!
//! ```
//! use kaiju_core::codec::{Codec, Msgpack};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct User { name: String, blocked: bool }
//!
//! let user = User { name: "bob".into(), blocked: false };
//! // Cache layout: a positional array, as kaiju-redis stores structs.
//! let bytes = Msgpack::CACHE.encode(&user)?;
//! assert_eq!(bytes, b"\x92\xa3bob\xc2");
//! assert_eq!(Msgpack::CACHE.decode::<User>(&bytes)?, user);
//! // Wire layout: a map keyed by field name.
//! assert_eq!(Msgpack::WIRE.encode(&user)?[0], 0x82);
//! # Ok::<(), kaiju_core::codec::CodecError>(())
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::shortened::describe_bytes;
use crate::value::Value;

mod size;

pub use size::{DecodedSize, SizeError, array_header, decoded_size};

/// Encoding or decoding failed.
///
/// Its `Display` is written for the people who read logs and dead letters: it says what is
/// wrong and what the bytes look like (their length and a printable prefix), and names no Rust
/// type (the type is in `type_name`, for programs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("cannot encode the value as msgpack: {message}")]
    Encode {
        /// The Rust type that was encoded.
        type_name: &'static str,
        /// What the encoder said.
        message: String,
    },
    /// The bytes are not a msgpack encoding of the expected type: `not msgpack: ...` when they
    /// are not one msgpack value, `msgpack of the wrong shape: ...` when they are one, of
    /// another shape, `unreadable msgpack: ...` when it nests deeper than [`MAX_DEPTH`].
    #[error("{message}")]
    Decode {
        /// The Rust type that was expected.
        type_name: &'static str,
        /// What is wrong, and what the bytes look like.
        message: String,
    },
}

/// The deepest nesting of arrays and maps a decoder accepts. kaiju values are shallow; the
/// bound keeps a hostile input (`[[[[...]]]]`) from exhausting a task's stack.
pub const MAX_DEPTH: usize = 128;

/// Turns values into bytes and back. Implemented by [`Msgpack`]; apps may plug in their own.
pub trait Codec: Clone + Send + Sync + 'static {
    /// Encode a value.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;

    /// Decode a value; the whole input must be one value.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// How structs and UUIDs are laid out; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Layout {
    /// Cache values: structs as positional arrays, UUIDs as 16-byte `bin`.
    #[default]
    Cache,
    /// Stream and pub/sub payloads: structs as maps, UUIDs as hyphenated strings.
    Wire,
}

/// The msgpack codec (rmp-serde) in one [`Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Msgpack {
    layout: Layout,
}

impl Msgpack {
    /// The layout of cache values.
    pub const CACHE: Self = Self {
        layout: Layout::Cache,
    };
    /// The layout of stream and pub/sub payloads.
    pub const WIRE: Self = Self {
        layout: Layout::Wire,
    };

    /// A codec with the given layout.
    pub const fn new(layout: Layout) -> Self {
        Self { layout }
    }

    /// The layout in use.
    pub const fn layout(&self) -> Layout {
        self.layout
    }

    /// Encode into an existing buffer (appends), to reuse allocations in hot loops.
    pub fn encode_into<T: Serialize + ?Sized>(
        &self,
        buf: &mut Vec<u8>,
        value: &T,
    ) -> Result<(), CodecError> {
        let result = match self.layout {
            Layout::Cache => value.serialize(&mut rmp_serde::Serializer::new(&mut *buf)),
            Layout::Wire => value.serialize(
                &mut rmp_serde::Serializer::new(&mut *buf)
                    .with_struct_map()
                    .with_human_readable(),
            ),
        };
        result.map_err(|e| CodecError::Encode {
            type_name: std::any::type_name::<T>(),
            message: e.to_string(),
        })
    }
}

impl Codec for Msgpack {
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let mut buf = Vec::with_capacity(64);
        self.encode_into(&mut buf, value)?;
        Ok(buf)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        if let Ok(value) = self.read::<T>(bytes) {
            return Ok(value);
        }
        // The exact reading failed: read the bytes as a plain value, and that value the
        // lenient way msgspec does. Only values that fail the fast path pay for this.
        let message = match self.read::<Value>(bytes) {
            Ok(value) => match T::deserialize(&value) {
                Ok(decoded) => return Ok(decoded),
                Err(e) => wrong_shape(&e.to_string(), &value),
            },
            Err(unreadable) => not_msgpack(&unreadable, bytes),
        };
        Err(CodecError::Decode {
            type_name: std::any::type_name::<T>(),
            message,
        })
    }
}

/// Why bytes could not be read.
enum Unreadable {
    /// What the decoder said.
    Decoder(rmp_serde::decode::Error),
    /// One value was read, and this many bytes were left over.
    Trailing(usize),
}

impl Msgpack {
    /// Decodes with serde's reading of the layout, no leniency.
    fn decode_exact<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        self.read(bytes).map_err(|_| CodecError::Decode {
            type_name: std::any::type_name::<T>(),
            message: match self.read::<Value>(bytes) {
                Ok(value) => match T::deserialize(&value) {
                    Err(e) => wrong_shape(&e.to_string(), &value),
                    Ok(_) => "msgpack that reads only the lenient way".to_owned(),
                },
                Err(unreadable) => not_msgpack(&unreadable, bytes),
            },
        })
    }

    /// Reads one `T` that takes every byte.
    fn read<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, Unreadable> {
        let mut rest = bytes;
        let mut deserializer = rmp_serde::Deserializer::new(&mut rest);
        deserializer.set_max_depth(MAX_DEPTH);
        let value = match self.layout {
            Layout::Cache => T::deserialize(&mut deserializer),
            Layout::Wire => T::deserialize(&mut deserializer.with_human_readable()),
        }
        .map_err(Unreadable::Decoder)?;
        if !rest.is_empty() {
            return Err(Unreadable::Trailing(rest.len()));
        }
        Ok(value)
    }
}

/// The message of bytes that are not one msgpack value.
fn not_msgpack(why: &Unreadable, bytes: &[u8]) -> String {
    use rmp_serde::decode::Error;
    let why = match why {
        Unreadable::Trailing(n) => {
            format!("{n} byte(s) left over after the first value")
        }
        Unreadable::Decoder(_) if bytes.is_empty() => "no bytes at all".to_owned(),
        Unreadable::Decoder(Error::InvalidMarkerRead(_) | Error::InvalidDataRead(_)) => {
            "it ends in the middle of a value (cut short?)".to_owned()
        }
        Unreadable::Decoder(Error::TypeMismatch(_)) => {
            "a byte that begins no msgpack value (0xc1, say, which msgpack never uses)".to_owned()
        }
        Unreadable::Decoder(Error::DepthLimitExceeded) => {
            return format!(
                "unreadable msgpack: arrays or maps nested deeper than {MAX_DEPTH} levels ({})",
                describe_bytes(bytes)
            );
        }
        Unreadable::Decoder(Error::Utf8Error(_)) => "a string that is not UTF-8".to_owned(),
        Unreadable::Decoder(Error::OutOfRange) => "a number out of range".to_owned(),
        Unreadable::Decoder(Error::Syntax(m) | Error::Uncategorized(m)) => human_serde(m),
        Unreadable::Decoder(_) => "a value msgpack cannot hold here".to_owned(),
    };
    format!("not msgpack: {why} ({})", describe_bytes(bytes))
}

/// The message of one msgpack value, `value`, that is not of the shape wanted: `why` is what
/// serde said reading it.
fn wrong_shape(why: &str, value: &Value) -> String {
    format!(
        "msgpack of the wrong shape: {}; it holds {}",
        human_serde(why),
        value.describe()
    )
}

/// serde's message in words, and shortened (serde quotes a string value whole: see
/// [`shortened`](crate::shortened)).
fn human_serde(message: &str) -> String {
    crate::shortened::shortened(&in_words(message)).to_string()
}

/// A serde error message with the name of a Rust number type it ends with said in words:
/// `invalid type: string "x", expected u16` becomes `invalid type: string "x", expected an
/// integer from 0 to 65535`. Other messages are returned as they are.
///
/// ```
/// use kaiju_core::codec::in_words;
/// assert_eq!(in_words("invalid value: integer `-1`, expected usize"), "invalid value: integer `-1`, expected an integer of 0 or more");
/// assert_eq!(in_words("missing field `name`"), "missing field `name`");
/// ```
pub fn in_words(message: &str) -> String {
    const WORDS: [(&str, &str); 14] = [
        ("u8", "an integer from 0 to 255"),
        ("u16", "an integer from 0 to 65535"),
        ("u32", "an integer from 0 to 4294967295"),
        ("u64", "an integer of 0 or more"),
        ("u128", "an integer of 0 or more"),
        ("usize", "an integer of 0 or more"),
        ("i8", "an integer from -128 to 127"),
        ("i16", "an integer from -32768 to 32767"),
        ("i32", "an integer from -2147483648 to 2147483647"),
        ("i64", "an integer"),
        ("i128", "an integer"),
        ("isize", "an integer"),
        ("f32", "a number"),
        ("f64", "a number"),
    ];
    let number = |name: &str| {
        WORDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, words)| (*words).to_owned())
    };
    // serde names the Rust types a derive reads: `struct AddParams`, `tuple struct Pair`,
    // `a nonzero u32`. Said by their shape on the wire.
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
    let named = |expected: &str| -> Option<String> {
        if let Some(name) = expected.strip_prefix("tuple struct ") {
            ident(name).then(|| "an array".to_owned())
        } else if let Some(name) = expected.strip_prefix("unit struct ") {
            ident(name).then(|| "nil".to_owned())
        } else if let Some(name) = expected.strip_prefix("struct ") {
            ident(name).then(|| "a map of named fields".to_owned())
        } else if let Some(name) = expected.strip_prefix("enum ") {
            ident(name).then(|| "one of its variants".to_owned())
        } else if let Some(ty) = expected.strip_prefix("a nonzero ") {
            let words = number(ty)?;
            Some(if ty.starts_with('u') {
                words
                    .replace("from 0 to", "from 1 to")
                    .replace("of 0 or more", "of 1 or more")
            } else {
                "an integer other than 0".to_owned()
            })
        } else {
            None
        }
    };
    match message.rsplit_once("expected ") {
        Some((head, expected)) => match number(expected).or_else(|| named(expected)) {
            Some(words) => format!("{head}expected {words}"),
            None => message.to_owned(),
        },
        None => message.to_owned(),
    }
}

/// Any serialisable value as a [`Value`], as it would read back from the wire (structs as maps,
/// UUIDs as strings: the [`WIRE`](Msgpack::WIRE) layout), as `serde_json::to_value` does for
/// JSON. RPC params and results, and header values, are `Value`s.
///
/// ```
/// use kaiju_core::{Value, to_value};
///
/// #[derive(serde::Serialize)]
/// struct Point { x: i64, y: i64 }
///
/// let v = to_value(&Point { x: 1, y: 2 })?;
/// assert_eq!(v.get("y"), Some(&Value::Int(2)));
/// assert_eq!(to_value(&[1u8, 2])?, Value::Array(vec![Value::Int(1), Value::Int(2)]));
/// # Ok::<(), kaiju_core::CodecError>(())
/// ```
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, CodecError> {
    let bytes = Msgpack::WIRE.encode(value)?;
    Msgpack::WIRE.decode_exact(&bytes)
}

#[cfg(test)]
mod tests;
