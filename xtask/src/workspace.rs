//! Where the workspace and its target directory are, found when xtask runs, never where it was
//! compiled.
//!
//! The path `env!("CARGO_MANIFEST_DIR")` compiles into the binary is the path of whichever clone
//! built it. With one `CARGO_TARGET_DIR` shared by several clones (many developers set one for
//! all their projects), cargo runs the binary another clone built, and that clone may be gone:
//! xtask then ran cargo in a deleted directory ("cannot run cargo: No such file or directory").
//! So the workspace comes from `cargo metadata`, asked about the xtask package `cargo run`
//! started (cargo sets `CARGO_MANIFEST_DIR` in the environment of what it runs), else about the
//! current directory; the target directory is the one cargo itself uses (`CARGO_TARGET_DIR`,
//! `build.target-dir`, else `<root>/target`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::cargo;

/// The workspace xtask works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Workspace {
    /// The directory of the workspace's root `Cargo.toml`.
    pub(crate) root: PathBuf,
    /// Where cargo builds it: `target/`, or `CARGO_TARGET_DIR`, or `build.target-dir`.
    pub(crate) target: PathBuf,
}

fn current() -> Result<&'static Workspace, String> {
    static WORKSPACE: OnceLock<Result<Workspace, String>> = OnceLock::new();
    WORKSPACE
        .get_or_init(|| {
            let cwd = std::env::current_dir()
                .map_err(|e| format!("cannot read the current directory: {e}"))?;
            let package = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
            locate(package.as_deref(), &cwd)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The workspace root, found at run time (see the module docs).
pub(crate) fn root() -> Result<&'static Path, String> {
    current().map(|w| w.root.as_path())
}

/// The target directory cargo builds this workspace into, found at run time.
pub(crate) fn target_dir() -> Result<&'static Path, String> {
    current().map(|w| w.target.as_path())
}

