//! Byte-for-byte checks against the captures of kaiju-redis 2.4 listed in docs/wire.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// Decodes the capture as `T`, re-encodes it and expects the same bytes.
fn round_trip<T>(codec: Msgpack, capture: &str, expected: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = hex(capture);
    let decoded: T = codec.decode(&bytes).unwrap();
    assert_eq!(&decoded, expected);
    assert_eq!(
        codec.encode(&decoded).unwrap(),
        bytes,
        "re-encoding {expected:?}"
    );
}

const U: &str = "01234567-89ab-cdef-0123-456789abcdef";
const U_BIN: &str = "c4 10 01 23 45 67 89 ab cd ef 01 23 45 67 89 ab cd ef";

#[test]
fn cache_scalars_match_msgspec() {
    let c = Msgpack::CACHE;
    round_trip(c, "a5 68 65 6c 6c 6f", &"hello".to_owned());
    round_trip(c, "2a", &42_i64);
    round_trip(c, "cf 00 00 01 00 00 00 00 00", &(1_i64 << 40));
    round_trip(c, "cf 00 00 01 00 00 00 00 00", &(1_u64 << 40));
    round_trip(c, "ff", &-1_i64);
    round_trip(c, "cb 3f f8 00 00 00 00 00 00", &1.5_f64);
    round_trip(c, "c0", &None::<i64>);
    round_trip(c, "c3", &true);
    round_trip(c, "c4 02 00 01", &serde_bytes::ByteBuf::from(vec![0_u8, 1]));
    round_trip(c, U_BIN, &Uuid::parse_str(U).unwrap());
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum IntOrList {
    Int(i64),
    List(Vec<i64>),
}

#[test]
fn cache_containers_match_msgspec() {
    let c = Msgpack::CACHE;
    let dict = BTreeMap::from([
        ("a".to_owned(), IntOrList::Int(1)),
        ("b".to_owned(), IntOrList::List(vec![1, 2])),
    ]);
    round_trip(c, "82 a1 61 01 a1 62 92 01 02", &dict);
    round_trip(
        c,
        "93 01 a3 74 77 6f cb 40 08 00 00 00 00 00 00",
        &(1_i64, "two".to_owned(), 3.0_f64),
    );
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct User {
    id: Uuid,
    name: String,
    #[serde(default)]
    blocked: bool,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Outer {
    user: User,
    tags: Vec<String>,
}

#[test]
fn cache_structs_are_positional_arrays_with_every_field() {
    let c = Msgpack::CACHE;
    let id = Uuid::parse_str(U).unwrap();
    let bob = |blocked| User {
        id,
        name: "bob".into(),
        blocked,
    };
    round_trip(c, &format!("93 {U_BIN} a3 62 6f 62 c2"), &bob(false));
    round_trip(c, &format!("93 {U_BIN} a3 62 6f 62 c3"), &bob(true));
    round_trip(
        c,
        &format!("92 93 {U_BIN} a3 62 6f 62 c2 91 a1 74"),
        &Outer {
            user: bob(false),
            tags: vec!["t".into()],
        },
    );
    // msgspec accepts shorter arrays when the missing trailing fields have defaults; so do we.
    let short: User = c.decode(&hex(&format!("92 {U_BIN} a3 62 6f 62"))).unwrap();
    assert_eq!(short, bob(false));
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Params<T> {
    value: T,
}

/// The headers kaiju's stream client writes, in its order.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Headers {
    #[serde(rename = "Correlation-Id")]
    correlation_id: String,
    #[serde(rename = "Timeout", default, skip_serializing_if = "Option::is_none")]
    timeout: Option<u32>,
    #[serde(
        rename = "RPC-Retries",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    retries: Option<u32>,
}

fn headers(id: &str) -> Headers {
    Headers {
        correlation_id: id.into(),
        timeout: None,
        retries: None,
    }
}

type Single<T> = ((String, Option<Params<T>>), Headers);

#[test]
fn stream_payloads_match_the_captures() {
    let w = Msgpack::WIRE;
    let method = || "ext.record".to_owned();
    round_trip::<Single<i64>>(
        w,
        "92 92 aa 65 78 74 2e 72 65 63 6f 72 64 81 a5 76 61 6c 75 65 2a 81 ae 43 6f 72 72 65 6c \
         61 74 69 6f 6e 2d 49 64 aa 36 37 35 32 32 66 33 63 36 33",
        &(
            (method(), Some(Params { value: 42 })),
            headers("67522f3c63"),
        ),
    );
    round_trip::<Single<String>>(
        w,
        "92 92 aa 65 78 74 2e 72 65 63 6f 72 64 81 a5 76 61 6c 75 65 a1 78 83 ae 43 6f 72 72 65 \
         6c 61 74 69 6f 6e 2d 49 64 aa 6d 79 2d 63 6f 72 72 2d 69 64 a7 54 69 6d 65 6f 75 74 05 \
         ab 52 50 43 2d 52 65 74 72 69 65 73 02",
        &(
            (method(), Some(Params { value: "x".into() })),
            Headers {
                correlation_id: "my-corr-id".into(),
                timeout: Some(5),
                retries: Some(2),
            },
        ),
    );
    round_trip::<Single<i64>>(
        w,
        "92 92 aa 65 78 74 2e 72 65 63 6f 72 64 c0 81 ae 43 6f 72 72 65 6c 61 74 69 6f 6e 2d 49 \
         64 aa 37 63 61 35 39 33 36 65 61 66",
        &((method(), None), headers("7ca5936eaf")),
    );
    round_trip::<(Vec<(String, Option<Params<i64>>)>, Headers)>(
        w,
        "92 92 92 aa 65 78 74 2e 72 65 63 6f 72 64 81 a5 76 61 6c 75 65 01 92 aa 65 78 74 2e 72 \
         65 63 6f 72 64 81 a5 76 61 6c 75 65 02 81 ae 43 6f 72 72 65 6c 61 74 69 6f 6e 2d 49 64 \
         aa 37 34 66 31 36 31 62 37 36 62",
        &(
            vec![
                (method(), Some(Params { value: 1 })),
                (method(), Some(Params { value: 2 })),
            ],
            headers("74f161b76b"),
        ),
    );
}

#[test]
fn wire_layout_writes_uuids_as_strings_and_reads_both_forms() {
    let id = Uuid::parse_str(U).unwrap();
    let bytes = Msgpack::WIRE.encode(&id).unwrap();
    assert_eq!(bytes[0], 0xd9); // str8
    assert_eq!(&bytes[2..], U.as_bytes());
    assert_eq!(Msgpack::WIRE.decode::<Uuid>(&bytes).unwrap(), id);
    assert_eq!(Msgpack::WIRE.decode::<Uuid>(&hex(U_BIN)).unwrap(), id);
}

#[test]
fn decoding_errors_are_typed_and_name_the_type() {
    let err = Msgpack::CACHE
        .decode::<User>(&hex("a5 68 65 6c 6c 6f"))
        .unwrap_err();
    assert!(matches!(err, CodecError::Decode { type_name, .. } if type_name.ends_with("User")));
    let err = Msgpack::CACHE.decode::<i64>(&hex("2a 2a")).unwrap_err();
    assert!(err.to_string().contains("left over"), "{err}");
    let err = Msgpack::CACHE.decode::<String>(&hex("a5 68")).unwrap_err();
    assert!(matches!(err, CodecError::Decode { .. }));
    assert!(Msgpack::CACHE.decode::<i64>(&[]).is_err());
}

/// What a decoding error says is for people: what is wrong, what the bytes look like (their
/// length and a printable, escaped prefix), and no Rust type (`kaiju_core::value::Value` was
/// in the message of a plain string set by redis-cli).
#[test]
fn decoding_errors_say_what_the_bytes_look_like_and_name_no_rust_type() {
    let err = Msgpack::CACHE.decode::<Value>(b"hello").unwrap_err();
    assert_eq!(
        err.to_string(),
        "not msgpack: 4 byte(s) left over after the first value (5 bytes: \"hello\")"
    );
    let long = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let err = Msgpack::WIRE.decode::<Value>(long).unwrap_err().to_string();
    assert!(
        err.ends_with("(47 bytes: \"GET /index.html HTTP/1.1\\r\\nHost: \"...)"),
        "{err}"
    );
    let err = Msgpack::WIRE
        .decode::<(Value, BTreeMap<String, Value>)>(&[0x05])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "msgpack of the wrong shape: invalid type: integer `5`, expected a tuple of size 2; it holds an integer (5)"
    );
    let err = Msgpack::CACHE.decode::<u16>(&hex("a1 78")).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("expected an integer from 0 to 65535; it holds a string of 1 byte (\"x\")"),
        "{err}"
    );
    let err = Msgpack::CACHE
        .decode::<Value>(&hex("92 a1 78"))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("not msgpack: it ends in the middle of a value"),
        "{err}"
    );
    let err = Msgpack::CACHE
        .decode::<Value>(&[0xc1, 0xff, 0x1b])
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("(3 bytes: \"\\xc1\\xff\\u{1b}\")"),
        "{err}"
    );
    let deep = [0x91; 200];
    let cases: [(&[u8], CodecError); 8] = [
        (b"", Msgpack::CACHE.decode::<Value>(b"").unwrap_err()),
        (
            b"hello",
            Msgpack::CACHE.decode::<User>(b"hello").unwrap_err(),
        ),
        (
            b"\xa5hello",
            Msgpack::CACHE.decode::<User>(b"\xa5hello").unwrap_err(),
        ),
        (
            b"\x01",
            Msgpack::WIRE
                .decode::<(Value, BTreeMap<String, Value>)>(b"\x01")
                .unwrap_err(),
        ),
        (&deep, Msgpack::CACHE.decode::<Value>(&deep).unwrap_err()),
        (
            b"\xa2\xff\xfe",
            Msgpack::CACHE
                .decode::<String>(b"\xa2\xff\xfe")
                .unwrap_err(),
        ),
        (b"\xc1", Msgpack::CACHE.decode::<Uuid>(b"\xc1").unwrap_err()),
        (b"", Msgpack::CACHE.encode(&BadKeys).unwrap_err()),
    ];
    for (bytes, err) in cases {
        let text = err.to_string();
        assert!(!text.contains("::"), "{bytes:?}: {text}");
    }
}

