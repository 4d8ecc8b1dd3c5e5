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

use crate::value::Value;

mod size;

pub use size::{DecodedSize, SizeError, array_header, decoded_size};

/// Encoding or decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("cannot encode a `{type_name}` as msgpack: {message}")]
    Encode {
        /// The Rust type that was encoded.
        type_name: &'static str,
        /// What the encoder said.
        message: String,
    },
    /// The bytes are not a msgpack encoding of the expected type.
    #[error("cannot decode msgpack as `{type_name}`: {message}")]
    Decode {
        /// The Rust type that was expected.
        type_name: &'static str,
        /// What the decoder said.
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
        match self.decode_exact(bytes) {
            Ok(value) => Ok(value),
            // The exact reading failed: read the bytes as a plain value, and that value the
            // lenient way msgspec does. Only values that fail the fast path pay for this.
            Err(exact) => self
                .decode_exact::<Value>(bytes)
                .ok()
                .and_then(|value| T::deserialize(&value).ok())
                .ok_or(exact),
        }
    }
}

impl Msgpack {
    /// Decodes with serde's reading of the layout, no leniency.
    fn decode_exact<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let type_name = std::any::type_name::<T>();
        let fail = |message: String| CodecError::Decode { type_name, message };
        let mut rest = bytes;
        let mut deserializer = rmp_serde::Deserializer::new(&mut rest);
        deserializer.set_max_depth(MAX_DEPTH);
        let value = match self.layout {
            Layout::Cache => T::deserialize(&mut deserializer),
            Layout::Wire => T::deserialize(&mut deserializer.with_human_readable()),
        }
        .map_err(|e| fail(e.to_string()))?;
        if !rest.is_empty() {
            return Err(fail(format!(
                "{} trailing byte(s) after the value",
                rest.len()
            )));
        }
        Ok(value)
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
