//! kaiju's config templates: a string value `"[key]"` or `"[key:default]"` is replaced by the
//! typed value of `key` from the environment (see [`Env`]). The grammar users read is in the
//! docs of the `config` module (docs.rs shows it); this file implements it.

use super::ConfigError;
use super::literal;
use super::node::{Node, Place, Value};

/// Deepest nesting of templates inside templates.
const MAX_NESTING: usize = 8;

/// Where template values come from, highest precedence first: `--env` values, then OS
/// environment variables (named exactly as the key, case-sensitive), then env files
/// (dotted keys descend their maps).
#[derive(Debug, Clone, Default)]
pub(crate) struct Env {
    pub(crate) cli: Vec<(String, Node)>,
    pub(crate) os: Vec<(String, String)>,
    pub(crate) files: Vec<(String, Node)>,
}

/// Which source of an [`Env`] a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Cli,
    Os,
    File,
}

impl Env {
    fn lookup(&self, key: &str) -> Option<(Node, Source)> {
        if let Some((_, v)) = self.cli.iter().rev().find(|(k, _)| k == key) {
            return Some((v.clone(), Source::Cli));
        }
        if let Some((k, v)) = self.os.iter().find(|(k, _)| k == key)
            && let Some(node) =
                literal::env_value(v, &Place::whole(format!("environment variable {k}")))
        {
            return Some((node, Source::Os));
        }
        let mut parts = key.split('.');
        let first = parts.next()?;
        let (_, root) = self.files.iter().rev().find(|(k, _)| k == first)?;
        let rest: Vec<&str> = parts.collect();
        descend(root, &rest).map(|n| (n, Source::File))
    }
}

/// kaiju's `get_field`: descend maps; over a list, map the rest of the path over the items;
/// a scalar in the middle means no value.
fn descend(node: &Node, path: &[&str]) -> Option<Node> {
    let Some((first, rest)) = path.split_first() else {
        return Some(node.clone());
    };
    match &node.value {
        Value::Map(_) => descend(node.get(first)?, rest),
        Value::Seq(items) => {
            let mapped: Option<Vec<Node>> = items.iter().map(|i| descend(i, path)).collect();
            Some(Node::new(Value::Seq(mapped?), node.place.clone()))
        }
        _ => None,
    }
}

/// Fills every template in `node` (mapping values, list items; never keys).
pub(crate) fn fill(node: &mut Node, env: &Env) -> Result<(), ConfigError> {
    fill_in(node, env, false)
}

/// Parts of a name that make its value a secret: hidden in printed configs and in errors.
const SECRET_PARTS: [&str; 13] = [
    "passw",
    "pwd",
    "pass",
    "secret",
    "token",
    "auth",
    "private",
    "credential",
    "cookie",
    "jwt",
    "bearer",
    "session",
    "salt",
];

/// Whether the value of `key` is a secret: its name holds one of [`SECRET_PARTS`], or one of
/// its words (split at `_`, `-`, `.`, spaces and camelCase) ends in `key` (`key`, `api-key`,
/// `apiKey`, `cookie_key`, `signing_key`) or starts with `sign` (`signature`, `signing_key`).
pub(crate) fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    if SECRET_PARTS.iter().any(|w| lower.contains(w)) {
        return true;
    }
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            words.push(std::mem::take(&mut word));
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    words.push(word);
    words
        .iter()
        .any(|w| w.ends_with("key") || w.ends_with("keys") || w.starts_with("sign"))
}

