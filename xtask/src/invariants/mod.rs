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
//!
//! [`reply_codes`]: fred_errors::reply_codes
//! [`reply_code`]: fred_errors::reply_code
//! [`REPLY_TEXT_ALLOWED`]: fred_errors::REPLY_TEXT_ALLOWED

mod fred_errors;
mod manifest;
mod modules;
mod source;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitCode;

use fred_errors::fred_errors;
use manifest::depends_on;
use source::Source;
use tree::{Member, Tree, members};

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

pub(crate) fn run() -> Result<ExitCode, String> {
    let tree = Tree::load(crate::root()?)?;
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
