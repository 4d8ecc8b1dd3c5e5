//! Redis Cluster key slots (CRC16/XMODEM modulo 16384, with hash tags).

/// Number of slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// The cluster slot of a key, as Redis computes it: if the key contains `{...}` with at least one
/// byte between the first `{` and the next `}`, only that part is hashed.
///
/// ```
/// assert_eq!(kaiju_core::key_slot(b"foo"), 12182);
/// assert_eq!(kaiju_core::key_slot(b"{user1000}.following"), kaiju_core::key_slot(b"user1000"));
/// ```
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_part(key)) % SLOT_COUNT
}

/// Whether `key` has a hash tag Redis honours (`{`, then at least one byte, then `}`).
pub(crate) fn has_hash_tag(key: &[u8]) -> bool {
    hash_part(key).len() != key.len()
}

fn hash_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|b| *b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|b| *b == b'}')
            && close > 0
        {
            return &rest[..close];
        }
    }
    key
}

/// CRC16/XMODEM (polynomial 0x1021, init 0), bitwise: keys are short, a table is not worth it.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in data {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"fo"), 15557);
        assert_eq!(key_slot(b"{t}:1"), key_slot(b"{t}:2"));
        // An empty tag `{}` does not count: the whole key is hashed.
        assert_eq!(key_slot(b"{}x"), crc16(b"{}x") % SLOT_COUNT);
        // Only the first `{` counts.
        assert_eq!(key_slot(b"a{b}{c}"), key_slot(b"b"));
    }
}
