//! Batch templates (`RPC-Batch-Template: ?1`): a request's params filled from the results of
//! earlier requests in the same batch (KAIJU-TOOLS.md §1.10, grammar §2.4).
//!
//! [`fill`] walks the params: map values (never keys) and array items recursively, and every
//! string value that is *exactly* a template, `[` … `]`, is replaced by what it selects:
//!
//! | param value | filled with |
//! |---|---|
//! | `"[0]"` | the whole result of request 0 |
//! | `"[0.a.b]"` | a nested field: `.` separates map keys (string keys only) |
//! | `"[0.items.id]"` | mapped over a list on the way: `[1, 2]` for `items = [{"id": 1}, {"id": 2}]` |
//! | `"[0.zz:42]"` | a default, used when the value is missing (see below) |
//! | `"[!s:0.n]"` | the same as `"[0.n]"` (`s`, select, is kaiju's default operator) |
//! | `"[!f:n is {0-n}]"` | a formatted string; in `{}` the path separator is `-` |
//! | ``"`[0.n]`"`` | backticks escape: the literal string `"[0.n]"` |
//!
//! Lookup, as kaiju's `get_field`: a path step into a map takes the key's value (the last one
//! if a key repeats, as a Python dict built from the wire would); a step that meets a list maps
//! the rest of the path over its items, so numeric steps do not index lists (`[0.l.0]` looks up
//! key `"0"` in each item, as in Python); empty steps (`[0..n]`) are skipped. A value is
//! *missing* when its request has no result (it failed, has not run yet, or is beyond the batch),
//! when a map lacks the key, or when the path runs into a scalar or null. Then the default is
//! used (per item when mapping over a list, as in Python), and without one filling fails.
//!
//! Defaults: the text after the first `:` (outside backticks and nested brackets), so a default
//! may contain `:`. An empty default (`[k:]`) means none. Backticks around the default are
//! stripped and the rest is parsed as below; a default that is itself a template
//! (`[0.a:[1.b]]`) is filled only when needed. Otherwise the text is parsed in this order: an
//! integer (`-5`; beyond `u64`, or with a leading zero like `010`, it stays a string), a float
//! (`4.5`, `1e5`), `True`/`False`/`None` and `true`/`false`/`null`, a string in `'…'` or `"…"`
//! (its content, taken verbatim), and anything else is the text itself (`dev`, `1.0.0`,
//! `127.0.0.1`, `redis://h:6379`).
//!
//! `!f` formats its argument with Python's `str.format` rules, reduced to what needs no code:
//! `{{`/`}}` are literal braces, `{N-key-key}` is a path (`{N}` alone is the whole result), the
//! conversions `!s` (the default) and `!r` are supported, and format specs, attribute and index
//! access are errors. Values render as Python's `str()`: ints, floats (`repr` style: `2.5`,
//! `1e+16`), `True`/`False`/`None`, strings as they are; inside lists and maps, and with `!r`,
//! items render as Python's `repr()` (`[1, 'a', None]`, `{'k': b'\x00'}`; which non-ASCII
//! characters count as printable is approximated); extension values as
//! `ExtType(code=…, data=b'…')` (Python's msgspec prints an object address). As in kaiju, `:` at bracket depth 0 splits `!f`'s argument into
//! several format strings whose outputs are joined with `,` (``[!f:`a:b`]`` keeps the colon).
//!
//! Where kaiju-rs differs from kaiju (Python), deliberately:
//! * A string that starts with `[` but does not end with `]`, or the other way round (`"n=[0.n]"`,
//!   `"x]"`, `"[WIP"`), is left unchanged; Python raises "Unbalanced brackets", which turns an
//!   ordinary piece of user text into InvalidParams and aborts the rest of the batch.
//! * Defaults that are not Python literals are kept as text instead of raising SyntaxError (even
//!   when the key exists), `:` no longer truncates a default (Python gives `"redis"` for
//!   `[k:redis://h:6379]`), `true`/`false`/`null` are booleans and null (Python keeps the
//!   text), container literals (`` `[1,2]` ``) stay text, and a template default is not evaluated
//!   unless it is needed (D16).
//! * A path through a scalar is missing (default or error); Python returns the `KeyError` class.
//! * A missing `!f` field is an error; Python writes `???`.
//! * The first path step must be a request index (`0`, `1`, … without leading zeros), even with a
//!   default: `[abc:1]` is an error, where Python returns 1 (its context has only index keys).
//!   `[]`, `[:5]` and `[!f]` are errors (Python: IndexError, the whole context, ValueError).
//! * `!e` and `!x` (and any other operator) are rejected: they evaluate literals and call
//!   functions from a table, which kaiju-rs does not do.
//! * A lone backtick stays as it is (Python empties it); ``"``"`` is `""` in both.
//!
//! Nothing here panics, and work is bounded: params and template evaluation are limited to
//! [`MAX_DEPTH`] levels, and one call copies at most [`MAX_COPIED_VALUES`] values and
//! [`MAX_COPIED_BYTES`] bytes out of the results, so that `["[0]", "[0]", …]` cannot multiply a
//! large result into an out-of-memory abort.

