//! `cargo xtask invariants`: the architecture invariants a text check can hold (ARCHITECTURE.md),
//! over every member of the workspace (`[workspace] members` of the root Cargo.toml) and every
//! `.rs` file of each: `src/`, `tests/`, `it/`, `examples/`, `benches/`, ...
//!
//! 1. [`Invariant::FredDependency`]: only the members in [`FRED_DEPENDENTS`] depend on fred,
//!    however the manifest spells the table and the key ([`depends_on`]: quoted, dotted,
//!    inline, target-specific). A name spelled with a TOML escape (`package = "fr\u0065d"`)
//!    is not seen: nobody writes that but to get past this check.
//! 2. [`Invariant::KeyNames`]: kaiju key names are built in [`KEY_HOME`] only: no string literal
//!    of other code holds one of kaiju's reserved key parts ([`key_parts`]), its escapes
//!    decoded (`"\x5f"`, `"\u{5f}"`, `\`-newline continuations). Test code may: integration
//!    tests, and what a test-only `cfg` is on (`cfg(test)`, `cfg(all(test, unix))`; not
//!    `cfg(any(test, unix))`, which production builds compile on unix). A part assembled
//!    from pieces (`concat!("a.", "_stream")`, `format!("{}.{}", ns, "_stream")`,
//!    `String::from("a.") + "_reply"`) is not seen: each literal alone is innocent, and
//!    reporting every `"_stream"` or `"."` would bury real findings in false ones.
//! 3. [`Invariant::FredErrors`]: fred's errors are looked into in [`FRED_ERROR_HOME`] only: no
//!    other file reads their text (`details()`: `e.details()`, `Error::details(&e)`,
//!    `.map(Error::details)`) or kind (`kind()` on a receiver named like an error, in a file
//!    that names fred under any alias; fred's `ErrorKind`), nor matches text with a Redis
//!    reply code ([`reply_codes`]: `"BUSYGROUP"`, ...), which is how an error read as text
//!    (`e.to_string()`, `format!("{e}")`) gets matched. A literal counts when it holds an
//!    error's text (a code and a space: `"MOVED 3999 ..."`) or when a bare code is compared,
//!    searched for or matched (`== "READONLY"`, `.starts_with("-NOSCRIPT")`, a match
//!    pattern), in any case unless the code is a word (`"busygroup"` but not `"busy"`); see
//!    [`reply_code`]. `"READONLY"` sent as a command is no error's text. The few literals that
//!    are no fred error's text either are listed in [`REPLY_TEXT_ALLOWED`]. io's errors are
//!    told apart: an `ErrorKind` the file imports from `io`, and the `kind()` of a binding
//!    written as an `io::Error` or compared with io's `ErrorKind`. `kind()` on a receiver named
//!    otherwise (`failure.kind()`) is not seen: fred's `Value` has a `kind()` too, and only the
//!    name tells them apart. Nor is a reply code assembled (`concat!("BUSY", "GROUP")`) or
//!    held in a constant compared elsewhere.
//! 4. [`Invariant::ModuleCycles`]: no import cycle between the top-level modules of any crate
//!    (library, binary, test, example) of any member, through `crate::` and `super::` paths
//!    (whitespace around `::` aside), the crate's own name (`extern crate self as me;`),
//!    names and aliases the crate root imports, root globs, `#[macro_export]` macros called
//!    by path (`crate::m!()`), and `#[path]` files. A glob of the crate root (`use crate::*;`)
//!    is a use of every top-level module. Inline modules of the crate root itself are not
//!    modules of their own here. A `macro_rules!` macro called by its bare name (textual
//!    scope, `#[macro_use] mod a;`) is not seen, nor is what a macro's expansion names.
//! 5. [`Invariant::ReadmeLinks`]: a member README that is its crate's docs.rs front page
//!    (`include_str!("../README.md")`) has no relative link: docs.rs cannot follow one.
//!
//! The checks are lexical (a small lexer in `source.rs`, no type information): they catch the
//! shapes above, not every way Rust can spell the same thing. They aim at what a user writes
//! without meaning to break an invariant; what only someone set on getting past them writes
//! (a TOML escape in a dependency's name, a key part or reply code built from pieces, a fred
//! error bound to a name no error has) is left out, as said for each check above.
//!
//! The checker reads a [`Tree`] of files, so the tests run it on trees of their own.

