//! The checker on small trees of its own: a clean one passes, and each invariant fails on a
//! violation planted in it.

use super::source::Source;
use super::tree::{Tree, members};
use super::{Invariant, Problem, check};

const ROOT: &str = r#"
[workspace]
resolver = "3"
members = [
    "crates/*",
    "bench",   # beside raw fred
    "tests",
    "xtask",
]
default-members = ["crates/kaiju-core"]
"#;

fn manifest(name: &str, deps: &str) -> String {
    format!("[package]\nname = \"{name}\"\n\n[dependencies]\n{deps}\n")
}

/// A small workspace that keeps every invariant, in the shapes the real one has: a library
/// with re-exports, a `mod.rs` module with children, a binary, an integration-test crate with a
/// `[[test]]` target, unit tests in `#[cfg(test)]` modules and in `tests.rs` files.
fn clean() -> Vec<(String, String)> {
    let files = [
        ("Cargo.toml", ROOT.to_owned()),
        (
            "crates/kaiju-core/Cargo.toml",
            manifest("kaiju-core", "serde.workspace = true"),
        ),
        (
            "crates/kaiju-core/src/lib.rs",
            "//! Core.\nmod codec;\nmod key;\npub use key::{Key, Namespace};\npub use codec::Msgpack;\n"
                .to_owned(),
        ),
        (
            "crates/kaiju-core/src/key.rs",
            "pub struct Key;\npub struct Namespace;\nimpl Namespace {\n    pub fn reply(&self, c: &str) -> String { format!(\"x._reply.{c}\") }\n}\n"
                .to_owned(),
        ),
        (
            "crates/kaiju-core/src/codec/mod.rs",
            "//! Uses the key module: `crate::Key`, a root re-export.\nuse crate::Key;\npub struct Msgpack(Key);\n#[cfg(test)]\nmod tests;\n"
                .to_owned(),
        ),
        (
            "crates/kaiju-core/src/codec/tests.rs",
            "use super::*;\nconst NAME: &str = \"env.app._stream.topic\";\n".to_owned(),
        ),
        (
            "crates/kaiju-testkit/Cargo.toml",
            manifest("kaiju-testkit", ""),
        ),
        ("crates/kaiju-testkit/src/lib.rs", "mod server;\n".to_owned()),
        (
            "crates/kaiju-testkit/src/server.rs",
            // redis-cli's output, allowed in this file (REPLY_TEXT_ALLOWED).
            "fn up(out: &str) -> bool { out.contains(\"PONG\") || out.contains(\"NOAUTH\") }\n"
                .to_owned(),
        ),
        (
            "crates/kaiju-transport/Cargo.toml",
            manifest(
                "kaiju-transport",
                "fred = { workspace = true }\nkaiju-core.workspace = true",
            ),
        ),
        (
            "crates/kaiju-transport/src/lib.rs",
            "mod error;\nmod watchdog;\npub use fred;\npub use error::TransportError;\n"
                .to_owned(),
        ),
        (
            "crates/kaiju-transport/src/error.rs",
            concat!(
                "use fred::error::{Error as FredError, ErrorKind};\npub enum TransportError { Timeout }\n",
                "fn f(e: FredError) -> bool { *e.kind() == ErrorKind::Timeout && e.details().is_empty() }\n",
                "fn busy(e: FredError) -> bool { e.details().starts_with(\"BUSYGROUP\") }\n",
            )
            .to_owned(),
        ),
        (
            "crates/kaiju-transport/src/watchdog.rs",
            concat!(
                "use crate::TransportError;\nfn silent(e: fred::error::Error) -> bool {\n",
                "    matches!(TransportError::from(e), TransportError::Timeout { .. })\n}\n",
                // fred's `Value` has a `kind()`, and `io::Error` is no fred error.
                "fn shape(reply: &fred::types::Value) -> String { format!(\"{:?}\", reply.kind()) }\n",
                "fn gone(e: &std::io::Error) -> bool { std::io::Error::kind(e) == std::io::ErrorKind::NotFound }\n",
                "const NOT_A_REPLY: [&str; 3] = [\"BUSYGROUPS\", \"ASKED\", \"a NOGROUP\"];\n",
            )
            .to_owned(),
        ),
        (
            "bench/Cargo.toml",
            manifest("kaiju-bench", "kaiju-transport.workspace = true"),
        ),
        (
            "bench/src/main.rs",
            "mod streams;\nfn main() {}\n".to_owned(),
        ),
        (
            "bench/src/streams.rs",
            concat!(
                "use kaiju_transport::fred::prelude::*;\n// A comment may say ._stream.\n",
                // io's ErrorKind, and io errors named `e`, in a file that uses fred; a reply
                // code as a command's name.
                "use std::io::{self, ErrorKind};\n",
                "fn missing(e: &io::Error) -> bool { e.kind() == ErrorKind::NotFound }\n",
                "fn gone(r: io::Result<()>) -> bool {\n    matches!(r, Err(e) if e.kind() == io::ErrorKind::NotFound)\n}\n",
                "fn replica_mode() -> [&'static str; 2] { [\"READONLY\", \"busy\"] }\n",
                "fn key() -> &'static str { \"bench.raw.topic\" }\n",
                // Test code may spell key names: an arm, a module with `#![cfg(test)]`.
                "fn name(x: u8) -> &'static str {\n    match x {\n        #[cfg(test)]\n",
                "        0 => \"a.b._stream.t\",\n        _ => \"bench.raw.topic\",\n    }\n}\n",
                "mod fixtures {\n    #![cfg(test)]\n    const K: &str = \"a.b._sub.t\";\n}\n",
                // Test-only on unix: still test code.
                "#[cfg(all(test, unix))]\nmod unix_fixtures {\n    const K: &str = \"a.b._sub.t\";\n}\n",
            )
            .to_owned(),
        ),
        (
            "tests/Cargo.toml",
            format!(
                "{}\n[[test]]\nname = \"it\"\npath = \"it/main.rs\"\n",
                manifest("kaiju-tests", "# fred logs through `log`\nlog = \"0.4\"")
            ),
        ),
        ("tests/src/lib.rs", "//! Helpers.\n".to_owned()),
        ("tests/it/main.rs", "mod rpc;\n".to_owned()),
        (
            "tests/it/rpc.rs",
            "#[test]\nfn reply_channel() { assert_eq!(\"a.b._reply.c\", \"a.b._reply.c\"); }\n"
                .to_owned(),
        ),
        (
            "xtask/Cargo.toml",
            manifest("xtask", "ctrlc = '3'\nfredrik = { package = 'fred-rs-not', version = '1' }"),
        ),
        (
            "xtask/src/main.rs",
            "mod docker;\nmod servers;\nmod test;\nuse servers::*;\nuse test::*;\nfn root() {}\nfn main() {}\n"
                .to_owned(),
        ),
        (
            "xtask/src/servers.rs",
            "use crate::root;\npub struct Servers;\nfn gone(e: std::io::Error) -> bool { e.kind() == std::io::ErrorKind::NotFound }\n"
                .to_owned(),
        ),
        (
            "xtask/src/test.rs",
            "use crate::docker::{self, DockerOptions};\nuse crate::{root, servers::Servers};\n"
                .to_owned(),
        ),
        (
            "xtask/src/docker/mod.rs",
            concat!(
                "mod cluster;\nuse crate::servers::Servers;\npub struct DockerOptions;\n",
                // Through the glob of servers, not that of test, which only imports it.
                "fn servers() -> crate::Servers { crate::Servers }\n",
                "mod inner {\n    use super::super::servers::Servers;\n    use super::DockerOptions;\n}\n",
            )
            .to_owned(),
        ),
        (
            "xtask/src/docker/cluster.rs",
            "use super::DockerOptions;\nuse super::super::servers;\n".to_owned(),
        ),
    ];
    files
        .into_iter()
        .map(|(path, text)| (path.to_owned(), text))
        .collect()
}

