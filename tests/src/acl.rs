//! ACL helpers: the rules the transport README documents, and the `ACL` command.

use std::collections::HashMap;

use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;

/// The rules of the README's table, by component, with `<env>.<app>` as written there.
fn documented_rules() -> HashMap<String, String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/kaiju-transport/README.md"
    );
    let readme = std::fs::read_to_string(path).unwrap();
    let table = readme
        .split("### ACL rules")
        .nth(1)
        .expect("the transport README has an `### ACL rules` section");
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|row| {
            // A `|` inside a cell is written `\|` (`+client\|setname`).
            let row = row.replace("\\|", "\u{0}");
            let cells: Vec<String> = row
                .split('|')
                .map(|c| c.trim().replace('\u{0}', "|"))
                .collect();
            let component = cells.get(1)?.trim_matches('*').to_owned();
            let rule = cells.get(2)?.trim_matches('`').to_owned();
            Some((component, rule))
        })
        .collect()
}

/// How a user runs kaiju's scripts: the two forms of `<scripts>` in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scripts {
    /// `+fcall`: kaiju's functions, loaded by an admin ([`load_functions`]).
    Functions,
    /// `+fcall +evalsha +script|load`: `EVALSHA` where the functions are not loaded.
    Evalsha,
}

impl Scripts {
    /// What `<scripts>` stands for in this form, on Redis 7.
    pub fn grants(self) -> &'static str {
        match self {
            Self::Functions => "+fcall",
            Self::Evalsha => "+fcall +evalsha +script|load",
        }
    }
}

/// The rule of `components` (the connection's first) for the app whose keys start with
/// `prefix`, with `<scripts>` in the [`Scripts::Evalsha`] form (which works whether or not
/// kaiju's functions are loaded).
pub fn rule(components: &[&str], prefix: &str) -> String {
    rule_for(components, prefix, Scripts::Evalsha, None)
}

/// The rule of `components` (the connection's first) for the app whose keys start with
/// `prefix`, with `<scripts>` in the form `scripts`; `other` is the `(<other>, <topic>)` of
/// the "calling another app" row.
pub fn rule_for(
    components: &[&str],
    prefix: &str,
    scripts: Scripts,
    other: Option<(&str, &str)>,
) -> String {
    let rules = documented_rules();
    let env = prefix.split('.').next().unwrap_or(prefix);
    std::iter::once("connection")
        .chain(components.iter().copied())
        .map(|c| {
            let mut rule = rules
                .get(c)
                .unwrap_or_else(|| panic!("no ACL rule documented for `{c}`: {rules:?}"))
                .replace("<env>.<app>", prefix)
                .replace("<scripts>", scripts.grants());
            if let Some((app, topic)) = other {
                rule = rule.replace("<other>", app).replace("<topic>", topic);
            }
            rule.replace("<env>", env)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `rule` as `ACL SETUSER` arguments: words, and each selector `(...)` as one argument.
pub fn args(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut selector: Option<String> = None;
    for word in rule.split_whitespace() {
        match selector.as_mut() {
            Some(open) => {
                open.push(' ');
                open.push_str(word);
            }
            None if word.starts_with('(') => selector = Some(word.to_owned()),
            None => out.push(word.to_owned()),
        }
        if selector.as_ref().is_some_and(|s| s.ends_with(')')) {
            out.extend(selector.take());
        }
    }
    assert!(selector.is_none(), "an unclosed selector in {rule}");
    out
}

/// Loads every script of kaiju-rs as a function library (what `kaiju functions load` does), on
/// every primary `admin` reaches. Loading again changes nothing.
pub async fn load_functions(admin: &Transport) {
    let mut scripts = kaiju_cache::scripts();
    scripts.extend(kaiju_locks::scripts());
    scripts.extend(kaiju_streams::scripts());
    for script in scripts {
        script.load_function(admin).await.unwrap();
    }
}

/// `ACL <args>` on the single node.
pub async fn acl(t: &Transport, args: &[&str]) {
    use kaiju_transport::fred::types::{ClusterHash, CustomCommand};
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let _: Value = t
        .pool()
        .custom(
            CustomCommand::new_static("ACL", ClusterHash::Random, false),
            args,
        )
        .await
        .unwrap();
}