mod modules;
mod source;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::process::ExitCode;

use source::{Literal, Source};

/// The members that may depend on fred. kaiju-bench compares kaiju with raw fred, but reaches
/// fred through kaiju-transport's re-export (`kaiju_transport::fred`), so it needs no entry.
pub(crate) const FRED_DEPENDENTS: [&str; 1] = ["kaiju-transport"];

/// The one file that builds kaiju key names.
pub(crate) const KEY_HOME: &str = "crates/kaiju-core/src/key.rs";

/// The one file that looks into fred's errors (classifies them).
pub(crate) const FRED_ERROR_HOME: &str = "crates/kaiju-transport/src/error.rs";

/// The parts of kaiju's key scheme that only [`KEY_HOME`] may spell: the reserved namespaces
/// after the `.` delimiter, and the separators of side keys. Assembled here rather than written
/// out, so this file does not spell them itself.
pub(crate) fn key_parts() -> Vec<String> {
    let reserved = ["_stream", "_sub", "_reply", "_shared"].map(|p| format!(".{p}"));
    let side_keys = ['.', ':', '#'].map(|c| format!("{c}__"));
    reserved.into_iter().chain(side_keys).collect()
}

/// The invariants this checker holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Invariant {
    /// Only [`FRED_DEPENDENTS`] depend on fred.
    FredDependency,
    /// Key names are spelled in [`KEY_HOME`] only.
    KeyNames,
    /// fred's errors are looked into in [`FRED_ERROR_HOME`] only.
    FredErrors,
    /// No import cycle between the top-level modules of a crate.
    ModuleCycles,
    /// A crate's README, its docs.rs front page, links only to absolute URLs, anchors and
    /// Rust items.
    ReadmeLinks,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Problem {
    pub(crate) invariant: Invariant,
    /// `path` or `path:line`, relative to the workspace root.
    pub(crate) place: String,
    pub(crate) message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// The files the checks read, by path relative to the workspace root (`/`-separated): the root
/// Cargo.toml, and each member's Cargo.toml and `.rs` files.
pub(crate) struct Tree {
    files: BTreeMap<String, String>,
}

impl Tree {
    /// The workspace at `root`, read from disk.
    pub(crate) fn load(root: &Path) -> Result<Self, String> {
        let mut files = BTreeMap::new();
        let manifest = read(&root.join("Cargo.toml"))?;
        for pattern in member_patterns(&manifest) {
            for dir in expand_on_disk(root, &pattern)? {
                collect(&root.join(&dir), &dir, true, &mut files)?;
            }
        }
        files.insert("Cargo.toml".to_owned(), manifest);
        Ok(Self { files })
    }

    /// A tree made of the given files.
    #[cfg(test)]
    pub(crate) fn from_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            files: files
                .into_iter()
                .map(|(path, text)| (path.to_owned(), text.to_owned()))
                .collect(),
        }
    }

    fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    fn get(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// The paths that start with `prefix`.
    fn paths_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> {
        self.files
            .range(prefix.to_owned()..)
            .map(|(path, _)| path.as_str())
            .take_while(move |path| path.starts_with(prefix))
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The member paths (or `dir/*` patterns) of a root manifest's `[workspace]`.
fn member_patterns(manifest: &str) -> Vec<String> {
    let mut patterns = Vec::new();
    let (mut in_workspace, mut in_members) = (false, false);
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') && !in_members {
            in_workspace = line == "[workspace]";
            continue;
        }
        if !in_workspace {
            continue;
        }
        let mut rest = line;
        if !in_members {
            let Some(value) = line.strip_prefix("members") else {
                continue;
            };
            let Some(list) = value.trim_start().strip_prefix('=') else {
                continue;
            };
            rest = list.trim_start().strip_prefix('[').unwrap_or(list);
            in_members = true;
        }
        let (items, closed) = match rest.split_once(']') {
            Some((items, _)) => (items, true),
            None => (rest, false),
        };
        patterns.extend(
            items
                .split(',')
                .map(|item| unquote(item.trim()).trim_end_matches('/'))
                .filter(|item| !item.is_empty())
                .map(str::to_owned),
        );
        if closed {
            in_members = false;
        }
    }
    patterns
}

