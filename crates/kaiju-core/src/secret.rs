//! A string that never shows in `Debug` or `Display` output.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret (password, token). `Debug` and `Display` print `***`; read it with
/// [`Secret::expose`] at the one place that needs it.
///
/// ```
/// let s = kaiju_core::Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "Secret(***)");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// Parts of a URL query parameter's name that make its value a secret.
const SECRET_PARAMS: [&str; 11] = [
    "pass",
    "pwd",
    "token",
    "secret",
    "key",
    "sig",
    "auth",
    "jwt",
    "cookie",
    "credential",
    "session",
];

/// `redis://user:pass@host` → `redis://user:***@host`, and the value of every query or
/// fragment parameter whose name holds "pass", "pwd", "token", "secret", "key", "sig", "auth",
/// "jwt", "cookie", "credential" or "session" in any case (`?sentinelPassword=x` →
/// `?sentinelPassword=***`, `#access_token=x` → `#access_token=***`); anything else is
/// returned unchanged. A password holding `/`, `?` or `#` unencoded (as base64 ones do) is
/// hidden whole.
pub fn redact_url(url: &str) -> String {
    let out = redact_userinfo(url);
    let Some(tail_at) = out.find(['?', '#']) else {
        return out;
    };
    let (base, tail) = out.split_at(tail_at);
    let mut redacted = String::with_capacity(out.len());
    redacted.push_str(base);
    // Each `name=value` after a `?`, `&`, `;` or `#`.
    let mut rest = tail;
    while let Some(separator) = rest.chars().next() {
        redacted.push(separator);
        rest = &rest[separator.len_utf8()..];
        let end = rest.find(['?', '&', ';', '#']).unwrap_or(rest.len());
        let (pair, after) = rest.split_at(end);
        match pair.split_once('=') {
            Some((name, _))
                if SECRET_PARAMS
                    .iter()
                    .any(|p| name.to_ascii_lowercase().contains(p)) =>
            {
                redacted.push_str(name);
                redacted.push_str("=***");
            }
            _ => redacted.push_str(pair),
        }
        rest = after;
    }
    redacted
}

/// Hides the userinfo of `scheme://userinfo@host...`. The userinfo ends at the last `@` before
/// the host; a `/`, `?` or `#` before that `@` is part of a password when a `:` comes before
/// it (`redis://default:Zx9/k+Q2=@h`), else the `@` is in a path (`https://h/a@b`).
fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    if let Some(cut) = userinfo.find(['/', '?', '#'])
        && !userinfo[..cut].contains(':')
    {
        return url.to_owned();
    }
    let user = userinfo.split(':').next().unwrap_or("");
    let hidden = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        // `redis://password@host` puts the password in the user position.
        "***".to_owned()
    };
    format!("{}{}{}", &url[..scheme_end + 3], hidden, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("redis://u:p%40ss@h:1/0?x=y"),
            "redis://u:***@h:1/0?x=y"
        );
        assert_eq!(redact_url("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("redis://pw@h"), "redis://***@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact_url("redis-sentinel://u:p@h:1?sentinelPassword=x&sentinelUsername=s"),
            "redis-sentinel://u:***@h:1?sentinelPassword=***&sentinelUsername=s"
        );
        assert_eq!(
            redact_url("redis-sentinel://h:1?node=h:2&PASSWORD=x"),
            "redis-sentinel://h:1?node=h:2&PASSWORD=***"
        );
        assert_eq!(
            redact_url("https://h/x?token=t1&x=y&api_key=k&X-Amz-Signature=s"),
            "https://h/x?token=***&x=y&api_key=***&X-Amz-Signature=***"
        );
        // Passwords with `/`, `?` or `#` unencoded; fragments; `sig=` (adversarial review).
        assert_eq!(
            redact_url("redis://default:Zx9/k+Q2=@127.0.0.1:16391"),
            "redis://default:***@127.0.0.1:16391"
        );
        assert_eq!(redact_url("redis://:ab?cd@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("https://u:p/w#x@h/x"), "https://u:***@h/x");
        assert_eq!(
            redact_url("https://h/cb#access_token=t&state=s"),
            "https://h/cb#access_token=***&state=s"
        );
        assert_eq!(
            redact_url("https://h/x?sig=s&a=b"),
            "https://h/x?sig=***&a=b"
        );
        // An `@` in a path is no userinfo.
        assert_eq!(redact_url("https://h/users/a@b"), "https://h/users/a@b");
    }
}
