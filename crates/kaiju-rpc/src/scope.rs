//! Scopes, kaiju's permission patterns, and the fnmatch they are written in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Who may call a method. A lower value is more privileged: a caller at scope `s` reaches the
/// methods whose permission is `s` or less privileged (a `USER` caller reaches `USER` and
/// `GUEST` methods).
///
/// Read from YAML as `"SYSTEM"`, `"ADMIN"`, `"USER"`, `"GUEST"` (any letter case) or the numbers
/// 0, 10, 100, 1000; written as the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Scope {
    /// 0: internal services; reaches everything. The default permission of a method.
    #[default]
    System,
    /// 10: administrators.
    Admin,
    /// 100: signed-in users.
    User,
    /// 1000: anyone.
    Guest,
}

impl Scope {
    /// kaiju's number for the scope.
    pub fn value(self) -> u32 {
        match self {
            Self::System => 0,
            Self::Admin => 10,
            Self::User => 100,
            Self::Guest => 1000,
        }
    }

    /// kaiju's name for the scope.
    pub fn name(self) -> &'static str {
        match self {
            Self::System => "SYSTEM",
            Self::Admin => "ADMIN",
            Self::User => "USER",
            Self::Guest => "GUEST",
        }
    }

    /// Whether a caller at this scope may call a method with `permission`.
    pub fn reaches(self, permission: Scope) -> bool {
        permission.value() >= self.value()
    }

    fn from_value(n: i64) -> Option<Self> {
        [Self::System, Self::Admin, Self::User, Self::Guest]
            .into_iter()
            .find(|s| i64::from(s.value()) == n)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name or number that is not a scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a scope (SYSTEM, ADMIN, USER, GUEST or 0, 10, 100, 1000)")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, UnknownScope> {
        let by_name = [Self::System, Self::Admin, Self::User, Self::Guest]
            .into_iter()
            .find(|scope| scope.name().eq_ignore_ascii_case(s.trim()));
        by_name
            .or_else(|| s.trim().parse().ok().and_then(Self::from_value))
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Number(i64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Name(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Number(n) => Self::from_value(n)
                .ok_or_else(|| serde::de::Error::custom(UnknownScope(n.to_string()))),
        }
    }
}

/// A service's permissions, as kaiju declares them: `(pattern, scope)` pairs matched in order
/// against a method's short name (without the service prefix). The **last** matching pattern
/// wins; a method no pattern matches is `SYSTEM`.
///
/// ```
/// use kaiju_rpc::{Permissions, Scope};
/// let p = Permissions::new([("*", Scope::Guest), ("delete*", Scope::System)]);
/// assert_eq!(p.of("list"), Scope::Guest);
/// assert_eq!(p.of("delete_all"), Scope::System);
/// assert_eq!(Permissions::default().of("anything"), Scope::System);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(Vec<(String, Scope)>);

impl Permissions {
    /// Patterns and their scopes, in the order they are matched.
    pub fn new<P: Into<String>>(patterns: impl IntoIterator<Item = (P, Scope)>) -> Self {
        Self(patterns.into_iter().map(|(p, s)| (p.into(), s)).collect())
    }

    /// The permission of the method with this short name.
    pub fn of(&self, route: &str) -> Scope {
        self.0
            .iter()
            .rfind(|(pattern, _)| fnmatch(pattern, route))
            .map_or(Scope::System, |(_, scope)| *scope)
    }
}

/// Python's `fnmatch.fnmatchcase`: `*` any run, `?` one character, `[seq]`, `[!seq]` and ranges
/// `[a-z]`; everything else literal; case-sensitive. An unclosed `[` is a literal `[`.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative wildcard matching with one backtrack point (the last `*`): linear in practice,
    // and never exponential on hostile patterns.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match class(&p, pi, n[ni]) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                None => (n[ni] == '[').then_some(pi + 1),
            },
            Some(c) => (*c == n[ni]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi.min(p.len())..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class starting at `p[at] == '['`: `Some((matched, index after ]))`,
/// or `None` when the class is not closed (then `[` is literal).
fn class(p: &[char], at: usize, c: char) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = matches!(p.get(i), Some('!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|hi| *hi != ']') {
            let hi = *p.get(i + 2)?;
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_behaves_as_pythons() {
        let cases = [
            ("*", "anything", true),
            ("*", "", true),
            ("a", "a", true),
            ("a", "A", false),
            ("b.*", "b.c", true),
            ("b.*", "bc", false),
            ("get_?", "get_x", true),
            ("get_?", "get_xy", false),
            ("[ab]x", "bx", true),
            ("[!ab]x", "bx", false),
            ("[!ab]x", "cx", true),
            ("[a-c]", "b", true),
            ("[a-c]", "d", false),
            ("[]]", "]", true),
            ("[", "[", true),
            ("x[", "x[", true),
            (
                "*a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("*.delete", "user.delete", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(fnmatch(pattern, name), expected, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn the_last_matching_pattern_wins() {
        // Measured on kaiju: {"a": SYSTEM, "*": GUEST} makes `a` GUEST, the reverse SYSTEM.
        let p = Permissions::new([("a", Scope::System), ("*", Scope::Guest)]);
        assert_eq!(p.of("a"), Scope::Guest);
        let p = Permissions::new([("*", Scope::Guest), ("a", Scope::System)]);
        assert_eq!(p.of("a"), Scope::System);
        assert_eq!(p.of("b"), Scope::Guest);
    }

    #[test]
    fn scopes_parse_by_name_in_any_case_and_by_number() {
        assert_eq!("SYSTEM".parse::<Scope>(), Ok(Scope::System));
        assert_eq!("system".parse::<Scope>(), Ok(Scope::System));
        assert_eq!("Admin".parse::<Scope>(), Ok(Scope::Admin));
        assert_eq!("100".parse::<Scope>(), Ok(Scope::User));
        assert!("ROOT".parse::<Scope>().is_err());
        assert!("5".parse::<Scope>().is_err());
        assert!(Scope::System.reaches(Scope::Guest));
        assert!(Scope::User.reaches(Scope::Guest));
        assert!(!Scope::Guest.reaches(Scope::User));
        assert!(Scope::Admin.reaches(Scope::Admin));
    }

    #[test]
    fn fuzz_fnmatch() {
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config::with_cases(kaiju_testkit::fuzz_cases().min(5000)));
        runner
            .run(
                &("[a\\[\\]!*?\\-.]{0,12}", "[ab\\[\\]!.\\-]{0,12}"),
                |(p, n)| {
                    let _ = fnmatch(&p, &n);
                    Ok(())
                },
            )
            .unwrap();
    }
}
