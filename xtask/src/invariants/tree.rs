//! The files the checks read: the workspace's root manifest and each member's manifest, README
//! and `.rs` files, from disk or (in the tests) given.

use std::collections::BTreeMap;
use std::path::Path;

use super::manifest::{member_patterns, package_name};

/// The files the checks read, by path relative to the workspace root (`/`-separated): the root
/// Cargo.toml, and each member's Cargo.toml and `.rs` files.
pub(crate) struct Tree {
    pub(super) files: BTreeMap<String, String>,
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

    pub(super) fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    pub(super) fn get(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// The paths that start with `prefix`.
    pub(super) fn paths_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> {
        self.files
            .range(prefix.to_owned()..)
            .map(|(path, _)| path.as_str())
            .take_while(move |path| path.starts_with(prefix))
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
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
pub(super) struct Member<'a> {
    /// The package name.
    pub(super) name: String,
    /// Its directory, relative to the root.
    pub(super) dir: String,
    pub(super) manifest: &'a str,
}

/// The members of the tree's workspace, each with its package name.
pub(super) fn members(tree: &Tree) -> Result<Vec<Member<'_>>, String> {
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
