//! The text of a template: its body, arguments, request index, and literal defaults.

use kaiju_core::Value;

use super::{Eval, clip};

/// The body of `s` (without its brackets) if `s` is a template: it starts with `[` and ends
/// with `]`.
pub(super) fn template_body(s: &str) -> Option<&str> {
    s.strip_prefix('[')?.strip_suffix(']')
}

/// The content of `s` if it is wrapped in backticks.
pub(super) fn unquote(s: &str) -> Option<&str> {
    s.strip_prefix('`')?.strip_suffix('`')
}

/// Splits `text` at its first `:` outside backticks and square brackets, as kaiju splits a
/// template's arguments: the text before it, and the text after it if there is a `:`.
pub(super) fn split_arg(text: &str) -> (&str, Option<&str>) {
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
pub(super) fn request_index(text: &str) -> Eval<usize> {
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
pub(super) fn literal(text: &str) -> Value {
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
pub(super) fn integer(text: &str) -> Option<Value> {
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
