//! One Rust source file as the checks see it: code without comments or string contents, the
//! string literals apart, the test-only items marked, and the `mod name;` declarations.
//!
//! A small lexer, not a parser: enough to tell code from comments and strings (raw strings,
//! byte strings, char literals, lifetimes and nested block comments included) and to match
//! braces, which is all the checks need.

use std::ops::Range;

/// A string literal of the file.
pub(super) struct Literal {
    /// Byte offset of its opening quote.
    pub(super) at: usize,
    /// What it holds, its escapes decoded (`\x5f` is `_`, a `\` before a newline drops the
    /// newline and the indentation after it): the string the program sees. A raw string's is
    /// its text as written.
    pub(super) value: String,
    /// Past its closing quote (and the `#`s of a raw string).
    pub(super) end: usize,
}

impl Literal {
    /// A literal with escapes (not a raw one) whose quote is at `at`.
    fn escaped(at: usize, contents: &[u8], end: usize) -> Self {
        Self {
            at,
            value: unescape(&String::from_utf8_lossy(contents)),
            end,
        }
    }
}

/// A literal's contents with Rust's escapes decoded: `\n`, `\x5f`, `\u{5f}`, `\"`, ..., and a
/// `\` before a newline, which drops the newline and the whitespace after it. An escape that
/// does not decode is kept as written.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push(c);
            break;
        };
        match e {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '0' => out.push('\0'),
            '\\' | '\'' | '"' => out.push(e),
            '\n' | '\r' => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(byte) => out.push(char::from(byte)),
                    Err(_) => out.extend(['\\', 'x'].into_iter().chain(hex.chars())),
                }
            }
            'u' if chars.peek() == Some(&'{') => {
                let mut digits = String::new();
                for d in chars.by_ref() {
                    digits.push(d);
                    if d == '}' {
                        break;
                    }
                }
                let code = digits
                    .strip_prefix('{')
                    .and_then(|d| d.strip_suffix('}'))
                    .and_then(|d| u32::from_str_radix(&d.replace('_', ""), 16).ok())
                    .and_then(char::from_u32);
                match code {
                    Some(decoded) => out.push(decoded),
                    None => out.extend(['\\', 'u'].into_iter().chain(digits.chars())),
                }
            }
            _ => out.extend([c, e]),
        }
    }
    out
}

/// A `mod name;` declaration outside any braces: a module in a file of its own.
pub(super) struct ModDecl {
    pub(super) name: String,
    /// Declared under `#[cfg(test)]` (or in a test-only file): the module is test code.
    pub(super) test: bool,
    /// Its file as `#[path = "..."]` names it, relative to the declaring file's directory.
    pub(super) path: Option<String>,
}

/// A parsed source file.
pub(super) struct Source {
    /// The text with comments and the contents of string and char literals replaced by spaces
    /// (newlines kept), so offsets and line numbers are those of the file.
    code: String,
    /// The byte ranges of test-only code: `#[cfg(test)]` (or another test-only predicate, see
    /// [`test_only`]) and what it is on, and the body of a module with `#![cfg(test)]`.
    test_ranges: Vec<Range<usize>>,
    /// Every string literal, in order.
    literals: Vec<Literal>,
    /// `#![cfg(test)]` outside any braces: the whole file is test code.
    test_file: bool,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || !b.is_ascii()
}

impl Source {
    pub(super) fn parse(text: &str) -> Self {
        let (code, literals) = lex(text);
        let (test_ranges, test_file) = test_code(&code);
        Self {
            code,
            test_ranges,
            literals,
            test_file,
        }
    }

    /// The code, comments and literal contents blanked, test items included.
    pub(super) fn code(&self) -> &str {
        &self.code
    }

