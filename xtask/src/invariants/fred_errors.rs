//! [`Invariant::FredErrors`]: fred's errors are looked into in [`FRED_ERROR_HOME`] only.

use std::ops::Range;

use super::modules;
use super::source::{Literal, Source};
use super::{FRED_ERROR_HOME, Invariant, Problem};

/// The leading codes of Redis error replies, which [`FRED_ERROR_HOME`] classifies. Written in
/// lower case here, so this file does not spell them itself.
pub(crate) fn reply_codes() -> Vec<String> {
    "busygroup nogroup noscript wrongtype crossslot noperm wrongpass moved ask loading \
     readonly masterdown execabort oom noauth busy"
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The reply codes that are also ordinary words (`busy`, `loading`): matched in upper case
/// only, where the others match in any case.
const WORD_CODES: [&str; 6] = ["busy", "moved", "ask", "loading", "readonly", "oom"];

/// The string literals outside [`FRED_ERROR_HOME`] that may start with a Redis reply code,
/// because they are no fred error's text: (file, the whole literal with its code in lower
/// case, why).
pub(super) const REPLY_TEXT_ALLOWED: [(&str, &str, &str); 2] = [
    (
        "crates/kaiju-testkit/src/server.rs",
        "noauth",
        "what redis-cli prints for a PING to a server with a password: no fred error",
    ),
    (
        "crates/kaiju-locks/src/batch.rs",
        "wrongtype Operation against a key holding the wrong kind of value",
        "the batch script's own reply (an error it caught with pcall and returns as data), fed \
         to the code that classifies it with TransportError::from_reply",
    ),
];

/// The `str` methods that look for a pattern in text: a reply code passed to one matches an
/// error's text.
const SEARCHES: [&str; 15] = [
    "starts_with",
    "ends_with",
    "contains",
    "strip_prefix",
    "strip_suffix",
    "find",
    "rfind",
    "split_once",
    "rsplit_once",
    "matches",
    "match_indices",
    "eq_ignore_ascii_case",
    "eq",
    "ne",
    "trim_start_matches",
];

/// The reply code a literal matches an error's text with, if any. The rule: a literal that
/// starts with a reply code as a word (after RESP's `-`) counts when it goes on after a space
/// (an error's text: `"MOVED 3999 ..."`) or is used to match text (an operand of `==`/`!=`,
/// the argument of a `str` search such as `starts_with`, a match pattern); a bare code used
/// otherwise (`"READONLY"`, the command) does not. Codes that are words ([`WORD_CODES`]) match
/// in upper case only, the others (`"busygroup"`) in any case when used to match text.
pub(super) fn reply_code(
    code: &str,
    patterns: &[Range<usize>],
    literal: &Literal,
) -> Option<String> {
    let text = literal.value.strip_prefix('-').unwrap_or(&literal.value);
    let matching = matches_text(code, patterns, literal);
    reply_codes().into_iter().find(|reply| {
        let Some(head) = text.get(..reply.len()) else {
            return false;
        };
        let rest = &text[reply.len()..];
        let word = rest.is_empty() || rest.starts_with(' ');
        let any_case = !WORD_CODES.contains(&reply.to_ascii_lowercase().as_str());
        let exact = head == reply;
        word && if matching {
            exact || (any_case && head.eq_ignore_ascii_case(reply))
        } else {
            exact && !rest.is_empty()
        }
    })
}

/// Whether the literal is used to match text: an operand of `==` or `!=`, the one argument of
/// a [`SEARCHES`] method, or in a pattern (of a `match` arm: before `=>`, `|` or a guard; of
/// a `matches!`).
/// `patterns` are those of the file's `matches!` ([`matches_patterns`]).
fn matches_text(code: &str, patterns: &[Range<usize>], literal: &Literal) -> bool {
    // The code before the literal's prefix (`r#`, `b`), and after it.
    let before = code[..literal.at].trim_end_matches('#');
    let prefix = before.len()
        - before
            .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_')
            .len();
    let before = match &before[before.len() - prefix..] {
        "r" | "b" | "br" | "c" | "cr" => &before[..before.len() - prefix],
        _ => before,
    }
    .trim_end();
    let after = code.get(literal.end..).unwrap_or("").trim_start();
    let compared = |text: &str| text.starts_with("==") || text.starts_with("!=");
    if compared(after) || before.ends_with("==") || before.ends_with("!=") {
        return true;
    }
    // A pattern, maybe inside a tuple struct's: `Some("X") =>`, `"X" | "Y"`, `"X" if`.
    let pattern_end = after.trim_start_matches(|c: char| c == ')' || c.is_whitespace());
    let guard = pattern_end
        .strip_prefix("if")
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'));
    if pattern_end.starts_with("=>")
        || (pattern_end.starts_with('|') && !pattern_end.starts_with("||"))
        || guard
    {
        return true;
    }
    if patterns.iter().any(|p| p.contains(&literal.at)) {
        return true;
    }
    // The one argument of a search: `.starts_with("X")`.
    let Some(open) = before.strip_suffix('(') else {
        return false;
    };
    let callee = open
        .trim_end()
        .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("");
    after.starts_with(')') && SEARCHES.contains(&callee)
}

/// The patterns of the `matches!` of `code`: from the first comma of each to its end.
fn matches_patterns(code: &str) -> Vec<Range<usize>> {
    let bytes = code.as_bytes();
    modules::word_positions(code, "matches")
        .into_iter()
        .filter_map(|at| {
            let rest = code[at + "matches".len()..].strip_prefix('!')?.trim_start();
            rest.strip_prefix('(')?;
            let open = code.len() - rest.len();
            let mut depth = 0usize;
            let mut comma = None;
            for (i, b) in bytes.iter().enumerate().skip(open) {
                match b {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(comma?..i);
                        }
                    }
                    b',' if depth == 1 && comma.is_none() => comma = Some(i),
                    _ => {}
                }
            }
            None
        })
        .collect()
}