use std::borrow::Cow;
use std::fmt;

use kaiju_core::Value;

/// The deepest nesting accepted, both of arrays and maps in params (the decoders' own cap) and
/// within one template's evaluation (nested templates, lists mapped over, values rendered).
const MAX_DEPTH: usize = 128;

/// The most values (scalars, arrays, maps, map keys) one [`fill`] may copy out of the results.
const MAX_COPIED_VALUES: usize = 1 << 22;

/// The most bytes (of strings, bytes and `!f` output) one [`fill`] may copy out of the results.
const MAX_COPIED_BYTES: usize = 128 << 20;

/// The longest piece of client text quoted in an error message, in characters.
const MAX_QUOTED_CHARS: usize = 100;

/// Why a template could not be filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    /// The offending template string (shortened if long), or `None` when the params as a whole
    /// are at fault.
    template: Option<String>,
    /// What is wrong with it.
    reason: String,
}

impl TemplateError {
    /// An error in the template string `template`.
    fn in_template(template: &str, reason: String) -> Self {
        Self {
            template: Some(clip(template).into_owned()),
            reason,
        }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.template {
            Some(template) => write!(f, "template `{template}`: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Fills every template in `params` from `results`: `results[n]` is the result of batch request
/// n, `None` if it failed or has not run. Returns the filled params; values that are not
/// templates are returned unchanged (except that a string wrapped in backticks loses them).
pub(crate) fn fill(params: &Value, results: &[Option<Value>]) -> Result<Value, TemplateError> {
    Filler {
        results,
        values_left: MAX_COPIED_VALUES,
        bytes_left: MAX_COPIED_BYTES,
    }
    .value(params, 0)
}

/// The outcome of evaluating part of a template: the value, or why it failed.
type Eval<T> = Result<T, String>;

/// One [`fill`] call: the results to read and what is left of its copy budget.
struct Filler<'r> {
    /// The batch's results so far, by request index.
    results: &'r [Option<Value>],
    /// How many more values may be copied out of the results.
    values_left: usize,
    /// How many more bytes may be copied out of the results or rendered by `!f`.
    bytes_left: usize,
}

/// The default of a select, evaluated at most once.
enum Fallback<'t> {
    /// No default: a missing value is an error.
    Absent,
    /// A literal default, or a template default already filled.
    Ready(Value),
    /// A template default (its body, without brackets), filled when first needed.
    Pending(&'t str),
}

impl<'t> Fallback<'t> {
    /// The default written after a select's path (the text after its first `:`), if any.
    fn parse(text: Option<&'t str>) -> Self {
        match text {
            None | Some("") => Self::Absent,
            Some(text) => match (unquote(text), template_body(text)) {
                (Some(inner), _) => Self::Ready(literal(inner)),
                (None, Some(body)) => Self::Pending(body),
                (None, None) => Self::Ready(literal(text)),
            },
        }
    }
}

impl Filler<'_> {
    /// Fills `value`, found `depth` arrays and maps deep in the params.
    fn value(&mut self, value: &Value, depth: usize) -> Result<Value, TemplateError> {
        if depth > MAX_DEPTH {
            return Err(TemplateError {
                template: None,
                reason: format!("params are nested more than {MAX_DEPTH} levels deep"),
            });
        }
        match value {
            Value::Str(s) => self
                .string(s)
                .map_err(|reason| TemplateError::in_template(s, reason)),
            Value::Array(items) => items
                .iter()
                .map(|item| self.value(item, depth + 1))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Map(entries) => entries
                .iter()
                .map(|(key, item)| Ok((key.clone(), self.value(item, depth + 1)?)))
                .collect::<Result<_, _>>()
                .map(Value::Map),
            other => Ok(other.clone()),
        }
    }

    /// Fills a string value of the params: a template, a backticked string, or plain text.
    fn string(&mut self, s: &str) -> Eval<Value> {
        match template_body(s) {
            Some(body) => self.template(body, 0),
            None => Ok(Value::Str(unquote(s).unwrap_or(s).to_owned())),
        }
    }

    /// Evaluates a template's `body` (without its brackets), nested `depth` levels deep.
    fn template(&mut self, body: &str, depth: usize) -> Eval<Value> {
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        if body.is_empty() {
            return Err("empty template (expected `[N]` or `[N.key…]`)".to_owned());
        }
        let (head, rest) = split_arg(body);
        let rest = rest.filter(|rest| !rest.is_empty());
        match (head.strip_prefix('!'), rest) {
            (None, _) => self.select(head, rest, depth),
            (Some("s"), Some(rest)) => {
                let (path, default) = split_arg(rest);
                self.select(path, default, depth)
            }
            (Some("f"), Some(rest)) => self.format(rest, depth).map(Value::Str),
            (Some(op @ ("s" | "f")), None) => Err(format!("operator `!{op}` needs an argument")),
            (Some(op), _) => Err(format!("operator `!{}` is not supported", clip(op))),
        }
    }

    /// Selects the value at `path`, or the `default` (text) if it is missing.
    fn select(&mut self, path: &str, default: Option<&str>, depth: usize) -> Eval<Value> {
        let path = self.path_text(path, depth)?;
        let mut keys = path.split('.').filter(|key| !key.is_empty());
        let Some(request) = keys.next() else {
            return Err("the path names no request (expected `N` or `N.key…`)".to_owned());
        };
        let keys: Vec<&str> = keys.collect();
        self.resolve(request, &keys, &mut Fallback::parse(default), depth)
    }

    /// The path written in a select: backticks stripped, or a nested template filled.
    fn path_text<'t>(&mut self, text: &'t str, depth: usize) -> Eval<Cow<'t, str>> {
        if let Some(inner) = unquote(text) {
            return Ok(Cow::Borrowed(inner));
        }
        let Some(body) = template_body(text) else {
            return Ok(Cow::Borrowed(text));
        };
        match self.template(body, depth + 1)? {
            Value::Str(path) => Ok(Cow::Owned(path)),
            other => Err(format!(
                "the path `{}` is {}, not a string",
                clip(text),
                kind(&other)
            )),
        }
    }

