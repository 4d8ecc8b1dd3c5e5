use super::render::py_float;
use super::*;

/// A string value.
fn s(text: &str) -> Value {
    Value::Str(text.to_owned())
}

/// A map with string keys.
fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (s(k), v)).collect())
}

/// An array of integers.
fn ints(items: &[i64]) -> Value {
    Value::Array(items.iter().map(|&n| Value::Int(n)).collect())
}

/// Results of a three-request batch: 0 succeeded, 1 failed, 2 returned 5.
fn results() -> Vec<Option<Value>> {
    let id = |n| map(vec![("id", Value::Int(n))]);
    vec![
        Some(map(vec![
            ("n", Value::Int(3)),
            ("s", s("abc")),
            ("obj", map(vec![("l", ints(&[1, 2]))])),
            ("items", Value::Array(vec![id(1), id(2)])),
            (
                "nested",
                Value::Array(vec![Value::Array(vec![id(1)]), Value::Array(vec![id(2)])]),
            ),
            (
                "mixed",
                Value::Array(vec![id(1), Value::Int(5), map(vec![])]),
            ),
            ("lists", Value::Array(vec![ints(&[1, 2]), ints(&[3, 4])])),
            ("f", Value::Float(2.5)),
            ("t", Value::Bool(true)),
            ("none", Value::Nil),
            ("url", s("redis://h:6379")),
        ])),
        None,
        Some(Value::Int(5)),
    ]
}

/// Fills the single string `template` from [`results`].
fn fill_str(template: &str) -> Result<Value, TemplateError> {
    fill(&s(template), &results())
}

/// The error message for `template`.
fn error(template: &str) -> String {
    fill_str(template).unwrap_err().to_string()
}

#[test]
fn whole_result() {
    assert_eq!(fill_str("[0]").unwrap(), results()[0].clone().unwrap());
    assert_eq!(fill_str("[2]").unwrap(), Value::Int(5));
}

#[test]
fn nested_fields() {
    assert_eq!(fill_str("[0.n]").unwrap(), Value::Int(3));
    assert_eq!(fill_str("[0.obj.l]").unwrap(), ints(&[1, 2]));
    assert_eq!(fill_str("[0.none]").unwrap(), Value::Nil);
    // Empty steps are skipped, as in kaiju.
    assert_eq!(fill_str("[0..n]").unwrap(), Value::Int(3));
    assert_eq!(fill_str("[.0.n.]").unwrap(), Value::Int(3));
}

#[test]
fn lists_are_mapped_over() {
    assert_eq!(fill_str("[0.items.id]").unwrap(), ints(&[1, 2]));
    assert_eq!(
        fill_str("[0.nested.id]").unwrap(),
        Value::Array(vec![ints(&[1]), ints(&[2])])
    );
    // A default applies per item; without one, one missing item fails the template.
    assert_eq!(fill_str("[0.mixed.id:9]").unwrap(), ints(&[1, 9, 9]));
    assert!(error("[0.mixed.id]").contains("cannot look up key `id` in an integer"));
    // Numeric steps do not index lists: key "0" is looked up in each item (as in kaiju).
    assert!(fill_str("[0.obj.l.0]").is_err());
    assert_eq!(fill_str("[0.obj.l.0:7]").unwrap(), ints(&[7, 7]));
}

#[test]
fn failed_or_later_request() {
    assert_eq!(
        error("[1.id]"),
        "template `[1.id]`: request 1 has no result (it failed, or has not run yet)"
    );
    assert!(error("[3]").contains("request 3 has no result"));
    assert!(error("[99999999999999999999999]").contains("has no result"));
    // A default covers a request without a result, as in kaiju.
    assert_eq!(fill_str("[1.id:0]").unwrap(), Value::Int(0));
    assert_eq!(fill_str("[7:x]").unwrap(), s("x"));
}

