//! The crates a member builds (library, binaries, tests, examples, benches), the module tree of
//! each from its root file, and cycles in the imports between its top-level modules.

use std::collections::{BTreeMap, BTreeSet};

use super::Tree;
use super::source::Source;

/// The root file of one crate of a member.
pub(super) struct CrateRoot {
    pub(super) path: String,
    /// An integration test (`tests/*.rs`, a `[[test]]` target): all of it is test code.
    pub(super) test: bool,
}

/// One file of a crate's module tree.
pub(super) struct ModuleFile {
    pub(super) path: String,
    /// The top-level module it belongs to; `None` for the crate root itself.
    pub(super) top: Option<String>,
    /// 0 for the root, 1 for a top-level module's file, 2 for its children, ...
    pub(super) depth: usize,
    /// Test code: under `#[cfg(test)] mod`, or in an integration test.
    pub(super) test: bool,
}

fn join(dir: &str, path: &str) -> String {
    if dir.is_empty() {
        path.to_owned()
    } else {
        format!("{dir}/{path}")
    }
}

/// The crate roots of the member in `dir`: Cargo's auto-discovered targets and the `path`s its
/// manifest names.
pub(super) fn crate_roots(tree: &Tree, dir: &str, manifest: &str) -> Vec<CrateRoot> {
    let mut roots: BTreeMap<String, bool> = BTreeMap::new();
    for file in ["src/lib.rs", "src/main.rs"] {
        let path = join(dir, file);
        if tree.contains(&path) {
            roots.insert(path, false);
        }
    }
    for (folder, test) in [
        ("src/bin", false),
        ("tests", true),
        ("examples", false),
        ("benches", false),
    ] {
        let prefix = format!("{}/", join(dir, folder));
        for path in tree.paths_under(&prefix) {
            let rest = &path[prefix.len()..];
            let root = match rest.split_once('/') {
                None => rest.ends_with(".rs"),
                Some((_, "main.rs")) => true,
                Some(_) => false,
            };
            if root {
                roots.insert(path.to_owned(), test);
            }
        }
    }
    let mut section = "";
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let target = matches!(
            section,
            "[lib]" | "[[bin]]" | "[[test]]" | "[[example]]" | "[[bench]]"
        );
        if let Some(value) = line.strip_prefix("path")
            && target
        {
            let value = value.trim_start().trim_start_matches('=').trim();
            let path = value.trim_matches(['"', '\'']);
            roots.insert(join(dir, path), section == "[[test]]");
        }
    }
    roots
        .into_iter()
        .map(|(path, test)| CrateRoot { path, test })
        .collect()
}

/// The directory that holds the files of the modules `file` declares.
fn module_dir(file: &str, is_root: bool) -> String {
    let (parent, name) = file.rsplit_once('/').unwrap_or(("", file));
    if is_root || name == "mod.rs" {
        parent.to_owned()
    } else {
        join(parent, name.trim_end_matches(".rs"))
    }
}

/// Every file of the crate whose root is `root`, found by following `mod name;` declarations.
pub(super) fn module_files(
    tree: &Tree,
    sources: &BTreeMap<String, Source>,
    root: &CrateRoot,
) -> Vec<ModuleFile> {
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    let mut pending = vec![ModuleFile {
        path: root.path.clone(),
        top: None,
        depth: 0,
        test: root.test,
    }];
    while let Some(file) = pending.pop() {
        if !seen.insert(file.path.clone()) {
            continue;
        }
        if let Some(source) = sources.get(&file.path) {
            let dir = module_dir(&file.path, file.depth == 0);
            for decl in source.mod_decls() {
                let candidates = [
                    join(&dir, &format!("{}.rs", decl.name)),
                    join(&dir, &format!("{}/mod.rs", decl.name)),
                ];
                if let Some(path) = candidates.into_iter().find(|p| tree.contains(p)) {
                    pending.push(ModuleFile {
                        path,
                        top: Some(file.top.clone().unwrap_or_else(|| decl.name.clone())),
                        depth: file.depth + 1,
                        test: file.test || decl.test,
                    });
                }
            }
        }
        files.push(file);
    }
    files
}

