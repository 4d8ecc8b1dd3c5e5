//! Throwaway TLS material for tests, made with the `openssl` command: a CA, a server
//! certificate for `127.0.0.1`, a client certificate (mutual TLS), a server certificate for
//! another host name, and a second, unrelated CA.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The files of [`TlsFiles::generate`], all PEM, in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The directory holding them.
    pub dir: PathBuf,
}

impl TlsFiles {
    /// The CA that signed every certificate below but `other_ca`.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// A CA that signed nothing here (a client trusting it must refuse the server).
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }
    /// The server certificate: SANs `IP:127.0.0.1` and `DNS:localhost`, for server and client
    /// authentication (cluster nodes and replicas present it to each other).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    /// Its key.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    /// A server certificate for `DNS:elsewhere.invalid` only (a client dialling 127.0.0.1 must
    /// refuse it).
    pub fn wrong_name_cert(&self) -> PathBuf {
        self.dir.join("wrong-name.crt")
    }
    /// Its key.
    pub fn wrong_name_key(&self) -> PathBuf {
        self.dir.join("wrong-name.key")
    }
    /// The client certificate (extended key usage clientAuth).
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.crt")
    }
    /// Its key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// Makes the files in `dir` (created if missing) with ECDSA P-256 keys, valid for 2 days.
    pub fn generate(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let files = Self {
            dir: dir.to_owned(),
        };
        for ca in ["ca", "other-ca"] {
            openssl(
                dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=kaiju-test-{ca}"),
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.crt"),
                ],
            )?;
        }
        let leaves = [
            (
                "server",
                // clientAuth too: cluster nodes present it to each other on the TLS bus.
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth",
            ),
            (
                "wrong-name",
                "subjectAltName=DNS:elsewhere.invalid\nextendedKeyUsage=serverAuth",
            ),
            ("client", "extendedKeyUsage=clientAuth"),
        ];
        for (name, extensions) in leaves {
            let ext = format!("{name}.ext");
            std::fs::write(
                dir.join(&ext),
                format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n{extensions}\n"),
            )?;
            openssl(
                dir,
                &[
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-subj",
                    &format!("/CN=kaiju-test-{name}"),
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            )?;
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                    "-out",
                    &format!("{name}.crt"),
                ],
            )?;
        }
        // Readable by a server running under another user (a container's `redis` user).
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let mut permissions = std::fs::metadata(&path)?.permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o644);
            std::fs::set_permissions(&path, permissions)?;
        }
        Ok(files)
    }

    /// `redis-server` arguments for TLS only on `port`, with `files`' server certificate (or
    /// the wrong-name one), clients' certificates `optional` or required (`yes`).
    pub fn server_args(&self, port: u16, wrong_name: bool, client_auth: &str) -> Vec<String> {
        let (cert, key) = if wrong_name {
            (self.wrong_name_cert(), self.wrong_name_key())
        } else {
            (self.server_cert(), self.server_key())
        };
        let path = |p: PathBuf| p.display().to_string();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(cert),
            "--tls-key-file".into(),
            path(key),
            "--tls-ca-cert-file".into(),
            path(self.ca()),
            "--tls-auth-clients".into(),
            client_auth.into(),
        ]
    }

    /// `redis-cli` arguments to reach a server of these files (with the client certificate).
    pub fn cli_args(&self) -> Vec<String> {
        let path = |p: PathBuf| p.display().to_string();
        vec![
            "--tls".into(),
            "--cacert".into(),
            path(self.ca()),
            "--cert".into(),
            path(self.client_cert()),
            "--key".into(),
            path(self.client_key()),
        ]
    }
}

fn openssl(dir: &Path, args: &[&str]) -> io::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run openssl: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "openssl {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}