/// The problems of the clean tree with `path` replaced (or added) with `text`.
fn check_with(changes: &[(&str, &str)]) -> Vec<Problem> {
    let mut files = clean();
    for (path, text) in changes {
        files.retain(|(p, _)| p != path);
        files.push(((*path).to_owned(), (*text).to_owned()));
    }
    let tree = Tree::from_files(files.iter().map(|(p, t)| (p.as_str(), t.as_str())));
    check(&tree).unwrap()
}

fn places(problems: &[Problem], invariant: Invariant) -> Vec<String> {
    problems
        .iter()
        .filter(|p| p.invariant == invariant)
        .map(|p| p.place.clone())
        .collect()
}

#[test]
fn a_relative_link_in_a_crate_readme_fails() {
    let lib = "#![doc = include_str!(\"../README.md\")]\nmod key;\nmod codec;\npub use key::{Key, Namespace};\npub use codec::Msgpack;\n";
    let fine = "# core\nPart of [kaiju-rs](https://github.com/kaiju-rs/kaiju-rs); see [`Key`](crate::Key) and [below](#use).\n";
    assert_eq!(
        check_with(&[
            ("crates/kaiju-core/src/lib.rs", lib),
            ("crates/kaiju-core/README.md", fine),
        ]),
        vec![]
    );
    let broken = "# core\nPart of [kaiju-rs](../../README.md).\nSee [wire](docs/wire.md).\n";
    let problems = check_with(&[
        ("crates/kaiju-core/src/lib.rs", lib),
        ("crates/kaiju-core/README.md", broken),
    ]);
    assert_eq!(
        places(&problems, Invariant::ReadmeLinks),
        [
            "crates/kaiju-core/README.md:2",
            "crates/kaiju-core/README.md:3"
        ]
    );
    // A README that is not a crate's front page may link within the repository.
    assert_eq!(
        check_with(&[("crates/kaiju-core/README.md", broken)]),
        vec![]
    );
}

#[test]
fn a_clean_tree_has_no_problem() {
    assert_eq!(check_with(&[]), vec![]);
}

