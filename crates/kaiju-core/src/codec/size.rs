//! What msgpack bytes cost once decoded, found without decoding them.
//!
//! A msgpack value can cost far more memory decoded than encoded: a one-byte `0x91` (an array
//! of one item) becomes a [`Value`](crate::Value) of 32 bytes and a heap block of four slots,
//! 144 bytes in all. [`decoded_size`] walks the bytes once, without allocating, and adds up what
//! the decoder would allocate, so a caller can refuse an input before a single value is built.

use std::mem::size_of;

use crate::value::Value;

/// What one heap block costs beyond its contents (malloc's header and rounding, about).
const BLOCK_OVERHEAD: usize = 16;

/// One msgpack value measured by [`decoded_size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodedSize {
    /// How many bytes of the input the value spans (its header to its last item).
    pub encoded: usize,
    /// About how many bytes of memory the value takes as a [`Value`] (its slots, the heap
    /// blocks of its arrays, maps, strings and bytes).
    pub decoded: usize,
}

/// Why [`decoded_size`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// Decoded, the value would take more than the limit.
    #[error("the value would take more than {limit} bytes decoded")]
    OverLimit {
        /// The limit, bytes.
        limit: usize,
    },
    /// The bytes are not one msgpack value: cut short, or an array or map declares more items
    /// than the input could hold, or a reserved byte (`0xc1`).
    #[error("not a msgpack value (cut short, or a length beyond the input)")]
    Malformed,
}

/// The heap a `Vec` of `n` items of `item` bytes reserves when it is filled by `push`, as the
/// decoder fills arrays and maps (no block for none; four slots at least, then doubling).
fn vec_block(n: usize, item: usize) -> usize {
    if n == 0 {
        return 0;
    }
    n.max(4)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
        .saturating_mul(item)
        .saturating_add(BLOCK_OVERHEAD)
}

/// A string's or bytes' heap block (exactly its length), none when empty.
fn bytes_block(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n.saturating_add(BLOCK_OVERHEAD)
    }
}

/// Measures the first msgpack value in `bytes` (bytes after it are not read): how far it spans
/// and about how much memory it takes decoded as a [`Value`]. Stops with
/// [`SizeError::OverLimit`] as soon as the decoded size passes `limit`, so its time is bounded
/// by the input's length and it allocates nothing.
///
/// ```
/// use kaiju_core::codec::{SizeError, decoded_size};
///
/// // 10,000 one-item arrays in a row, each inside the last: 10 KB that would take 1.4 MB.
/// let nested = [vec![0x91; 10_000], vec![0xc0]].concat();
/// assert_eq!(decoded_size(&nested, 1 << 20), Err(SizeError::OverLimit { limit: 1 << 20 }));
/// assert_eq!(decoded_size(b"\xa3abc", 1 << 20)?.encoded, 4);
/// # Ok::<(), SizeError>(())
/// ```
pub fn decoded_size(bytes: &[u8], limit: usize) -> Result<DecodedSize, SizeError> {
    let slot = size_of::<Value>();
    let mut at = 0_usize;
    // Values still to read: the one asked for, and the items of the arrays and maps begun.
    let mut pending: usize = 1;
    let mut decoded: usize = slot;
    // `n` more bytes of input, or malformed.
    let take = |at: &mut usize, n: usize| -> Result<usize, SizeError> {
        let start = *at;
        let end = start.checked_add(n).ok_or(SizeError::Malformed)?;
        if end > bytes.len() {
            return Err(SizeError::Malformed);
        }
        *at = end;
        Ok(start)
    };
    // A big-endian unsigned integer of `n` bytes.
    let read_len = |at: &mut usize, n: usize| -> Result<usize, SizeError> {
        let start = take(at, n)?;
        let mut len = 0_usize;
        for &b in bytes.get(start..start + n).unwrap_or_default() {
            len = len.checked_shl(8).ok_or(SizeError::Malformed)? | usize::from(b);
        }
        Ok(len)
    };
    while pending > 0 {
        pending -= 1;
        let marker = *bytes.get(at).ok_or(SizeError::Malformed)?;
        at += 1;
        // (items of an array or map to come, bytes of data to skip, heap of this value)
        let (items, heap) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0xcc | 0xd0 => (0, take(&mut at, 1).map(|_| 0)?),
            0xcd | 0xd1 => (0, take(&mut at, 2).map(|_| 0)?),
            0xca | 0xce | 0xd2 => (0, take(&mut at, 4).map(|_| 0)?),
            0xcb | 0xcf | 0xd3 => (0, take(&mut at, 8).map(|_| 0)?),
            // Strings and bytes.
            0xa0..=0xbf => {
                let n = usize::from(marker & 0x1f);
                take(&mut at, n)?;
                (0, bytes_block(n))
            }
            0xd9 | 0xc4 => {
                let n = read_len(&mut at, 1)?;
                take(&mut at, n)?;
                (0, bytes_block(n))
            }
            0xda | 0xc5 => {
                let n = read_len(&mut at, 2)?;
                take(&mut at, n)?;
                (0, bytes_block(n))
            }
            0xdb | 0xc6 => {
                let n = read_len(&mut at, 4)?;
                take(&mut at, n)?;
                (0, bytes_block(n))
            }
            // Extensions: fixed sizes, then with a length; data, plus the tag.
            0xd4..=0xd8 => {
                let n = 1 << (marker - 0xd4);
                take(&mut at, 1 + n)?;
                (0, bytes_block(n))
            }
            0xc7..=0xc9 => {
                let width = 1 << (marker - 0xc7);
                let n = read_len(&mut at, width)?;
                take(&mut at, 1)?;
                take(&mut at, n)?;
                (0, bytes_block(n))
            }
            // Arrays and maps: a slot per item (two per map entry), filled by `push`.
            0x90..=0x9f => array(usize::from(marker & 0x0f), slot),
            0xdc => array(read_len(&mut at, 2)?, slot),
            0xdd => array(read_len(&mut at, 4)?, slot),
            0x80..=0x8f => map(usize::from(marker & 0x0f), slot),
            0xde => map(read_len(&mut at, 2)?, slot),
            0xdf => map(read_len(&mut at, 4)?, slot),
            0xc1 => return Err(SizeError::Malformed),
        };
        if items > 0 {
            // Each item takes at least a byte: a length beyond the input is a lie, and would
            // otherwise be charged for memory the decoder never allocates.
            if items > bytes.len() - at {
                return Err(SizeError::Malformed);
            }
            pending = pending.saturating_add(items);
            decoded = decoded.saturating_add(items.saturating_mul(slot));
        }
        decoded = decoded.saturating_add(heap);
        if decoded > limit {
            return Err(SizeError::OverLimit { limit });
        }
    }
    Ok(DecodedSize {
        encoded: at,
        decoded,
    })
}