/// The member directories a pattern names on disk (`crates/*`: each directory with a
/// Cargo.toml).
fn expand_on_disk(root: &Path, pattern: &str) -> Result<Vec<String>, String> {
    let Some(parent) = pattern.strip_suffix("/*") else {
        return Ok(vec![pattern.to_owned()]);
    };
    let listing =
        std::fs::read_dir(root.join(parent)).map_err(|e| format!("cannot list {parent}: {e}"))?;
    let mut dirs: Vec<String> = listing
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| format!("{parent}/{}", entry.file_name().to_string_lossy()))
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Adds the Cargo.toml and every `.rs` file under `dir` (named `relative`) to `files`, except
/// in `target/`, hidden directories and nested packages (directories with a Cargo.toml of
/// their own, which are members of their own or not part of the workspace).
fn collect(
    dir: &Path,
    relative: &str,
    top: bool,
    files: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    if !top && dir.join("Cargo.toml").is_file() {
        return Ok(());
    }
    let listing =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in listing.filter_map(|entry| entry.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let child = format!("{relative}/{name}");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect(&path, &child, false, files)?;
            }
        } else if name.ends_with(".rs") || (top && (name == "Cargo.toml" || name == "README.md")) {
            files.insert(child, read(&path)?);
        }
    }
    Ok(())
}

/// A workspace member.
struct Member<'a> {
    /// The package name.
    name: String,
    /// Its directory, relative to the root.
    dir: String,
    manifest: &'a str,
}

/// The members of the tree's workspace, each with its package name.
fn members(tree: &Tree) -> Result<Vec<Member<'_>>, String> {
    let manifest = tree
        .get("Cargo.toml")
        .ok_or("the tree has no root Cargo.toml")?;
    let mut dirs = Vec::new();
    for pattern in member_patterns(manifest) {
        match pattern.strip_suffix("/*") {
            Some(parent) => {
                let prefix = format!("{parent}/");
                dirs.extend(
                    tree.paths_under(&prefix)
                        .filter_map(|p| p.strip_suffix("/Cargo.toml"))
                        .filter(|dir| !dir[prefix.len()..].contains('/'))
                        .map(str::to_owned),
                );
            }
            None => dirs.push(pattern),
        }
    }
    dirs.into_iter()
        .map(|dir| {
            let manifest = tree
                .get(&format!("{dir}/Cargo.toml"))
                .ok_or_else(|| format!("workspace member {dir} has no Cargo.toml"))?;
            Ok(Member {
                name: package_name(manifest).unwrap_or_else(|| dir.clone()),
                dir,
                manifest,
            })
        })
        .collect()
}

/// `name` of a manifest's `[package]`.
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(value) = line.strip_prefix("name") {
            let value = value.trim_start().strip_prefix('=')?.trim();
            return Some(unquote(value).to_owned());
        }
    }
    None
}

/// A TOML key or string without its quotes: `"fred"` (basic) or `'fred'` (literal).
fn unquote(text: &str) -> &str {
    text.trim().trim_matches(['"', '\''])
}

/// The tables that list dependencies (the `_` spellings are the old ones Cargo still reads).
const DEPENDENCY_TABLES: [&str; 5] = [
    "dependencies",
    "dev-dependencies",
    "build-dependencies",
    "dev_dependencies",
    "build_dependencies",
];

/// Whether a manifest depends on `dependency` in any dependency table (normal, dev, build,
/// target-specific), under its own name or renamed (`package = "fred"`), however the TOML
/// spells the table and the key: a header (`[dependencies]`, `["dependencies"]`,
/// `[target.'cfg(unix)'.dependencies]`, `[dependencies . fred]`), a dotted key under any table
/// or none (`dependencies.fred = ...`, `target.'cfg(unix)'.dependencies.fred = ...`), an inline
/// table (`dependencies = { fred = ... }`), either kind of TOML string (`'fred'`). A name
/// spelled with a TOML escape (`"fr\u0065d"`) is not seen.
fn depends_on(manifest: &str, dependency: &str) -> bool {
    let renamed = ["\"", "'"].map(|q| format!("package={q}{dependency}{q}"));
    let mut table = Vec::new();
    for line in manifest.lines() {
        let line = toml_code(line).trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header
                .trim_start_matches('[')
                .trim_end()
                .trim_end_matches(']');
            table = toml_key(header);
            if dependency_name(&table).is_some_and(|name| name == dependency) {
                return true;
            }
            continue;
        }
        let Some((key, value)) = toml_split(line, '=') else {
            continue;
        };
        let mut path = table.clone();
        path.extend(toml_key(key));
        let Some(at) = dependency_table(&path) else {
            continue;
        };
        let name = path.get(at + 1);
        // `dependencies = { fred = "10" }`: the keys of the inline table are dependencies.
        let inline = name.is_none()
            && value.trim().strip_prefix('{').is_some_and(|table| {
                let table = table.trim_end().trim_end_matches('}');
                toml_items(table).into_iter().any(|item| {
                    toml_split(item, '=')
                        .and_then(|(key, _)| toml_key(key).into_iter().next())
                        .is_some_and(|key| key == dependency)
                })
            });
        let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if name.is_some_and(|name| name == dependency)
            || inline
            || renamed.iter().any(|r| squeezed.contains(r.as_str()))
        {
            return true;
        }
    }
    false
}