#[test]
fn members_come_from_the_root_manifest_globs_included() {
    let files = clean();
    let tree = Tree::from_files(files.iter().map(|(p, t)| (p.as_str(), t.as_str())));
    let names: Vec<String> = members(&tree)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        names,
        [
            "kaiju-core",
            "kaiju-testkit",
            "kaiju-transport",
            "kaiju-bench",
            "kaiju-tests",
            "xtask"
        ]
    );
    let missing = Tree::from_files([("Cargo.toml", "[workspace]\nmembers = [\"gone\"]\n")]);
    assert!(check(&missing).is_err());
}

#[test]
fn a_fred_dependency_outside_kaiju_transport_fails() {
    for deps in [
        "fred.workspace = true",
        "fred = { workspace = true, features = [\"i-std\"] }",
        "redis = { package = \"fred\", version = \"10\" }",
        // Review 24: TOML's literal strings (single quotes) too.
        "redis = { package = 'fred', version = \"10\" }",
        "'fred' = \"10\"",
        "\"fred\".workspace = true",
        "\n[dependencies.redis]\npackage = 'fred'\nversion = \"10\"",
        "\n[target.'cfg(unix)'.dependencies.'fred']\nversion = \"10\"",
        "\n[ build-dependencies ]\nfred = \"10\"",
    ] {
        let bench = manifest("kaiju-bench", deps);
        let problems = check_with(&[("bench/Cargo.toml", &bench)]);
        assert_eq!(
            places(&problems, Invariant::FredDependency),
            ["bench/Cargo.toml"],
            "{deps}"
        );
    }
    let dev_table =
        "[package]\nname = \"kaiju-tests\"\n\n[dev-dependencies.fred]\nversion = \"10\"\n";
    let problems = check_with(&[("tests/Cargo.toml", dev_table)]);
    assert_eq!(
        places(&problems, Invariant::FredDependency),
        ["tests/Cargo.toml"]
    );
}

#[test]
fn a_fred_dependency_in_any_toml_spelling_fails() {
    // Review 24 (second pass): the table or the dependency spelled with TOML's other forms.
    let package = "[package]\nname = \"kaiju-bench\"\n";
    for tables in [
        "[\"dependencies\"]\nfred = \"9\"",
        "[target.'cfg(unix)']\ndependencies.fred = \"9\"",
        "[target.\"cfg(unix)\"]\ndev-dependencies . 'fred' . version = \"9\"",
        "[dependencies . fred]\nversion = \"9\"",
        "[ 'target' . 'cfg(unix)' . \"build-dependencies\" ]\nfred.workspace = true",
        "[dependencies]\nredis = { package = \"fred\", version = \"9\" } # renamed",
        "[target.'cfg(unix)']\ndependencies = { fred = \"9\" }",
        "[target.'cfg(unix)']\ndependencies = { redis = { package = 'fred' } }",
        "[workspace.metadata]\nx = 1\n[target]\n'cfg(unix)'.dependencies.fred = \"9\"",
    ] {
        let bench = format!("{package}\n{tables}\n");
        let problems = check_with(&[("bench/Cargo.toml", &bench)]);
        assert_eq!(
            places(&problems, Invariant::FredDependency),
            ["bench/Cargo.toml"],
            "{tables}"
        );
    }
    // Before any header: the root table.
    let bench = format!("dependencies.fred = \"9\"\n{package}");
    let problems = check_with(&[("bench/Cargo.toml", &bench)]);
    assert_eq!(
        places(&problems, Invariant::FredDependency),
        ["bench/Cargo.toml"]
    );
    // fred named, but not as a dependency.
    for tables in [
        "[features]\nfred = [\"dep:kaiju-transport\"]",
        "[package.metadata.dependencies]\nfred = \"9\"",
        "[dependencies]\nfred-utils = \"1\"\nx = { version = \"1\", features = [\"fred\"] }\n# fred = \"9\"",
        "[dependencies]\nx = { version = \"1\", registry = \"a.b#fred\" }",
    ] {
        let bench = format!("{package}\n{tables}\n");
        assert_eq!(
            check_with(&[("bench/Cargo.toml", &bench)]),
            vec![],
            "{tables}"
        );
    }
}

#[test]
fn a_key_name_spelled_outside_key_rs_fails() {
    // The loophole of RpcClient::new: a reserved part inside a literal, not at its start.
    let client = "use kaiju_core::Key;\nfn reply(id: &str) -> Key {\n    Key::raw(format!(\"kaiju._reply.{id}\"))\n}\n";
    let problems = check_with(&[
        (
            "crates/kaiju-transport/src/lib.rs",
            "mod client;\nmod error;\nmod watchdog;\n",
        ),
        ("crates/kaiju-transport/src/client.rs", client),
    ]);
    assert_eq!(
        places(&problems, Invariant::KeyNames),
        ["crates/kaiju-transport/src/client.rs:3"]
    );
    // Outside crates/ too, in every spelling: side-key separators, raw strings, byte strings.
    let streams = "fn keys() {\n    let _ = \"bench.raw._stream.rpc\";\n    let _ = r#\"{k}:__fence\"#;\n    let _ = b\"k#__fill\";\n}\n";
    let problems = check_with(&[("bench/src/streams.rs", streams)]);
    assert_eq!(
        places(&problems, Invariant::KeyNames),
        [
            "bench/src/streams.rs:2",
            "bench/src/streams.rs:3",
            "bench/src/streams.rs:4"
        ]
    );
}