/// Whether a string value is a secret by its form: an HTTP credential (`Bearer ...`, `Basic
/// ...`, `Token ...`).
pub(crate) fn is_secret_text(s: &str) -> bool {
    let lower = s.trim_start().to_ascii_lowercase();
    ["bearer ", "basic ", "token ", "digest "]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// How a config string may appear in a message: hidden under a secret key, URLs without
/// their password.
pub(crate) fn shown(s: &str, secret: bool) -> String {
    if secret || is_secret_text(s) {
        "<hidden>".into()
    } else if s.contains("://") {
        kaiju_core::redact_url(s)
    } else {
        s.to_owned()
    }
}

fn fill_in(node: &mut Node, env: &Env, secret: bool) -> Result<(), ConfigError> {
    match &mut node.value {
        Value::Map(entries) => entries
            .iter_mut()
            .try_for_each(|(k, v)| fill_in(v, env, secret || is_secret_key(k))),
        Value::Seq(items) => items.iter_mut().try_for_each(|v| fill_in(v, env, secret)),
        Value::Str(s) => {
            if let Some(mut value) = expand(s, &node.place, env, 0, secret)? {
                value.key = node.key.take();
                *node = value;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn error(place: &Place, template: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(place.clone(), format!("template `{template}`: {message}"))
}

/// The value of a template string, or `None` when `s` is not a template.
fn expand(
    s: &str,
    place: &Place,
    env: &Env,
    depth: usize,
    secret: bool,
) -> Result<Option<Node>, ConfigError> {
    let shown = shown(s, secret);
    let s_shown = shown.as_str();
    let opens = s.starts_with('[');
    let closes = s.ends_with(']');
    if s.len() >= 2 && s.starts_with('`') && s.ends_with('`') {
        return Ok(Some(Node::new(
            Value::Str(s[1..s.len() - 1].to_owned()),
            place.clone(),
        )));
    }
    if !opens && !closes {
        return Ok(None);
    }
    if !(opens && closes) || s.len() < 2 {
        return Err(error(
            place,
            s_shown,
            "unbalanced brackets: a template is a whole string in brackets, `[key]` or `[key:default]`; quote a literal bracket with backticks",
        ));
    }
    if depth >= MAX_NESTING {
        return Err(error(
            place,
            s_shown,
            format!("nested deeper than {MAX_NESTING} templates"),
        ));
    }
    let inner = &s[1..s.len() - 1];
    let mut args = split(inner).map_err(|m| error(place, s_shown, m))?;
    if let Some(op) = args.first().and_then(|a| a.strip_prefix('!')) {
        if op != "s" {
            return Err(error(
                place,
                s_shown,
                format!(
                    "the operator `!{op}` is not supported by kaiju-rs; only selection (`[key]`, `[key:default]`) is"
                ),
            ));
        }
        args.remove(0);
    }
    if args.len() > 2 {
        tracing::warn!(template = s_shown, at = %place, "arguments after the default are ignored");
    }
    let key = match args.first().copied() {
        Some(k) if is_template(k) => match expand(k, place, env, depth + 1, secret)? {
            Some(Node {
                value: Value::Str(k),
                ..
            }) => k,
            _ => {
                return Err(error(
                    place,
                    s_shown,
                    "a nested key template must give a string",
                ));
            }
        },
        Some(k) => unquote(k).to_owned(),
        None => String::new(),
    };
    if key.is_empty() {
        return Err(error(place, s_shown, "the key is empty"));
    }
    if let Some((mut value, source)) = env.lookup(&key) {
        // From --env or the OS environment: point at the template, and name the source. An
        // env-file value keeps its place in the env file.
        match source {
            Source::Cli => {
                value.place = place.noted(format!("the value of --env {key}"));
            }
            Source::Os => {
                value.place = place.noted(format!("the value of the environment variable {key}"));
                value.mark_from_env(&format!("the environment variable {key}").into());
            }
            Source::File => value.mark_from_env(&format!("`{key}` of an env file").into()),
        }
        return Ok(Some(value));
    }
    match args.get(1).copied() {
        None | Some("") => Err(error(
            place,
            s_shown,
            format!(
                "no value for `{key}` and no default; give it in an env file (-f), with --env {key}=VALUE, or as the environment variable {key}"
            ),
        )),
        Some(default) if is_template(default) => {
            match expand(default, place, env, depth + 1, secret)? {
                Some(v) => Ok(Some(v)),
                None => Err(error(place, s_shown, "the default template has no value")),
            }
        }
        Some(default) => {
            let text = unquote(default);
            Ok(Some(literal::parse(text, place).unwrap_or_else(|| {
                Node::new(Value::Str(text.to_owned()), place.clone())
            })))
        }
    }
}

fn is_template(arg: &str) -> bool {
    arg.len() >= 2 && arg.starts_with('[') && arg.ends_with(']')
}

fn unquote(arg: &str) -> &str {
    if arg.len() >= 2 && arg.starts_with('`') && arg.ends_with('`') {
        &arg[1..arg.len() - 1]
    } else {
        arg
    }
}

/// Splits on `:` at bracket depth 0, outside backticks.
fn split(inner: &str) -> Result<Vec<&str>, &'static str> {
    let mut args = Vec::new();
    let (mut depth, mut quoted, mut start) = (0usize, false, 0usize);
    for (i, c) in inner.char_indices() {
        match c {
            '`' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth = depth.checked_sub(1).ok_or("unbalanced brackets")?,
            ':' if !quoted && depth == 0 => {
                args.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced brackets");
    }
    if quoted {
        return Err("an unclosed backtick");
    }
    args.push(&inner[start..]);
    Ok(args)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn place() -> Place {
        Place::at("app.yml", 3, 9)
    }

    fn str_node(s: &str) -> Node {
        Node::new(Value::Str(s.into()), place())
    }

    fn eval(s: &str, env: &Env) -> Result<Value, ConfigError> {
        let mut n = str_node(s);
        fill(&mut n, env)?;
        Ok(n.value)
    }

    fn env() -> Env {
        let file = |v| Node::new(v, Place::whole("env.yml"));
        Env {
            cli: vec![("name".into(), file(Value::Str("from-cli".into())))],
            os: vec![
                ("name".into(), "from-os".into()),
                ("port".into(), "6380".into()),
                ("flag".into(), "".into()),
            ],
            files: vec![
                ("name".into(), file(Value::Str("from-file".into()))),
                (
                    "redis".into(),
                    file(Value::Map(vec![(
                        "host".into(),
                        file(Value::Str("h".into())),
                    )])),
                ),
                ("version".into(), file(Value::Str("7".into()))),
            ],
        }
    }

    #[test]
    fn precedence_cli_then_os_then_files_then_default() {
        let e = env();
        assert_eq!(eval("[name]", &e).unwrap(), Value::Str("from-cli".into()));
        assert_eq!(eval("[port:1]", &e).unwrap(), Value::Int(6380));
        assert_eq!(
            eval("[version]", &e).unwrap(),
            Value::Str("7".into()),
            "env-file values are not re-parsed"
        );
        assert_eq!(eval("[redis.host]", &e).unwrap(), Value::Str("h".into()));
        assert_eq!(
            eval("[flag:True]", &e).unwrap(),
            Value::Bool(true),
            "an empty OS value is no value"
        );
        let mut e = env();
        e.cli.clear();
        assert_eq!(eval("[name]", &e).unwrap(), Value::Str("from-os".into()));
        e.os.clear();
        assert_eq!(eval("[name]", &e).unwrap(), Value::Str("from-file".into()));
    }

    #[test]
    fn typed_defaults_as_kaiju_types_them_without_its_crashes() {
        let e = Env::default();
        assert_eq!(eval("[k:True]", &e).unwrap(), Value::Bool(true));
        assert_eq!(eval("[k:None]", &e).unwrap(), Value::Null);
        assert_eq!(eval("[k:42]", &e).unwrap(), Value::Int(42));
        assert_eq!(eval("[k:4.5]", &e).unwrap(), Value::Float(4.5));
        assert_eq!(eval("[k:dev]", &e).unwrap(), Value::Str("dev".into()));
        assert_eq!(eval("[k:true]", &e).unwrap(), Value::Str("true".into()));
        assert_eq!(
            eval("[k:\"1.0.0\"]", &e).unwrap(),
            Value::Str("1.0.0".into())
        );
        assert_eq!(eval("[k:1.0.0]", &e).unwrap(), Value::Str("1.0.0".into()));
        assert_eq!(
            eval("[k:127.0.0.1]", &e).unwrap(),
            Value::Str("127.0.0.1".into())
        );
        assert_eq!(
            eval("[k:`\"redis://h:6379\"`]", &e).unwrap(),
            Value::Str("redis://h:6379".into())
        );
        assert_eq!(
            eval("[k:`redis://h:6379`]", &e).unwrap(),
            Value::Str("redis://h:6379".into())
        );
        assert!(matches!(eval("[k:`[1,2]`]", &e).unwrap(), Value::Seq(ref v) if v.len() == 2));
        assert_eq!(eval("[k:[j:5]]", &e).unwrap(), Value::Int(5));
        assert_eq!(
            eval("`[not a template]`", &e).unwrap(),
            Value::Str("[not a template]".into())
        );
        assert_eq!(
            eval("redis://[::1]:6379", &e).unwrap(),
            Value::Str("redis://[::1]:6379".into())
        );
    }

    #[test]
    fn secret_names_are_found_by_part_and_by_word() {
        for secret in [
            "password",
            "api-key",
            "apiKey",
            "cookie_key",
            "jwt",
            "signing_key",
            "signature",
            "client_secret",
            "access_token",
            "Authorization",
            "sessionid",
            "keys",
        ] {
            assert!(is_secret_key(secret), "{secret}");
        }
        for plain in ["user", "host", "port", "design", "name", "keyspace"] {
            assert!(!is_secret_key(plain), "{plain}");
        }
        assert!(is_secret_text("Bearer abc") && is_secret_text("basic xyz"));
        assert!(!is_secret_text("bearer"));
    }

    #[test]
    fn lazy_nested_defaults_fix_kaijus_eager_evaluation() {
        let e = env();
        assert_eq!(
            eval("[name:[missing]]", &e).unwrap(),
            Value::Str("from-cli".into())
        );
    }

    #[test]
    fn errors_name_the_template_and_the_place() {
        let e = Env::default();
        let err = eval("[main_name]", &e).unwrap_err().to_string();
        assert!(
            err.starts_with("app.yml:3:9: template `[main_name]`"),
            "{err}"
        );
        assert!(err.contains("--env main_name=VALUE"), "{err}");
        for bad in ["[k", "k]", "[k:[x]", "[k:`x]", "[!e:1+1]", "[]"] {
            assert!(eval(bad, &e).is_err(), "{bad}");
        }
        let err = eval("[k:]", &e).unwrap_err().to_string();
        assert!(err.contains("no default"), "{err}");
    }
}
