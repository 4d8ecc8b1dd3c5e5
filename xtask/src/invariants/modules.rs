//! The crates a member builds (library, binaries, tests, examples, benches), the module tree of
//! each from its root file, and cycles in the imports between its top-level modules.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::source::{self, Source};
use super::tree::Tree;

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
    /// Its modules' files are in its own directory, as a `mod.rs`'s are: the crate root, a
    /// `mod.rs`, a file a `#[path]` names.
    mod_rs: bool,
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

/// The directory of `file`.
fn parent(file: &str) -> &str {
    file.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// The directory that holds the files of the modules `file` declares.
fn module_dir(file: &ModuleFile) -> String {
    if file.mod_rs {
        parent(&file.path).to_owned()
    } else {
        file.path.trim_end_matches(".rs").to_owned()
    }
}

/// `a/./b/../c` as `a/c`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.join("/")
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
        mod_rs: true,
    }];
    while let Some(file) = pending.pop() {
        if !seen.insert(file.path.clone()) {
            continue;
        }
        if let Some(source) = sources.get(&file.path) {
            let dir = module_dir(&file);
            for decl in source.mod_decls() {
                let candidates = match &decl.path {
                    Some(path) => vec![normalize(&join(parent(&file.path), path))],
                    None => vec![
                        join(&dir, &format!("{}.rs", decl.name)),
                        join(&dir, &format!("{}/mod.rs", decl.name)),
                    ],
                };
                if let Some(path) = candidates.into_iter().find(|p| tree.contains(p)) {
                    pending.push(ModuleFile {
                        mod_rs: decl.path.is_some() || path.ends_with("/mod.rs"),
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
///
/// A path from the crate root (`crate::x`, or `super::x` from as deep as the root is: files
/// and inline modules alike) names a top-level module directly, or a name the root imports
/// from one (`pub use a::B;`, `use a as b;`), or a name a root glob (`pub use a::*;`) brings in
/// from the modules that define it (from all of them if none visibly does).
pub(super) fn cycle(
    files: &[ModuleFile],
    sources: &BTreeMap<String, Source>,
) -> Option<Vec<String>> {
    let modules: BTreeSet<String> = files
        .iter()
        .filter(|f| f.depth == 1 && !f.test)
        .filter_map(|f| f.top.clone())
        .collect();
    let root = files
        .iter()
        .find(|f| f.depth == 0)
        .and_then(|f| sources.get(&f.path))
        .map(|source| squeeze_paths(&source.code_without_tests()))
        .unwrap_or_default();
    let code = |file: &ModuleFile| {
        sources
            .get(&file.path)
            .filter(|_| !file.test)
            .map(|source| squeeze_paths(&source.code_without_tests()))
    };
    let (imports, globs) = root_imports(&root);
    // `extern crate self as me;`: `me::x` is `crate::x`.
    let crate_names: Vec<String> = word_positions(&root, "extern")
        .into_iter()
        .filter_map(|at| {
            let words: Vec<&str> = root[at..].split_whitespace().take(5).collect();
            match words.as_slice() {
                ["extern", "crate", "self", "as", name] => {
                    let name = name.trim_end_matches(';');
                    (!name.is_empty() && name != "_").then(|| name.to_owned())
                }
                _ => None,
            }
        })
        .collect();
    // The `#[macro_export]` macros, which live at the crate root, by the module that defines
    // each: `crate::m!()` uses that module.
    let exported: BTreeMap<String, String> = files
        .iter()
        .filter_map(|file| Some((file.top.clone()?, code(file)?)))
        .flat_map(|(module, text)| {
            exported_macros(&text)
                .into_iter()
                .map(move |name| (name, module.clone()))
        })
        .collect();
    // The code of each module the root glob-imports, to tell which defines a name.
    let globbed: BTreeMap<&String, String> = globs
        .iter()
        .filter(|module| modules.contains(*module))
        .map(|module| {
            let text = files
                .iter()
                .filter(|f| f.top.as_ref() == Some(module))
                .filter_map(code)
                .collect::<Vec<_>>()
                .join("\n;\n");
            (module, text)
        })
        .collect();
    let resolve = |name: String| -> Vec<String> {
        // `use crate::*;`: everything the root has, so every module.
        if name == "*" {
            return modules.iter().cloned().collect();
        }
        if modules.contains(&name) {
            return vec![name];
        }
        if let Some(module) = imports.get(&name) {
            return modules.get(module).cloned().into_iter().collect();
        }
        if let Some(module) = exported.get(&name) {
            return vec![module.clone()];
        }
        if defines(&root, &name) {
            return Vec::new();
        }
        // The glob modules that define it; if none visibly does (a macro made it), any may.
        let definers: Vec<String> = globbed
            .iter()
            .filter(|(_, text)| defines(text, &name))
            .map(|(module, _)| (*module).clone())
            .collect();
        if definers.is_empty() {
            globbed.keys().map(|module| (*module).clone()).collect()
        } else {
            definers
        }
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| !f.test) {
        let (Some(module), Some(text)) = (&file.top, code(file)) else {
            continue;
        };
        let targets = references(&text, file.depth, &crate_names)
            .into_iter()
            .flat_map(&resolve)
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

/// The names the crate root imports or re-exports (`use a::B;`, `pub use a::{B, c::D}`,
/// `use a as b;`), each with the module it comes from, and the modules it glob-imports
/// (`pub use a::*;`): `crate::B` elsewhere in the crate is a use of module `a`.
fn root_imports(code: &str) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let (mut imports, mut globs) = (BTreeMap::new(), BTreeSet::new());
    for (_, names) in use_statements(code) {
        for (name, mut path) in names {
            if matches!(path.first().map(String::as_str), Some("crate" | "self")) {
                path.remove(0);
            }
            let Some(module) = path.first().cloned() else {
                continue;
            };
            if name == "*" {
                globs.insert(module);
            } else {
                imports.insert(name, module);
            }
        }
    }
    (imports, globs)
}

/// A `use` statement: whether it is `pub` (a re-export, `pub(crate)` included), and each name
/// it brings in with the path it comes from (`*` for a glob, with the path it globs).
pub(super) type UseStatement = (bool, Vec<(String, Vec<String>)>);

/// The `use` statements of `code`.
pub(super) fn use_statements(code: &str) -> Vec<UseStatement> {
    let mut statements = Vec::new();
    for statement in code.split(';') {
        let Some(at) = word_positions(statement, "use").last().copied() else {
            continue;
        };
        let before = statement[..at].trim_end();
        let public = before.ends_with("pub") || (before.ends_with(')') && before.contains("pub"));
        let mut names = Vec::new();
        use_tree(&statement[at + "use".len()..], &mut Vec::new(), &mut names);
        statements.push((public, names));
    }
    statements
}

/// The names a use tree (`a::{B, c::D as E, f::*}`) brings in, with their paths, after
/// `prefix`.
fn use_tree(tree: &str, prefix: &mut Vec<String>, names: &mut Vec<(String, Vec<String>)>) {
    let tree = tree.trim();
    let tree = tree.strip_prefix("::").unwrap_or(tree);
    let segments = |path: &str| -> Vec<String> {
        path.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if let Some(open) = tree.find('{') {
        let group = &tree[open + 1..];
        let group = group.trim_end().strip_suffix('}').unwrap_or(group);
        let len = prefix.len();
        prefix.extend(segments(&tree[..open]));
        for item in split_top(group) {
            use_tree(&item, prefix, names);
        }
        prefix.truncate(len);
        return;
    }
    let (path, alias) = match word_positions(tree, "as").last() {
        Some(&at) => (&tree[..at], Some(tree[at + 2..].trim())),
        None => (tree, None),
    };
    let mut full = prefix.clone();
    full.extend(segments(path));
    // `a::{self}` is `a`.
    if full.last().is_some_and(|s| s == "self") {
        full.pop();
    }
    let name = alias.map(str::to_owned).or_else(|| full.last().cloned());
    if let Some(name) = name.filter(|n| !n.is_empty() && n != "_") {
        if name == "*" {
            full.pop();
        }
        names.push((name, full));
    }
}

/// Whether `code` defines or re-exports `name`: `fn name`, `struct name`, ..., `macro_rules!
/// name`, `pub use x::name`.
fn defines(code: &str, name: &str) -> bool {
    const ITEMS: [&str; 10] = [
        "fn",
        "struct",
        "enum",
        "trait",
        "type",
        "const",
        "static",
        "mod",
        "union",
        "macro_rules!",
    ];
    let item = word_positions(code, name).into_iter().any(|at| {
        let before = code[..at].trim_end();
        ITEMS.iter().any(|keyword| {
            before
                .strip_suffix(keyword)
                .is_some_and(|rest| !rest.ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        })
    });
    item || use_statements(code)
        .into_iter()
        .any(|(public, names)| public && names.iter().any(|(n, _)| n == name))
}

/// Where `word` starts in `text` as a whole word.
pub(super) fn word_positions(text: &str, word: &str) -> Vec<usize> {
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
/// `crate::a::B`, `crate::{a, b::C}`, `crate::*` (as `*`), a name the root gives the crate
/// (`extern crate self as me;`: `me::a`, in `crate_names`), and `super::super::a` (as many
/// `super`s as `depth`, and one more in each inline `mod x { ... }` the path is in). The code
/// has no whitespace around its `::` ([`squeeze_paths`]).
fn references(code: &str, depth: usize, crate_names: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    let inline = inline_modules(code);
    let named = crate_names
        .iter()
        .flat_map(|name| {
            word_positions(code, name)
                .into_iter()
                .map(move |at| (at, name))
        })
        // `::me::a` is `me::a`, `x::me::a` is not.
        .filter(|&(at, _)| {
            let before = &code[..at];
            !before.ends_with("::")
                || !before[..at - 2].ends_with(|c: char| c.is_alphanumeric() || c == '_')
        })
        .filter_map(|(at, name)| {
            code[at + name.len()..]
                .strip_prefix("::")
                .map(|_| at + name.len() + 2)
        });
    let starts = word_positions(code, "crate")
        .into_iter()
        .chain(word_positions(code, "super"));
    let mut paths: Vec<usize> = named.collect();
    for at in starts {
        // A path's first segment only: not `a::crate`, nor the second `super` of a chain.
        if at >= 2 && &bytes[at - 2..at] == b"::" {
            continue;
        }
        let rest = &code[at..];
        if rest.starts_with("crate::") {
            paths.push(at + "crate::".len());
        } else {
            let mut rest = rest;
            let mut supers = 0;
            while let Some(after) = rest.strip_prefix("super::") {
                supers += 1;
                rest = after.trim_start();
            }
            let nested = inline.iter().filter(|body| body.contains(&at)).count();
            if supers == 0 || supers != depth + nested {
                continue;
            }
            paths.push(code.len() - rest.len());
        }
    }
    for start in paths {
        let rest = &code[start..];
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
            None if rest.starts_with('*') => vec!["*".to_owned()],
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

/// `code` without whitespace around its `::`: `crate :: a` is `crate::a`.
fn squeeze_paths(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut chars = code.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            let next = code[i..].trim_start();
            if out.ends_with("::") || next.starts_with("::") {
                while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// The names of the `#[macro_export]` `macro_rules!` of `code`.
fn exported_macros(code: &str) -> Vec<String> {
    word_positions(code, "macro_export")
        .into_iter()
        .filter_map(|at| {
            let rest = &code[at..];
            let after = &rest[rest.find("macro_rules!")? + "macro_rules!".len()..];
            let name: String = after
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// The bodies of the inline modules (`mod x { ... }`) of `code`.
fn inline_modules(code: &str) -> Vec<Range<usize>> {
    let bytes = code.as_bytes();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    (0..bytes.len())
        .filter(|&i| bytes[i] == b'{')
        .filter(|&i| {
            let before = code[..i].trim_end();
            let name = before.trim_end_matches(ident);
            name.len() < before.len()
                && name.trim_end().strip_suffix("mod").is_some_and(|rest| {
                    name.len() > name.trim_end().len() && !rest.ends_with(ident)
                })
        })
        .map(|open| open..source::closing_brace(bytes, open))
        .collect()
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