#[test]
fn a_key_name_spelled_with_escapes_fails() {
    // Review 24 (second pass): literals were matched as written, escapes undecoded.
    let streams = concat!(
        "fn k() -> [&'static str; 4] {\n",
        "    [\"env.app.\\x5fstream.rpc\", \"env.app.\\u{5f}reply.x\", b\"k\\x23__fill\",\n",
        "     \"env.app.\\\n     _stream.rpc\"]\n",
        "}\n",
        // Decoded, neither is a key part: `._` split by a continuation, an escaped backslash.
        "const FINE: [&str; 2] = [\"a.\\\n   b_stream\", \"a.\\\\x5fstream\"];\n",
    );
    let problems = check_with(&[("bench/src/streams.rs", streams)]);
    assert_eq!(
        places(&problems, Invariant::KeyNames),
        [
            "bench/src/streams.rs:2",
            "bench/src/streams.rs:2",
            "bench/src/streams.rs:2",
            "bench/src/streams.rs:3"
        ],
        "{problems:?}"
    );
}

#[test]
fn key_names_in_tests_are_allowed_but_not_in_code_after_them() {
    // A `#[cfg(test)]` item ends at its closing brace: code after it is checked again.
    let code = "#[cfg(test)]\nmod tests {\n    const K: &str = \"a.b._sub.t\";\n}\nfn after() -> &'static str { \"a.b._sub.t\" }\n";
    let problems = check_with(&[("bench/src/streams.rs", code)]);
    assert_eq!(
        places(&problems, Invariant::KeyNames),
        ["bench/src/streams.rs:5"]
    );
    // A test support library and worker binaries of the test crate are not tests.
    let problems = check_with(&[(
        "tests/src/bin/worker.rs",
        "fn main() { let _ = \"a._shared.x\"; }\n",
    )]);
    assert_eq!(
        places(&problems, Invariant::KeyNames),
        ["tests/src/bin/worker.rs:1"]
    );
}

#[test]
fn a_cfg_test_attribute_covers_only_what_it_is_on() {
    // Review 24: on a match arm, it hid the arms after it.
    let arms = "fn k(x: u8) -> &'static str {\n    match x {\n        #[cfg(test)]\n        0 => \"a.b._stream.t\",\n        _ => \"env.app._stream.rpc\",\n    }\n}\n";
    let problems = check_with(&[("bench/src/streams.rs", arms)]);
    assert_eq!(
        places(&problems, Invariant::KeyNames),
        ["bench/src/streams.rs:5"]
    );
    // An arm, a field, a statement, an item: what follows each is code again, and nothing
    // outside the braces the attribute is in.
    let text = concat!(
        "fn f(x: u8) {\n",
        "    match x { #[cfg(test)] 0 => \"t1\", 1 => \"p1\", #[cfg(test)] _ => \"t2\" }\n",
        "    \"p2\";\n",
        "    let _ = S { #[cfg(test)] a: \"t3\", b: \"p3\" };\n",
        "    #[cfg(test)]\n    let s = S { a: \"t4\" }.b(\"t5\");\n",
        "    \"p4\";\n",
        "}\n",
        "#[cfg(test)]\n#[allow(dead_code)]\nfn g<A, B>(a: A, b: B) -> Vec<(A, B)> { \"t6\"; vec![] }\n",
        "#[cfg(test)]\npub(crate) use a::{b, c};\n",
        "const P: &str = \"p5\";\n",
        "struct S {\n    #[cfg(test)]\n    pub a: u8,\n    pub b: &'static str,\n}\n",
        "const Q: &str = \"p6\";\n",
    );
    let source = Source::parse(text);
    let outside: Vec<&str> = source
        .literals_outside_tests()
        .map(|l| l.value.as_str())
        .collect();
    assert_eq!(outside, ["p1", "p2", "p3", "p4", "p5", "p6"]);
    assert!(!source.is_test(text.find("pub b").unwrap()));
}

#[test]
fn a_test_only_cfg_is_test_code_and_a_production_one_is_not() {
    // Review 24 (second pass): only the exact `#[cfg(test)]` was test code.
    for cfg in [
        "#[cfg(all(test, unix))]",
        "#[cfg(all(unix, test))]",
        "# [ cfg ( test ) ]",
        "#[cfg(all(feature = \"x\", any(test)))]",
    ] {
        let code = format!("{cfg}\nmod t {{\n    const K: &str = \"a.b._sub.t\";\n}}\n");
        let problems = check_with(&[("bench/src/streams.rs", &code)]);
        assert_eq!(problems, vec![], "{cfg}");
    }
    // `any(test, X)` and `not(test)` compile in production builds: checked.
    for cfg in [
        "#[cfg(any(test, feature = \"fixtures\"))]",
        "#[cfg(not(test))]",
        "#[cfg(any(test))]\n#[cfg(unix)]\nconst A: u8 = 0;\n#[cfg(unix)]",
    ] {
        let code = format!("{cfg}\nmod t {{\n    const K: &str = \"a.b._sub.t\";\n}}\n");
        let problems = check_with(&[("bench/src/streams.rs", &code)]);
        assert_eq!(
            places(&problems, Invariant::KeyNames).len(),
            1,
            "{cfg}: {problems:?}"
        );
    }
    // Inner attributes too.
    let file = "#![cfg(all(test, unix))]\nconst K: &str = \"a._sub.t\";\n";
    assert_eq!(check_with(&[("bench/src/streams.rs", file)]), vec![]);
    let file = "#![cfg(any(test, unix))]\nconst K: &str = \"a._sub.t\";\n";
    assert_eq!(
        places(
            &check_with(&[("bench/src/streams.rs", file)]),
            Invariant::KeyNames
        ),
        ["bench/src/streams.rs:2"]
    );
}

