//! The xtask binary works on the clone it is run for and that clone's target directory, never
//! on the clone it was compiled in (issue 26 item 13).
//!
//! With one `CARGO_TARGET_DIR` shared by two clones, `cargo xtask` in one clone runs the binary
//! the other clone built; cargo tells it which package it ran through `CARGO_MANIFEST_DIR` in
//! its environment. These tests run the binary as that cargo would, for a scratch clone: no
//! build, no Redis.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory of this test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "xtask-it-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir.canonicalize().unwrap())
    }

    /// A clone shaped like kaiju-rs as far as xtask looks: a workspace with an `xtask` member.
    fn clone(&self) -> PathBuf {
        let root = self.0.join("clone");
        std::fs::create_dir_all(root.join("xtask/src")).unwrap();
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nmembers = [\"xtask\"]\nresolver = \"2\"\n",
        )
        .unwrap();
        std::fs::write(
            root.join("xtask/Cargo.toml"),
            "[package]\nname = \"xtask\"\nversion = \"0.0.0\"\nedition = \"2021\"\n",
        )
        .unwrap();
        std::fs::write(root.join("xtask/src/main.rs"), "fn main() {}\n").unwrap();
        root
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs xtask with `args` in `cwd`, with `package` as the package cargo ran (or none: the
/// binary run by hand) and `target` as `CARGO_TARGET_DIR`.
fn xtask(args: &[&str], cwd: &Path, package: Option<&Path>, target: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(args)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", target);
    match package {
        Some(dir) => command.env("CARGO_MANIFEST_DIR", dir),
        None => command.env_remove("CARGO_MANIFEST_DIR"),
    };
    command.output().expect("cannot run the xtask binary")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn xtask_works_on_the_clone_it_runs_for_and_its_target_directory() {
    let scratch = Scratch::new("shared");
    let clone = scratch.clone();
    let shared = scratch.0.join("shared-target");
    // What `cargo xtask redis up` leaves for `status` to read, in the target directory.
    std::fs::create_dir_all(shared.join("kaiju-redis")).unwrap();
    std::fs::write(
        shared.join("kaiju-redis/state"),
        "url single redis://from-the-scratch-clone:1\n",
    )
    .unwrap();
    // As `cargo xtask` in the clone runs it, then as a binary run by hand inside the clone.
    for (package, cwd) in [
        (Some(clone.join("xtask")), clone.clone()),
        (None, clone.join("xtask/src")),
    ] {
        let out = xtask(&["redis", "status"], &cwd, package.as_deref(), &shared);
        assert!(
            out.status.success() && text(&out).contains("redis://from-the-scratch-clone:1"),
            "redis status read another state file ({package:?}, in {}): {}",
            cwd.display(),
            text(&out)
        );
        let out = xtask(&["invariants"], &cwd, package.as_deref(), &shared);
        assert!(
            out.status.success() && text(&out).contains("(1 members, 1 source files checked)"),
            "invariants checked another tree ({package:?}): {}",
            text(&out)
        );
    }
}

#[test]
fn a_clone_that_is_gone_is_named_in_the_error() {
    let scratch = Scratch::new("gone");
    let gone = scratch.0.join("deleted-clone").join("xtask");
    let out = xtask(
        &["redis", "status"],
        &scratch.0,
        Some(&gone),
        &scratch.0.join("shared-target"),
    );
    let expected = gone.join("Cargo.toml").display().to_string();
    assert!(
        !out.status.success() && text(&out).contains(&expected),
        "expected an error naming {expected}: {}",
        text(&out)
    );
}

/// A relative `CARGO_TARGET_DIR` is cargo's from the directory `cargo xtask` ran in: the cargo
/// xtask runs in the workspace root builds into that same directory, not into a second one
/// relative to the root (where `bench` then found no binary).
#[test]
fn a_relative_target_dir_is_the_one_of_the_directory_xtask_ran_in() {
    let scratch = Scratch::new("relative");
    let clone = scratch.clone();
    std::fs::write(clone.join("xtask/src/lib.rs"), "").unwrap();
    let cwd = clone.join("xtask/src");
    let out = xtask(
        &["fuzz", "1"],
        &cwd,
        Some(&clone.join("xtask")),
        Path::new("rel-target"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        cwd.join("rel-target/debug").is_dir(),
        "nothing built in {}: {}",
        cwd.join("rel-target").display(),
        text(&out)
    );
    assert!(
        !clone.join("rel-target").exists(),
        "a second target directory: {}",
        clone.join("rel-target").display()
    );
}
