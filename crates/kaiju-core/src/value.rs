//! [`Value`]: any msgpack value, for reading what you have no type for.
//!
//! Python's untyped `cache.get(key)` returns whatever msgpack holds (dicts, lists, ints, bytes:
//! a UUID stored by `RedisCache` comes back as 16 bytes); `Value` is its Rust counterpart, and
//! what the codec falls back on to read values the way msgspec's typed decoder does (see
//! [`Msgpack`](crate::Msgpack)).

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

/// Any msgpack value.
///
/// ```
/// use kaiju_core::{Codec, Msgpack, Value};
///
/// // What Python's RedisCache stores for {"a": 1, "b": [1, 2]}.
/// let stored = b"\x82\xa1a\x01\xa1b\x92\x01\x02";
/// let value: Value = Msgpack::CACHE.decode(stored)?;
/// assert_eq!(value.get("a"), Some(&Value::Int(1)));
/// assert_eq!(Msgpack::CACHE.encode(&value)?, stored);
/// # Ok::<(), kaiju_core::CodecError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `nil` (Python `None`).
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// Bytes (a `bin`, or a `str` that is not UTF-8).
    Bin(Vec<u8>),
    /// An array (Python list or tuple, or a struct stored as an array).
    Array(Vec<Value>),
    /// A map, in stored order.
    Map(Vec<(Value, Value)>),
    /// A msgpack extension: type tag and data.
    Ext(i8, Vec<u8>),
}

impl Value {
    /// The value under a string key, if this is a map that has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Self::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            Self::UInt(n) => i64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// Whether this is `nil`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Self::Nil)
    }

    /// What the value is, in words, for error messages: `nil`, `an integer (104)`,
    /// `a string of 5 bytes ("hello")`, `an array of 3 items`, `a map of 2 entries`. Strings and
    /// bytes show their first 32 characters at most, escaped.
    pub fn describe(&self) -> String {
        let text = |bytes: &[u8]| {
            let shown = crate::shortened::describe_bytes(bytes);
            // `5 bytes: "hello"` -> `5 bytes ("hello")`
            match shown.split_once(": ") {
                Some((length, quoted)) => format!("{length} ({quoted})"),
                None => shown,
            }
        };
        match self {
            Self::Nil => "nil".to_owned(),
            Self::Bool(b) => format!("a boolean ({b})"),
            Self::Int(n) => format!("an integer ({n})"),
            Self::UInt(n) => format!("an integer ({n})"),
            Self::Float(f) => format!("a float ({f})"),
            Self::Str(s) => format!("a string of {}", text(s.as_bytes())),
            Self::Bin(b) => format!("binary data of {}", text(b)),
            Self::Array(items) if items.len() == 1 => "an array of 1 item".to_owned(),
            Self::Array(items) => format!("an array of {} items", items.len()),
            Self::Map(entries) if entries.len() == 1 => "a map of 1 entry".to_owned(),
            Self::Map(entries) => format!("a map of {} entries", entries.len()),
            Self::Ext(tag, data) => {
                format!("a msgpack extension (type {tag}) of {} bytes", data.len())
            }
        }
    }

    fn kind(&self) -> de::Unexpected<'_> {
        match self {
            Self::Nil => de::Unexpected::Unit,
            Self::Bool(b) => de::Unexpected::Bool(*b),
            Self::Int(n) => de::Unexpected::Signed(*n),
            Self::UInt(n) => de::Unexpected::Unsigned(*n),
            Self::Float(f) => de::Unexpected::Float(*f),
            Self::Str(s) => de::Unexpected::Str(s),
            Self::Bin(b) => de::Unexpected::Bytes(b),
            Self::Array(_) => de::Unexpected::Seq,
            Self::Map(_) => de::Unexpected::Map,
            Self::Ext(..) => de::Unexpected::Other("msgpack extension"),
        }
    }
}

/// Writes bytes as msgpack `bin`.
struct Bin<'a>(&'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Nil => serializer.serialize_unit(),
            Self::Bool(b) => serializer.serialize_bool(*b),
            Self::Int(n) => serializer.serialize_i64(*n),
            Self::UInt(n) => serializer.serialize_u64(*n),
            Self::Float(f) => serializer.serialize_f64(*f),
            Self::Str(s) => serializer.serialize_str(s),
            Self::Bin(b) => serializer.serialize_bytes(b),
            Self::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            // rmp-serde's convention for extensions.
            Self::Ext(tag, data) => {
                serializer.serialize_newtype_struct("_ExtStruct", &(tag, Bin(data)))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any msgpack value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::UInt(v), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bin(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bin(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Grows with what is actually there: never sized by a length read from the input.
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Value::Map(entries))
    }
    /// rmp-serde hands extensions over as a newtype of `(tag, data)`.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        struct Ext;
        impl<'de> Visitor<'de> for Ext {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a msgpack extension")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let tag: i8 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let data: Value = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                match data {
                    Value::Bin(data) => Ok(Value::Ext(tag, data)),
                    other => Err(de::Error::invalid_type(other.kind(), &self)),
                }
            }
        }
        d.deserialize_tuple(2, Ext)
    }
}

