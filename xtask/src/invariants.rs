//! `cargo xtask invariants`: the architecture invariants a text check can hold (ARCHITECTURE.md).
//!
//! 1. Only kaiju-transport depends on fred.
//! 2. kaiju key names are built in `kaiju-core/src/key.rs` only: no other source file holds a
//!    string with kaiju's reserved key parts (`._stream`, `._sub`, `._shared`, and the side-key
//!    separators `.__`, `:__`, `#__`).
//! 3. fred's error text is read in `kaiju-transport/src/error.rs` only (`.details()`): every fred
//!    error is classified there.
//! 4. No import cycles between the top-level modules of a crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::root;

/// Strings that only key.rs may spell: the parts of kaiju's key scheme (and of side keys).
const KEY_PARTS: [&str; 7] = [
    "._stream", "._sub", "._reply", "._shared", ".__", ":__", "#__",
];

pub(crate) fn run() -> Result<ExitCode, String> {
    let crates = root().join("crates");
    let mut problems = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&crates)
        .map_err(|e| format!("cannot list {}: {e}", crates.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    for dir in &dirs {
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let manifest = read(&dir.join("Cargo.toml"))?;
        if name != "kaiju-transport" && depends_on(&manifest, "fred") {
            problems.push(format!("{name} depends on fred; only kaiju-transport may"));
        }
        let files = sources(&dir.join("src"));
        for file in &files {
            let text = read(file)?;
            let code = without_tests_and_comments(&text);
            let relative = file
                .strip_prefix(root())
                .unwrap_or(file)
                .display()
                .to_string();
            if !relative.ends_with("kaiju-core/src/key.rs") {
                for part in KEY_PARTS {
                    if code.lines().any(|line| {
                        line.contains(&format!("\"{part}"))
                            || line.contains(&format!("{{}}{part}"))
                            || line.contains(&format!("}}{part}"))
                    }) {
                        problems.push(format!("{relative} spells the key part `{part}`; build key names in kaiju-core/src/key.rs"));
                    }
                }
            }
            if !relative.ends_with("kaiju-transport/src/error.rs") && code.contains(".details()") {
                problems.push(format!("{relative} reads fred's error text; classify errors in kaiju-transport/src/error.rs"));
            }
        }
        if let Some(cycle) = module_cycle(&dir.join("src"), &files)? {
            problems.push(format!(
                "{name}: import cycle between modules {}",
                cycle.join(" -> ")
            ));
        }
    }
    if problems.is_empty() {
        println!("xtask: invariants hold ({} crates checked)", dirs.len());
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &problems {
            eprintln!("invariant broken: {problem}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Whether a manifest's `[dependencies]` (or `[dev-dependencies]`) names `dependency`.
fn depends_on(manifest: &str, dependency: &str) -> bool {
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line.contains("dependencies");
            continue;
        }
        if in_deps && line.split(['=', ' ', '.']).next() == Some(dependency) {
            return true;
        }
    }
    false
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The code of a file without `//` comments and without what follows `#[cfg(test)]` (unit
/// tests may spell anything), and without files that are test modules themselves.
fn without_tests_and_comments(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The top-level module a source file belongs to (`None` for the crate root, lib.rs or
/// main.rs, and test files).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    if first == "lib.rs" || first == "main.rs" || relative.ends_with("tests.rs") {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_owned())
}

/// The names lib.rs re-exports at the crate root, and the module each comes from.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut exports = BTreeMap::new();
    let flat = lib.replace('\n', " ");
    for statement in flat.split(';') {
        let statement = statement.trim();
        let Some(rest) = statement.strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        let names = names.trim_matches(|c| c == '{' || c == '}' || c == ' ');
        for name in names.split(',') {
            let name = name.trim().rsplit("::").next().unwrap_or("").trim();
            if !name.is_empty() {
                exports.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    exports
}

/// The modules a file refers to through `crate::...` paths.
fn references(
    code: &str,
    modules: &BTreeSet<String>,
    exports: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, D}`: the first segment of each item at depth 1.
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            split_top(&group[..end])
        } else {
            vec![
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            ]
        };
        for name in names {
            let first = name.split("::").next().unwrap_or("").trim().to_owned();
            if modules.contains(&first) {
                found.insert(first);
            } else if let Some(module) = exports.get(&first) {
                found.insert(module.clone());
            }
        }
    }
    found
}

/// Items of a `{...}` list at its top level.
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
    items.into_iter().map(|s| s.trim().to_owned()).collect()
}

/// A cycle between the top-level modules of the crate whose sources are in `src`, if any.
fn module_cycle(src: &Path, files: &[PathBuf]) -> Result<Option<Vec<String>>, String> {
    let root_file = if src.join("lib.rs").is_file() {
        "lib.rs"
    } else {
        "main.rs"
    };
    let lib = read(&src.join(root_file))?;
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let exports = root_exports(&lib);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(src, file) else {
            continue;
        };
        let code = without_tests_and_comments(&read(file)?);
        let targets = references(&code, &modules, &exports);
        let entry = edges.entry(module.clone()).or_default();
        entry.extend(targets.into_iter().filter(|t| *t != module));
    }
    // Depth-first search for a back edge.
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
    let mut done = BTreeSet::new();
    for module in edges.keys() {
        if let Some(cycle) = visit(module, &edges, &mut Vec::new(), &mut done) {
            return Ok(Some(cycle));
        }
    }
    Ok(None)
}
