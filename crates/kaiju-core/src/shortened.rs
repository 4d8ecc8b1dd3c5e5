//! Text and bytes from the wire shown in a log line or an error message, cut to a few
//! characters.

use std::fmt;

/// How many characters of a name [`shortened`] shows.
pub const SHOWN_CHARS: usize = 100;

/// `text` as a log line or an error message shows it: whole when it has at most
/// [`SHOWN_CHARS`] characters, else its first [`SHOWN_CHARS`] characters followed by `…` and
/// its length in bytes. For names a peer chose (a method, a channel, a request id), so that a
/// megabyte-long one costs a log line or a dead letter a few hundred bytes, not a megabyte.
///
/// ```
/// use kaiju_core::shortened;
/// assert_eq!(shortened("svc.add").to_string(), "svc.add");
/// let long = "x".repeat(1 << 20);
/// assert_eq!(shortened(&long).to_string(), format!("{}… (1048576 bytes)", "x".repeat(100)));
/// assert_eq!(shortened("a\nERROR forged").to_string(), "a\\nERROR forged");
/// ```
pub fn shortened(text: &str) -> Shortened<'_> {
    Shortened(text)
}

/// What [`shortened`] returns: displays the shortened text, allocating nothing.
#[derive(Debug, Clone, Copy)]
pub struct Shortened<'a>(&'a str);

impl fmt::Display for Shortened<'_> {
    /// Control characters (a line break, an escape sequence) are written escaped (`\n`,
    /// `\u{1b}`), so that a name a peer chose cannot forge a log line or color a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (shown, cut) = match self.0.char_indices().nth(SHOWN_CHARS) {
            None => (self.0, false),
            Some((cut, _)) => (&self.0[..cut], true),
        };
        for part in shown.split_inclusive(char::is_control) {
            match part.char_indices().last() {
                Some((i, c)) if c.is_control() => {
                    f.write_str(&part[..i])?;
                    write!(f, "{}", c.escape_debug())?;
                }
                _ => f.write_str(part)?,
            }
        }
        if cut {
            write!(f, "… ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// What bytes look like, for an error message: their length and up to 32 characters of them,
/// quoted, with anything unprintable escaped (`\n`, `\u{1b}`, `\xc1`), and `...` after the
/// closing quote when there are more.
///
/// ```
/// use kaiju_core::describe_bytes;
/// assert_eq!(describe_bytes(b"hello"), r#"5 bytes: "hello""#);
/// assert_eq!(describe_bytes(b"\xc1\n"), r#"2 bytes: "\xc1\n""#);
/// assert_eq!(describe_bytes(&[b'a'; 40]), format!(r#"40 bytes: "{}"..."#, "a".repeat(32)));
/// ```
pub fn describe_bytes(bytes: &[u8]) -> String {
    const SHOWN: usize = 32;
    let mut shown = String::new();
    let mut count = 0;
    let mut cut = false;
    'chunks: for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if count == SHOWN {
                cut = true;
                break 'chunks;
            }
            shown.extend(c.escape_debug());
            count += 1;
        }
        for b in chunk.invalid() {
            if count == SHOWN {
                cut = true;
                break 'chunks;
            }
            shown.push_str(&format!("\\x{b:02x}"));
            count += 1;
        }
    }
    let unit = if bytes.len() == 1 { "byte" } else { "bytes" };
    format!(
        "{} {unit}: \"{shown}\"{}",
        bytes.len(),
        if cut { "..." } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_on_a_character_boundary() {
        let exact = "é".repeat(SHOWN_CHARS);
        assert_eq!(shortened(&exact).to_string(), exact);
        let long = "é".repeat(SHOWN_CHARS + 1);
        assert_eq!(
            shortened(&long).to_string(),
            format!("{exact}… ({} bytes)", long.len())
        );
        assert_eq!(shortened("").to_string(), "");
    }
}
