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

/// The rule of `components` (the connection's first), for the app whose keys start with
/// `prefix`.
pub fn rule(components: &[&str], prefix: &str) -> String {
    let rules = documented_rules();
    std::iter::once("connection")
        .chain(components.iter().copied())
        .map(|c| {
            rules
                .get(c)
                .unwrap_or_else(|| panic!("no ACL rule documented for `{c}`: {rules:?}"))
                .replace("<env>.<app>", prefix)
                .replace("<env>", prefix.split('.').next().unwrap_or(prefix))
        })
        .collect::<Vec<_>>()
        .join(" ")
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