#[test]
fn request_must_be_an_index() {
    for template in [
        "[abc]", "[abc:1]", "[00]", "[-1]", "[+1]", "[ 0.n]", "[1,2]",
    ] {
        assert!(
            error(template).contains("is not a request index"),
            "{template}"
        );
    }
    assert!(error("[]").contains("empty template"));
    assert!(error("[:5]").contains("names no request"));
    assert!(error("[.]").contains("names no request"));
}

#[test]
fn missing_without_default_fails() {
    assert_eq!(
        error("[0.zz]"),
        "template `[0.zz]`: the result of request 0 has no key `zz`"
    );
    // `[k:]` means no default, as in kaiju.
    assert!(fill_str("[0.zz:]").is_err());
}

#[test]
fn defaults() {
    let cases = [
        ("[0.zz:42]", Value::Int(42)),
        ("[0.zz:-5]", Value::Int(-5)),
        ("[0.zz: 42]", Value::Int(42)),
        ("[0.zz:18446744073709551615]", Value::UInt(u64::MAX)),
        ("[0.zz:4.5]", Value::Float(4.5)),
        ("[0.zz:1e5]", Value::Float(100_000.0)),
        ("[0.zz:True]", Value::Bool(true)),
        ("[0.zz:true]", Value::Bool(true)),
        ("[0.zz:False]", Value::Bool(false)),
        ("[0.zz:false]", Value::Bool(false)),
        ("[0.zz:None]", Value::Nil),
        ("[0.zz:null]", Value::Nil),
        ("[0.zz:'a b']", s("a b")),
        ("[0.zz:\"\"]", s("")),
        ("[0.zz:dev]", s("dev")),
        ("[0.zz:none]", s("none")),
        ("[0.zz:010]", s("010")),
        ("[0.zz:1_000]", s("1_000")),
        ("[0.zz:inf]", s("inf")),
        ("[0.zz:a b]", s("a b")),
    ];
    for (template, expected) in cases {
        assert_eq!(fill_str(template).unwrap(), expected, "{template}");
    }
    // The default is only used when the value is missing.
    assert_eq!(fill_str("[0.n:7]").unwrap(), Value::Int(3));
    // `!s` is the explicit form of select.
    assert_eq!(fill_str("[!s:0.n]").unwrap(), Value::Int(3));
    assert_eq!(fill_str("[!s:0.zz:4]").unwrap(), Value::Int(4));
    assert!(error("[!s]").contains("needs an argument"));
}

#[test]
fn path_through_scalar_is_missing() {
    assert!(error("[0.n.x]").contains("cannot look up key `x` in an integer"));
    assert!(error("[2.x]").contains("cannot look up key `x` in an integer"));
    assert!(error("[0.none.x]").contains("in null"));
    assert_eq!(fill_str("[0.n.x:5]").unwrap(), Value::Int(5));
    assert_eq!(fill_str("[0.s.x:5]").unwrap(), Value::Int(5));
}

#[test]
fn default_may_contain_colons() {
    assert_eq!(
        fill_str("[0.zz:redis://h:6379]").unwrap(),
        s("redis://h:6379")
    );
    assert_eq!(fill_str("[0.zz:12:30]").unwrap(), s("12:30"));
    assert_eq!(
        fill_str("[0.zz:`\"redis://h:6379\"`]").unwrap(),
        s("redis://h:6379")
    );
    assert_eq!(
        fill_str("[0.zz:`redis://h:6379`]").unwrap(),
        s("redis://h:6379")
    );
}

#[test]
fn url_ip_and_version_defaults() {
    for text in [
        "1.0.0",
        "127.0.0.1",
        "http://example.com:8080/a?b=c&d=[1]",
        "::1",
        "1.5e",
    ] {
        assert_eq!(
            fill_str(&format!("[0.zz:{text}]")).unwrap(),
            s(text),
            "{text}"
        );
    }
    // kaiju raises SyntaxError here even though the key exists.
    assert_eq!(fill_str("[0.n:1.0.0]").unwrap(), Value::Int(3));
}