/// The nearest type written for the binding `name` before `at` (`name: &std::io::Error`,
/// in a signature, a closure or a `let`), without whitespace, references and `mut`.
fn declared_type(code: &str, name: &str, at: usize) -> Option<String> {
    modules::word_positions(&code[..at], name)
        .into_iter()
        .rev()
        .find_map(|start| {
            let rest = code[start + name.len()..at].trim_start();
            let rest = rest.strip_prefix(':').filter(|r| !r.starts_with(':'))?;
            let rest = rest.trim_start().trim_start_matches('&').trim_start();
            let rest = rest.strip_prefix("mut ").unwrap_or(rest);
            let ty: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || c.is_whitespace())
                .filter(|c| !c.is_whitespace())
                .collect();
            Some(ty)
        })
}

/// Reading a fred error's text or kind, anywhere but [`FRED_ERROR_HOME`], tests included: a
/// test that reads fred's text checks something other than what the code sees.
///
/// fred's error type itself may be named (`fred::error::Error` in a bound or a turbofish):
/// that passes an error on without looking into it. An error read as text
/// (`e.to_string()`, `format!("{e}")`) shows in the reply code it is compared with.
pub(super) fn fred_errors(path: &str, source: &Source, problems: &mut Vec<Problem>) {
    let code = source.code();
    let mut found = |at: usize, what: &str| {
        problems.push(Problem {
            invariant: Invariant::FredErrors,
            place: format!("{path}:{}", source.line_of(at)),
            message: format!("{what}; classify fred errors in {FRED_ERROR_HOME} (TransportError)"),
        });
    };
    let imports: Vec<(String, Vec<String>)> = modules::use_statements(code)
        .into_iter()
        .flat_map(|(_, names)| names)
        .collect();
    let imported_from_io = |item: &str| {
        imports
            .iter()
            .any(|(name, path)| name == item && path.ends_with(&["io".to_owned(), item.to_owned()]))
    };
    // `use std::io::{self, ErrorKind, Error}`: those bare names are io's, not fred's.
    let (io_kind, io_error) = (imported_from_io("ErrorKind"), imported_from_io("Error"));
    // The names fred goes by in this file: its own, and aliases (`use x::fred as redis;`).
    let mut fred_names = vec!["fred".to_owned()];
    fred_names.extend(
        imports
            .iter()
            .filter(|(name, path)| name != "fred" && path.last().is_some_and(|p| p == "fred"))
            .map(|(name, _)| name.clone()),
    );
    let uses_fred = !modules::word_positions(code, "fred").is_empty();
    // The receiver of a `name` call or path at `at`: a path (`fred::error::Error` of
    // `fred::error::Error::kind`), or the name before the `.` of a method call.
    let receiver = |at: usize| {
        let before = code[..at].trim_end();
        match before.strip_suffix("::") {
            Some(receiver) => (path_before(receiver), true),
            None => {
                let receiver = before.strip_suffix('.').unwrap_or(before).trim_end();
                let name = receiver
                    .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("");
                let name = if receiver.ends_with("unwrap_err()") {
                    "unwrap_err()"
                } else {
                    name
                };
                (name.to_owned(), false)
            }
        }
    };
    // A path to a type named like an error that is not io's: `Error`, `fred::error::Error`.
    let fred_error_type = |ty: &str| {
        let name = ty.rsplit("::").next().unwrap_or("");
        name.ends_with("Error") && !ty.ends_with("io::Error") && !(io_error && ty == "Error")
    };
    for at in method_refs(code, "details") {
        let (receiver, path) = receiver(at);
        if !path || fred_error_type(&receiver) || is_call(code, at, "details") {
            found(at, "reads an error's text (`details()`)");
        }
    }
    for at in modules::word_positions(code, "ErrorKind") {
        let before = code[..at].trim_end();
        let qualifier = before.strip_suffix("::").map(path_before);
        let qualified_io = qualifier
            .as_deref()
            .is_some_and(|q| q == "io" || q.ends_with("::io"));
        if !qualified_io && (qualifier.is_some() || !io_kind) {
            found(at, "names fred's `ErrorKind`");
        }
    }
    for name in &fred_names {
        for start in modules::word_positions(code, name) {
            // `fred::error::X`, whitespace around the `::` aside.
            let item = ["::", "error", "::"]
                .iter()
                .try_fold(&code[start + name.len()..], |rest, token| {
                    rest.trim_start().strip_prefix(token)
                });
            let Some(item) = item.map(str::trim_start) else {
                continue;
            };
            let item: String = item
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if item != "Error" {
                found(start, "looks into `fred::error` beyond its `Error` type");
            }
        }
    }
    // `.kind()` of an error, in a file that uses fred: `e.kind()`, `error\n.kind()`,
    // `Error::kind(&e)`, `.map(Error::kind)`, ... (fred's `Value` has a `kind()` too: the
    // receiver tells). One known to be an `io::Error` (by the type written for it, or by the
    // io `ErrorKind` it is compared with) is not fred's.
    for at in method_refs(code, "kind").into_iter().filter(|_| uses_fred) {
        let (receiver, path) = receiver(at);
        let error_like = if path {
            fred_error_type(&receiver)
        } else {
            let named = matches!(receiver.as_str(), "e" | "err" | "error" | "unwrap_err()")
                || receiver.ends_with("_err")
                || receiver.ends_with("_error");
            let io_typed = || {
                declared_type(code, &receiver, at)
                    .is_some_and(|ty| ty.ends_with("io::Error") || (io_error && ty == "Error"))
            };
            named && !io_typed() && !compared_with_io_kind(code, at, io_kind)
        };
        if error_like {
            found(at, "reads an error's kind (`kind()`)");
        }
    }
    let allowed = |text: &str| {
        REPLY_TEXT_ALLOWED
            .iter()
            .any(|(file, literal, _)| *file == path && literal.eq_ignore_ascii_case(text))
    };
    let patterns = matches_patterns(code);
    for literal in source.literals() {
        let reply = reply_code(code, &patterns, literal).filter(|_| !allowed(&literal.value));
        if let Some(reply) = reply {
            problems.push(Problem {
                invariant: Invariant::FredErrors,
                place: format!("{path}:{}", source.line_of(literal.at)),
                message: format!(
                    "`{reply}` matches a Redis error's text; classify it in {FRED_ERROR_HOME} \
                     and match the TransportError variant"
                ),
            });
        }
    }
}