/// The header of the msgpack array `bytes` begins with, in any of its three forms (fixarray,
/// array 16, array 32): its length and the bytes after the header. `None` when `bytes` does not
/// begin with an array header. Nothing is decoded or allocated: for reading how long an array
/// is (an envelope, a batch) before deciding to decode it.
///
/// ```
/// use kaiju_core::codec::array_header;
///
/// assert_eq!(array_header(b"\x92\xc0\xc0"), Some((2, &b"\xc0\xc0"[..])));
/// assert_eq!(array_header(b"\xdc\x00\x02\xc0\xc0"), Some((2, &b"\xc0\xc0"[..])));
/// assert_eq!(array_header(b"\xa1x"), None);
/// ```
pub fn array_header(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (&marker, rest) = bytes.split_first()?;
    match marker {
        0x90..=0x9f => Some((usize::from(marker & 0x0f), rest)),
        0xdc => {
            let (n, items) = rest.split_first_chunk::<2>()?;
            Some((usize::from(u16::from_be_bytes(*n)), items))
        }
        0xdd => {
            let (n, items) = rest.split_first_chunk::<4>()?;
            Some((usize::try_from(u32::from_be_bytes(*n)).ok()?, items))
        }
        _ => None,
    }
}

/// An array of `n` items: `n` values to come, and its block of `n` slots.
fn array(n: usize, slot: usize) -> (usize, usize) {
    (n, vec_block(n, slot).saturating_sub(n.saturating_mul(slot)))
}