/// Where the kind of dependency table is in a key path: `dependencies` at its start, or after
/// `target.<cfg>`.
fn dependency_table(path: &[String]) -> Option<usize> {
    let kind = |segment: &String| DEPENDENCY_TABLES.contains(&segment.as_str());
    match path {
        [first, ..] if kind(first) => Some(0),
        [target, _, third, ..] if target == "target" && kind(third) => Some(2),
        _ => None,
    }
}

/// The dependency a table's key path names (`fred` of `[target.'cfg(unix)'.dependencies.fred]`).
fn dependency_name(path: &[String]) -> Option<&str> {
    path.get(dependency_table(path)? + 1).map(String::as_str)
}

/// The segments of a TOML key (`target . 'cfg(unix)'.dependencies`), unquoted.
fn toml_key(key: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut rest = key;
    while let Some((segment, after)) = toml_split(rest, '.') {
        segments.push(unquote(segment).to_owned());
        rest = after;
    }
    segments.push(unquote(rest).to_owned());
    segments
}

/// `text` split at its first `separator` outside quotes.
fn toml_split(text: &str, separator: char) -> Option<(&str, &str)> {
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, _) if c == separator => return Some((&text[..i], &text[i + 1..])),
            _ => {}
        }
    }
    None
}

/// The items of an inline table or array, split at the commas of its top level.
fn toml_items(text: &str) -> Vec<&str> {
    let (mut items, mut depth, mut quote, mut from) = (Vec::new(), 0usize, None, 0);
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                items.push(&text[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[from..]);
    items
}

/// A TOML line without its comment (a `#` outside quotes).
fn toml_code(line: &str) -> &str {
    toml_split(line, '#').map_or(line, |(code, _)| code)
}

/// Every broken invariant in `tree`, sorted; an error if the tree cannot be read as a
/// workspace.
pub(crate) fn check(tree: &Tree) -> Result<Vec<Problem>, String> {
    let members = members(tree)?;
    let mut problems = Vec::new();
    for member in &members {
        check_member(tree, member, &members, &mut problems);
    }
    problems.sort();
    problems.dedup();
    Ok(problems)
}

fn check_member(tree: &Tree, member: &Member<'_>, all: &[Member<'_>], problems: &mut Vec<Problem>) {
    if !FRED_DEPENDENTS.contains(&member.name.as_str()) && depends_on(member.manifest, "fred") {
        problems.push(Problem {
            invariant: Invariant::FredDependency,
            place: format!("{}/Cargo.toml", member.dir),
            message: format!(
                "{} depends on fred; only {} may (use kaiju_transport::fred)",
                member.name,
                FRED_DEPENDENTS.join(", ")
            ),
        });
    }
    // The member's files, not those of a member nested in its directory.
    let prefix = format!("{}/", member.dir);
    let sources: BTreeMap<String, Source> = tree
        .paths_under(&prefix)
        .filter(|path| path.ends_with(".rs"))
        .filter(|path| {
            !all.iter().any(|other| {
                other.dir.len() > member.dir.len() && path.starts_with(&format!("{}/", other.dir))
            })
        })
        .filter_map(|path| Some((path.to_owned(), Source::parse(tree.get(path)?))))
        .collect();
    // Test code: integration tests and `#[cfg(test)]` modules, reached from the crate roots.
    let mut production = BTreeMap::<&str, bool>::new();
    for root in modules::crate_roots(tree, &member.dir, member.manifest) {
        let files = modules::module_files(tree, &sources, &root);
        for file in &files {
            if let Some((path, _)) = sources.get_key_value(&file.path) {
                *production.entry(path).or_default() |= !file.test;
            }
        }
        if let Some(cycle) = modules::cycle(&files, &sources) {
            problems.push(Problem {
                invariant: Invariant::ModuleCycles,
                place: root.path.clone(),
                message: format!("import cycle between modules {}", cycle.join(" -> ")),
            });
        }
    }
    readme_links(tree, member, problems);
    for (path, source) in &sources {
        // A file no crate reaches is not compiled; it is held to the rules of production code.
        let test_file = !production.get(path.as_str()).copied().unwrap_or(true);
        if path != KEY_HOME && !test_file {
            key_names(path, source, problems);
        }
        if path != FRED_ERROR_HOME {
            fred_errors(path, source, problems);
        }
    }
}

