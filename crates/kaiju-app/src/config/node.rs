//! The config tree: YAML values that remember where they were written.

use std::fmt;
use std::sync::Arc;

/// Where a value was written: the file, line and column (1-based), or the command line or
/// the environment for values that came from there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file (or a description such as `--env main_name`).
    pub source: Arc<str>,
    /// Line, 1-based; `0` when the source has no lines.
    pub line: usize,
    /// Column, 1-based; `0` when the source has no lines.
    pub col: usize,
    /// Where the value written here came from, when a template took it from elsewhere
    /// (`the value of --env PORT`): shown after the place, in parentheses.
    pub note: Option<Arc<str>>,
}

impl Place {
    /// A place without lines (`--env`, an OS environment variable, a built-in default).
    pub fn whole(source: impl Into<Arc<str>>) -> Self {
        Self {
            source: source.into(),
            line: 0,
            col: 0,
            note: None,
        }
    }

    /// Line `line`, column `col` (both 1-based) of `source`.
    pub fn at(source: impl Into<Arc<str>>, line: usize, col: usize) -> Self {
        Self {
            source: source.into(),
            line,
            col,
            note: None,
        }
    }

    /// This place, noting where its value came from.
    pub(crate) fn noted(&self, note: impl Into<Arc<str>>) -> Self {
        Self {
            note: Some(note.into()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.source)?;
        } else {
            write!(f, "{}:{}:{}", self.source, self.line, self.col)?;
        }
        match &self.note {
            Some(note) => write!(f, " ({note})"),
            None => Ok(()),
        }
    }
}

/// A config value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it was written.
    pub place: Place,
    /// Where its key was written, for a value of a mapping read from YAML: errors about a
    /// setting point there ([`Node::key_place`]).
    pub key: Option<Place>,
    /// Where a template took this value from, when that is the OS environment or an env file
    /// (`the environment variable DB_PASSWORD`, `` `DB_PASSWORD` of an env file ``). Such a
    /// value is never shown: [`Config::redacted`](super::Config::redacted) hides it, and an
    /// error names this instead of quoting it. `None` for values written in the config, template
    /// defaults and `--env` values.
    pub from_env: Option<Arc<str>>,
}

/// `text` with every whole-word occurrence of `word` (not inside a longer run of letters and
/// digits) replaced by `with`.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let alnum = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        let starts_alnum = alnum(word.chars().next());
        let ends_alnum = alnum(word.chars().next_back());
        out.push_str(&rest[..at]);
        if (starts_alnum && alnum(before)) || (ends_alnum && alnum(after)) {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// A config value, typed as kaiju's YAML 1.1 loader types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null`, or nothing.
    Null,
    /// `true`, `True`, `yes`, `on`, ... (YAML 1.1).
    Bool(bool),
    /// An integer (decimal, `0x`, `0o`/leading-zero octal, `0b`, `1_000`, `1:30` sexagesimal).
    Int(i64),
    /// A float (`1.5`, `1.5e+3`, `.inf`).
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    Seq(Vec<Node>),
    /// A mapping, in file order, keys unique.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// A node at `place`.
    pub fn new(value: Value, place: Place) -> Self {
        Self {
            value,
            place,
            key: None,
            from_env: None,
        }
    }

    /// Marks this value and everything in it as taken from `from` (see [`Node::from_env`]).
    pub(crate) fn mark_from_env(&mut self, from: &Arc<str>) {
        self.from_env = Some(from.clone());
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|i| i.mark_from_env(from)),
            Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| v.mark_from_env(from)),
            _ => {}
        }
    }

    /// `message` (an error about this value) with every value in it that must not be shown
    /// replaced by where it came from: values from the environment (see [`Node::from_env`]),
    /// and all of them when `secret` (the setting's name says it is one). Quoted forms
    /// (`"text"`, `` `42` ``) and the bare text as a whole word are replaced.
    pub(crate) fn scrub(&self, message: String, secret: bool) -> String {
        let mut hidden = Vec::new();
        self.hidden_texts(secret, &mut hidden);
        let mut message = message;
        for (text, label) in hidden {
            if text.is_empty() {
                continue;
            }
            message = message
                .replace(&format!("{text:?}"), &label)
                .replace(&format!("`{text}`"), &label);
            message = replace_word(&message, &text, &label);
        }
        message
    }

    fn hidden_texts(&self, secret: bool, out: &mut Vec<(String, String)>) {
        let label = match (&self.from_env, secret) {
            (Some(from), _) => Some(format!("<the value of {from}>")),
            (None, true) => Some("<hidden>".to_owned()),
            (None, false) => None,
        };
        let text = match &self.value {
            Value::Seq(items) => {
                items.iter().for_each(|i| i.hidden_texts(secret, out));
                None
            }
            Value::Map(entries) => {
                entries
                    .iter()
                    .for_each(|(k, v)| v.hidden_texts(secret || super::is_secret_name(k), out));
                None
            }
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => None,
        };
        if let (Some(text), Some(label)) = (text, label) {
            out.push((text, label));
        }
    }

    /// Where an error about this value points: its key (with the value's note, such as `the
    /// value of --env PORT`), or the value itself when it has no key (a list item, a JSON
    /// config).
    pub fn key_place(&self) -> Place {
        match &self.key {
            Some(key) => Place {
                note: self.place.note.clone(),
                ..key.clone()
            },
            None => self.place.clone(),
        }
    }

    /// The entry `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node at a serde path such as `settings.nodes[1]` (as `serde_path_to_error` prints
    /// it), or the deepest node on the way there: where an error about that path points.
    pub fn locate(&self, path: &str) -> &Node {
        let mut node = self;
        for segment in path.split('.').filter(|s| !s.is_empty() && *s != "?") {
            let (name, indexes) = match segment.find('[') {
                Some(i) => (&segment[..i], &segment[i..]),
                None => (segment, ""),
            };
            if !name.is_empty() {
                match node.get(name) {
                    Some(next) => node = next,
                    None => return node,
                }
            }
            for index in indexes
                .split(['[', ']'])
                .filter_map(|i| i.parse::<usize>().ok())
            {
                match &node.value {
                    Value::Seq(items) if index < items.len() => node = &items[index],
                    _ => return node,
                }
            }
        }
        node
    }

    /// The value as JSON, for typed deserialization and for printing. A float that JSON
    /// cannot hold (NaN, infinity) becomes the text Python gives it (`nan`, `inf`, `-inf`), so
    /// that a setting expecting a number refuses it instead of reading `null` (its default) in
    /// its place, and a text setting reads what a Python app would send.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or_else(
                || {
                    J::String(
                        match (f.is_nan(), f.is_sign_positive()) {
                            (true, _) => "nan",
                            (false, true) => "inf",
                            (false, false) => "-inf",
                        }
                        .to_owned(),
                    )
                },
                J::Number,
            ),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A tree from JSON (for values given as JSON on the command line), all at `place`.
    pub fn from_json(json: &serde_json::Value, place: &Place) -> Self {
        use serde_json::Value as J;
        let value = match json {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(items) => {
                Value::Seq(items.iter().map(|i| Self::from_json(i, place)).collect())
            }
            J::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Self::from_json(v, place)))
                    .collect(),
            ),
        };
        Self::new(value, place.clone())
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}