/// Whether the `kind()` call at `at` is compared with (`==`, `!=`) or matched against (`match
/// e.kind() { .. }`) an io `ErrorKind`: `io::ErrorKind::NotFound`, or a bare `ErrorKind` the
/// file imports from io.
fn compared_with_io_kind(code: &str, at: usize, io_kind: bool) -> bool {
    let Some(call) = code[at..].find(')') else {
        return false;
    };
    let after = code[at + call + 1..].trim_start();
    let Some(other) = ["==", "!=", "{"]
        .iter()
        .find_map(|operator| after.strip_prefix(operator))
    else {
        return false;
    };
    let other: String = other
        .chars()
        .filter(|c| !c.is_whitespace())
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let other = other.strip_prefix("::").unwrap_or(&other);
    other.contains("io::ErrorKind::") || (io_kind && other.starts_with("ErrorKind::"))
}

/// The path that ends `text`, whitespace around its `::` dropped: `std::io::Error` of
/// `f(std :: io::Error`.
fn path_before(text: &str) -> String {
    let mut segments = Vec::new();
    let mut rest = text.trim_end();
    loop {
        let start = rest
            .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_')
            .len();
        if start == rest.len() {
            break;
        }
        segments.push(&rest[start..]);
        match rest[..start].trim_end().strip_suffix("::") {
            Some(before) => rest = before.trim_end(),
            None => break,
        }
    }
    segments.reverse();
    segments.join("::")
}

/// Whether `name` at `at` is called: `(` follows, whitespace aside.
fn is_call(code: &str, at: usize, name: &str) -> bool {
    code[at + name.len()..].trim_start().starts_with('(')
}

/// Where `code` calls a method `name` (`x.name(`) or names an associated function `name` by
/// its path (`X::name(`, `.map(X::name)`), with any whitespace (newlines included) around the
/// `.`, `::` and `(`. The offset of `name`.
fn method_refs(code: &str, name: &str) -> Vec<usize> {
    modules::word_positions(code, name)
        .into_iter()
        .filter(|&at| {
            let before = code[..at].trim_end();
            let after = code[at + name.len()..].trim_start();
            let method = before.ends_with('.') && !before.ends_with("..") && after.starts_with('(');
            let path =
                before.ends_with("::") && !after.starts_with("::") && !after.starts_with('!');
            method || path
        })
        .collect()
}
