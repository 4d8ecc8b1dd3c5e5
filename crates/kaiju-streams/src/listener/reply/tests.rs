use std::collections::HashMap;

use kaiju_transport::fred::types::{Key, Map};
use proptest::prelude::*;

use super::*;

fn s(text: &str) -> Value {
    Value::String(text.into())
}

fn b(bytes: &[u8]) -> Value {
    Value::Bytes(Bytes::copy_from_slice(bytes))
}

fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

fn ids(items: &[Item]) -> Vec<(String, bool)> {
    items
        .iter()
        .map(|i| match i {
            Item::Entry(e) => (e.id.to_string(), true),
            Item::Deleted(id) => (id.to_string(), false),
        })
        .collect()
}

#[test]
fn resp2_and_resp3_replies_parse_entry_by_entry() {
    let entries = arr(vec![
        arr(vec![s("1-1"), arr(vec![s("_"), b(b"\x92\x01\x80")])]),
        // A field name and a value that are not UTF-8: still an entry.
        arr(vec![s("1-2"), arr(vec![b(b"\xff\xfe"), b(b"\xc1")])]),
        // Deleted behind the consumer's back.
        arr(vec![s("1-3"), Value::Null]),
        // Near the top of the id space.
        arr(vec![
            s("1-18446744073709551615"),
            arr(vec![s("_"), b(b"x")]),
        ]),
    ]);
    let resp2 = arr(vec![arr(vec![s("st"), entries.clone()])]);
    let resp3 = Value::Map(Map::try_from(HashMap::from([(Key::from("st"), entries)])).unwrap());
    for reply in [resp2, resp3] {
        let items = xreadgroup(reply).unwrap();
        assert_eq!(
            ids(&items),
            [
                ("1-1".into(), true),
                ("1-2".into(), true),
                ("1-3".into(), false),
                ("1-18446744073709551615".into(), true)
            ]
        );
        let Item::Entry(odd) = &items[1] else {
            panic!()
        };
        assert_eq!(
            odd.fields,
            [(Bytes::from_static(b"\xff\xfe"), Bytes::from_static(b"\xc1"))]
        );
    }
    assert!(xreadgroup(Value::Null).unwrap().is_empty());
}

#[test]
fn items_that_are_not_entries_are_skipped_and_the_rest_survive() {
    let list = arr(vec![
        s("not an entry"),
        arr(vec![]),
        arr(vec![s("garbage"), arr(vec![])]),
        arr(vec![s("2-1"), s("fields as a string")]),
        arr(vec![s("2-2"), arr(vec![s("odd")])]),
        arr(vec![s("2-3"), arr(vec![s("_"), b(b"ok")])]),
    ]);
    let items = entry_list("XCLAIM", list).unwrap();
    assert_eq!(
        ids(&items),
        [
            ("2-1".into(), true),
            ("2-2".into(), true),
            ("2-3".into(), true)
        ]
    );
    let Item::Entry(e) = &items[2] else { panic!() };
    assert_eq!(e.field(b"_").map(|v| v.as_ref()), Some(&b"ok"[..]));
}

#[test]
fn autoclaim_reports_the_cursor_and_the_deleted_ids() {
    let reply = arr(vec![
        s("5-0"),
        arr(vec![
            arr(vec![s("3-1"), arr(vec![s("_"), b(b"x")])]),
            arr(vec![s("3-2"), Value::Null]),
        ]),
        arr(vec![s("3-3"), s("3-4")]),
    ]);
    let claimed = xautoclaim(reply).unwrap();
    assert_eq!(claimed.next.to_string(), "5-0");
    assert_eq!(
        ids(&claimed.items),
        [("3-1".into(), true), ("3-2".into(), false)]
    );
    assert_eq!(
        claimed
            .deleted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["3-3", "3-4"]
    );
    // Redis 6.2 has no third element.
    let old = arr(vec![s("0-0"), arr(vec![])]);
    assert!(xautoclaim(old).unwrap().deleted.is_empty());
    assert!(xautoclaim(s("OK")).is_err());
    assert!(xautoclaim(arr(vec![])).is_err());
}

#[test]
fn claim_reads_carry_idle_times_and_delivery_counts() {
    let entries = arr(vec![
        // Claimed: idle 5000 ms, delivered twice before.
        arr(vec![
            s("1-1"),
            arr(vec![s("_"), b(b"x")]),
            Value::Integer(5000),
            Value::Integer(2),
        ]),
        // Handed back with XNACK SILENT after a first delivery: count 0, but idle.
        arr(vec![
            s("1-2"),
            arr(vec![s("_"), b(b"y")]),
            Value::Integer(1_765_000_000_000),
            Value::Integer(0),
        ]),
        // XNACK FATAL: the largest count there is.
        arr(vec![
            s("1-3"),
            arr(vec![s("_"), b(b"z")]),
            Value::Integer(9),
            Value::Integer(i64::MAX),
        ]),
        // New.
        arr(vec![
            s("2-1"),
            arr(vec![s("_"), b(b"n")]),
            Value::Integer(0),
            Value::Integer(0),
        ]),
    ]);
    let resp2 = arr(vec![arr(vec![s("st"), entries.clone()])]);
    let resp3 = Value::Map(Map::try_from(HashMap::from([(Key::from("st"), entries)])).unwrap());
    for reply in [resp2, resp3] {
        let items = xreadgroup_claim(reply).unwrap();
        let got: Vec<(String, u64, bool)> = items
            .iter()
            .map(|(item, claimed)| match item {
                Item::Entry(e) => (e.id.to_string(), e.deliveries, *claimed),
                Item::Deleted(id) => (id.to_string(), 0, *claimed),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("1-1".into(), 3, true),
                ("1-2".into(), 1, true),
                ("1-3".into(), i64::MAX as u64 + 1, true),
                ("2-1".into(), 1, false),
            ]
        );
    }
    assert!(xreadgroup_claim(Value::Null).unwrap().is_empty());
}