/// A map of `n` entries: `2n` values to come, and its block of `n` pairs of slots.
fn map(n: usize, slot: usize) -> (usize, usize) {
    let items = n.saturating_mul(2);
    (
        items,
        vec_block(n, 2 * slot).saturating_sub(items.saturating_mul(slot)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, Msgpack};

    const BIG: usize = usize::MAX;

    fn size(bytes: &[u8]) -> DecodedSize {
        decoded_size(bytes, BIG).unwrap_or_else(|e| panic!("{e}: {bytes:x?}"))
    }

    #[test]
    fn every_kind_of_value_is_spanned_exactly() {
        let value = Value::Array(vec![
            Value::Nil,
            Value::Bool(true),
            Value::Int(-1),
            Value::Int(300),
            Value::Int(-70_000),
            Value::UInt(u64::MAX),
            Value::Float(1.5),
            Value::Str("x".repeat(40)),
            Value::Str("y".repeat(300)),
            Value::Str("z".repeat(70_000)),
            Value::Bin(vec![1; 3]),
            Value::Ext(5, vec![1; 4]),
            Value::Ext(5, vec![1; 3]),
            Value::Map(vec![(Value::Str("k".into()), Value::Array(vec![]))]),
            Value::Array((0..20).map(Value::Int).collect()),
            Value::Map((0..20).map(|i| (Value::Int(i), Value::Nil)).collect()),
        ]);
        let bytes = Msgpack::WIRE.encode(&value).unwrap();
        assert_eq!(size(&bytes).encoded, bytes.len());
        let mut trailing = bytes.clone();
        trailing.push(0xc0);
        assert_eq!(
            size(&trailing).encoded,
            bytes.len(),
            "bytes after the value are not read"
        );
    }

    #[test]
    fn cut_or_lying_inputs_are_malformed() {
        let bytes = Msgpack::WIRE
            .encode(&("a.b", vec!["x".repeat(100)]))
            .unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(
                decoded_size(&bytes[..cut], BIG),
                Err(SizeError::Malformed),
                "cut at {cut}"
            );
        }
        // Declared lengths far beyond the input.
        for lying in [
            &b"\xdd\xff\xff\xff\xff"[..],
            b"\xdf\xff\xff\xff\xff\xc0",
            b"\xdb\xff\xff\xff\xff",
            b"\xc1",
        ] {
            assert_eq!(decoded_size(lying, BIG), Err(SizeError::Malformed));
        }
    }

    /// The shapes that amplify most are charged what `Value`'s decoder allocates for them
    /// (`Vec::new` then `push`: four slots for the first item).
    #[test]
    fn the_amplifying_shapes_cost_what_the_decoder_allocates() {
        // A one-item array: its slot, and a block of four slots.
        assert_eq!(size(b"\x91\xc0").decoded, 32 + 4 * 32 + BLOCK_OVERHEAD);
        // 1,000 nested one-item arrays: 144 bytes per input byte.
        let nested = [vec![0x91; 1000], vec![0xc0]].concat();
        assert_eq!(size(&nested).decoded, 32 + 1000 * (4 * 32 + BLOCK_OVERHEAD));
        // A flat array of 1,000 nils: 1,024 slots.
        let flat = [vec![0xdc, 0x03, 0xe8], vec![0xc0; 1000]].concat();
        assert_eq!(size(&flat).decoded, 32 + 1024 * 32 + BLOCK_OVERHEAD);
    }

    /// Arbitrary bytes never panic the walk, and whatever the decoder reads as one value the
    /// walk spans exactly and never calls malformed. `cargo xtask fuzz` runs it with more cases.
    #[test]
    fn fuzz_decoded_size() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let markers = prop_oneof![
            any::<u8>(),
            Just(0x91_u8),
            Just(0x81),
            Just(0xdc),
            Just(0xdd),
            Just(0xdf),
            Just(0xc7),
            Just(0xd9),
            Just(0x00),
        ];
        let strategy = proptest::collection::vec(markers, 0..128);
        let cases = kaiju_testkit::fuzz_cases();
        let mut runner = TestRunner::new(Config::with_cases(cases));
        runner
            .run(&strategy, |bytes| {
                let measured = decoded_size(&bytes, BIG);
                let _ = decoded_size(&bytes, 100);
                let mut rest = bytes.as_slice();
                let mut decoder = rmp_serde::Deserializer::new(&mut rest);
                decoder.set_max_depth(crate::codec::MAX_DEPTH);
                if serde::Deserialize::deserialize(&mut decoder).is_ok_and(|_: Value| true) {
                    let read = bytes.len() - rest.len();
                    prop_assert_eq!(measured.map(|m| m.encoded), Ok(read));
                }
                Ok(())
            })
            .unwrap();
        eprintln!("fuzz_decoded_size: {cases} inputs measured without a panic");
    }

    #[test]
    fn the_limit_stops_the_walk() {
        let nested = [vec![0x91; 100_000], vec![0xc0]].concat();
        assert_eq!(
            decoded_size(&nested, 1 << 20),
            Err(SizeError::OverLimit { limit: 1 << 20 })
        );
        assert!(decoded_size(&nested, 16 << 20).is_ok());
    }
}
