//! Python literals, as kaiju reads template defaults and environment values with
//! `ast.literal_eval`: `True`, `None`, `42`, `4.5`, `"text"`, `[1, 2]`, `{"a": 1}`.
//!
//! kaiju crashes on a default that is not a literal (`1.0.0`, `127.0.0.1`); here such a text
//! is simply not a literal, and the caller keeps it as a string.

use super::node::{Node, Place, Value};

/// Deepest nesting of lists and dicts accepted in a literal.
const MAX_DEPTH: usize = 32;

/// The value of a Python literal, or `None` when `text` is not one.
pub(crate) fn parse(text: &str, place: &Place) -> Option<Node> {
    let mut p = Literal {
        s: text.trim().as_bytes(),
        at: 0,
        place,
    };
    let value = p.value(0)?;
    p.blank();
    (p.at == p.s.len()).then_some(value)
}

/// kaiju's `_init_env_value`: an environment or `--env` value. Empty is no value;
/// `true`/`false`/`none` in any case are typed; a literal is typed; anything else is the
/// trimmed text.
pub(crate) fn env_value(text: &str, place: &Place) -> Option<Node> {
    let t = text.trim();
    let value = match t.to_ascii_lowercase().as_str() {
        "" => return None,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "none" => Value::Null,
        _ => {
            return Some(
                parse(t, place)
                    .unwrap_or_else(|| Node::new(Value::Str(t.to_owned()), place.clone())),
            );
        }
    };
    Some(Node::new(value, place.clone()))
}

struct Literal<'a> {
    s: &'a [u8],
    at: usize,
    place: &'a Place,
}

impl Literal<'_> {
    fn blank(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        self.blank();
        if self.peek() == Some(b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn node(&self, value: Value) -> Node {
        Node::new(value, self.place.clone())
    }

    fn value(&mut self, depth: usize) -> Option<Node> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.blank();
        match self.peek()? {
            b'[' => self.seq(b'[', b']', depth),
            b'(' => self.seq(b'(', b')', depth),
            b'{' => self.dict(depth),
            b'"' | b'\'' => self.string().map(|s| self.node(Value::Str(s))),
            _ => self.word(),
        }
    }

    fn seq(&mut self, open: u8, close: u8, depth: usize) -> Option<Node> {
        self.eat(open);
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(self.node(Value::Seq(items)));
            }
            items.push(self.value(depth + 1)?);
            if !self.eat(b',') {
                if !self.eat(close) {
                    return None;
                }
                // `(1)` is 1 in Python: parentheses without a comma group, they make no tuple.
                if open == b'(' && items.len() == 1 {
                    return items.pop();
                }
                return Some(self.node(Value::Seq(items)));
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Option<Node> {
        self.eat(b'{');
        let mut entries: Vec<(String, Node)> = Vec::new();
        loop {
            if self.eat(b'}') {
                return Some(self.node(Value::Map(entries)));
            }
            let key = match self.value(depth + 1)?.value {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Bool(b) => if b { "True" } else { "False" }.to_owned(),
                _ => return None,
            };
            if !self.eat(b':') {
                return None;
            }
            let value = self.value(depth + 1)?;
            entries.retain(|(k, _)| *k != key);
            entries.push((key, value));
            if !self.eat(b',') {
                return self.eat(b'}').then(|| self.node(Value::Map(entries)));
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.at += 1;
            match b {
                _ if b == quote => break,
                b'\\' => {
                    let e = self.peek()?;
                    self.at += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'0' => 0,
                        other => other,
                    });
                }
                b'\n' => return None,
                _ => out.push(b),
            }
        }
        String::from_utf8(out).ok()
    }

    fn word(&mut self) -> Option<Node> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'))
        {
            self.at += 1;
        }
        let word = std::str::from_utf8(&self.s[start..self.at]).ok()?;
        let value = match word {
            "True" => Value::Bool(true),
            "False" => Value::Bool(false),
            "None" => Value::Null,
            _ => number(word)?,
        };
        Some(self.node(value))
    }
}

/// A Python int or float literal (`42`, `-1_000`, `0x1f`, `0o17`, `0b1`, `4.5`, `1e3`, `.5`).
fn number(word: &str) -> Option<Value> {
    let (negative, digits) = match word.as_bytes().first()? {
        b'-' => (true, &word[1..]),
        b'+' => (false, &word[1..]),
        _ => (false, word),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let radix = |prefix: &str, radix: u32| {
        lower
            .strip_prefix(prefix)
            .and_then(|d| i64::from_str_radix(d, radix).ok())
    };
    let int = radix("0x", 16)
        .or_else(|| radix("0o", 8))
        .or_else(|| radix("0b", 2))
        .or_else(|| {
            let decimal = clean.bytes().all(|b| b.is_ascii_digit());
            // Python rejects leading zeros in decimal ints (`010` is a SyntaxError).
            let leading_zero = clean.len() > 1 && clean.starts_with('0');
            (decimal && !leading_zero)
                .then(|| clean.parse::<i64>().ok())
                .flatten()
        });
    if let Some(i) = int {
        return Some(Value::Int(if negative { -i } else { i }));
    }
    let floaty = clean
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && clean.bytes().any(|b| b.is_ascii_digit())
        && (clean.contains('.') || lower.contains('e'))
        && clean.matches('.').count() <= 1;
    if !floaty {
        return None;
    }
    let f: f64 = clean.parse().ok()?;
    Some(Value::Float(if negative { -f } else { f }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn lit(text: &str) -> Option<Value> {
        parse(text, &Place::whole("t")).map(|n| n.value)
    }

    #[test]
    fn python_literals() {
        assert_eq!(lit("True"), Some(Value::Bool(true)));
        assert_eq!(lit("None"), Some(Value::Null));
        assert_eq!(lit("42"), Some(Value::Int(42)));
        assert_eq!(lit("-1_000"), Some(Value::Int(-1000)));
        assert_eq!(lit("0x1f"), Some(Value::Int(31)));
        assert_eq!(lit("4.5"), Some(Value::Float(4.5)));
        assert_eq!(lit(" 1e3 "), Some(Value::Float(1000.0)));
        assert_eq!(lit("\"\""), Some(Value::Str(String::new())));
        assert_eq!(
            lit("'redis://h:6379'"),
            Some(Value::Str("redis://h:6379".into()))
        );
        let list = lit("[1, 'a', None]").unwrap();
        assert!(matches!(list, Value::Seq(ref items) if items.len() == 3));
        let map = lit("{'a': 1, 'b': [True]}").unwrap();
        assert!(matches!(map, Value::Map(ref e) if e.len() == 2));
        for not in [
            "1.0.0",
            "127.0.0.1",
            "dev",
            "true",
            "none",
            "a b",
            "010",
            "[1,",
            "{1}",
            "",
        ] {
            assert_eq!(lit(not), None, "{not}");
        }
    }

    #[test]
    fn environment_values() {
        let env = |t: &str| env_value(t, &Place::whole("t")).map(|n| n.value);
        assert_eq!(env(" "), None);
        assert_eq!(env("TRUE"), Some(Value::Bool(true)));
        assert_eq!(env("none"), Some(Value::Null));
        assert_eq!(env("42"), Some(Value::Int(42)));
        assert_eq!(env("1.0.0"), Some(Value::Str("1.0.0".into())));
        assert_eq!(env(" dev "), Some(Value::Str("dev".into())));
    }
}