    /// The value under `keys` in the result of request `request` (its index, as written).
    fn resolve(
        &mut self,
        request: &str,
        keys: &[&str],
        fallback: &mut Fallback<'_>,
        depth: usize,
    ) -> Eval<Value> {
        let index = request_index(request)?;
        let results = self.results;
        match results.get(index) {
            Some(Some(result)) => self.lookup(result, keys, fallback, request, depth),
            _ => self.fallback(fallback, depth, || {
                format!("request {request} has no result (it failed, or has not run yet)")
            }),
        }
    }

    /// The value under `keys` in `value` (part of the result of request `request`), mapped
    /// over any list on the way.
    fn lookup(
        &mut self,
        value: &Value,
        keys: &[&str],
        fallback: &mut Fallback<'_>,
        request: &str,
        depth: usize,
    ) -> Eval<Value> {
        let mut current = value;
        let mut rest = keys;
        while let Some((&key, tail)) = rest.split_first() {
            match current {
                Value::Map(entries) => {
                    let found = entries.iter().rev().find_map(|(k, v)| match k {
                        Value::Str(s) if s.as_str() == key => Some(v),
                        _ => None,
                    });
                    let Some(found) = found else {
                        return self.fallback(fallback, depth, || {
                            format!("the result of request {request} has no key `{}`", clip(key))
                        });
                    };
                    current = found;
                    rest = tail;
                }
                Value::Array(items) => {
                    if depth >= MAX_DEPTH {
                        return Err(too_deep());
                    }
                    self.charge(1, 0)?;
                    let mut mapped = Vec::with_capacity(items.len());
                    for item in items {
                        mapped.push(self.lookup(item, rest, fallback, request, depth + 1)?);
                    }
                    return Ok(Value::Array(mapped));
                }
                scalar => {
                    let found = kind(scalar);
                    return self.fallback(fallback, depth, || {
                        format!(
                            "cannot look up key `{}` in {found} (in the result of request {request})",
                            clip(key)
                        )
                    });
                }
            }
        }
        self.copy(current)
    }