#[test]
fn claim_reads_of_the_wrong_shape_fail_with_a_typed_error() {
    let one = |entry: Value| arr(vec![arr(vec![s("st"), arr(vec![entry])])]);
    let fields = || arr(vec![s("_"), b(b"x")]);
    // The reply of a read without CLAIM: two parts.
    let e = xreadgroup_claim(one(arr(vec![s("1-1"), fields()]))).unwrap_err();
    assert_eq!(e.command, "XREADGROUP CLAIM");
    assert!(e.what.contains("2 parts"), "{e}");
    // A negative idle time, a count that is text.
    let e = xreadgroup_claim(one(arr(vec![
        s("1-1"),
        fields(),
        Value::Integer(-1),
        Value::Integer(0),
    ])))
    .unwrap_err();
    assert!(e.what.contains("idle"), "{e}");
    let e = xreadgroup_claim(one(arr(vec![
        s("1-1"),
        fields(),
        Value::Integer(1),
        s("3"),
    ])))
    .unwrap_err();
    assert!(e.what.contains("count"), "{e}");
    // Not an entry at all, or no readable id: skipped, as in other reads.
    assert!(xreadgroup_claim(one(s("junk"))).unwrap().is_empty());
    let no_id = arr(vec![s("x"), fields(), Value::Integer(0), Value::Integer(0)]);
    assert!(xreadgroup_claim(one(no_id)).unwrap().is_empty());
    assert!(xreadgroup_claim(s("OK")).is_err());
    assert!(xreadgroup_claim(arr(vec![arr(vec![s("st"), s("entries")])])).is_err());
}

/// Any value tree, as a hostile or broken server could send it.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Integer),
        any::<bool>().prop_map(Value::Boolean),
        "[0-9]{1,20}-[0-9]{1,20}".prop_map(|id| Value::String(id.into())),
        ".{0,8}".prop_map(|t| Value::String(t.into())),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|v| Value::Bytes(v.into())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((".{0,4}", inner), 0..4).prop_map(|pairs| {
                Value::Map(
                    Map::try_from(
                        pairs
                            .into_iter()
                            .map(|(k, v)| (Key::from(k), v))
                            .collect::<HashMap<_, _>>(),
                    )
                    .unwrap(),
                )
            }),
        ]
    })
}

/// No reply, however odd, panics the parsers. `cargo xtask fuzz` runs it with more cases.
#[test]
fn fuzz_stream_replies() {
    let cases = kaiju_testkit::fuzz_cases();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    runner
        .run(&any_value(), |value| {
            let _ = xreadgroup(value.clone());
            let _ = xreadgroup_claim(value.clone());
            let _ = entry_list("XCLAIM", value.clone());
            let _ = crate::admin::parse_entries(value.clone());
            let _ = xautoclaim(value);
            Ok(())
        })
        .unwrap();
    eprintln!(
        "fuzz_stream_replies: {cases} reply trees parsed (reads, claims, dead-letter ranges) without a panic"
    );
}

/// Claim-read replies of the right envelope with arbitrary entries (the shape a random tree
/// seldom hits): never a panic, and every entry the parser keeps has a delivery count of at
/// least 1.
#[test]
fn fuzz_claim_reads() {
    let cases = kaiju_testkit::fuzz_cases();
    let entry = prop_oneof![
        proptest::collection::vec(any_value(), 0..6).prop_map(Value::Array),
        (any_value(), any_value(), any::<i64>(), any::<i64>()).prop_map(|(id, f, idle, n)| {
            arr(vec![id, f, Value::Integer(idle), Value::Integer(n)])
        }),
        (
            "[0-9]{1,20}-[0-9]{1,20}",
            proptest::collection::vec(any_value(), 0..4),
            any::<i64>(),
            any::<i64>()
        )
            .prop_map(|(id, f, idle, n)| {
                arr(vec![
                    s(&id),
                    Value::Array(f),
                    Value::Integer(idle),
                    Value::Integer(n),
                ])
            }),
    ];
    let reply = proptest::collection::vec(entry, 0..8)
        .prop_map(|entries| arr(vec![arr(vec![s("st"), Value::Array(entries)])]));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    runner
        .run(&reply, |value| {
            if let Ok(items) = xreadgroup_claim(value) {
                for (item, _) in items {
                    if let Item::Entry(e) = item {
                        prop_assert!(e.deliveries >= 1);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}
