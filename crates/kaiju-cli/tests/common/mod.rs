//! What the `kaiju` binary's tests share: running it, reading what it printed, and the
//! connection arguments for a test's namespace.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use kaiju_core::Namespace;
use kaiju_tests::Target;

/// The seed's example configs.
pub(crate) fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/kaiju")
}

/// The URL of the single node `cargo xtask test` started (`None` after a skip message).
pub(crate) fn url() -> Option<String> {
    kaiju_tests::settings(Target::Single).map(|s| s.url.unwrap().expose().to_owned())
}

/// `kaiju` with no connection or environment inherited from the test's environment.
pub(crate) fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kaiju"));
    cmd.env_remove("KAIJU_REDIS_URL")
        .env_remove("KAIJU_ENV")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// Runs `kaiju args...` to the end.
pub(crate) fn kaiju(args: &[&str]) -> Output {
    command().args(args).output().unwrap()
}

/// Stdout and stderr as text.
pub(crate) fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The exit code (-1 for a signal).
pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// `--redis-url <url> --environment <env>` for a namespace.
pub(crate) fn conn<'a>(url: &'a str, ns: &'a Namespace) -> [&'a str; 4] {
    [
        "--redis-url",
        url,
        "--environment",
        ns.prefix().split_once('.').unwrap().0,
    ]
}