    /// The default for a missing value, or the error `missing` describes if there is none.
    fn fallback(
        &mut self,
        fallback: &mut Fallback<'_>,
        depth: usize,
        missing: impl FnOnce() -> String,
    ) -> Eval<Value> {
        match fallback {
            Fallback::Absent => Err(missing()),
            Fallback::Ready(value) => self.copy(value),
            Fallback::Pending(body) => {
                let body = *body;
                let value = self.template(body, depth + 1)?;
                *fallback = Fallback::Ready(value.clone());
                Ok(value)
            }
        }
    }

    /// A copy of `value`, charged to the copy budget.
    fn copy(&mut self, value: &Value) -> Eval<Value> {
        let (values, bytes) = weigh(value, self.values_left, self.bytes_left)?;
        self.charge(values, bytes)?;
        Ok(value.clone())
    }

    /// Takes `values` values and `bytes` bytes from the copy budget.
    fn charge(&mut self, values: usize, bytes: usize) -> Eval<()> {
        match (
            self.values_left.checked_sub(values),
            self.bytes_left.checked_sub(bytes),
        ) {
            (Some(values_left), Some(bytes_left)) => {
                self.values_left = values_left;
                self.bytes_left = bytes_left;
                Ok(())
            }
            _ => Err(too_large()),
        }
    }

