//! Layering config files as kaiju does: `services` and `packages` lists are concatenated
//! (never merged by name), mappings deep-merge, a scalar replaces, and other lists merge by
//! index (`[1, 2, 3]` then `[9]` gives `[9, 2, 3]`).

use super::node::{Node, Value};

/// The sections whose lists are concatenated across files.
const CONCATENATED: [&str; 2] = ["services", "packages"];

/// Layers `layer` (one file's top-level mapping) over `base`.
pub(crate) fn layer(base: &mut Node, layer: Node) {
    let (Value::Map(base_entries), Value::Map(entries)) = (&mut base.value, layer.value) else {
        return;
    };
    for (key, value) in entries {
        match base_entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) if CONCATENATED.contains(&key.as_str()) => {
                match (&mut existing.value, value.value) {
                    (Value::Seq(items), Value::Seq(more)) => items.extend(more),
                    (_, other) => {
                        let key = value.key;
                        *existing = Node::new(other, value.place);
                        existing.key = key;
                    }
                }
            }
            Some((_, existing)) => update(existing, value),
            None => base_entries.push((key, value)),
        }
    }
}

/// kaiju's `recursive_update`.
fn update(base: &mut Node, new: Node) {
    match (&mut base.value, new.value) {
        (Value::Map(entries), Value::Map(more)) => {
            // The mapping is where its last layer writes it (the built-in defaults are the
            // first layer): an error about the mapping as a whole (`main.name is missing`)
            // points into a file, never at `<defaults>`.
            base.place = new.place;
            if new.key.is_some() {
                base.key = new.key;
            }
            let mut index: std::collections::HashMap<String, usize> = entries
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect();
            for (key, value) in more {
                match index.get(&key) {
                    Some(&i) => update(&mut entries[i].1, value),
                    None => {
                        index.insert(key.clone(), entries.len());
                        entries.push((key, value));
                    }
                }
            }
        }
        (Value::Seq(items), Value::Seq(more)) => {
            for (i, value) in more.into_iter().enumerate() {
                match items.get_mut(i) {
                    Some(existing) => update(existing, value),
                    None => items.push(value),
                }
            }
        }
        (_, other) => {
            *base = Node::new(other, new.place);
            base.key = new.key;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::yaml;

    fn load(text: &str) -> Node {
        yaml::parse(text, &Arc::from("t.yml")).unwrap()
    }

    #[test]
    fn services_concatenate_maps_merge_lists_merge_by_index() {
        let mut base = load("services: [A, B]\nmain: {name: a, env: dev}\netc: {l: [1, 2, 3]}\n");
        layer(
            &mut base,
            load("services: [C]\nmain: {name: b}\netc: {l: [9]}\n"),
        );
        assert_eq!(
            base.to_json(),
            serde_json::json!({
                "services": ["A", "B", "C"],
                "main": {"name": "b", "env": "dev"},
                "etc": {"l": [9, 2, 3]},
            })
        );
    }
}