#[test]
fn an_inner_cfg_test_covers_its_module_only() {
    // Review 24: `#![cfg(test)]` in a nested module made the whole file test code, for the key
    // names and for the module cycles.
    let key = "mod t {\n    #![cfg(test)]\n    const K: &str = \"a._sub.t\";\n}\nfn k() -> &'static str { \"env.app._stream.rpc\" }\n";
    let problems = check_with(&[("bench/src/streams.rs", key)]);
    assert_eq!(
        places(&problems, Invariant::KeyNames),
        ["bench/src/streams.rs:5"]
    );
    let docker = "mod cluster;\nuse crate::test::run;\npub struct DockerOptions;\nmod t {\n    #![cfg(test)]\n}\n";
    let problems = check_with(&[("xtask/src/docker/mod.rs", docker)]);
    assert_eq!(
        places(&problems, Invariant::ModuleCycles),
        ["xtask/src/main.rs"]
    );
    // At the top of a file, it covers the file.
    let file =
        "#![cfg(test)]\nconst K: &str = \"a._sub.t\";\nmod a { }\nconst L: &str = \"b._sub.t\";\n";
    assert_eq!(check_with(&[("bench/src/streams.rs", file)]), vec![]);
}

#[test]
fn looking_into_fred_errors_outside_error_rs_fails() {
    // The loophole of the watchdog: fred's ErrorKind compared outside error.rs.
    let watchdog = "fn silent(e: fred::error::Error) -> bool {\n    *e.kind() == fred::error::ErrorKind::Timeout\n}\n";
    let problems = check_with(&[("crates/kaiju-transport/src/watchdog.rs", watchdog)]);
    assert_eq!(
        places(&problems, Invariant::FredErrors),
        [
            "crates/kaiju-transport/src/watchdog.rs:2",
            "crates/kaiju-transport/src/watchdog.rs:2",
            "crates/kaiju-transport/src/watchdog.rs:2",
        ],
        "{problems:?}"
    );
    // Tests are held to it too: they should see errors as the code does.
    let test = "use kaiju_transport::fred::prelude::*;\nfn busy(e: Error) -> bool {\n    e.details().starts_with(\"BUSYGROUP\")\n}\n";
    let problems = check_with(&[("tests/it/rpc.rs", test)]);
    assert_eq!(
        places(&problems, Invariant::FredErrors),
        ["tests/it/rpc.rs:3", "tests/it/rpc.rs:3"]
    );
    let import = "use kaiju_transport::fred::error::{Error, ErrorKind};\n";
    let problems = check_with(&[("bench/src/streams.rs", import)]);
    assert_eq!(
        places(&problems, Invariant::FredErrors),
        ["bench/src/streams.rs:1", "bench/src/streams.rs:1"]
    );
}

#[test]
fn reading_fred_errors_in_other_shapes_fails() {
    // Review 24: UFCS, a method on the next line, and errors read as text (`to_string()`,
    // `format!`), which show in the reply code they are compared with.
    let client = concat!(
        "use fred::error::Error;\n",
        "fn a(e: Error) -> bool { Error::details(&e).is_empty() }\n",
        "fn b(e: Error) -> String {\n    format!(\"{:?}\", e\n        .kind ())\n}\n",
        "fn c(e: Error) -> bool { e.to_string().contains(\"BUSYGROUP\") }\n",
        "fn d(e: Error) -> bool { format!(\"{e}\").starts_with(\"NOGROUP\") }\n",
        "fn e(e: Error) -> bool { e.to_string() == \"MOVED 3999 127.0.0.1:6381\" }\n",
        "fn f(e: Error) -> bool { fred::error::Error::kind(&e).to_str() == \"x\" }\n",
    );
    let problems = check_with(&[
        (
            "crates/kaiju-transport/src/lib.rs",
            "mod client;\nmod error;\nmod watchdog;\n",
        ),
        ("crates/kaiju-transport/src/client.rs", client),
    ]);
    let client = "crates/kaiju-transport/src/client.rs";
    assert_eq!(
        places(&problems, Invariant::FredErrors),
        // Sorted as text: line 10 first.
        [10, 2, 5, 7, 8, 9].map(|line| format!("{client}:{line}")),
        "{problems:?}"
    );
    assert!(
        problems[3]
            .message
            .contains("`BUSYGROUP` matches a Redis error's text"),
        "{problems:?}"
    );
    // Tests too; and a reply text allowed in one file is not in another.
    let test = "#[test]\nfn busy() {\n    let e = run();\n    assert!(e.to_string().starts_with(\"BUSY \"));\n}\n";
    let problems = check_with(&[
        ("tests/it/rpc.rs", test),
        (
            "bench/src/streams.rs",
            "fn up(out: &str) -> bool { out == \"NOAUTH\" }\n",
        ),
    ]);
    assert_eq!(
        places(&problems, Invariant::FredErrors),
        ["bench/src/streams.rs:1", "tests/it/rpc.rs:4"]
    );
}

