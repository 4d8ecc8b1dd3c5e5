//! A minimal blocking RESP2 client: enough for xtask to ping servers in containers and to build a
//! cluster out of them without `redis-cli` on the host or in the image.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One reply. Arrays are flattened into [`Reply::Array`] of replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK` or a bulk string.
    Text(String),
    /// `:1`.
    Int(i64),
    /// `-ERR ...`, without the dash.
    Error(String),
    /// `$-1` or `*-1`.
    Nil,
    /// `*n`.
    Array(Vec<Reply>),
}

impl Reply {
    /// The text of a simple or bulk string reply; an error reply becomes an `Err`.
    pub(crate) fn into_text(self) -> io::Result<String> {
        match self {
            Self::Text(text) => Ok(text),
            Self::Error(e) => Err(io::Error::other(e)),
            other => Err(io::Error::other(format!("unexpected reply {other:?}"))),
        }
    }
}

/// Bulk strings and arrays larger than this are a protocol error, not an allocation.
const MAX_LEN: usize = 64 << 20;

/// A header line (`+OK`, `$5`, an error) longer than this is a protocol error.
const MAX_LINE: u64 = 64 << 10;

/// One call, connect to last byte, takes at most this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `127.0.0.1:port`, sends one command and reads its reply, within 5 s in all (a
/// server trickling bytes cannot stretch it).
pub(crate) fn call(port: u16, args: &[&str]) -> io::Result<Reply> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), CALL_TIMEOUT)?;
    stream.set_write_timeout(Some(CALL_TIMEOUT))?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    (&stream).write_all(&request)?;
    read_reply(&mut BufReader::new(Deadline { stream, deadline }), 0)
}

/// A socket whose every read times out at one deadline, not per read.
struct Deadline {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "reply took too long",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// `call` for commands that answer a string (INFO, CLUSTER NODES, PING).
pub(crate) fn text(port: u16, args: &[&str]) -> io::Result<String> {
    call(port, args)?.into_text()
}

fn read_reply(reader: &mut impl BufRead, depth: usize) -> io::Result<Reply> {
    if depth > 8 {
        return Err(io::Error::other("reply nested too deeply"));
    }
    let mut line = String::new();
    reader.take(MAX_LINE).read_line(&mut line)?;
    let line = line
        .strip_suffix("\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "truncated reply"))?;
    let (kind, rest) = line.split_at_checked(1).unwrap_or(("", ""));
    let length = || -> io::Result<Option<usize>> {
        let n: i64 = rest
            .parse()
            .map_err(|_| io::Error::other(format!("bad length {rest:?}")))?;
        match usize::try_from(n) {
            Ok(n) if n <= MAX_LEN => Ok(Some(n)),
            Ok(_) => Err(io::Error::other(format!("length {n} too large"))),
            Err(_) if n == -1 => Ok(None),
            Err(_) => Err(io::Error::other(format!("bad length {n}"))),
        }
    };
    match kind {
        "+" => Ok(Reply::Text(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => rest
            .parse()
            .map(Reply::Int)
            .map_err(|_| io::Error::other(format!("bad integer {rest:?}"))),
        "$" => match length()? {
            None => Ok(Reply::Nil),
            Some(n) => {
                let mut body = Vec::new();
                reader.take(n as u64 + 2).read_to_end(&mut body)?;
                if body.len() != n + 2 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "truncated bulk string",
                    ));
                }
                if !body.ends_with(b"\r\n") {
                    return Err(io::Error::other("bulk string without its CRLF"));
                }
                body.truncate(n);
                Ok(Reply::Text(String::from_utf8_lossy(&body).into_owned()))
            }
        },
        "*" => match length()? {
            None => Ok(Reply::Nil),
            Some(n) => (0..n)
                .map(|_| read_reply(reader, depth + 1))
                .collect::<io::Result<Vec<_>>>()
                .map(Reply::Array),
        },
        _ => Err(io::Error::other(format!("unknown reply {line:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut &bytes[..], 0)
    }

    #[test]
    fn parses_each_reply_kind() {
        assert_eq!(parse(b"+PONG\r\n").unwrap(), Reply::Text("PONG".into()));
        assert_eq!(parse(b":42\r\n").unwrap(), Reply::Int(42));
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Reply::Error("ERR no".into())
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(
            parse(b"$5\r\na\r\nbc\r\n").unwrap(),
            Reply::Text("a\r\nbc".into())
        );
        assert_eq!(
            parse(b"*2\r\n:1\r\n$1\r\nx\r\n").unwrap(),
            Reply::Array(vec![Reply::Int(1), Reply::Text("x".into())])
        );
    }

    #[test]
    fn rejects_truncated_and_oversized_replies() {
        assert!(parse(b"+PONG").is_err());
        assert!(parse(b"$5\r\nab").is_err());
        assert!(parse(b"$99999999999\r\n").is_err());
        assert!(parse(b"*2\r\n:1\r\n").is_err());
        assert!(parse(b"?\r\n").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"$4\r\nPONGxx").is_err());
        assert!(parse(b"$-5\r\n").is_err());
        assert!(parse(b"*-7\r\n").is_err());
        let endless = vec![b'+'; 200_000];
        assert!(parse(&endless).is_err());
    }
}
