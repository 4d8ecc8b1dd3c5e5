//! Batch templates: with `RPC-Batch-Template: ?1` ([`Batch::template`](crate::Batch::template)),
//! a request's params are filled from the results of earlier requests in the same batch, as
//! kaiju does. This page is the grammar; the module has no public items.
//!
//! The server walks the params: map values (never keys) and array items recursively, and every
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
//! Filling never panics, and its work is bounded: params and template evaluation are limited
//! to 128 levels, and one batch's templates share one budget of memory, in bytes as the values
//! take them (32 bytes a value, plus the heap blocks of its strings, arrays and maps): every
//! copy out of the results, every `!f` output, and every result the batch holds for later
//! templates is charged to it (the server's `max_batch_bytes`, default 8 MiB). So `["[0]", "[0]"]` repeated down a batch,
//! which doubles its data at each request, stops at the budget instead of exhausting memory:
//! the request that would pass it fails with "invalid params" (or, for a result, "invalid
//! request"), and the rest of the batch is aborted.

use std::borrow::Cow;
use std::fmt;

use kaiju_core::Value;

mod render;
mod syntax;

use render::render;
use syntax::{literal, request_index, split_arg, template_body, unquote};

/// The deepest nesting accepted, both of arrays and maps in params (the decoders' own cap) and
/// within one template's evaluation (nested templates, lists mapped over, values rendered).
const MAX_DEPTH: usize = 128;

/// The default budget of one batch's templates, in bytes: see [`Budget`].
pub(crate) const DEFAULT_BUDGET_BYTES: usize = 8 << 20;

/// What one value costs held in memory, beyond its heap block: its slot.
const VALUE_BYTES: usize = std::mem::size_of::<Value>();

/// What a heap block of `n` bytes costs: malloc's header and rounding, and its least chunk
/// (on 64-bit glibc, 32 bytes even for a one-byte string); nothing for an empty one.
fn block(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n.saturating_add(BLOCK_OVERHEAD).max(32)
    }
}

/// What passing over one map entry in a lookup costs the budget: its work, counted as bytes
/// so that one budget bounds a batch's memory and its time (8 MiB pay for about half a million
/// entries passed over).
const SCAN_BYTES: usize = 16;

/// malloc's header and rounding of one heap block, about.
const BLOCK_OVERHEAD: usize = 16;

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
#[cfg(test)]
pub(crate) fn fill(params: &Value, results: &[Option<Value>]) -> Result<Value, TemplateError> {
    let results: Vec<Option<&Value>> = results.iter().map(Option::as_ref).collect();
    fill_within(params, &results, &mut Budget::default())
}

/// What the templates of one batch may still hold, in bytes as values take them in memory:
/// one budget for the whole batch, charged for every copy out of the results and every result
/// held for later templates, so that a hundred requests cannot each copy the maximum, nor a
/// chain of requests double its data at each step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// The budget it started with.
    max_bytes: usize,
    bytes_left: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET_BYTES)
    }
}

impl Budget {
    /// A budget of `max_bytes`.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            bytes_left: max_bytes,
        }
    }

    /// Charges a result the batch holds for later templates; `Err` (with the reason) when it
    /// does not fit what is left.
    pub(crate) fn hold(&mut self, result: &Value) -> Result<(), String> {
        let held = weigh(result, self.bytes_left).map_err(|_| {
            format!(
                "the batch's results would take over {} bytes (max_batch_bytes)",
                self.max_bytes
            )
        })?;
        self.bytes_left -= held;
        Ok(())
    }
}

/// [`fill_within`], spending from `budget` (shared by the requests of one batch).
pub(crate) fn fill_within(
    params: &Value,
    results: &[Option<&Value>],
    budget: &mut Budget,
) -> Result<Value, TemplateError> {
    let mut filler = Filler {
        results,
        bytes_left: budget.bytes_left,
    };
    let filled = filler.value(params, 0);
    budget.bytes_left = filler.bytes_left;
    filled
}

/// The outcome of evaluating part of a template: the value, or why it failed.
type Eval<T> = Result<T, String>;

/// One [`fill_within`] call: the results to read and what is left of its budget.
struct Filler<'r> {
    /// The batch's results so far, by request index.
    results: &'r [Option<&'r Value>],
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
                    let mut scanned = 0_usize;
                    let found = entries.iter().rev().find_map(|(k, v)| {
                        scanned += 1;
                        match k {
                            Value::Str(s) if s.as_str() == key => Some(v),
                            _ => None,
                        }
                    });
                    // The work of finding a key is charged too, or a batch of templates
                    // selecting (and falling back) through a large map costs a core for
                    // minutes while copying next to nothing.
                    self.charge(scanned.saturating_mul(SCAN_BYTES))?;
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
                    self.charge(VALUE_BYTES.saturating_mul(items.len().saturating_add(1)))?;
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

    /// A copy of `value`, charged to the budget.
    fn copy(&mut self, value: &Value) -> Eval<Value> {
        let bytes = weigh(value, self.bytes_left).map_err(|()| too_large(self.bytes_left))?;
        self.charge(bytes)?;
        Ok(value.clone())
    }

    /// Takes `bytes` bytes from the budget.
    fn charge(&mut self, bytes: usize) -> Eval<()> {
        match self.bytes_left.checked_sub(bytes) {
            Some(left) => {
                self.bytes_left = left;
                Ok(())
            }
            None => Err(too_large(self.bytes_left)),
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
        self.charge(block(out.len()).saturating_add(VALUE_BYTES))?;
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
                return Err(too_large(self.bytes_left));
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

/// How many bytes of memory a copy of `value` takes (a slot per value, and the heap blocks of
/// its strings, bytes, extensions, arrays and maps), or `Err` if that is over `max_bytes`. Iterative, so it
/// neither recurses nor allocates beyond what the value itself holds.
fn weigh(value: &Value, max_bytes: usize) -> Result<usize, ()> {
    let mut stack = vec![value];
    let mut bytes: usize = 0;
    while let Some(value) = stack.pop() {
        bytes = bytes.saturating_add(VALUE_BYTES);
        match value {
            Value::Str(s) => bytes = bytes.saturating_add(block(s.len())),
            Value::Bin(data) | Value::Ext(_, data) => {
                bytes = bytes.saturating_add(block(data.len()));
            }
            // The items' slots are charged as each item is; the block's overhead here.
            Value::Array(items) => {
                if !items.is_empty() {
                    bytes = bytes.saturating_add(BLOCK_OVERHEAD);
                }
                stack.extend(items.iter());
            }
            Value::Map(entries) => {
                if !entries.is_empty() {
                    bytes = bytes.saturating_add(BLOCK_OVERHEAD);
                }
                stack.extend(entries.iter().flat_map(|(key, item)| [key, item]));
            }
            Value::Nil | Value::Bool(_) | Value::Int(_) | Value::UInt(_) | Value::Float(_) => {}
        }
        if bytes > max_bytes {
            return Err(());
        }
    }
    Ok(bytes)
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

/// The reason given when the budget is exhausted, `left` bytes before this request's filling.
fn too_large(left: usize) -> String {
    format!(
        "the filled params would be too large (over the {left} bytes left of the batch's \
         template budget, max_batch_bytes)"
    )
}

#[cfg(test)]
mod tests;