/// Relative links in the README a member's library takes as its crate docs. A Rust item path
/// (`[x](crate::Key)`) has no `/` and no `.md`; anything else must be an absolute URL or an
/// anchor.
fn readme_links(tree: &Tree, member: &Member<'_>, problems: &mut Vec<Problem>) {
    let readme = format!("{}/README.md", member.dir);
    let front_page = tree
        .get(&format!("{}/src/lib.rs", member.dir))
        .is_some_and(|lib| lib.contains("include_str!(\"../README.md\")"));
    let Some(text) = tree.get(&readme).filter(|_| front_page) else {
        return;
    };
    for (n, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices("](") {
            let target = line[at + 2..].split(')').next().unwrap_or("").trim();
            let absolute = ["http://", "https://", "#"]
                .iter()
                .any(|p| target.starts_with(p));
            if !absolute && (target.contains('/') || target.contains(".md")) {
                problems.push(Problem {
                    invariant: Invariant::ReadmeLinks,
                    place: format!("{readme}:{}", n + 1),
                    message: format!(
                        "links to `{target}`, which docs.rs cannot follow; link to the repository's URL"
                    ),
                });
            }
        }
    }
}

/// Key parts spelled in string literals outside tests. Tests may spell key names: they check
/// the names key.rs builds against the wire format, which only an independent spelling shows.
fn key_names(path: &str, source: &Source, problems: &mut Vec<Problem>) {
    let parts = key_parts();
    for literal in source.literals_outside_tests() {
        for part in parts.iter().filter(|p| literal.value.contains(p.as_str())) {
            problems.push(Problem {
                invariant: Invariant::KeyNames,
                place: format!("{path}:{}", source.line_of(literal.at)),
                message: format!("spells the key part `{part}`; build key names in {KEY_HOME}"),
            });
        }
    }
}