    /// Evaluates `!f`'s argument `args`: each format string, joined with `,`.
    fn format(&mut self, args: &str, depth: usize) -> Eval<String> {
        let mut pieces = Vec::new();
        let mut rest = args;
        loop {
            let (piece, tail) = split_arg(rest);
            pieces.push(piece);
            match tail {
                Some(tail) => rest = tail,
                None => break,
            }
        }
        // As in kaiju, an empty text after the last `:` is no argument.
        if pieces.last() == Some(&"") {
            pieces.pop();
        }
        let mut out = String::new();
        for (n, piece) in pieces.into_iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let format: Cow<'_, str> = if let Some(inner) = unquote(piece) {
                Cow::Borrowed(inner)
            } else if let Some(body) = template_body(piece) {
                match self.template(body, depth + 1)? {
                    Value::Str(format) => Cow::Owned(format),
                    other => {
                        return Err(format!(
                            "the format string `{}` is {}, not a string",
                            clip(piece),
                            kind(&other)
                        ));
                    }
                }
            } else {
                Cow::Borrowed(piece)
            };
            self.format_one(&format, &mut out, depth)?;
        }
        self.charge(0, out.len())?;
        Ok(out)
    }

    /// Appends `format`, its fields filled, to `out`.
    fn format_one(&mut self, format: &str, out: &mut String, depth: usize) -> Eval<()> {
        let mut rest = format;
        while let Some(at) = rest.find(['{', '}']) {
            let Some((text, tail)) = rest.split_at_checked(at) else {
                break;
            };
            out.push_str(text);
            if let Some(after) = tail.strip_prefix("{{") {
                out.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                out.push('}');
                rest = after;
            } else if let Some(after) = tail.strip_prefix('{') {
                let Some((field, after)) = after.split_once('}') else {
                    return Err("unclosed `{` in the format string".to_owned());
                };
                self.field(field, out, depth)?;
                rest = after;
            } else {
                return Err(
                    "single `}` in the format string (write `}}` for a literal brace)".to_owned(),
                );
            }
            if out.len() > self.bytes_left {
                return Err(too_large());
            }
        }
        out.push_str(rest);
        Ok(())
    }

    /// Appends the value of the format field `field` (between `{` and `}`) to `out`.
    fn field(&mut self, field: &str, out: &mut String, depth: usize) -> Eval<()> {
        let (name, spec) = field
            .split_once(':')
            .map_or((field, None), |(name, spec)| (name, Some(spec)));
        let (name, conversion) = name
            .split_once('!')
            .map_or((name, None), |(name, conversion)| (name, Some(conversion)));
        if name.contains('{') {
            return Err("`{` inside a format field".to_owned());
        }
        if spec.is_some_and(|spec| !spec.is_empty()) {
            return Err(format!(
                "format specs (`{{{}}}`) are not supported",
                clip(field)
            ));
        }
        let repr = match conversion {
            None | Some("s") => false,
            Some("r") => true,
            Some(other) => {
                return Err(format!(
                    "conversion `!{}` is not supported (only `!s` and `!r`)",
                    clip(other)
                ));
            }
        };
        if name.contains(['.', '[']) {
            return Err(format!(
                "`.` and `[` in the format field `{{{}}}` are not supported (separate keys with `-`)",
                clip(field)
            ));
        }
        let mut keys = name.split('-').filter(|key| !key.is_empty());
        let Some(request) = keys.next() else {
            return Err(format!(
                "the format field `{{{}}}` names no request (expected `{{N-key…}}`)",
                clip(field)
            ));
        };
        let keys: Vec<&str> = keys.collect();
        let value = self.resolve(request, &keys, &mut Fallback::Absent, depth)?;
        render(&value, repr, out, self.bytes_left, depth)
    }
}

/// The body of `s` (without its brackets) if `s` is a template: it starts with `[` and ends
/// with `]`.
fn template_body(s: &str) -> Option<&str> {
    s.strip_prefix('[')?.strip_suffix(']')
}

/// The content of `s` if it is wrapped in backticks.
fn unquote(s: &str) -> Option<&str> {
    s.strip_prefix('`')?.strip_suffix('`')
}

/// Splits `text` at its first `:` outside backticks and square brackets, as kaiju splits a
/// template's arguments: the text before it, and the text after it if there is a `:`.
fn split_arg(text: &str) -> (&str, Option<&str>) {
    let mut quoted = false;
    // Like kaiju's counter, this may go below zero (`a]:b` does not split).
    let mut brackets: isize = 0;
    for (at, c) in text.char_indices() {
        match c {
            '`' => quoted = !quoted,
            '[' if !quoted => brackets += 1,
            ']' if !quoted => brackets -= 1,
            ':' if !quoted && brackets == 0 => {
                if let Some((head, tail)) = text.split_at_checked(at) {
                    return (head, tail.strip_prefix(':'));
                }
            }
            _ => {}
        }
    }
    (text, None)
}

/// The batch index written as `text` (`0`, `1`, …, no sign or leading zero).
fn request_index(text: &str) -> Eval<usize> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(format!(
            "`{}` is not a request index (a position in the batch: 0, 1, …)",
            clip(text)
        ));
    }
    // Too large for usize is beyond every batch, like any other index past its end.
    Ok(text.parse().unwrap_or(usize::MAX))
}

