//! `cargo xtask image [--server S] [--tag T]`: a container image built from this host's
//! `redis-server` (or the server `--server` chose), for machines whose Docker engine cannot
//! reach a registry.
//!
//! The image is `FROM scratch` in effect: `redis-server`, `redis-cli`, the shared libraries
//! `ldd` lists for them and an empty `/data`, imported from a tarball with `docker import` (so
//! it needs neither a Dockerfile builder nor BuildKit).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::docker::{docker_quiet, engine_available};
use crate::target_dir;

/// The tag `cargo xtask image` gives its image unless told otherwise.
pub(crate) const LOCAL_TAG: &str = "kaiju-redis:local";

pub(crate) fn run(args: &[String]) -> Result<ExitCode, String> {
    let tag = match args {
        [] => LOCAL_TAG.to_owned(),
        [flag, tag] if flag == "--tag" => tag.clone(),
        _ => return Err("usage: cargo xtask image [--server <name>] [--tag <name:tag>]".into()),
    };
    if !engine_available() {
        return Err("no Docker engine answers (`docker info` failed)".into());
    }
    let server = kaiju_testkit::server_path().map_err(|e| e.to_string())?;
    let cli = kaiju_testkit::cli_path().map_err(|e| e.to_string())?;
    let rootfs = target_dir()?.join("kaiju-image").join("rootfs");
    let _ = std::fs::remove_dir_all(&rootfs);
    for dir in ["usr/bin", "data", "tmp"] {
        std::fs::create_dir_all(rootfs.join(dir)).map_err(|e| e.to_string())?;
    }
    // Under the names the Docker backend runs (`redis-server`, `redis-cli`), whatever the
    // binary is called on the host (`valkey-server` for `--server valkey9`).
    for (binary, name) in [(&server, "redis-server"), (&cli, "redis-cli")] {
        copy_into(&rootfs, binary, &Path::new("/usr/bin").join(name))?;
        for library in shared_libraries(binary)? {
            copy_into(&rootfs, &library, &library)?;
        }
    }
    let imported = import(&rootfs, &tag);
    let _ = std::fs::remove_dir_all(&rootfs);
    imported?;
    let version = docker_quiet(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        &tag,
        "redis-server",
        "--version",
    ])?;
    eprintln!("xtask: built {tag}: {version}");
    eprintln!("xtask: run the suite on it with `cargo xtask test --docker --image {tag}`");
    Ok(ExitCode::SUCCESS)
}

/// Copies `from` (following symlinks) to `rootfs` + `to`, keeping its permissions.
fn copy_into(rootfs: &Path, from: &Path, to: &Path) -> Result<(), String> {
    let relative = to.strip_prefix("/").unwrap_or(to);
    let target = rootfs.join(relative);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::copy(from, &target)
        .map(drop)
        .map_err(|e| format!("cannot copy {}: {e}", from.display()))
}

/// The absolute paths of the libraries (and the loader) `ldd` lists for `binary`.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("cannot run ldd: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "ldd {} failed (a static binary needs no image of this kind)",
            binary.display()
        ));
    }
    parse_ldd(&String::from_utf8_lossy(&output.stdout))
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and `/lib64/ld-linux-x86-64.so.2
/// (0x...)` give a path; `linux-vdso.so.1 (0x...)` is in the kernel; `=> not found` is an error.
fn parse_ldd(listing: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for line in listing.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let candidate = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(format!("ldd: {} not found", name.trim()));
                }
                rest
            }
            None => line,
        };
        if let Some(path) = candidate.split_whitespace().next()
            && path.starts_with('/')
        {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}

/// `tar -C rootfs -c . | docker import --change ... - tag`.
fn import(rootfs: &Path, tag: &str) -> Result<(), String> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let stdout = tar.stdout.take().ok_or("tar has no stdout")?;
    let imported = Command::new("docker")
        .args([
            "import",
            "--change",
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            "--change",
            "WORKDIR /data",
            "--change",
            "CMD [\"redis-server\"]",
            "--message",
            "redis-server from the host, by cargo xtask image",
            "-",
            tag,
        ])
        .stdin(stdout)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    let packed = tar.wait().map_err(|e| e.to_string())?;
    if packed.success() && imported.success() {
        Ok(())
    } else {
        Err(format!(
            "building the image failed (tar: {packed}, docker import: {imported})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_listings() {
        let listing = "\
\tlinux-vdso.so.1 (0x00007fd85b1db000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fd85a21e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007fd85b1dd000)
";
        assert_eq!(
            parse_ldd(listing).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }
}