/// serde names the Rust types a derive reads (`expected struct AddParams`, `expected tuple
/// struct Pair`, `expected a nonzero u32`): they reach dead-letter reasons and RPC
/// `InvalidParams` reasons, so they are said by their shape too.
#[test]
fn the_rust_types_of_derived_structs_are_said_in_words() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct AddParams {
        a: i64,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Pair(u8, u8);
    #[derive(Debug, Deserialize)]
    struct Marker;
    let errors = [
        Msgpack::WIRE.decode::<AddParams>(b"\x05").unwrap_err(),
        Msgpack::WIRE.decode::<Pair>(b"\x05").unwrap_err(),
        Msgpack::WIRE.decode::<Marker>(b"\x05").unwrap_err(),
        Msgpack::WIRE
            .decode::<std::time::Duration>(b"\x05")
            .unwrap_err(),
        Msgpack::WIRE
            .decode::<std::num::NonZeroU32>(b"\xa1x")
            .unwrap_err(),
    ];
    let words = errors.map(|e| e.to_string());
    for (text, wanted) in words.iter().zip([
        "expected a map of named fields;",
        "expected an array;",
        "expected nil;",
        "expected a map of named fields;",
        "expected an integer from 1 to 4294967295;",
    ]) {
        assert!(text.contains(wanted), "{text}");
        for rust in ["AddParams", "Pair", "Marker", "Duration", "u32", "struct"] {
            assert!(!text.contains(rust), "{text}");
        }
    }
    assert_eq!(
        in_words("invalid type: string \"x\", expected struct AddParams"),
        "invalid type: string \"x\", expected a map of named fields"
    );
    assert_eq!(
        in_words("expected a nonzero i8"),
        "expected an integer other than 0"
    );
    assert_eq!(
        in_words("expected struct of some other kind"),
        "expected struct of some other kind",
        "not a Rust name: left alone"
    );
}