#[test]
fn template_defaults_are_lazy() {
    assert_eq!(fill_str("[0.zz:[2]]").unwrap(), Value::Int(5));
    assert_eq!(fill_str("[0.zz:[0.obj.zz:[0.n]]]").unwrap(), Value::Int(3));
    // Not needed, so not evaluated (kaiju fails on the missing request 5).
    assert_eq!(fill_str("[0.n:[5]]").unwrap(), Value::Int(3));
    assert!(error("[0.zz:[5]]").contains("request 5 has no result"));
    // Backticks make it a literal.
    assert_eq!(fill_str("[0.zz:`[1,2]`]").unwrap(), s("[1,2]"));
    assert_eq!(
        fill_str("[0.mixed.id:[0.n]]").unwrap(),
        Value::Array(vec![Value::Int(1), Value::Int(3), Value::Int(3)])
    );
    // A nested template may name the path.
    let results = vec![
        Some(map(vec![("key", s("1.n"))])),
        Some(map(vec![("n", Value::Int(8))])),
    ];
    assert_eq!(fill(&s("[[0.key]]"), &results).unwrap(), Value::Int(8));
    assert_eq!(fill(&s("[`1.n`]"), &results).unwrap(), Value::Int(8));
}

#[test]
fn backticks_escape() {
    assert_eq!(fill_str("`[0.n]`").unwrap(), s("[0.n]"));
    assert_eq!(fill_str("`x`").unwrap(), s("x"));
    assert_eq!(fill_str("``").unwrap(), s(""));
    assert_eq!(fill_str("`").unwrap(), s("`"));
    assert_eq!(fill_str("``[0]``").unwrap(), s("`[0]`"));
}

#[test]
fn format_operator() {
    let cases = [
        ("[!f:n is {0-n} and {0-s}]", "n is 3 and abc"),
        ("[!f:{0-f} {0-t} {0-none} {2}]", "2.5 True None 5"),
        ("[!f:{0-obj}]", "{'l': [1, 2]}"),
        ("[!f:{0-items}]", "[{'id': 1}, {'id': 2}]"),
        ("[!f:{0-items-id}]", "[1, 2]"),
        ("[!f:{0-s!r} {0-s!s}]", "'abc' abc"),
        ("[!f:{{0-n}} {0--n}]", "{0-n} 3"),
        ("[!f:a:b]", "a,b"),
        ("[!f:a:]", "a"),
        ("[!f:`{0-n}: {0-s}`]", "3: abc"),
        ("[!f:`[{0-s}]`]", "[abc]"),
        ("[!f:{0-url}]", "redis://h:6379"),
        ("[!f:plain]", "plain"),
    ];
    for (template, expected) in cases {
        assert_eq!(fill_str(template).unwrap(), s(expected), "{template}");
    }
    let results = vec![
        Some(map(vec![("fmt", s("n={1-n}"))])),
        Some(map(vec![("n", Value::Int(4))])),
    ];
    assert_eq!(fill(&s("[!f:[0.fmt]]"), &results).unwrap(), s("n=4"));
}

#[test]
fn format_errors() {
    assert!(error("[!f:{0-zz}]").contains("has no key `zz`"));
    assert!(error("[!f:{1-id}]").contains("request 1 has no result"));
    assert!(error("[!f:{}]").contains("names no request"));
    assert!(error("[!f:{x}]").contains("not a request index"));
    assert!(error("[!f:`{0-n:>5}`]").contains("format specs"));
    assert!(error("[!f:{0-n!a}]").contains("conversion `!a`"));
    assert!(error("[!f:{0-obj.l}]").contains("not supported"));
    assert!(error("[!f:{0-n]").contains("unclosed"));
    assert!(error("[!f:a}b]").contains("single `}`"));
    assert!(error("[!f]").contains("needs an argument"));
    assert!(error("[!f:]").contains("needs an argument"));
    assert!(error("[!f:[0.n]]").contains("not a string"));
}

