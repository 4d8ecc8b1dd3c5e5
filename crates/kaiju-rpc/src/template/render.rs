//! Values rendered as Python's `str()` and `repr()`, for the `!f` operator.

use kaiju_core::Value;

use super::{Eval, MAX_DEPTH, too_deep, too_large};

/// Appends `value` to `out` as Python's `str()` (or `repr()` if `repr`) would render it; fails
/// once `out` is longer than `limit` bytes or the value is nested too deeply.
pub(super) fn render(
    value: &Value,
    repr: bool,
    out: &mut String,
    limit: usize,
    depth: usize,
) -> Eval<()> {
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
        return Err(too_large(limit));
    }
    Ok(())
}

/// `x` as Python's `repr(float)`: the shortest round-trip digits, in positional notation for
/// exponents from -4 to 15 (`2.5`, `0.0001`, `3.0`) and scientific otherwise (`1e+16`,
/// `1.5e-07`).
pub(super) fn py_float(x: f64) -> String {
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
pub(super) fn repr_str(s: &str, out: &mut String) {
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
pub(super) fn printable(c: char) -> bool {
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
pub(super) fn repr_bytes(data: &[u8], out: &mut String) {
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
