//! The servers a test run uses and the `cargo test` that runs against them: shared by the
//! local backend (`test.rs`), the Docker backend (`docker/`) and `redis up` (`redis.rs`).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use kaiju_testkit::{RedisServer, ServerOptions, TlsFiles, TlsOptions};

use crate::{cannot_run_cargo, cargo_in, procs, root};

/// Where the tests find their servers: exported to `cargo test` as `KAIJU_REDIS_URL`,
/// `KAIJU_REDIS_CLUSTER_URL`, `KAIJU_REDIS_TLS_URL` and `KAIJU_REDIS_TLS_DIR`.
pub(crate) struct Servers {
    pub(crate) single: String,
    pub(crate) cluster: String,
    /// A TLS-only single node (`rediss://`), client certificates optional.
    pub(crate) tls: String,
    /// The certificates of `tls` ([`TlsFiles`]): the tests trust its `ca.crt`.
    pub(crate) tls_dir: PathBuf,
}

impl Servers {
    /// The environment `cargo test` runs with.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KAIJU_REDIS_URL", self.single.clone()),
            ("KAIJU_REDIS_CLUSTER_URL", self.cluster.clone()),
            ("KAIJU_REDIS_TLS_URL", self.tls.clone()),
            ("KAIJU_REDIS_TLS_DIR", self.tls_dir.display().to_string()),
        ]
    }
}

/// Fresh TLS material in a directory of this run's own, removed when the value is dropped.
pub(crate) struct TlsDir(pub(crate) TlsFiles);

impl TlsDir {
    pub(crate) fn generate(dir: PathBuf) -> Result<Self, String> {
        let _ = std::fs::remove_dir_all(&dir);
        TlsFiles::generate(&dir)
            .map(Self)
            .map_err(|e| format!("cannot make the TLS test certificates: {e}"))
    }
}

impl Drop for TlsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0.dir);
    }
}

/// A TLS-only server with `files`, client certificates optional.
pub(crate) fn start_tls_server(files: &TlsFiles) -> Result<RedisServer, String> {
    RedisServer::start(ServerOptions {
        tls: Some(TlsOptions {
            files: files.clone(),
            wrong_name: false,
            client_auth: "optional",
        }),
        ..ServerOptions::default()
    })
    .map_err(|e| e.to_string())
}

/// The binaries this process uses (`--server`), for the tests that start servers of their
/// own (Sentinel, TLS, restarts) to start the same ones.
pub(crate) fn binaries_env() -> Vec<(&'static str, PathBuf)> {
    let (Ok(server), Ok(cli)) = (kaiju_testkit::server_path(), kaiju_testkit::cli_path()) else {
        return Vec::new();
    };
    let tls = kaiju_testkit::tls_server_path()
        .ok()
        .filter(|t| *t != server);
    kaiju_testkit::Binaries {
        server,
        cli,
        tls_server: tls,
    }
    .env()
}

/// How many tests of one binary run at once unless `RUST_TEST_THREADS` or `--test-threads`
/// says otherwise.
const TEST_THREADS: usize = 8;

/// `cargo test --workspace` with the servers exported and skipping forbidden.
pub(crate) fn run_cargo_test(
    servers: &Servers,
    cargo_args: &[String],
    extra_env: &[(&str, String)],
) -> Result<ExitCode, String> {
    let root = root()?;
    let mut command = cargo_in(root)?;
    command.args(["test", "--workspace"]).args(cargo_args);
    // The integration tests mostly wait on servers and timers: 2 threads on 2 cores left the
    // CPU idle most of the `it` run. TEST_THREADS per test binary (unless the caller chose)
    // cut `it` from 287 s to 97 s.
    if std::env::var_os("RUST_TEST_THREADS").is_none()
        && !cargo_args.iter().any(|a| a.starts_with("--test-threads"))
    {
        command.env("RUST_TEST_THREADS", TEST_THREADS.to_string());
    }
    let mut child = command
        .envs(servers.env())
        .env("KAIJU_REQUIRE_REDIS", "1")
        .envs(binaries_env())
        .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
        .spawn()
        .map_err(cannot_run_cargo(root))?;
    // A SIGTERM reaches xtask alone (Ctrl-C reaches the whole group): stop `cargo test` too
    // rather than let it run on against servers that are gone.
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if procs::interrupted() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            return Err("interrupted".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    Ok(crate::exit_code(status))
}