#[test]
fn io_errors_in_a_file_that_uses_fred_are_not_fred_errors() {
    // Review 24 (second pass): io's ErrorKind imported, and an io error named `e` beside fred.
    let fine = [
        "use std::io::ErrorKind;\nfn f(e: std::io::Error) -> bool { e.kind() == ErrorKind::NotFound }\n",
        "use kaiju_transport::fred::prelude::*;\nfn f(e: std::io::Error) -> bool { e.kind() == std::io::ErrorKind::NotFound }\n",
        "use kaiju_transport::fred::prelude::*;\nuse std::io::{Error, ErrorKind};\nfn f(e: &Error) -> bool {\n    match e.kind() {\n        ErrorKind::NotFound => true,\n        _ => false,\n    }\n}\n",
        "use kaiju_transport::fred::prelude::*;\nfn f(r: std::io::Result<()>) -> Option<std::io::ErrorKind> { r.err().map(std::io::Error::kind) }\n",
        "use kaiju_transport::fred::prelude::*;\nfn f(r: std::io::Result<()>) -> bool {\n    matches!(r, Err(err) if err.kind() != std :: io :: ErrorKind::NotFound)\n}\n",
    ];
    for code in fine {
        assert_eq!(
            check_with(&[("bench/src/streams.rs", code)]),
            vec![],
            "{code}"
        );
    }
    // fred's, beside io's: a bare `ErrorKind` from fred's prelude, an error of no io type.
    let code = concat!(
        "use kaiju_transport::fred::prelude::*;\n",
        "fn f(e: &Error) -> bool { *e.kind() == ErrorKind::Timeout }\n",
        "fn g(e: std::io::Error) -> bool { e.kind() == std::io::ErrorKind::NotFound }\n",
        "fn h(e: Error) -> bool { e.kind() == &ErrorKind::IO }\n",
    );
    let problems = check_with(&[("bench/src/streams.rs", code)]);
    assert_eq!(
        places(&problems, Invariant::FredErrors),
        [2, 2, 4, 4].map(|line| format!("bench/src/streams.rs:{line}")),
        "{problems:?}"
    );
}

#[test]
fn a_bare_reply_code_counts_only_where_it_matches_text() {
    // Review 24 (second pass): `"READONLY"`, the command, was reported as a reply code.
    let fine = concat!(
        "fn replica() -> &'static str { \"READONLY\" }\n",
        "fn send(c: &mut Cmd) { c.arg(\"READONLY\").arg(\"LOADING\"); }\n",
        "const MODES: [&str; 2] = [\"BUSY\", \"noauth\"];\n",
        "fn known(c: &str) -> bool { COMMANDS.contains(&\"READONLY\") }\n",
        // Codes that are words match in upper case only.
        "fn idle(s: &str) -> bool { s == \"busy\" || s.starts_with(\"loading\") }\n",
    );
    assert_eq!(check_with(&[("bench/src/streams.rs", fine)]), vec![]);
    // Compared, searched for, matched: a reply code; in any case if it is no word, and after
    // RESP's `-`.
    let reported = concat!(
        "fn a(s: &str) -> bool { s == \"READONLY\" }\n",
        "fn b(s: &str) -> bool { \"NOSCRIPT\" != s }\n",
        "fn c(s: &str) -> bool { s.to_ascii_lowercase().starts_with(\"busygroup\") }\n",
        "fn d(s: &str) -> bool { s.starts_with(\"-NOSCRIPT\") }\n",
        "fn e(s: &str) -> u8 {\n    match s {\n        \"MOVED\" | \"ASK\" => 1,\n        \"TRYAGAIN\" => 2,\n        _ => 0,\n    }\n}\n",
        "fn f(s: Option<&str>) -> bool { matches!(s, Some(\"NoGroup\")) }\n",
        "fn g(s: &str) -> bool { s.contains(r#\"WRONGTYPE\"#) }\n",
        "const H: &str = \"-LOADING Redis is loading\";\n",
    );
    let problems = check_with(&[("bench/src/streams.rs", reported)]);
    assert_eq!(
        places(&problems, Invariant::FredErrors),
        // Sorted as text.
        [1, 12, 13, 14, 2, 3, 4, 7, 7].map(|line| format!("bench/src/streams.rs:{line}")),
        "{problems:?}"
    );
}