#[test]
fn python_str_rendering() {
    let floats = [
        (3.0, "3.0"),
        (2.5, "2.5"),
        (-0.0, "-0.0"),
        (0.1, "0.1"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (123_456.789, "123456.789"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e+16"),
        (-1.25e300, "-1.25e+300"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
        (f64::NAN, "nan"),
    ];
    for (x, expected) in floats {
        assert_eq!(py_float(x), expected, "{x:e}");
    }
    let value = Value::Array(vec![
        s("it's"),
        s("a'b\"c\\\n\u{7}é\u{200b}"),
        Value::Bin(vec![0, b'a', b'\'', 0xff]),
        Value::Ext(5, vec![1]),
        Value::UInt(u64::MAX),
        map(vec![("k", Value::Bool(false))]),
    ]);
    let mut out = String::new();
    render(&value, false, &mut out, usize::MAX, 0).unwrap();
    assert_eq!(
        out,
        "[\"it's\", 'a\\'b\"c\\\\\\n\\x07é\\u200b', b\"\\x00a'\\xff\", \
         ExtType(code=5, data=b'\\x01'), 18446744073709551615, {'k': False}]"
    );
}

#[test]
fn lists_and_maps_are_filled_element_by_element() {
    let params = Value::Array(vec![s("[0.n]"), s("[0.s]"), Value::Int(5)]);
    assert_eq!(
        fill(&params, &results()).unwrap(),
        Value::Array(vec![Value::Int(3), s("abc"), Value::Int(5)])
    );
    // Map keys are never templates.
    let params = map(vec![
        ("[0.n]", s("[0.n]")),
        ("deep", map(vec![("list", Value::Array(vec![s("[2]")]))])),
    ]);
    assert_eq!(
        fill(&params, &results()).unwrap(),
        map(vec![
            ("[0.n]", Value::Int(3)),
            ("deep", map(vec![("list", ints(&[5]))])),
        ])
    );
    // The first failing template names itself.
    let params = map(vec![("a", s("[0.n]")), ("b", s("[1.id]"))]);
    assert!(
        fill(&params, &results())
            .unwrap_err()
            .to_string()
            .starts_with("template `[1.id]`")
    );
}

#[test]
fn plain_values_are_unchanged() {
    for value in [
        s("a[0]b"),
        s("plain"),
        s(""),
        s("redis://[host]:6379"),
        Value::Nil,
        Value::Int(-1),
        Value::Float(1.5),
        Value::Bin(vec![b'[', b']']),
        Value::Ext(1, vec![]),
    ] {
        assert_eq!(fill(&value, &results()).unwrap(), value);
    }
}

#[test]
fn unbalanced_brackets_are_plain_text() {
    // kaiju raises "Unbalanced brackets" for these; they are ordinary text.
    for text in ["n=[0.n]", "x]", "[x", "[", "]", "[WIP] fix", "see [1]."] {
        assert_eq!(fill_str(text).unwrap(), s(text), "{text}");
    }
}

#[test]
fn other_operators_are_rejected() {
    assert_eq!(
        error("[!x:sum:[0.n]:1]"),
        "template `[!x:sum:[0.n]:1]`: operator `!x` is not supported"
    );
    assert!(error("[!e:1]").contains("operator `!e` is not supported"));
    assert!(error("[!foo]").contains("operator `!foo` is not supported"));
    assert!(error("[!]").contains("operator `!` is not supported"));
    assert!(error("[0.zz:[!x:bool:0]]").contains("operator `!x` is not supported"));
}

#[test]
fn depth_is_bounded() {
    let nested = |levels: usize| {
        let mut value = s("[0.n]");
        for _ in 0..levels {
            value = Value::Array(vec![value]);
        }
        value
    };
    assert!(fill(&nested(MAX_DEPTH), &results()).is_ok());
    assert_eq!(
        fill(&nested(MAX_DEPTH + 1), &results())
            .unwrap_err()
            .to_string(),
        "params are nested more than 128 levels deep"
    );
    let deep_template = format!("{}0{}", "[".repeat(200), "]".repeat(200));
    assert!(error(&deep_template).contains("levels deep"));
    let deep_default = format!("[0.zz:{}0.zz{}]", "[0.zz:".repeat(200), "]".repeat(200));
    assert!(error(&deep_default).contains("levels deep"));
}

#[test]
fn copies_are_bounded() {
    let big = Some(Value::Array(vec![Value::Int(0); 100_000]));
    let params = Value::Array(vec![s("[0]"); 100]);
    assert!(
        fill(&params, &[big])
            .unwrap_err()
            .to_string()
            .contains("too large")
    );
    let long = Some(s(&"x".repeat(1 << 20)));
    let params = s(&format!("[!f:{}]", "{0}".repeat(200)));
    assert!(
        fill(&params, &[long])
            .unwrap_err()
            .to_string()
            .contains("too large")
    );
}

#[test]
fn long_templates_are_clipped_in_errors() {
    let template = format!("[{}]", "é".repeat(500));
    let message = error(&template);
    assert!(message.chars().count() < 400, "{message}");
}

#[test]
fn fuzz_template_fill() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    const CHARS: &[char] = &[
        '[', ']', '.', ':', '!', '{', '}', '-', '`', '0', '1', '2', '9', 'n', 's', 'f', 'x', 'e',
        'r', ' ', '\'', '"', 'é',
    ];
    const KEYS: &[&str] = &["n", "s", "0", "1", "id", "-", "", "[0]"];
    let text = proptest::collection::vec(proptest::sample::select(CHARS), 0..24)
        .prop_map(|chars| chars.into_iter().collect::<String>());
    let template = prop_oneof![
        text.clone(),
        text.clone().prop_map(|t| format!("[{t}]")),
        text.clone().prop_map(|t| format!("[0.{t}]")),
        text.clone().prop_map(|t| format!("[!f:{t}]")),
    ];
    let key = proptest::sample::select(KEYS).prop_map(|k| Value::Str(k.to_owned()));
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(Value::Bin),
        template.prop_map(Value::Str),
    ];
    let value = leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    });
    let results = proptest::collection::vec(proptest::option::of(value.clone()), 0..4);
    let cases = kaiju_testkit::fuzz_cases();
    let mut runner = TestRunner::new(Config::with_cases(cases));
    runner
        .run(&(value, results), |(params, results)| {
            let _ = fill(&params, &results);
            Ok(())
        })
        .unwrap();
    eprintln!("fuzz_template_fill: {cases} inputs filled without a panic, abort or hang");
}

