//! YAML files read the way kaiju reads them: PyYAML's YAML 1.1 scalars (`yes`/`on` are
//! booleans, `010` is octal, `1:30` is 90), anchors and aliases, `<<` merge keys.
//!
//! Bounded against hostile input: nesting depth and the number of nodes (aliases included, so
//! a "billion laughs" file is an error, not an out-of-memory).

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::node::{Node, Place, Value};

/// Deepest nesting accepted.
pub(crate) const MAX_DEPTH: usize = 128;
/// Most nodes one file may expand to (aliases count each time they are used).
pub(crate) const MAX_NODES: usize = 200_000;

/// Reading a YAML document failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct YamlError {
    /// Where.
    pub place: Place,
    /// What.
    pub message: String,
}

/// Parses one YAML document (an empty file is `null`; a second document is an error).
pub(crate) fn parse(text: &str, source: &Arc<str>) -> Result<Node, YamlError> {
    let mut builder = Builder {
        source: source.clone(),
        anchors: HashMap::new(),
        nodes: 0,
        parser: Parser::new_from_str(text),
        documents: 0,
    };
    builder.document()
}

struct Builder<'a> {
    source: Arc<str>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    documents: usize,
}

impl<'a> Builder<'a> {
    fn place(&self, span: &Span) -> Place {
        Place::at(self.source.clone(), span.start.line(), span.start.col() + 1)
    }