    /// The code with test-only items blanked too.
    pub(super) fn code_without_tests(&self) -> String {
        if self.test_file {
            return String::new();
        }
        let mut bytes = self.code.clone().into_bytes();
        for range in &self.test_ranges {
            blank(&mut bytes, range.clone());
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether the byte at `at` belongs to test code.
    pub(super) fn is_test(&self, at: usize) -> bool {
        self.test_file || self.test_ranges.iter().any(|r| r.contains(&at))
    }

    /// The 1-based line of byte `at`.
    pub(super) fn line_of(&self, at: usize) -> usize {
        self.code.as_bytes()[..at.min(self.code.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// Every string literal, test code included.
    pub(super) fn literals(&self) -> &[Literal] {
        &self.literals
    }

    /// The string literals outside test code.
    pub(super) fn literals_outside_tests(&self) -> impl Iterator<Item = &Literal> {
        self.literals.iter().filter(|l| !self.is_test(l.at))
    }

    /// The `mod name;` declarations outside any braces (inline `mod x { ... }` bodies are not
    /// followed: their files would live one directory deeper, which nothing here does).
    pub(super) fn mod_decls(&self) -> Vec<ModDecl> {
        let bytes = self.code.as_bytes();
        let mut decls = Vec::new();
        let mut depth = 0usize;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' => depth += 1,
                b'}' => depth = depth.saturating_sub(1),
                b'm' if depth == 0
                    && bytes[i..].starts_with(b"mod")
                    && (i == 0 || !is_ident(bytes[i - 1])) =>
                {
                    let rest = &self.code[i + 3..];
                    let trimmed = rest.trim_start();
                    if trimmed.len() < rest.len() {
                        let name: String = trimmed
                            .bytes()
                            .take_while(|b| is_ident(*b))
                            .map(char::from)
                            .collect();
                        let after = trimmed[name.len()..].trim_start();
                        if !name.is_empty() && after.starts_with(';') {
                            decls.push(ModDecl {
                                test: self.is_test(i),
                                path: self.path_attribute(i),
                                name,
                            });
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
        decls
    }

    /// The path of a `#[path = "..."]` among the attributes of the item at `item` (its
    /// visibility included).
    fn path_attribute(&self, item: usize) -> Option<String> {
        self.literals.iter().find_map(|literal| {
            let before = self.code[..literal.at].trim_end().strip_suffix('=')?;
            let open = before.trim_end().strip_suffix("path")?.trim_end();
            open.strip_suffix("#[")?;
            let close = literal.at + self.code[literal.at..].find(']')? + 1;
            let between = self.code.get(close..item)?;
            attributes_and_visibility(between).then(|| literal.value.clone())
        })
    }
}

/// Whether `text` holds only attributes and a visibility (`pub`, `pub(crate)`): what may stand
/// between an attribute and its item.
fn attributes_and_visibility(text: &str) -> bool {
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if let Some(attribute) = rest.strip_prefix("#[") {
            let mut depth = 1usize;
            let Some(end) = attribute.find(|c| {
                match c {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    _ => {}
                }
                depth == 0
            }) else {
                return false;
            };
            rest = attribute[end + 1..].trim_start();
        } else if leading_word(rest) == "pub" {
            rest = rest[3..].trim_start();
            if let Some(scope) = rest.strip_prefix('(') {
                let Some((_, after)) = scope.split_once(')') else {
                    return false;
                };
                rest = after.trim_start();
            }
        } else {
            return false;
        }
    }
    true
}

/// Spaces over `range`, newlines kept.
fn blank(bytes: &mut [u8], range: Range<usize>) {
    for b in &mut bytes[range] {
        if *b != b'\n' {
            *b = b' ';
        }
    }
}

/// The text with comments and literal contents blanked, and the string literals.
fn lex(text: &str) -> (String, Vec<Literal>) {
    let src = text.as_bytes();
    let mut out = src.to_vec();
    let mut literals = Vec::new();
    let n = src.len();
    let mut i = 0;
    // The end of a quoted string whose opening quote is at `open`, and its contents' range.
    let quoted = |open: usize| {
        let mut j = open + 1;
        while j < n && src[j] != b'"' {
            j += if src[j] == b'\\' { 2 } else { 1 };
        }
        (open + 1..j.min(n), (j + 1).min(n))
    };
    while i < n {
        let c = src[i];
        let next = src.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            let end = src[i..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(n, |p| i + p);
            blank(&mut out, i..end);
            i = end;
        } else if c == b'/' && next == Some(b'*') {
            let (mut j, mut depth) = (i + 2, 1);
            while j < n && depth > 0 {
                if src[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if src[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i..j.min(n));
            i = j;
        } else if c == b'"' {
            let (contents, end) = quoted(i);
            literals.push(Literal::escaped(i, &src[contents.clone()], end));
            blank(&mut out, contents);
            i = end;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '"') or a lifetime ('a).
            if next == Some(b'\\') {
                let mut j = i + 3;
                while j < n && src[j] != b'\'' {
                    j += 1;
                }
                blank(&mut out, i + 1..j.min(n));
                i = j + 1;
            } else {
                let width = text
                    .get(i + 1..)
                    .and_then(|rest| rest.chars().next())
                    .map_or(1, char::len_utf8);
                if src.get(i + 1 + width) == Some(&b'\'') {
                    blank(&mut out, i + 1..i + 1 + width);
                    i += 2 + width;
                } else {
                    i += 1;
                }
            }
        } else if is_ident(c) && (i == 0 || !is_ident(src[i - 1])) {
            let mut j = i;
            while j < n && is_ident(src[j]) {
                j += 1;
            }
            let ident = &src[i..j];
            let hashes = src[j..].iter().take_while(|b| **b == b'#').count();
            let raw = matches!(ident, b"r" | b"br" | b"cr") && src.get(j + hashes) == Some(&b'"');
            if raw {
                // r#"..."#: ends at a quote followed by as many hashes.
                let open = j + hashes;
                let mut close = open + 1;
                while close < n
                    && !(src[close] == b'"'
                        && src[close + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|b| **b == b'#')
                            .count()
                            == hashes)
                {
                    close += 1;
                }
                let contents = open + 1..close.min(n);
                let value = String::from_utf8_lossy(&src[contents.clone()]).into_owned();
                blank(&mut out, contents);
                i = (close + 1 + hashes).min(n);
                literals.push(Literal {
                    at: open,
                    value,
                    end: i,
                });
            } else if matches!(ident, b"b" | b"c") && src.get(j) == Some(&b'"') {
                let (contents, end) = quoted(j);
                literals.push(Literal::escaped(j, &src[contents.clone()], end));
                blank(&mut out, contents);
                i = end;
            } else {
                i = j;
            }
        } else {
            i += 1;
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), literals)
}

/// Words that start an item or a `let` statement: a `#[cfg(test)]` on one covers it up to its
/// `;` or through its braces. On anything else (a match arm, a field, an argument, an
/// expression statement) it covers up to the `,` or `;` that ends it.
const ITEM_KEYWORDS: [&str; 15] = [
    "fn", "mod", "impl", "struct", "enum", "trait", "union", "type", "use", "const", "static",
    "let", "extern", "unsafe", "async",
];

/// The identifier at the start of `text`.
fn leading_word(text: &str) -> &str {
    let end = text
        .bytes()
        .position(|b| !is_ident(b))
        .unwrap_or(text.len());
    &text[..end]
}

/// Whether the code at `at` (after its attributes) is an item or a `let` statement, rather
/// than an element of a list (a match arm, a field, an argument) or an expression: `pub fn`
/// is an item, `pub name: T` a field.
fn starts_item(code: &str, at: usize) -> bool {
    let mut rest = code[at..].trim_start();
    if leading_word(rest) == "pub" {
        rest = rest[3..].trim_start();
        if let Some(scope) = rest.strip_prefix('(') {
            rest = scope
                .split_once(')')
                .map_or("", |(_, after)| after)
                .trim_start();
        }
    }
    let word = leading_word(rest);
    ITEM_KEYWORDS.contains(&word) || rest.starts_with("macro_rules!")
}

/// The byte ranges of test-only code, and whether the whole file is: each `#[cfg(test)]` with
/// the one item, statement, match arm, field or argument it is on (not what follows it), and
/// the body of each module (or block) with `#![cfg(test)]` in it. `#![cfg(test)]` outside any
/// braces makes the whole file test code. `cfg(all(test, unix))` counts as `cfg(test)`,
/// `cfg(any(test, unix))` does not ([`test_only`]).
fn test_code(code: &str) -> (Vec<Range<usize>>, bool) {
    let (mut ranges, test_file) = inner_test_scopes(code);
    ranges.extend(test_items(code));
    (ranges, test_file)
}

/// The bodies that hold `#![cfg(test)]`, and whether one is outside any braces (the file).
fn inner_test_scopes(code: &str) -> (Vec<Range<usize>>, bool) {
    let bytes = code.as_bytes();
    let inner: Vec<usize> = test_cfgs(code)
        .into_iter()
        .filter(|cfg| cfg.inner)
        .map(|cfg| cfg.start)
        .collect();
    let (mut opens, mut ranges, mut test_file) = (Vec::new(), Vec::new(), false);
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'{' => opens.push(i),
            b'}' => {
                opens.pop();
            }
            b'#' if inner.contains(&i) => match opens.last() {
                None => test_file = true,
                Some(&open) => ranges.push(open..closing_brace(bytes, open)),
            },
            _ => {}
        }
    }
    (ranges, test_file)
}

/// A `#[cfg(...)]` or `#![cfg(...)]` attribute whose predicate holds in test builds only.
struct TestCfg {
    /// The offset of its `#`.
    start: usize,
    /// Past its `]`.
    end: usize,
    /// `#![...]`: it is on the module (or block) it is in.
    inner: bool,
}

/// The `cfg` attributes of `code` whose predicate is test-only ([`test_only`]), with any
/// whitespace between their tokens.
fn test_cfgs(code: &str) -> Vec<TestCfg> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    for (start, _) in code.match_indices('#') {
        let mut rest = code[start + 1..].trim_start();
        let inner = rest.starts_with('!');
        if inner {
            rest = rest[1..].trim_start();
        }
        if !rest.starts_with('[') {
            continue;
        }
        let open = code.len() - rest.len();
        let Some(after) = rest[1..].trim_start().strip_prefix("cfg") else {
            continue;
        };
        if after.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(close) = matching_bracket(bytes, open) else {
            continue;
        };
        let attribute = &code[open + 1..close];
        let predicate = attribute.trim().strip_prefix("cfg").unwrap_or("").trim();
        let predicate = predicate
            .strip_prefix('(')
            .and_then(|p| p.strip_suffix(')'));
        if predicate.is_some_and(test_only) {
            found.push(TestCfg {
                start,
                end: close + 1,
                inner,
            });
        }
    }
    found
}

/// The `]` that closes the `[` at `open`.
fn matching_bracket(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether a `cfg` predicate holds in test builds only: `test`, `all(..)` with a test-only
/// predicate among its own, `any(..)` of test-only predicates only. `any(test, unix)` is not:
/// it holds in a production build on unix.
fn test_only(predicate: &str) -> bool {
    let predicate = predicate.trim();
    let list = |name: &str| {
        let rest = predicate.strip_prefix(name)?.trim_start();
        let args = rest.strip_prefix('(')?.strip_suffix(')')?;
        Some(split_args(args))
    };
    if predicate == "test" {
        true
    } else if let Some(args) = list("all") {
        args.iter().any(|a| test_only(a))
    } else if let Some(args) = list("any") {
        !args.is_empty() && args.iter().all(|a| test_only(a))
    } else {
        false
    }
}

/// The comma-separated items of a list, at its top level.
fn split_args(list: &str) -> Vec<&str> {
    let (mut items, mut depth, mut from) = (Vec::new(), 0usize, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&list[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[from..]);
    items.into_iter().filter(|i| !i.trim().is_empty()).collect()
}

/// The end (past the `}`) of the braces opened at `open`, or of the text if they never close.
pub(super) fn closing_brace(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    bytes.len()
}

/// The byte ranges of `#[cfg(test)]` (any test-only `cfg`) and what each applies to: an item up to its `;` or
/// through its braces, a list element (match arm, field, argument) up to its `,`, and never
/// past the end of the braces or parentheses it is in.
fn test_items(code: &str) -> Vec<Range<usize>> {
    let bytes = code.as_bytes();
    let mut ranges = Vec::new();
    let mut from = 0;
    for cfg in test_cfgs(code).into_iter().filter(|cfg| !cfg.inner) {
        // One inside a range already found is covered by it.
        if cfg.start < from {
            continue;
        }
        let start = cfg.start;
        let mut i = cfg.end;
        // Further attributes of the same item.
        loop {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if !bytes[i..].starts_with(b"#[") {
                break;
            }
            let mut depth = 0usize;
            while i < bytes.len() {
                match bytes[i] {
                    b'[' => depth += 1,
                    b']' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        let item = starts_item(code, i);
        // A `let` statement ends at its `;` only: `let s = S { .. };`.
        let statement = leading_word(code[i.min(code.len())..].trim_start()) == "let";
        let (mut round, mut braces, mut end) = (0usize, 0usize, bytes.len());
        while i < bytes.len() {
            let outside = round == 0 && braces == 0;
            match bytes[i] {
                // The end of the list or block the attribute is in.
                b')' | b']' | b'}' if outside => {
                    end = i;
                    break;
                }
                b'(' | b'[' => round += 1,
                b')' | b']' => round = round.saturating_sub(1),
                b';' | b',' if outside && (bytes[i] == b';' || !item) => {
                    end = i + 1;
                    break;
                }
                b'{' => braces += 1,
                b'}' => {
                    braces = braces.saturating_sub(1);
                    if braces == 0 && round == 0 && !statement {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        ranges.push(start..end);
        from = end.max(start + 1);
    }
    ranges
}