#[test]
fn reading_fred_errors_through_paths_and_aliases_fails() {
    // Review 24 (second pass): `details` and `kind` named as paths, not called, and fred
    // imported under another name.
    let code = concat!(
        "use kaiju_transport::fred as redis;\n",
        "use redis::error::Error;\n",
        "fn a(e: Option<Error>) -> Option<&str> { e.as_ref().map(Error::details) }\n",
        "fn b(e: Option<Error>) -> String { format!(\"{:?}\", e.as_ref().map(Error::kind)) }\n",
        "fn c(e: redis::error::Error) -> bool { format!(\"{:?}\", e.kind()) == \"Timeout\" }\n",
        "fn d(k: redis :: error :: ErrorKind) {}\n",
        // fred's `Value` has a `kind()`, and `Value::kind` is no error's.
        "fn e(v: Option<redis::types::Value>) -> bool { v.map(redis::types::Value::kind).is_some() }\n",
    );
    let problems = check_with(&[("bench/src/streams.rs", code)]);
    assert_eq!(
        places(&problems, Invariant::FredErrors),
        [3, 4, 5, 6, 6].map(|line| format!("bench/src/streams.rs:{line}")),
        "{problems:?}"
    );
}

#[test]
fn an_import_cycle_between_top_level_modules_fails() {
    // The cycle xtask had: test.rs and docker/mod.rs importing each other, in a binary.
    let docker = "mod cluster;\nuse crate::test::run_cargo_test;\npub struct DockerOptions;\n";
    let problems = check_with(&[("xtask/src/docker/mod.rs", docker)]);
    assert_eq!(
        places(&problems, Invariant::ModuleCycles),
        ["xtask/src/main.rs"]
    );
    assert!(
        problems[0].message.contains("docker -> test -> docker"),
        "{problems:?}"
    );
    // From a nested module's file, through `super::super`.
    let cluster = "use super::super::test;\n";
    let problems = check_with(&[("xtask/src/docker/cluster.rs", cluster)]);
    assert_eq!(
        places(&problems, Invariant::ModuleCycles),
        ["xtask/src/main.rs"]
    );
    // Review 24: from an inline module of a top-level file, through one `super` more.
    let docker = "mod cluster;\npub struct DockerOptions;\nmod inner {\n    use super::super::test::run;\n}\n";
    let problems = check_with(&[("xtask/src/docker/mod.rs", docker)]);
    assert_eq!(
        places(&problems, Invariant::ModuleCycles),
        ["xtask/src/main.rs"]
    );
    // Review 24: through a module the root renames, or a name a root glob brings in: from the
    // glob module that defines it, or from any if none visibly does.
    let main = "mod docker;\nmod servers;\nmod test;\nuse test as t;\nfn root() {}\nfn main() {}\n";
    let docker = "mod cluster;\nuse crate::t::run;\npub struct DockerOptions;\n";
    let problems = check_with(&[
        ("xtask/src/main.rs", main),
        ("xtask/src/docker/mod.rs", docker),
    ]);
    assert_eq!(
        places(&problems, Invariant::ModuleCycles),
        ["xtask/src/main.rs"]
    );
    let docker = "mod cluster;\nuse crate::run_cargo_test;\npub struct DockerOptions;\n";
    let test = "use crate::docker::DockerOptions;\npub fn run_cargo_test() {}\n";
    for test in [test, "use crate::docker::DockerOptions;\n"] {
        let problems = check_with(&[
            ("xtask/src/docker/mod.rs", docker),
            ("xtask/src/test.rs", test),
        ]);
        assert_eq!(
            places(&problems, Invariant::ModuleCycles),
            ["xtask/src/main.rs"],
            "{test}"
        );
    }
    // Through a module whose file `#[path]` names (its own modules' files beside it).
    let main = "mod docker;\nmod servers;\nmod test;\n#[path = \"run/testing.rs\"]\n#[allow(dead_code)]\npub(crate) mod runner;\nfn root() {}\nfn main() {}\n";
    let docker = "mod cluster;\nuse crate::runner::run;\npub struct DockerOptions;\n";
    let problems = check_with(&[
        ("xtask/src/main.rs", main),
        ("xtask/src/docker/mod.rs", docker),
        ("xtask/src/run/testing.rs", "mod sub;\n"),
        (
            "xtask/src/run/sub.rs",
            "use super::super::docker::DockerOptions;\n",
        ),
    ]);
    assert_eq!(
        places(&problems, Invariant::ModuleCycles),
        ["xtask/src/main.rs"]
    );
    assert!(
        problems[0].message.contains("docker -> runner -> docker"),
        "{problems:?}"
    );
    // In a library, through a name the root re-exports.
    let key = "use crate::Msgpack;\npub struct Key;\npub struct Namespace;\n";
    let problems = check_with(&[("crates/kaiju-core/src/key.rs", key)]);
    assert_eq!(
        places(&problems, Invariant::ModuleCycles),
        ["crates/kaiju-core/src/lib.rs"]
    );
    // Unit tests may import anything.
    let key = "pub struct Key;\npub struct Namespace;\n#[cfg(test)]\nmod tests {\n    use crate::Msgpack;\n}\n";
    assert_eq!(check_with(&[("crates/kaiju-core/src/key.rs", key)]), vec![]);
}

