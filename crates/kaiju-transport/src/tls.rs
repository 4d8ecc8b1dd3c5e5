//! TLS: a rustls client configuration built from the settings.
//!
//! The server's certificate is always verified: against `tls_ca_file` when it is set, else
//! against the system's roots, and it must name the host dialled (an IP address must be in
//! the certificate's IP SANs). There is no setting that turns verification off. A client
//! certificate (`tls_cert_file` + `tls_key_file`) is offered to servers that ask for one.
//!
//! Files are read when the transport is built, so a missing or malformed file is a
//! [`ConfigError`] naming the setting, before anything connects. Nothing read from a key
//! file is ever put in an error message.

use std::path::Path;
use std::sync::Arc;

use fred::types::config::TlsConnector;
use kaiju_core::{ConfigError, RedisSettings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::Result;

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The connector for these settings (called only when they use TLS).
pub(crate) fn connector(settings: &RedisSettings) -> Result<TlsConnector> {
    let roots = match &settings.tls_ca_file {
        Some(file) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("tls_ca_file", file)? {
                roots.add(cert).map_err(|e| {
                    invalid(
                        "tls_ca_file",
                        format!("{}: not a usable CA certificate: {e}", file.display()),
                    )
                })?;
            }
            roots
        }
        None => system_roots()?,
    };
    // An explicit provider: `ClientConfig::builder()` panics when an application links more
    // than one rustls crypto provider and installed none as the default.
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("tls", format!("cannot set up rustls: {e}")))?
            .with_root_certificates(roots);
    let config = match (&settings.tls_cert_file, &settings.tls_key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certificates("tls_cert_file", cert)?, private_key(key)?)
            .map_err(|e| {
                invalid(
                    "tls_key_file",
                    format!("does not fit the certificate of tls_cert_file: {e}"),
                )
            })?,
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(config))
}

/// PEM files larger than this are refused rather than read.
const MAX_FILE: u64 = 1 << 20;

/// Reads a regular file of at most [`MAX_FILE`] bytes (a FIFO or a device would block the
/// caller or never end).
fn read(field: &'static str, file: &Path) -> Result<Vec<u8>, ConfigError> {
    let fail = |why: String| invalid(field, format!("cannot read {}: {why}", file.display()));
    let meta = std::fs::metadata(file).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_FILE {
        return Err(fail(format!("larger than {MAX_FILE} bytes")));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(file).map_err(|e| fail(e.to_string()))?,
            MAX_FILE,
        ),
        &mut bytes,
    )
    .map_err(|e| fail(e.to_string()))?;
    Ok(bytes)
}

/// Every certificate in a PEM file; none at all is an error.
fn certificates(field: &'static str, file: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(field, file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            invalid(
                field,
                format!("{}: not a PEM certificate file: {e}", file.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(invalid(
            field,
            format!("{}: holds no PEM certificate", file.display()),
        )
        .into());
    }
    Ok(certs)
}

/// The first private key in a PEM file. The error never quotes the file's contents.
fn private_key(file: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read("tls_key_file", file)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        invalid(
            "tls_key_file",
            format!(
                "{}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                file.display()
            ),
        )
        .into()
    })
}

/// The system's trusted roots (what fred's default connector uses).
fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(invalid(
            "tls_ca_file",
            format!("no system CA certificates to verify the server with ({why}); set tls_ca_file"),
        )
        .into());
    }
    Ok(roots)
}