/// A default's value from its text (see the module documentation for the order of the rules).
fn literal(text: &str) -> Value {
    let trimmed = text.trim();
    if let Some(integer) = integer(trimmed) {
        return integer;
    }
    let float_like = trimmed.contains(['.', 'e', 'E'])
        && trimmed.bytes().any(|b| b.is_ascii_digit())
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if float_like && let Ok(float) = trimmed.parse::<f64>() {
        return Value::Float(float);
    }
    match trimmed {
        "True" | "true" => return Value::Bool(true),
        "False" | "false" => return Value::Bool(false),
        "None" | "null" => return Value::Nil,
        _ => {}
    }
    for quote in ['\'', '"'] {
        if let Some(inner) = trimmed
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return Value::Str(inner.to_owned());
        }
    }
    Value::Str(text.to_owned())
}

/// `text` as an integer, if it is one: an optional sign and digits without a leading zero,
/// within `i64` or `u64`.
fn integer(text: &str) -> Option<Value> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    match text.parse::<i64>() {
        Ok(n) => Some(Value::Int(n)),
        Err(_) => text.parse::<u64>().ok().map(Value::UInt),
    }
}

/// How many values and bytes a copy of `value` holds, or an error if that exceeds `max_values`
/// or `max_bytes`, or if `value` is nested more than [`MAX_DEPTH`] deep. Iterative, so it
/// neither recurses nor allocates beyond the limits.
fn weigh(value: &Value, max_values: usize, max_bytes: usize) -> Eval<(usize, usize)> {
    let mut stack = vec![(value, 0_usize)];
    let mut values: usize = 1;
    let mut bytes: usize = 0;
    while let Some((value, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(format!(
                "a value to copy is nested more than {MAX_DEPTH} levels deep"
            ));
        }
        match value {
            Value::Str(s) => bytes = bytes.saturating_add(s.len()),
            Value::Bin(data) | Value::Ext(_, data) => bytes = bytes.saturating_add(data.len()),
            Value::Array(items) => values = values.saturating_add(items.len()),
            Value::Map(entries) => values = values.saturating_add(entries.len().saturating_mul(2)),
            Value::Nil | Value::Bool(_) | Value::Int(_) | Value::UInt(_) | Value::Float(_) => {}
        }
        if values > max_values || bytes > max_bytes {
            return Err(too_large());
        }
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|item| (item, depth + 1))),
            Value::Map(entries) => stack.extend(
                entries
                    .iter()
                    .flat_map(|(key, item)| [(key, depth + 1), (item, depth + 1)]),
            ),
            _ => {}
        }
    }
    Ok((values, bytes))
}

/// Appends `value` to `out` as Python's `str()` (or `repr()` if `repr`) would render it; fails
/// once `out` is longer than `limit` bytes or the value is nested too deeply.
fn render(value: &Value, repr: bool, out: &mut String, limit: usize, depth: usize) -> Eval<()> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    match value {
        Value::Nil => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::UInt(n) => out.push_str(&n.to_string()),
        Value::Float(x) => out.push_str(&py_float(*x)),
        Value::Str(s) if repr => repr_str(s, out),
        Value::Str(s) => out.push_str(s),
        Value::Bin(data) => repr_bytes(data, out),
        Value::Ext(code, data) => {
            out.push_str("ExtType(code=");
            out.push_str(&code.to_string());
            out.push_str(", data=");
            repr_bytes(data, out);
            out.push(')');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                render(item, true, out, limit, depth + 1)?;
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (n, (key, item)) in entries.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                render(key, true, out, limit, depth + 1)?;
                out.push_str(": ");
                render(item, true, out, limit, depth + 1)?;
            }
            out.push('}');
        }
    }
    if out.len() > limit {
        return Err(too_large());
    }
    Ok(())
}