/// The error of reading a Rust type out of a [`Value`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

impl<'de> IntoDeserializer<'de, ValueError> for &'de Value {
    type Deserializer = &'de Value;
    fn into_deserializer(self) -> Self {
        self
    }
}

/// Reads a Rust type out of a `Value` the way msgspec's typed decoder reads msgpack: a struct
/// stored as an array (kaiju's cache layout) is matched to the fields in order; extra trailing
/// items are ignored, missing trailing fields take their default (`Option` fields are `None`);
/// bytes fields accept a string (a UUID stored as its 36-char text).
impl<'de> Deserializer<'de> for &'de Value {
    type Error = ValueError;

    /// Binary layouts: UUIDs read as 16 bytes, and (see `deserialize_bytes`) as their text.
    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Nil => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(n) => visitor.visit_i64(*n),
            Value::UInt(n) => visitor.visit_u64(*n),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Bin(b) => visitor.visit_borrowed_bytes(b),
            Value::Array(items) => visitor.visit_seq(Items(items.iter())),
            Value::Map(entries) => visitor.visit_map(Pairs {
                pairs: entries.iter().map(|(k, v)| (k, v)),
                value: None,
            }),
            Value::Ext(..) => Err(de::Error::invalid_type(self.kind(), &visitor)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Nil => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    /// Bytes, or a string: a UUID stored as its text (msgspec's default outside `RedisCache`)
    /// is handed over as its 16 bytes, which is what a `Uuid` field asks for here.
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Str(s) => match uuid::Uuid::try_parse(s) {
                Ok(uuid) => visitor.visit_bytes(uuid.as_bytes()),
                Err(_) => visitor.visit_borrowed_str(s),
            },
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self {
            // Positional: field i is item i; items past the fields are ignored, fields past
            // the items are absent (their defaults apply, or serde reports them missing).
            Value::Array(items) => visitor.visit_map(Pairs {
                pairs: fields
                    .iter()
                    .zip(items)
                    .map(|(field, item)| (de::value::BorrowedStrDeserializer::new(field), item)),
                value: None,
            }),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self {
            Value::Str(_) => visitor.visit_enum(Variant {
                tag: self,
                value: None,
            }),
            Value::Map(entries) if entries.len() == 1 => {
                let (tag, value) = &entries[0];
                visitor.visit_enum(Variant {
                    tag,
                    value: Some(value),
                })
            }
            other => Err(de::Error::invalid_type(other.kind(), &"an enum")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct Items<'de>(std::slice::Iter<'de, Value>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = ValueError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ValueError> {
        self.0.next().map(|v| seed.deserialize(v)).transpose()
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// Key-value pairs read as a map: a stored map's entries, or a positional struct's fields
/// paired with its items.
struct Pairs<'de, I> {
    pairs: I,
    value: Option<&'de Value>,
}

impl<'de, I, K> MapAccess<'de> for Pairs<'de, I>
where
    I: Iterator<Item = (K, &'de Value)>,
    K: Deserializer<'de, Error = ValueError>,
{
    type Error = ValueError;
    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, ValueError> {
        let Some((key, value)) = self.pairs.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(key).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ValueError> {
        let value = self
            .value
            .take()
            .ok_or_else(|| ValueError("a map value was asked for before its key".into()))?;
        seed.deserialize(value)
    }
}

struct Variant<'de> {
    tag: &'de Value,
    value: Option<&'de Value>,
}

impl<'de> EnumAccess<'de> for Variant<'de> {
    type Error = ValueError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), ValueError> {
        let tag = seed.deserialize(self.tag)?;
        Ok((tag, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'de> {
    type Error = ValueError;
    fn unit_variant(self) -> Result<(), ValueError> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, ValueError> {
        seed.deserialize(self.value.unwrap_or(&Value::Nil))
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.value.unwrap_or(&Value::Nil).deserialize_any(visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.value
            .unwrap_or(&Value::Nil)
            .deserialize_struct("", fields, visitor)
    }
}