/// Asks `cargo metadata` (run in `cwd`, which decides cargo's configuration, as it did for the
/// `cargo xtask` that started us) about `package`'s workspace when given, else about `cwd`'s.
/// Every error names the path it could not use.
pub(crate) fn locate(package: Option<&Path>, cwd: &Path) -> Result<Workspace, String> {
    if !cwd.is_dir() {
        return Err(format!(
            "cannot find the workspace from {}: no such directory",
            cwd.display()
        ));
    }
    let mut command = Command::new(cargo());
    command.current_dir(cwd).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]);
    let from = match package {
        Some(dir) => {
            let manifest = dir.join("Cargo.toml");
            if !manifest.is_file() {
                return Err(format!(
                    "cannot find the workspace: {} (the xtask package cargo ran, CARGO_MANIFEST_DIR) does not exist",
                    manifest.display()
                ));
            }
            command.arg("--manifest-path").arg(&manifest);
            manifest
        }
        None => cwd.to_owned(),
    };
    let out = command.output().map_err(|e| {
        format!(
            "cannot run {} in {} to find the workspace: {e}",
            cargo(),
            cwd.display()
        )
    })?;
    if !out.status.success() {
        return Err(format!(
            "cannot find the workspace of {}: cargo metadata failed: {}",
            from.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let workspace = parse_metadata(&String::from_utf8_lossy(&out.stdout))?;
    // What xtask runs (`cargo test --workspace`, builds, Redis servers) is for kaiju-rs only: a
    // binary run by hand in another project's directory stops here.
    let xtask = workspace.root.join("xtask").join("Cargo.toml");
    if !xtask.is_file() {
        return Err(format!(
            "{} is not the kaiju-rs workspace: {} does not exist (run `cargo xtask` inside a kaiju-rs clone)",
            workspace.root.display(),
            xtask.display()
        ));
    }
    Ok(workspace)
}

/// The workspace root and target directory of `cargo metadata --format-version 1` output.
pub(crate) fn parse_metadata(json: &str) -> Result<Workspace, String> {
    let field = |key: &str| {
        top_level_string(json, key)
            .map(PathBuf::from)
            .ok_or_else(|| format!("cargo metadata printed no `{key}`"))
    };
    Ok(Workspace {
        root: field("workspace_root")?,
        target: field("target_directory")?,
    })
}

/// The string value of `"key":` in a JSON text. Only the top-level object of cargo metadata has
/// these keys, and a key cannot match inside a string value (its quotes are escaped there).
fn top_level_string(json: &str, key: &str) -> Option<String> {
    let pattern = format!("\"{key}\"");
    let start = json.find(&pattern)? + pattern.len();
    let rest = json[start..].trim_start().strip_prefix(':')?.trim_start();
    json_string(rest.strip_prefix('"')?)
}

/// Decodes a JSON string whose opening quote is already consumed, up to its closing quote.
fn json_string(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = text.chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let high = hex_unit(&mut chars)?;
                    let code = if (0xD800..0xDC00).contains(&high) {
                        // A surrogate pair: `\uD83D\uDE00`.
                        if chars.next()? != '\\' || chars.next()? != 'u' {
                            return None;
                        }
                        let low = hex_unit(&mut chars).filter(|l| (0xDC00..0xE000).contains(l))?;
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        high
                    };
                    out.push(char::from_u32(code)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
}

/// The four hex digits of a `\u` escape.
fn hex_unit(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let hex: String = chars.take(4).collect();
    u32::from_str_radix(&hex, 16)
        .ok()
        .filter(|_| hex.len() == 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_and_target_directory_are_read_from_cargo_metadata() {
        let json = r#"{"packages":[{"name":"x","description":"\"workspace_root\":\"/no\""}],"workspace_members":[],"target_directory":"/tmp/shared target/\u00e9\ud83d\ude00","version":1,"workspace_root":"/home/me/kaiju \"rs\"\\clone","metadata":null}"#;
        assert_eq!(
            parse_metadata(json),
            Ok(Workspace {
                root: PathBuf::from("/home/me/kaiju \"rs\"\\clone"),
                target: PathBuf::from("/tmp/shared target/é😀"),
            })
        );
        let spaced = "{ \"workspace_root\" : \"/a\",\n \"target_directory\": \"/b\" }";
        assert_eq!(
            parse_metadata(spaced).map(|w| (w.root, w.target)),
            Ok(("/a".into(), "/b".into()))
        );
        let err = parse_metadata(r#"{"workspace_root":"/a"}"#).unwrap_err();
        assert!(err.contains("target_directory"), "{err}");
        assert!(parse_metadata(r#"{"workspace_root":"/a","target_directory":"/b"#).is_err());
        assert!(parse_metadata(r#"{"workspace_root":"\ud83d","target_directory":"/b"}"#).is_err());
    }

    /// A scratch directory of this test's own, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "xtask-{name}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        /// A workspace shaped like kaiju-rs's as far as xtask looks: a root manifest and an
        /// `xtask` member.
        fn workspace(&self) -> PathBuf {
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

    /// The workspace is the one of the package cargo ran, else of the current directory; never
    /// the one this binary was compiled in.
    #[test]
    fn the_workspace_is_found_at_run_time_from_the_package_or_the_directory() {
        let scratch = Scratch::new("locate");
        let root = scratch.workspace();
        let root = root.canonicalize().unwrap();
        let compiled_in = Path::new(env!("CARGO_MANIFEST_DIR"));
        let from_package = locate(Some(&root.join("xtask")), &scratch.0).unwrap();
        assert_eq!(from_package.root, root);
        assert_ne!(Some(from_package.root.as_path()), compiled_in.parent());
        let from_directory = locate(None, &root.join("xtask/src")).unwrap();
        assert_eq!(from_directory.root, root);
        // The target directory is cargo's: `CARGO_TARGET_DIR` when set (this test's own cargo
        // may run with one), else `<root>/target`.
        match std::env::var_os("CARGO_TARGET_DIR") {
            None => assert_eq!(from_directory.target, root.join("target")),
            Some(_) => assert!(from_directory.target.is_absolute()),
        }
    }

    #[test]
    fn a_missing_place_is_named_in_the_error() {
        let scratch = Scratch::new("missing");
        let gone = scratch.0.join("gone-clone").join("xtask");
        let err = locate(Some(&gone), &scratch.0).unwrap_err();
        assert!(
            err.contains(&gone.join("Cargo.toml").display().to_string()),
            "{err}"
        );
        let err = locate(None, &gone).unwrap_err();
        assert!(
            err.contains(&gone.display().to_string()) && err.contains("no such directory"),
            "{err}"
        );
        // A workspace that is not kaiju-rs's: named, with what is missing.
        let other = scratch.0.join("other");
        std::fs::create_dir_all(other.join("src")).unwrap();
        std::fs::write(
            other.join("Cargo.toml"),
            "[package]\nname = \"other\"\nversion = \"0.0.0\"\nedition = \"2021\"\n",
        )
        .unwrap();
        std::fs::write(other.join("src/lib.rs"), "").unwrap();
        let err = locate(None, &other).unwrap_err();
        assert!(
            err.contains("not the kaiju-rs workspace") && err.contains("xtask/Cargo.toml"),
            "{err}"
        );
    }
}