/// `x` as Python's `repr(float)`: the shortest round-trip digits, in positional notation for
/// exponents from -4 to 15 (`2.5`, `0.0001`, `3.0`) and scientific otherwise (`1e+16`,
/// `1.5e-07`).
fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let scientific = format!("{x:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific;
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return scientific;
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(mantissa) => ("-", mantissa),
        None => ("", mantissa),
    };
    if !(-4..16).contains(&exponent) {
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{mantissa}e{exponent_sign}{:02}",
            exponent.unsigned_abs()
        );
    }
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    match usize::try_from(exponent) {
        Ok(exponent) => {
            let point = exponent + 1;
            match digits.split_at_checked(point) {
                Some((whole, fraction)) if !fraction.is_empty() => {
                    format!("{sign}{whole}.{fraction}")
                }
                _ => format!(
                    "{sign}{digits}{}.0",
                    "0".repeat(point.saturating_sub(digits.len()))
                ),
            }
        }
        // -4 ≤ exponent < 0: 0.000ddd
        Err(_) => {
            let zeros = usize::try_from(exponent.unsigned_abs()).unwrap_or(1);
            format!("{sign}0.{}{digits}", "0".repeat(zeros.saturating_sub(1)))
        }
    }
}

/// Appends `s` as Python's `repr(str)`: single quotes unless only double quotes avoid
/// escaping, with `\\`, `\t`, `\n`, `\r`, `\xNN`, `\uNNNN` and `\UNNNNNNNN` escapes.
fn repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if printable(c) => out.push(c),
            c => {
                let code = u32::from(c);
                let escaped = if code < 0x100 {
                    format!("\\x{code:02x}")
                } else if code < 0x1_0000 {
                    format!("\\u{code:04x}")
                } else {
                    format!("\\U{code:08x}")
                };
                out.push_str(&escaped);
            }
        }
    }
    out.push(quote);
}

/// Whether Python's `repr` shows `c` as it is (approximately `str.isprintable`: not a
/// control, format, separator other than the space, or private-use character).
fn printable(c: char) -> bool {
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            u32::from(c),
            0xAD | 0x600..=0x605
                | 0x61C
                | 0x6DD
                | 0x70F
                | 0x180E
                | 0x200B..=0x200F
                | 0x202A..=0x202E
                | 0x2060..=0x206F
                | 0xE000..=0xF8FF
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0xE0001..=0xE007F
                | 0xF0000..
        ))
}

/// Appends `data` as Python's `repr(bytes)`: `b'…'` with printable ASCII as it is and
/// `\\`, `\t`, `\n`, `\r`, `\xNN` escapes.
fn repr_bytes(data: &[u8], out: &mut String) {
    let quote = if data.contains(&b'\'') && !data.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push('b');
    out.push(char::from(quote));
    for &byte in data {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b if b == quote => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out.push(char::from(quote));
}

/// What kind of value `value` is, with an article, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) | Value::UInt(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
        Value::Bin(_) => "bytes",
        Value::Array(_) => "a list",
        Value::Map(_) => "a map",
        Value::Ext(..) => "an extension value",
    }
}

/// `text`, shortened to [`MAX_QUOTED_CHARS`] characters for an error message.
fn clip(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((at, _)) => Cow::Owned(format!("{}…", text.get(..at).unwrap_or(text))),
        None => Cow::Borrowed(text),
    }
}

/// The reason given when evaluation goes deeper than [`MAX_DEPTH`].
fn too_deep() -> String {
    format!("nested more than {MAX_DEPTH} levels deep")
}

/// The reason given when the copy budget is exhausted.
fn too_large() -> String {
    format!(
        "the filled params would be too large (over {MAX_COPIED_VALUES} values or {} MiB copied \
         from results)",
        MAX_COPIED_BYTES >> 20
    )
}

#[cfg(test)]
mod tests {
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
            '[', ']', '.', ':', '!', '{', '}', '-', '`', '0', '1', '2', '9', 'n', 's', 'f', 'x',
            'e', 'r', ' ', '\'', '"', 'é',
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
}