    fn error(&self, span: &Span, message: impl Into<String>) -> YamlError {
        YamlError {
            place: self.place(span),
            message: message.into(),
        }
    }

    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next() {
            Some(Ok(event)) => Ok(event),
            Some(Err(e)) => Err(YamlError {
                place: Place::at(self.source.clone(), e.marker().line(), e.marker().col() + 1),
                message: e.info().to_owned(),
            }),
            None => Err(YamlError {
                place: Place::whole(self.source.clone()),
                message: "unexpected end of the YAML input".into(),
            }),
        }
    }

    fn count(&mut self, span: &Span, n: usize) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(self.error(
                span,
                format!("the document expands to more than {MAX_NODES} values (aliases included)"),
            ));
        }
        Ok(())
    }

    fn document(&mut self) -> Result<Node, YamlError> {
        let mut root = None;
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart(_) => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return Err(
                            self.error(&span, "a config file holds one YAML document, not several")
                        );
                    }
                }
                Event::StreamEnd => {
                    return Ok(root.unwrap_or_else(|| {
                        Node::new(Value::Null, Place::whole(self.source.clone()))
                    }));
                }
                other => root = Some(self.node(other, span, 0)?),
            }
        }
    }

    fn node(&mut self, event: Event<'a>, span: Span, depth: usize) -> Result<Node, YamlError> {
        if depth > MAX_DEPTH {
            return Err(self.error(&span, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.count(&span, 1)?;
        let place = self.place(&span);
        let (node, anchor) = match event {
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| self.error(&span, "an alias to an unknown anchor"))?;
                let (size, height) = measure(&node);
                if depth + height > MAX_DEPTH {
                    return Err(self.error(
                        &span,
                        format!("nested deeper than {MAX_DEPTH} levels (aliases included)"),
                    ));
                }
                self.count(&span, size)?;
                return Ok(node);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tag = match tag {
                    None => None,
                    Some(t) if t.handle == "!!" || t.handle == "tag:yaml.org,2002:" => {
                        Some(t.suffix.clone())
                    }
                    Some(t) if t.handle == "!" && t.suffix.is_empty() => Some("str".to_owned()),
                    Some(t) => {
                        return Err(self.error(&span, format!("unknown tag `{}{}` (kaiju loads YAML with the safe loader, which has no custom tags)", t.handle, t.suffix)));
                    }
                };
                let value =
                    resolve(&text, style, tag.as_deref()).map_err(|m| self.error(&span, m))?;
                (Node::new(value, place), anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span, depth + 1)?);
                }
                (Node::new(Value::Seq(items), place), anchor)
            }
            Event::MappingStart(anchor, _) => (self.mapping(place, depth)?, anchor),
            _ => return Err(self.error(&span, "unexpected YAML event")),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn mapping(&mut self, place: Place, depth: usize) -> Result<Node, YamlError> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut merged: Vec<(String, Node)> = Vec::new();
        loop {
            let (event, span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let key = self.node(event, span, depth + 1)?;
            let (event, span) = self.next()?;
            let mut value = self.node(event, span, depth + 1)?;
            value.key = Some(key.place.clone());
            let key_text = match &key.value {
                Value::Str(s) => s.clone(),
                Value::Null => "null".into(),
                Value::Bool(b) => b.to_string(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Seq(_) | Value::Map(_) => {
                    return Err(YamlError {
                        place: key.place,
                        message: "a mapping key must be a scalar".into(),
                    });
                }
            };
            if key_text == "<<" && matches!(key.value, Value::Str(_)) {
                // A merge key: the mappings' entries, unless the mapping itself sets them.
                let sources = match value.value {
                    Value::Map(m) => vec![m],
                    Value::Seq(items) => items
                        .into_iter()
                        .filter_map(|n| match n.value {
                            Value::Map(m) => Some(m),
                            _ => None,
                        })
                        .collect(),
                    _ => {
                        return Err(YamlError {
                            place: value.place,
                            message: "`<<` merges a mapping or a list of mappings".into(),
                        });
                    }
                };
                for (k, v) in sources.into_iter().flatten() {
                    if !merged.iter().any(|(m, _)| *m == k) {
                        merged.push((k, v));
                    }
                }
                continue;
            }
            if let Some(&at) = index.get(&key_text) {
                // PyYAML keeps the last value of a repeated key; so does kaiju-rs, loudly.
                tracing::warn!(key = %key_text, at = %key.place, "a mapping repeats a key; the last value wins");
                entries[at].1 = value;
            } else {
                index.insert(key_text.clone(), entries.len());
                entries.push((key_text, value));
            }
        }
        for (k, v) in merged {
            if !index.contains_key(&k) {
                index.insert(k.clone(), entries.len());
                entries.push((k, v));
            }
        }
        Ok(Node::new(Value::Map(entries), place))
    }
}

/// The number of values in `node` and its height (1 for a scalar).
fn measure(node: &Node) -> (usize, usize) {
    let children: Box<dyn Iterator<Item = &Node>> = match &node.value {
        Value::Seq(items) => Box::new(items.iter()),
        Value::Map(entries) => Box::new(entries.iter().map(|(_, v)| v)),
        _ => return (1, 1),
    };
    let (mut size, mut height) = (1usize, 0usize);
    for child in children {
        let (s, h) = measure(child);
        size = size.saturating_add(s);
        height = height.max(h);
    }
    (size, height + 1)
}

/// Types a scalar as PyYAML's resolver does: quoted and block scalars are strings, plain ones
/// are null, bool, int, float or string by the YAML 1.1 rules. An explicit `!!str`, `!!int`,
/// `!!float`, `!!bool` or `!!null` tag is honoured.
pub(crate) fn resolve(text: &str, style: ScalarStyle, tag: Option<&str>) -> Result<Value, String> {
    match tag {
        Some("str") => return Ok(Value::Str(text.to_owned())),
        Some("int") => {
            return int(text)
                .map(Value::Int)
                .ok_or_else(|| format!("`{text}` is not an integer (!!int)"));
        }
        Some("float") => {
            return float(text)
                .or_else(|| int(text).map(|i| i as f64))
                .map(Value::Float)
                .ok_or_else(|| format!("`{text}` is not a float (!!float)"));
        }
        Some("bool") => {
            return boolean(text)
                .map(Value::Bool)
                .ok_or_else(|| format!("`{text}` is not a boolean (!!bool)"));
        }
        Some("null") => return Ok(Value::Null),
        Some("binary" | "timestamp") => return Ok(Value::Str(text.to_owned())),
        Some(other) => return Err(format!("the tag `!!{other}` cannot be used on a scalar")),
        None => {}
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.to_owned()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = boolean(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(i) = int(text) {
        return Ok(Value::Int(i));
    }
    if let Some(f) = float(text) {
        return Ok(Value::Float(f));
    }
    Ok(Value::Str(text.to_owned()))
}

fn boolean(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

/// YAML 1.1 integers: `0b1010`, `0x1F`, `017` (octal), `1_000`, `1:30` (base 60).
pub(crate) fn int(text: &str) -> Option<i64> {
    let (negative, digits) = split_sign(text);
    if digits.is_empty() || digits.starts_with('_') {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    // from_str_radix accepts a sign; PyYAML does not after a prefix (`0x-1` is a string).
    let radix = |digits: &str, radix: u32| {
        (!digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)))
            .then(|| i64::from_str_radix(digits, radix).ok())
            .flatten()
    };
    let magnitude = if let Some(bin) = clean.strip_prefix("0b") {
        radix(bin, 2)?
    } else if let Some(hex) = clean.strip_prefix("0x") {
        radix(hex, 16)?
    } else if clean.contains(':') {
        sexagesimal_int(&clean)?
    } else if clean.len() > 1 && clean.starts_with('0') {
        radix(&clean[1..], 8)?
    } else if clean.bytes().all(|b| b.is_ascii_digit()) && !clean.is_empty() {
        clean.parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(if negative { -magnitude } else { magnitude })
}

fn sexagesimal_int(text: &str) -> Option<i64> {
    let mut parts = text.split(':');
    let first = parts.next()?;
    if first.is_empty() || first.starts_with('0') || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut total: i64 = first.parse().ok()?;
    for part in parts {
        let ok = !part.is_empty() && part.len() <= 2 && part.bytes().all(|b| b.is_ascii_digit());
        let n: i64 = if ok { part.parse().ok()? } else { return None };
        if n >= 60 {
            return None;
        }
        total = total.checked_mul(60)?.checked_add(n)?;
    }
    Some(total)
}

/// YAML 1.1 floats: a dot is required, an exponent needs its sign (`1.5e+3`; `1.5e3` is a
/// string, as in PyYAML), `.inf`, `.nan`, and base 60 (`1:30.5`).
pub(crate) fn float(text: &str) -> Option<f64> {
    let (negative, rest) = split_sign(text);
    let sign = if negative { -1.0 } else { 1.0 };
    match rest {
        ".inf" | ".Inf" | ".INF" => return Some(sign * f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if rest.len() == text.len() => return Some(f64::NAN),
        _ => {}
    }
    let clean: String = rest.chars().filter(|c| *c != '_').collect();
    if clean.contains(':') {
        let (whole, frac) = clean.split_once('.')?;
        let base = sexagesimal_int(whole)? as f64;
        let frac: f64 = format!("0.{frac}").parse().ok()?;
        return Some(sign * (base + frac));
    }
    let (mantissa, exponent) = match clean.find(['e', 'E']) {
        Some(i) => (&clean[..i], Some(&clean[i + 1..])),
        None => (clean.as_str(), None),
    };
    let (whole, frac) = mantissa.split_once('.')?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) || (whole.is_empty() && frac.is_empty()) {
        return None;
    }
    // PyYAML: `.5` is a float, `-.5` and `+.5` are strings.
    if whole.is_empty() && rest.len() != text.len() {
        return None;
    }
    if let Some(exp) = exponent {
        let unsigned = exp.strip_prefix(['+', '-'])?;
        if unsigned.is_empty() || !digits(unsigned) {
            return None;
        }
    }
    clean.parse::<f64>().ok().map(|f| sign * f)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Node, YamlError> {
        parse(text, &Arc::from("t.yml"))
    }

    fn scalar(text: &str) -> Value {
        load(&format!("v: {text}\n"))
            .unwrap()
            .get("v")
            .unwrap()
            .value
            .clone()
    }

    #[test]
    fn yaml_1_1_scalars_read_as_pyyaml_reads_them() {
        for t in ["yes", "Yes", "TRUE", "on", "On", "True", "true"] {
            assert_eq!(scalar(t), Value::Bool(true), "{t}");
        }
        for t in ["no", "NO", "off", "False", "false"] {
            assert_eq!(scalar(t), Value::Bool(false), "{t}");
        }
        assert_eq!(scalar("010"), Value::Int(8));
        assert_eq!(scalar("0x1f"), Value::Int(31));
        assert_eq!(scalar("0b101"), Value::Int(5));
        assert_eq!(scalar("1_000"), Value::Int(1000));
        assert_eq!(scalar("12:30"), Value::Int(750));
        assert_eq!(scalar("-42"), Value::Int(-42));
        assert_eq!(scalar("0"), Value::Int(0));
        assert_eq!(scalar("1.5"), Value::Float(1.5));
        assert_eq!(scalar("1.5e+3"), Value::Float(1500.0));
        assert_eq!(scalar("1.5e3"), Value::Str("1.5e3".into()));
        assert_eq!(scalar("~"), Value::Null);
        assert_eq!(scalar(""), Value::Null);
        assert_eq!(scalar("2020-01-01"), Value::Str("2020-01-01".into()));
        assert_eq!(scalar("1.0.0"), Value::Str("1.0.0".into()));
        assert_eq!(scalar("y"), Value::Str("y".into()));
        assert_eq!(scalar("'yes'"), Value::Str("yes".into()));
        assert_eq!(scalar("\"010\""), Value::Str("010".into()));
        assert_eq!(scalar("!!str 10"), Value::Str("10".into()));
        assert_eq!(scalar("089"), Value::Str("089".into()));
    }

    #[test]
    fn places_are_one_based() {
        let root = load("a:\n  b: 1\n").unwrap();
        let b = root.get("a").unwrap().get("b").unwrap();
        assert_eq!((b.place.line, b.place.col), (2, 6));
        assert_eq!(b.place.to_string(), "t.yml:2:6");
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let root = load("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n").unwrap();
        let other = root.get("other").unwrap();
        assert_eq!(other.get("x").unwrap().value, Value::Int(1));
        assert_eq!(other.get("y").unwrap().value, Value::Int(3));
    }

    #[test]
    fn hostile_documents_are_errors_not_crashes() {
        let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        let err = load(laughs).unwrap_err();
        assert!(err.message.contains("more than"), "{err}");
        let deep = "[".repeat(10_000);
        assert!(load(&deep).is_err());
        let err = load("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.message.contains("one YAML document"), "{err}");
        assert!(load("a: [1, 2\n").is_err());
    }
}