/// The leading codes of Redis error replies, which [`FRED_ERROR_HOME`] classifies. Written in
/// lower case here, so this file does not spell them itself.
pub(crate) fn reply_codes() -> Vec<String> {
    "busygroup nogroup noscript wrongtype crossslot noperm wrongpass moved ask loading \
     readonly masterdown execabort oom noauth busy"
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The reply codes that are also ordinary words (`busy`, `loading`): matched in upper case
/// only, where the others match in any case.
const WORD_CODES: [&str; 6] = ["busy", "moved", "ask", "loading", "readonly", "oom"];

/// The string literals outside [`FRED_ERROR_HOME`] that may start with a Redis reply code,
/// because they are no fred error's text: (file, the whole literal with its code in lower
/// case, why).
const REPLY_TEXT_ALLOWED: [(&str, &str, &str); 2] = [
    (
        "crates/kaiju-testkit/src/server.rs",
        "noauth",
        "what redis-cli prints for a PING to a server with a password: no fred error",
    ),
    (
        "crates/kaiju-locks/src/batch.rs",
        "wrongtype Operation against a key holding the wrong kind of value",
        "the batch script's own reply (an error it caught with pcall and returns as data), fed \
         to the code that classifies it with TransportError::from_reply",
    ),
];

/// The `str` methods that look for a pattern in text: a reply code passed to one matches an
/// error's text.
const SEARCHES: [&str; 15] = [
    "starts_with",
    "ends_with",
    "contains",
    "strip_prefix",
    "strip_suffix",
    "find",
    "rfind",
    "split_once",
    "rsplit_once",
    "matches",
    "match_indices",
    "eq_ignore_ascii_case",
    "eq",
    "ne",
    "trim_start_matches",
];

/// The reply code a literal matches an error's text with, if any. The rule: a literal that
/// starts with a reply code as a word (after RESP's `-`) counts when it goes on after a space
/// (an error's text: `"MOVED 3999 ..."`) or is used to match text (an operand of `==`/`!=`,
/// the argument of a `str` search such as `starts_with`, a match pattern); a bare code used
/// otherwise (`"READONLY"`, the command) does not. Codes that are words ([`WORD_CODES`]) match
/// in upper case only, the others (`"busygroup"`) in any case when used to match text.
fn reply_code(code: &str, patterns: &[Range<usize>], literal: &Literal) -> Option<String> {
    let text = literal.value.strip_prefix('-').unwrap_or(&literal.value);
    let matching = matches_text(code, patterns, literal);
    reply_codes().into_iter().find(|reply| {
        let Some(head) = text.get(..reply.len()) else {
            return false;
        };
        let rest = &text[reply.len()..];
        let word = rest.is_empty() || rest.starts_with(' ');
        let any_case = !WORD_CODES.contains(&reply.to_ascii_lowercase().as_str());
        let exact = head == reply;
        word && if matching {
            exact || (any_case && head.eq_ignore_ascii_case(reply))
        } else {
            exact && !rest.is_empty()
        }
    })
}

/// Whether the literal is used to match text: an operand of `==` or `!=`, the one argument of
/// a [`SEARCHES`] method, or in a pattern (of a `match` arm: before `=>`, `|` or a guard; of
/// a `matches!`).
/// `patterns` are those of the file's `matches!` ([`matches_patterns`]).
fn matches_text(code: &str, patterns: &[Range<usize>], literal: &Literal) -> bool {
    // The code before the literal's prefix (`r#`, `b`), and after it.
    let before = code[..literal.at].trim_end_matches('#');
    let prefix = before.len()
        - before
            .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_')
            .len();
    let before = match &before[before.len() - prefix..] {
        "r" | "b" | "br" | "c" | "cr" => &before[..before.len() - prefix],
        _ => before,
    }
    .trim_end();
    let after = code.get(literal.end..).unwrap_or("").trim_start();
    let compared = |text: &str| text.starts_with("==") || text.starts_with("!=");
    if compared(after) || before.ends_with("==") || before.ends_with("!=") {
        return true;
    }
    // A pattern, maybe inside a tuple struct's: `Some("X") =>`, `"X" | "Y"`, `"X" if`.
    let pattern_end = after.trim_start_matches(|c: char| c == ')' || c.is_whitespace());
    let guard = pattern_end
        .strip_prefix("if")
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'));
    if pattern_end.starts_with("=>")
        || (pattern_end.starts_with('|') && !pattern_end.starts_with("||"))
        || guard
    {
        return true;
    }
    if patterns.iter().any(|p| p.contains(&literal.at)) {
        return true;
    }
    // The one argument of a search: `.starts_with("X")`.
    let Some(open) = before.strip_suffix('(') else {
        return false;
    };
    let callee = open
        .trim_end()
        .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("");
    after.starts_with(')') && SEARCHES.contains(&callee)
}

/// The patterns of the `matches!` of `code`: from the first comma of each to its end.
fn matches_patterns(code: &str) -> Vec<Range<usize>> {
    let bytes = code.as_bytes();
    modules::word_positions(code, "matches")
        .into_iter()
        .filter_map(|at| {
            let rest = code[at + "matches".len()..].strip_prefix('!')?.trim_start();
            rest.strip_prefix('(')?;
            let open = code.len() - rest.len();
            let mut depth = 0usize;
            let mut comma = None;
            for (i, b) in bytes.iter().enumerate().skip(open) {
                match b {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(comma?..i);
                        }
                    }
                    b',' if depth == 1 && comma.is_none() => comma = Some(i),
                    _ => {}
                }
            }
            None
        })
        .collect()
}

/// The nearest type written for the binding `name` before `at` (`name: &std::io::Error`,
/// in a signature, a closure or a `let`), without whitespace, references and `mut`.
fn declared_type(code: &str, name: &str, at: usize) -> Option<String> {
    modules::word_positions(&code[..at], name)
        .into_iter()
        .rev()
        .find_map(|start| {
            let rest = code[start + name.len()..at].trim_start();
            let rest = rest.strip_prefix(':').filter(|r| !r.starts_with(':'))?;
            let rest = rest.trim_start().trim_start_matches('&').trim_start();
            let rest = rest.strip_prefix("mut ").unwrap_or(rest);
            let ty: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || c.is_whitespace())
                .filter(|c| !c.is_whitespace())
                .collect();
            Some(ty)
        })
}

