//! Writing to stdout and stderr without panicking.
//!
//! `println!` panics when stdout is a pipe whose reader went away (`kaiju ... | head -4`):
//! Rust ignores SIGPIPE, so the write fails with `EPIPE`. Every line `kaiju` prints goes
//! through [`line()`] instead, which turns a closed stdout into a quiet exit with status 0, as
//! ripgrep does (the reader has what it wanted). Lines to stderr ([`note`]) never fail the
//! command: a closed stderr loses the note, not the result.

use std::io::Write as _;

use crate::Failure;

/// Writes one line to stdout: `Err` (a quiet one when the reader closed the pipe) when it
/// cannot be written.
pub(crate) fn line(args: std::fmt::Arguments<'_>) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure::output_closed(),
            _ => Failure::failed(format!("cannot write the output: {e}")),
        })
}

/// Writes one line to stderr, ignoring a failure to do so.
pub(crate) fn note(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `println!` that returns a [`Failure`] from the enclosing function instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))?
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::note(format_args!($($arg)*))
    };
}

pub(crate) use {errln, outln};
