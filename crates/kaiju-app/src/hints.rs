//! Error words for people: serde's messages without Rust type names, and "did you mean"
//! hints for near misses.

/// A name among `known` that `word` is probably a misspelling of: the same but for case,
/// `-`/`_`, or a small edit (at most one edit per four characters, and at most two).
pub(crate) fn did_you_mean<'a>(
    word: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let fold = |s: &str| s.to_ascii_lowercase().replace(['-', '_'], "");
    let folded = fold(word);
    let limit = (word.chars().count() / 4).clamp(1, 2);
    known
        .into_iter()
        .filter(|k| *k != word)
        .map(|k| {
            let known = fold(k);
            let d = if known == folded {
                0
            } else if known.chars().count().abs_diff(folded.chars().count()) > limit {
                // The distance is at least the difference in length: a long name (a pasted
                // value, a 1 MB key) is not compared at all, which would take seconds.
                usize::MAX
            } else {
                distance(&folded, &known)
            };
            (d, k)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edit distance with transpositions (`prot` is one edit from `port`): short names only, the
/// settings and class names of a config.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// serde's words for a type that [`kaiju_core::codec::in_words`] leaves alone (or, for a port,
/// says better), for a setting named `field`.
fn expected(ty: &str, field: &str) -> Option<&'static str> {
    Some(match ty {
        "u16" if field.ends_with("port") => "a port number, 1-65535",
        "bool" => "true or false",
        "char" => "a single character",
        _ if ty.starts_with("struct ") => "a mapping of settings",
        _ if ty.starts_with("enum ") => "one of the listed values",
        _ if ty.starts_with("tuple") => "a list",
        _ => return None,
    })
}

/// The setting an `unknown field` message names.
pub(crate) fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
}

/// A serde error message about the setting `field`, in a person's words:
/// - `expected u16` becomes `expected a port number, 1-65535` (no Rust type names);
/// - ``unknown field `groupid`, expected one of ...`` becomes ``not a setting of this class
///   (did you mean `group_id`?); its settings are ...``.
pub(crate) fn settings_message(field: &str, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((name, known)) = rest.split_once('`')
    {
        let known: Vec<&str> = known
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|k| !k.is_empty())
            .collect();
        let hint = did_you_mean(name, known.iter().copied())
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        let list = if known.is_empty() {
            "it takes no settings".to_owned()
        } else {
            format!("its settings are `{}`", known.join("`, `"))
        };
        return format!("not a setting of this class{hint}; {list}");
    }
    if let Some(at) = message.rfind("expected ") {
        let ty = message[at + "expected ".len()..].trim_end_matches('.');
        let name = field.rsplit(['.', '[']).next().unwrap_or(field);
        if let Some(words) = expected(ty, name) {
            return format!("{}expected {words}", &message[..at]);
        }
    }
    kaiju_core::codec::in_words(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_found_and_far_ones_are_not() {
        let known = ["group_id", "max_batch_size", "RedisCache", "RedisListener"];
        assert_eq!(did_you_mean("groupid", known), Some("group_id"));
        assert_eq!(did_you_mean("group-id", known), Some("group_id"));
        assert_eq!(
            did_you_mean("max_batch_sise", known),
            Some("max_batch_size")
        );
        assert_eq!(did_you_mean("RedisCach", known), Some("RedisCache"));
        assert_eq!(did_you_mean("rediscache", known), Some("RedisCache"));
        assert_eq!(did_you_mean("zzz", known), None);
        assert_eq!(did_you_mean("prot", ["port", "host"]), Some("port"));
        assert_eq!(did_you_mean("Cache", known), None);
        // A huge name is answered at once, without a suggestion.
        let huge = "g".repeat(1_000_000);
        let started = std::time::Instant::now();
        assert_eq!(did_you_mean(&huge, known), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn serde_messages_lose_their_type_names() {
        assert_eq!(
            settings_message("port", "invalid value: integer `70000`, expected u16"),
            "invalid value: integer `70000`, expected a port number, 1-65535"
        );
        assert_eq!(
            settings_message("pool_size", "invalid value: integer `-1`, expected usize"),
            "invalid value: integer `-1`, expected an integer of 0 or more"
        );
        assert_eq!(
            settings_message("x", "invalid type: string \"a\", expected struct Settings"),
            "invalid type: string \"a\", expected a mapping of settings"
        );
        assert_eq!(
            settings_message(
                "",
                "unknown field `groupid`, expected one of `group_id`, `scope`"
            ),
            "not a setting of this class (did you mean `group_id`?); its settings are `group_id`, `scope`"
        );
        assert_eq!(
            settings_message("", "unknown field `x`, there are no fields"),
            "not a setting of this class; it takes no settings"
        );
    }
}