#[test]
fn an_import_cycle_through_globs_macros_and_crate_aliases_fails() {
    // Review 24 (second pass): codec -> key already (`crate::Key`); each shape adds key ->
    // codec.
    let lib = "//! Core.\nmod codec;\nmod key;\npub use key::{Key, Namespace};\npub use codec::Msgpack;\n";
    let self_named = "//! Core.\nextern crate self as me;\nmod codec;\nmod key;\npub use key::{Key, Namespace};\npub use codec::Msgpack;\n";
    let codec_macro = "use crate::Key;\npub struct Msgpack(Key);\n#[cfg(test)]\nmod tests;\n#[macro_export]\nmacro_rules! codec_macro {\n    () => {};\n}\n";
    let codec = "use crate::Key;\npub struct Msgpack(Key);\n#[cfg(test)]\nmod tests;\n";
    let keys = "pub struct Key;\npub struct Namespace;\n";
    for (what, root, key, codec) in [
        ("a glob of the crate root", lib, "use crate::*;\n", codec),
        ("a glob in a group", lib, "use crate::{*};\n", codec),
        ("a glob through super", lib, "use super::*;\n", codec),
        (
            "an exported macro",
            lib,
            "fn f() { crate::codec_macro!(); }\n",
            codec_macro,
        ),
        (
            "the crate's own name",
            self_named,
            "fn f(_: me::codec::Msgpack) {}\n",
            codec,
        ),
        (
            "the same, from ::",
            self_named,
            "fn f(_: ::me::Msgpack) {}\n",
            codec,
        ),
        (
            "spaces in the path",
            lib,
            "fn f(_: crate :: codec::Msgpack) {}\n",
            codec,
        ),
        ("a path over lines", lib, "use crate\n    ::codec;\n", codec),
    ] {
        let key = format!("{keys}{key}");
        let problems = check_with(&[
            ("crates/kaiju-core/src/lib.rs", root),
            ("crates/kaiju-core/src/key.rs", &key),
            ("crates/kaiju-core/src/codec/mod.rs", codec),
        ]);
        assert_eq!(
            places(&problems, Invariant::ModuleCycles),
            ["crates/kaiju-core/src/lib.rs"],
            "{what}: {problems:?}"
        );
    }
    // Spaces between `super`s, from a nested file.
    let cluster = "use super :: super :: test;\n";
    let problems = check_with(&[("xtask/src/docker/cluster.rs", cluster)]);
    assert_eq!(
        places(&problems, Invariant::ModuleCycles),
        ["xtask/src/main.rs"]
    );
    // A macro exported but not used there, a glob in a unit test, a crate named `me` that
    // is not this one: no cycle.
    for (root, key, codec) in [
        (lib, "fn f() { crate::other!(); }\n", codec_macro),
        (
            lib,
            "#[cfg(test)]\nmod tests {\n    use crate::*;\n}\n",
            codec,
        ),
        (lib, "fn f(_: me::codec::Msgpack) {}\n", codec),
        (self_named, "fn f(_: not::me::codec::Msgpack) {}\n", codec),
    ] {
        let key = format!("{keys}{key}");
        let problems = check_with(&[
            ("crates/kaiju-core/src/lib.rs", root),
            ("crates/kaiju-core/src/key.rs", &key),
            ("crates/kaiju-core/src/codec/mod.rs", codec),
        ]);
        assert_eq!(problems, vec![], "{key}");
    }
}

#[test]
fn the_lexer_tells_code_from_comments_and_literals() {
    let text = "let c = '\"'; // \"not a literal\"\nlet s = \"a\\\"b\"; /* x /* nested */ \"no\" */ let r = r##\"q\"#\"##;\nfn f<'a>(x: &'a str) {}\nlet b = b'{';\n";
    let source = Source::parse(text);
    let literals: Vec<&str> = source
        .literals_outside_tests()
        .map(|l| l.value.as_str())
        .collect();
    assert_eq!(literals, ["a\"b", "q\"#"]);
    let escapes = Source::parse("\"\\x41\\u{1F600}\\u{42}\\t\\\\n\\\n  c\\q\\x\"");
    assert_eq!(escapes.literals()[0].value, "A\u{1F600}B\t\\nc\\q\\x");
    assert!(!source.code().contains("not a literal"));
    assert!(source.code().contains("fn f<'a>(x: &'a str) {}"));
    assert_eq!(source.line_of(text.find("fn f").unwrap()), 3);
    let mods = Source::parse("mod a;\n#[path = \"x/b.rs\"]\n#[cfg(unix)]\npub(crate) mod b;\n#[cfg(test)]\nmod tests;\nfn x() { mod inner; }\nmod inline { }\n#[path = \"no.rs\"]\nfn f() {}\nmod c;\n")
        .mod_decls();
    let names: Vec<(&str, bool, Option<&str>)> = mods
        .iter()
        .map(|m| (m.name.as_str(), m.test, m.path.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("a", false, None),
            ("b", false, Some("x/b.rs")),
            ("tests", true, None),
            ("c", false, None)
        ]
    );
}