/// A value msgpack cannot encode (serde refuses a map key of this kind).
struct BadKeys;

impl Serialize for BadKeys {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no"))
    }
}

/// A Python service that appended a field (`User(id, name, blocked, age)`) and one that has not
/// got the Rust struct's new `Option` field yet both read and write values the other side
/// reads, as msgspec does: extra trailing items are ignored, missing trailing fields default.
#[test]
fn schema_changes_roll_out_in_either_order() {
    #[derive(Debug, PartialEq, Deserialize)]
    struct UserV2 {
        id: Uuid,
        name: String,
        #[serde(default)]
        blocked: bool,
        nickname: Option<String>,
    }
    let c = Msgpack::CACHE;
    let id = Uuid::parse_str(U).unwrap();
    // Python appended `age`: [id, "bob", true, 41].
    let newer: User = c
        .decode(&hex(&format!("94 {U_BIN} a3 62 6f 62 c3 29")))
        .unwrap();
    assert_eq!(
        newer,
        User {
            id,
            name: "bob".into(),
            blocked: true
        }
    );
    // Rust added `nickname` (an Option) and `blocked` has a default: [id, "bob"].
    let older: UserV2 = c.decode(&hex(&format!("92 {U_BIN} a3 62 6f 62"))).unwrap();
    assert_eq!(older.nickname, None);
    assert!(!older.blocked);
    // A UUID stored as its 36-char string (msgspec's default outside RedisCache).
    let text: User = c
        .decode(&hex(&format!(
            "93 d9 24 {} a3 62 6f 62 c2",
            U.bytes().map(|b| format!("{b:02x} ")).collect::<String>()
        )))
        .unwrap();
    assert_eq!(text.id, id);
    // Nested structs get the same treatment.
    let nested: Outer = c
        .decode(&hex(&format!(
            "93 94 {U_BIN} a3 62 6f 62 c2 07 91 a1 74 c0"
        )))
        .unwrap();
    assert_eq!(nested.tags, ["t"]);
    // Still an error: a missing field without a default, a wrong type.
    assert!(c.decode::<User>(&hex(&format!("91 {U_BIN}"))).is_err());
    assert!(c.decode::<User>(&hex("93 01 02 03")).is_err());
}

