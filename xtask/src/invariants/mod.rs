//! `cargo xtask invariants`: the architecture invariants a text check can hold (ARCHITECTURE.md),
//! over every member of the workspace (`[workspace] members` of the root Cargo.toml) and every
//! `.rs` file of each: `src/`, `tests/`, `it/`, `examples/`, `benches/`, ...
//!
//! 1. [`Invariant::FredDependency`]: only the members in [`FRED_DEPENDENTS`] depend on fred.
//! 2. [`Invariant::KeyNames`]: kaiju key names are built in [`KEY_HOME`] only: no string literal
//!    of other code holds one of kaiju's reserved key parts ([`key_parts`]). A part assembled
//!    from pieces (`concat!("a.", "_stream")`, `format!("{}.{}", ns, "_stream")`,
//!    `String::from("a.") + "_reply"`) is not seen: each literal alone is innocent, and
//!    reporting every `"_stream"` or `"."` would bury real findings in false ones.
//! 3. [`Invariant::FredErrors`]: fred's errors are looked into in [`FRED_ERROR_HOME`] only: no
//!    other file reads their text (`details()`, as a method or `Error::details(&e)`) or kind
//!    (`kind()` on a receiver named like an error, fred's `ErrorKind`), nor holds a string
//!    literal that starts with a Redis reply code ([`reply_codes`]: `"BUSYGROUP"`, ...), which
//!    is how an error read as text (`e.to_string()`, `format!("{e}")`) gets matched; the few
//!    literals that are no fred error's text are listed in [`REPLY_TEXT_ALLOWED`]. `kind()` on
//!    a receiver named otherwise (`failure.kind()`) is not seen: fred's `Value` has a `kind()`
//!    too, and only the name tells them apart.
//! 4. [`Invariant::ModuleCycles`]: no import cycle between the top-level modules of any crate
//!    (library, binary, test, example) of any member, through `crate::` and `super::` paths,
//!    names and aliases the crate root imports, root globs, and `#[path]` files. Inline
//!    modules of the crate root itself are not modules of their own here.
//! 5. [`Invariant::ReadmeLinks`]: a member README that is its crate's docs.rs front page
//!    (`include_str!("../README.md")`) has no relative link: docs.rs cannot follow one.
//!
//! The checks are lexical (a small lexer in `source.rs`, no type information): they catch the
//! shapes above, not every way Rust can spell the same thing.
//!
//! The checker reads a [`Tree`] of files, so the tests run it on trees of their own.

mod modules;
mod source;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use source::Source;

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

/// Whether a manifest depends on `dependency` in any dependency table (normal, dev, build,
/// target-specific), under its own name or renamed (`package = "fred"`), in either kind of
/// TOML string (`'fred'`).
fn depends_on(manifest: &str, dependency: &str) -> bool {
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']').trim();
            // `[dependencies]`, `[target.'cfg(unix)'.dev-dependencies]`, `[dependencies.fred]`.
            if let Some((_, name)) = header.rsplit_once("dependencies.") {
                if unquote(name) == dependency {
                    return true;
                }
                in_deps = true;
            } else {
                in_deps = header.ends_with("dependencies");
            }
            continue;
        }
        if !in_deps {
            continue;
        }
        let key = line.split(['=', '.']).next().unwrap_or("").trim();
        let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        let renamed = ["\"", "'"].map(|q| format!("package={q}{dependency}{q}"));
        if unquote(key) == dependency || renamed.iter().any(|r| squeezed.contains(r.as_str())) {
            return true;
        }
    }
    false
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

/// The leading codes of Redis error replies, which [`FRED_ERROR_HOME`] classifies: a string
/// literal elsewhere that starts with one matches a server error's text. Written in lower case
/// here, so this file does not spell them itself.
pub(crate) fn reply_codes() -> Vec<String> {
    "busygroup nogroup noscript wrongtype crossslot noperm wrongpass moved ask loading \
     readonly masterdown execabort oom noauth busy"
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect()
}

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

/// The reply code a literal starts with, as a whole word (alone, or before a space).
fn reply_code(literal: &str) -> Option<String> {
    reply_codes().into_iter().find(|code| {
        literal
            .strip_prefix(code.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
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
    for at in method_calls(code, "details") {
        found(at, "reads an error's text (`details()`)");
    }
    for (at, _) in code.match_indices("ErrorKind") {
        let qualified_io = code[..at].ends_with("io::");
        let word = !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        if word && !qualified_io {
            found(at, "names fred's `ErrorKind`");
        }
    }
    for (at, _) in code.match_indices("fred::error::") {
        let rest = &code[at + "fred::error::".len()..];
        let item: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if item != "Error" {
            found(at, "looks into `fred::error` beyond its `Error` type");
        }
    }
    // `.kind()` of an error, in a file that uses fred: `e.kind()`, `error\n.kind()`,
    // `Error::kind(&e)`, ... (fred's `Value` has a `kind()` too: the receiver tells).
    let uses_fred = code.contains("fred::");
    for at in method_calls(code, "kind").into_iter().filter(|_| uses_fred) {
        let before = code[..at].trim_end();
        let (receiver, ufcs) = match before.strip_suffix("::") {
            Some(path) => (path, true),
            None => (before.strip_suffix('.').unwrap_or(before).trim_end(), false),
        };
        let name = receiver
            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        let error_like = if ufcs {
            name.ends_with("Error") && !receiver.ends_with("io::Error")
        } else {
            matches!(name, "e" | "err" | "error")
                || name.ends_with("_err")
                || name.ends_with("_error")
                || receiver.ends_with("unwrap_err()")
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
    for literal in source.literals() {
        if let Some(reply) = reply_code(&literal.text).filter(|_| !allowed(&literal.text)) {
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

/// Where `code` calls a method or associated function `name`: `x.name(`, `X::name(`, with
/// any whitespace (newlines included) around the `.`, `::` and `(`. The offset of `name`.
fn method_calls(code: &str, name: &str) -> Vec<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(name)
        .map(|(at, _)| at)
        .filter(|&at| {
            let before = code[..at].trim_end();
            let after = &code[at + name.len()..];
            !code[..at].ends_with(ident)
                && !after.starts_with(ident)
                && after.trim_start().starts_with('(')
                && (before.ends_with('.') || before.ends_with("::"))
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