/// Reading a fred error's text or kind, anywhere but [`FRED_ERROR_HOME`], tests included: a
/// test that reads fred's text checks something other than what the code sees.
///
/// fred's error type itself may be named (`fred::error::Error` in a bound or a turbofish):
/// that passes an error on without looking into it. An error read as text
/// (`e.to_string()`, `format!("{e}")`) shows in the reply code it is compared with.
fn fred_errors(path: &str, source: &Source, problems: &mut Vec<Problem>) {
    let code = source.code();
    let mut found = |at: usize, what: &str| {
        problems.push(Problem {
            invariant: Invariant::FredErrors,
            place: format!("{path}:{}", source.line_of(at)),
            message: format!("{what}; classify fred errors in {FRED_ERROR_HOME} (TransportError)"),
        });
    };
    let imports: Vec<(String, Vec<String>)> = modules::use_statements(code)
        .into_iter()
        .flat_map(|(_, names)| names)
        .collect();
    let imported_from_io = |item: &str| {
        imports
            .iter()
            .any(|(name, path)| name == item && path.ends_with(&["io".to_owned(), item.to_owned()]))
    };
    // `use std::io::{self, ErrorKind, Error}`: those bare names are io's, not fred's.
    let (io_kind, io_error) = (imported_from_io("ErrorKind"), imported_from_io("Error"));
    // The names fred goes by in this file: its own, and aliases (`use x::fred as redis;`).
    let mut fred_names = vec!["fred".to_owned()];
    fred_names.extend(
        imports
            .iter()
            .filter(|(name, path)| name != "fred" && path.last().is_some_and(|p| p == "fred"))
            .map(|(name, _)| name.clone()),
    );
    let uses_fred = !modules::word_positions(code, "fred").is_empty();
    // The receiver of a `name` call or path at `at`: a path (`fred::error::Error` of
    // `fred::error::Error::kind`), or the name before the `.` of a method call.
    let receiver = |at: usize| {
        let before = code[..at].trim_end();
        match before.strip_suffix("::") {
            Some(receiver) => (path_before(receiver), true),
            None => {
                let receiver = before.strip_suffix('.').unwrap_or(before).trim_end();
                let name = receiver
                    .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("");
                let name = if receiver.ends_with("unwrap_err()") {
                    "unwrap_err()"
                } else {
                    name
                };
                (name.to_owned(), false)
            }
        }
    };
    // A path to a type named like an error that is not io's: `Error`, `fred::error::Error`.
    let fred_error_type = |ty: &str| {
        let name = ty.rsplit("::").next().unwrap_or("");
        name.ends_with("Error") && !ty.ends_with("io::Error") && !(io_error && ty == "Error")
    };
    for at in method_refs(code, "details") {
        let (receiver, path) = receiver(at);
        if !path || fred_error_type(&receiver) || is_call(code, at, "details") {
            found(at, "reads an error's text (`details()`)");
        }
    }
    for at in modules::word_positions(code, "ErrorKind") {
        let before = code[..at].trim_end();
        let qualifier = before.strip_suffix("::").map(path_before);
        let qualified_io = qualifier
            .as_deref()
            .is_some_and(|q| q == "io" || q.ends_with("::io"));
        if !qualified_io && (qualifier.is_some() || !io_kind) {
            found(at, "names fred's `ErrorKind`");
        }
    }
    for name in &fred_names {
        for start in modules::word_positions(code, name) {
            // `fred::error::X`, whitespace around the `::` aside.
            let item = ["::", "error", "::"]
                .iter()
                .try_fold(&code[start + name.len()..], |rest, token| {
                    rest.trim_start().strip_prefix(token)
                });
            let Some(item) = item.map(str::trim_start) else {
                continue;
            };
            let item: String = item
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if item != "Error" {
                found(start, "looks into `fred::error` beyond its `Error` type");
            }
        }
    }
    // `.kind()` of an error, in a file that uses fred: `e.kind()`, `error\n.kind()`,
    // `Error::kind(&e)`, `.map(Error::kind)`, ... (fred's `Value` has a `kind()` too: the
    // receiver tells). One known to be an `io::Error` (by the type written for it, or by the
    // io `ErrorKind` it is compared with) is not fred's.
    for at in method_refs(code, "kind").into_iter().filter(|_| uses_fred) {
        let (receiver, path) = receiver(at);
        let error_like = if path {
            fred_error_type(&receiver)
        } else {
            let named = matches!(receiver.as_str(), "e" | "err" | "error" | "unwrap_err()")
                || receiver.ends_with("_err")
                || receiver.ends_with("_error");
            let io_typed = || {
                declared_type(code, &receiver, at)
                    .is_some_and(|ty| ty.ends_with("io::Error") || (io_error && ty == "Error"))
            };
            named && !io_typed() && !compared_with_io_kind(code, at, io_kind)
        };
        if error_like {
            found(at, "reads an error's kind (`kind()`)");
        }
    }
    let allowed = |text: &str| {
        REPLY_TEXT_ALLOWED
            .iter()
            .any(|(file, literal, _)| *file == path && literal.eq_ignore_ascii_case(text))
    };
    let patterns = matches_patterns(code);
    for literal in source.literals() {
        let reply = reply_code(code, &patterns, literal).filter(|_| !allowed(&literal.value));
        if let Some(reply) = reply {
            problems.push(Problem {
                invariant: Invariant::FredErrors,
                place: format!("{path}:{}", source.line_of(literal.at)),
                message: format!(
                    "`{reply}` matches a Redis error's text; classify it in {FRED_ERROR_HOME} \
                     and match the TransportError variant"
                ),
            });
        }
    }
}

