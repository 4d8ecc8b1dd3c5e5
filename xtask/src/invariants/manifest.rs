//! Reading Cargo manifests: the workspace's members, a package's name, its dependencies. A
//! line-based TOML reader, enough for the shapes manifests take.

/// The member paths (or `dir/*` patterns) of a root manifest's `[workspace]`.
pub(super) fn member_patterns(manifest: &str) -> Vec<String> {
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

/// `name` of a manifest's `[package]`.
pub(super) fn package_name(manifest: &str) -> Option<String> {
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
pub(super) fn depends_on(manifest: &str, dependency: &str) -> bool {
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