#[test]
fn any_value_reads_and_writes_every_capture() {
    let c = Msgpack::CACHE;
    for capture in [
        "a5 68 65 6c 6c 6f",
        "2a",
        "cf 00 00 01 00 00 00 00 00",
        "ff",
        "cb 3f f8 00 00 00 00 00 00",
        "c0",
        "c3",
        "82 a1 61 01 a1 62 92 01 02",
        "93 01 a3 74 77 6f cb 40 08 00 00 00 00 00 00",
        U_BIN,
        "c4 02 00 01",
        "d4 05 07",
    ] {
        let bytes = hex(capture);
        let value: crate::Value = c.decode(&bytes).unwrap();
        let again = c.encode(&value).unwrap();
        // Integers may come back in a smaller encoding; their value must not change.
        let back: crate::Value = c.decode(&again).unwrap();
        assert_eq!(back, value, "{capture}");
    }
    let uuid: crate::Value = c.decode(&hex(U_BIN)).unwrap();
    assert_eq!(
        uuid,
        crate::Value::Bin(Uuid::parse_str(U).unwrap().as_bytes().to_vec())
    );
    let ext: crate::Value = c.decode(&hex("d4 05 07")).unwrap();
    assert_eq!(ext, crate::Value::Ext(5, vec![7]));
}

/// Arbitrary bytes never panic, abort or hang either layout's decoder, whatever type is asked
/// for. `cargo xtask fuzz` runs it with more cases.
#[test]
fn fuzz_msgpack_decoders() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct User {
        id: Uuid,
        name: String,
        blocked: bool,
        tags: Vec<String>,
        extra: Option<BTreeMap<String, Vec<i64>>>,
    }

    fn all(bytes: &[u8]) {
        for codec in [Msgpack::CACHE, Msgpack::WIRE] {
            let _ = codec.decode::<serde::de::IgnoredAny>(bytes);
            let _ = codec.decode::<crate::Value>(bytes);
            let _ = codec.decode::<User>(bytes);
            let _ = codec.decode::<Vec<User>>(bytes);
            let _ = codec.decode::<BTreeMap<String, String>>(bytes);
            let _ = codec.decode::<(String, Option<BTreeMap<String, i64>>)>(bytes);
            let _ = codec.decode::<serde_bytes::ByteBuf>(bytes);
        }
    }
    // Random bytes, biased towards msgpack container and length markers.
    let markers = prop_oneof![
        any::<u8>(),
        Just(0xdc_u8),
        Just(0xdd),
        Just(0xde),
        Just(0xdf),
        Just(0xc4),
        Just(0xc6),
        Just(0xdb),
        Just(0xff),
    ];
    let strategy = proptest::collection::vec(markers, 0..128);
    let cases = kaiju_testkit::fuzz_cases();
    let mut runner = TestRunner::new(Config::with_cases(cases));
    runner
        .run(&strategy, |bytes| {
            all(&bytes);
            Ok(())
        })
        .unwrap();
    eprintln!("fuzz_msgpack_decoders: {cases} inputs, 14 decoders each, without a panic");
}
