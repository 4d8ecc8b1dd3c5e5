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
    "sign",
    "auth",
    "jwt",
    "cookie",
    "credential",
    "session",
];

/// `redis://user:pass@host` → `redis://user:***@host`, and the value of every query parameter
/// whose name holds "pass", "pwd", "token", "secret", "key", "sign", "auth", "jwt", "cookie",
/// "credential" or "session" in any case (`?sentinelPassword=x` → `?sentinelPassword=***`,
/// `?token=x` → `?token=***`); anything else is returned unchanged.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _))
                    if SECRET_PARAMS
                        .iter()
                        .any(|p| name.to_ascii_lowercase().contains(p)) =>
                {
                    format!("{name}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
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
    }
}