/// A cycle between the top-level modules of one crate, if any: `a -> b -> a`.
pub(super) fn cycle(
    files: &[ModuleFile],
    sources: &BTreeMap<String, Source>,
) -> Option<Vec<String>> {
    let modules: BTreeSet<String> = files
        .iter()
        .filter(|f| f.depth == 1 && !f.test)
        .filter_map(|f| f.top.clone())
        .collect();
    let exports = files
        .iter()
        .find(|f| f.depth == 0)
        .and_then(|f| sources.get(&f.path))
        .map(|s| root_imports(&s.code_without_tests()))
        .unwrap_or_default();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| !f.test) {
        let (Some(module), Some(source)) = (&file.top, sources.get(&file.path)) else {
            continue;
        };
        let targets = references(&source.code_without_tests(), file.depth)
            .into_iter()
            .filter_map(|name| {
                if modules.contains(&name) {
                    Some(name)
                } else {
                    exports.get(&name).filter(|m| modules.contains(*m)).cloned()
                }
            })
            .filter(|target| target != module);
        edges.entry(module.clone()).or_default().extend(targets);
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|module| visit(module, &edges, &mut Vec::new(), &mut done))
}

/// Depth-first search for a back edge.
fn visit(
    node: &str,
    edges: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|n| n == node) {
        let mut cycle = path[at..].to_vec();
        cycle.push(node.to_owned());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_owned());
    for next in edges.get(node).into_iter().flatten() {
        if let Some(cycle) = visit(next, edges, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node.to_owned());
    None
}

/// The names the crate root imports or re-exports (`use a::B;`, `pub use a::{B, c::D}`), and
/// the module each comes from: `crate::B` elsewhere in the crate is a use of module `a`.
fn root_imports(code: &str) -> BTreeMap<String, String> {
    let mut imports = BTreeMap::new();
    for statement in code.split(';') {
        let Some(at) = word_positions(statement, "use").last().copied() else {
            continue;
        };
        let path = statement[at + "use".len()..].trim();
        let path = path
            .strip_prefix("crate::")
            .or_else(|| path.strip_prefix("self::"))
            .unwrap_or(path);
        let Some((module, names)) = path.split_once("::") else {
            continue;
        };
        let names = names.trim();
        let items = match names.strip_prefix('{') {
            Some(group) => split_top(group.strip_suffix('}').unwrap_or(group)),
            None => vec![names.to_owned()],
        };
        for item in items {
            // `c::D as E` is imported as `E`.
            let name = item.rsplit(" as ").next().unwrap_or("");
            let name = name.rsplit("::").next().unwrap_or("").trim();
            if !name.is_empty() && name != "*" && name != "self" {
                imports.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    imports
}

/// Where `word` starts in `text` as a whole word.
fn word_positions(text: &str, word: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    text.match_indices(word)
        .map(|(at, _)| at)
        .filter(|&at| {
            (at == 0 || !ident(bytes[at - 1]))
                && bytes.get(at + word.len()).is_none_or(|b| !ident(*b))
        })
        .collect()
}

/// The first segment of every path from the crate root in a file `depth` modules deep:
/// `crate::a::B`, `crate::{a, b::C}`, and `super::super::a` (as many `super`s as `depth`).
fn references(code: &str, depth: usize) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    let starts = word_positions(code, "crate")
        .into_iter()
        .chain(word_positions(code, "super"));
    for at in starts {
        // A path's first segment only: not `a::crate`, nor the second `super` of a chain.
        if at >= 2 && &bytes[at - 2..at] == b"::" {
            continue;
        }
        let mut rest = &code[at..];
        if let Some(after) = rest.strip_prefix("crate::") {
            rest = after;
        } else {
            let mut supers = 0;
            while let Some(after) = rest.strip_prefix("super::") {
                supers += 1;
                rest = after.trim_start();
            }
            if supers == 0 || supers != depth {
                continue;
            }
        }
        let names = match rest.strip_prefix('{') {
            Some(group) => {
                let mut level = 1;
                let end = group
                    .char_indices()
                    .find(|(_, c)| {
                        match c {
                            '{' => level += 1,
                            '}' => level -= 1,
                            _ => {}
                        }
                        level == 0
                    })
                    .map_or(group.len(), |(i, _)| i);
                split_top(&group[..end])
            }
            None => vec![
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            ],
        };
        for name in names {
            let first = name.split("::").next().unwrap_or("").trim();
            if !first.is_empty() {
                found.insert(first.to_owned());
            }
        }
    }
    found
}

/// The items of a `{...}` list at its top level.
fn split_top(list: &str) -> Vec<String> {
    let (mut items, mut depth, mut current) = (Vec::new(), 0, String::new());
    for c in list.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}