/// The budget bounds the work of looking keys up, not only what is copied (found by an
/// adversarial review): 1,000 templates of 120 nested defaults, each selecting a missing key of
/// a 10,000-entry map, passed over 1.2 billion entries (0.7 s in release, 30 s or more for a
/// real batch) while only the innermost literal was charged. Now the budget runs out after
/// about half a million entries passed over.
#[test]
fn lookups_through_a_large_map_are_charged_to_the_budget() {
    let entries = 10_000;
    let big = Value::Map(
        (0..entries)
            .map(|i| (s(&format!("key{i}")), Value::Int(i64::from(i))))
            .collect(),
    );
    let results = [Some(&big)];
    let mut template = "1".to_owned();
    for _ in 0..120 {
        template = format!("[0.zz:{template}]");
    }
    let params = Value::Array(vec![s(&template); 1_000]);
    let mut budget = Budget::default();
    let filled = fill_within(&params, &results, &mut budget);
    assert!(
        matches!(&filled, Err(e) if e.to_string().contains("budget")),
        "{filled:?}"
    );
    // A template selecting from the same map a few times is well within it.
    let mut budget = Budget::default();
    let params = Value::Array(vec![s("[0.key9999]"); 10]);
    assert_eq!(
        fill_within(&params, &results, &mut budget).unwrap(),
        Value::Array(vec![Value::Int(9999); 10])
    );
}