/// Whether the `kind()` call at `at` is compared with (`==`, `!=`) or matched against (`match
/// e.kind() { .. }`) an io `ErrorKind`: `io::ErrorKind::NotFound`, or a bare `ErrorKind` the
/// file imports from io.
fn compared_with_io_kind(code: &str, at: usize, io_kind: bool) -> bool {
    let Some(call) = code[at..].find(')') else {
        return false;
    };
    let after = code[at + call + 1..].trim_start();
    let Some(other) = ["==", "!=", "{"]
        .iter()
        .find_map(|operator| after.strip_prefix(operator))
    else {
        return false;
    };
    let other: String = other
        .chars()
        .filter(|c| !c.is_whitespace())
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let other = other.strip_prefix("::").unwrap_or(&other);
    other.contains("io::ErrorKind::") || (io_kind && other.starts_with("ErrorKind::"))
}

/// The path that ends `text`, whitespace around its `::` dropped: `std::io::Error` of
/// `f(std :: io::Error`.
fn path_before(text: &str) -> String {
    let mut segments = Vec::new();
    let mut rest = text.trim_end();
    loop {
        let start = rest
            .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_')
            .len();
        if start == rest.len() {
            break;
        }
        segments.push(&rest[start..]);
        match rest[..start].trim_end().strip_suffix("::") {
            Some(before) => rest = before.trim_end(),
            None => break,
        }
    }
    segments.reverse();
    segments.join("::")
}

/// Whether `name` at `at` is called: `(` follows, whitespace aside.
fn is_call(code: &str, at: usize, name: &str) -> bool {
    code[at + name.len()..].trim_start().starts_with('(')
}

/// Where `code` calls a method `name` (`x.name(`) or names an associated function `name` by
/// its path (`X::name(`, `.map(X::name)`), with any whitespace (newlines included) around the
/// `.`, `::` and `(`. The offset of `name`.
fn method_refs(code: &str, name: &str) -> Vec<usize> {
    modules::word_positions(code, name)
        .into_iter()
        .filter(|&at| {
            let before = code[..at].trim_end();
            let after = code[at + name.len()..].trim_start();
            let method = before.ends_with('.') && !before.ends_with("..") && after.starts_with('(');
            let path =
                before.ends_with("::") && !after.starts_with("::") && !after.starts_with('!');
            method || path
        })
        .collect()
}

pub(crate) fn run() -> Result<ExitCode, String> {
    let tree = Tree::load(&crate::root())?;
    let problems = check(&tree)?;
    if problems.is_empty() {
        let members = members(&tree)?.len();
        let files = tree.files.keys().filter(|p| p.ends_with(".rs")).count();
        println!("xtask: invariants hold ({members} members, {files} source files checked)");
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &problems {
            eprintln!("invariant broken: {problem}");
        }
        Ok(ExitCode::FAILURE)
    }
}
