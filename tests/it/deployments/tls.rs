//! TLS against real servers: the shared TLS node (`KAIJU_REDIS_TLS_URL`, where the transport,
//! cache and streams bodies also run through `on_all!`) and TLS servers of the tests' own, for
//! a certificate for another host and for required client certificates.
//!
//! Every refusal must be a clear, typed error within the connect timeout, never a hang and
//! never a silent plain-text connection.

use std::time::Duration;

use kaiju_core::RedisSettings;
use kaiju_testkit::{RedisServer, ServerOptions, TlsFiles, TlsOptions};
use kaiju_tests::{Target, can_spawn_servers, settings, tls_files};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::{Transport, TransportError};

/// Connects, with a guard far above the connect timeout so a hang fails instead of blocking.
async fn connect(settings: &RedisSettings) -> Result<Transport, TransportError> {
    tokio::time::timeout(Duration::from_secs(30), Transport::connect(settings))
        .await
        .expect("connecting must end with a result, not hang")
}

async fn ping(t: &Transport) -> String {
    t.pool().ping::<String>(None).await.unwrap()
}

/// A TLS server of the test's own, with `files`' certificates.
async fn own_tls_server(
    files: &TlsFiles,
    wrong_name: bool,
    client_auth: &'static str,
) -> RedisServer {
    let options = ServerOptions {
        tls: Some(TlsOptions {
            files: files.clone(),
            wrong_name,
            client_auth,
        }),
        ..ServerOptions::default()
    };
    tokio::task::spawn_blocking(move || RedisServer::start(options))
        .await
        .unwrap()
        .unwrap()
}

fn tls_settings(url: String, ca: std::path::PathBuf) -> RedisSettings {
    RedisSettings {
        tls_ca_file: Some(ca),
        connect_timeout_ms: 1000,
        reconnect_max_attempts: 1,
        ..RedisSettings::from_url(url)
    }
}

fn assert_tls_refusal(result: Result<Transport, TransportError>, what: &str) {
    match result {
        Err(TransportError::Tls { message }) => {
            assert!(
                message.to_lowercase().contains("certificate"),
                "{what}: {message}"
            )
        }
        Err(other) => panic!("{what}: expected a TLS error, got {other:?}"),
        Ok(_) => panic!("{what}: connected"),
    }
}

#[tokio::test]
async fn the_tls_node_is_reached_only_over_verified_tls() {
    let (Some(settings), Some(files)) = (settings(Target::Tls), tls_files()) else {
        return;
    };
    let url = settings.url.clone().unwrap().expose().to_owned();
    let t = connect(&settings).await.unwrap();
    assert_eq!(ping(&t).await, "PONG");
    // The same port without TLS: the server never answers plain text.
    let plain = RedisSettings {
        connect_timeout_ms: 1000,
        reconnect_max_attempts: 1,
        ..RedisSettings::from_url(url.replacen("rediss://", "redis://", 1))
    };
    assert!(connect(&plain).await.is_err());
    // A CA that did not sign the server's certificate.
    assert_tls_refusal(
        connect(&tls_settings(url.clone(), files.other_ca())).await,
        "an unrelated CA",
    );
    // The system's roots (no tls_ca_file) do not know the test CA either.
    let system = RedisSettings {
        tls_ca_file: None,
        ..tls_settings(url, files.ca())
    };
    assert_tls_refusal(connect(&system).await, "the system's roots");
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let Some(files) = tls_files() else { return };
    if !can_spawn_servers() {
        return;
    }
    let server = own_tls_server(&files, true, "optional").await;
    assert_tls_refusal(
        connect(&tls_settings(server.url(), files.ca())).await,
        "a certificate for elsewhere.invalid",
    );
}

#[tokio::test]
async fn client_certificates_are_presented_when_the_server_requires_them() {
    let Some(files) = tls_files() else { return };
    if !can_spawn_servers() {
        return;
    }
    let server = own_tls_server(&files, false, "yes").await;
    let without = tls_settings(server.url(), files.ca());
    match connect(&without).await {
        Err(TransportError::Tls { .. }) => {}
        other => panic!(
            "a server requiring client certificates: {:?}",
            other.map(|_| ())
        ),
    }
    let with = RedisSettings {
        tls_cert_file: Some(files.client_cert()),
        tls_key_file: Some(files.client_key()),
        ..without
    };
    let t = connect(&with).await.unwrap();
    assert_eq!(ping(&t).await, "PONG");
}

#[tokio::test]
async fn tls_settings_on_a_plain_connection_are_an_error_not_a_downgrade() {
    let Some(files) = tls_files() else { return };
    let plain = RedisSettings {
        tls_ca_file: Some(files.ca()),
        ..RedisSettings::from_url("redis://127.0.0.1:6379")
    };
    match Transport::check(&plain) {
        Err(TransportError::Config(e)) => assert!(e.to_string().contains("tls_ca_file"), "{e}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    // TLS to a server that speaks plain text fails, and does not fall back.
    let Some(single) = settings(Target::Single) else {
        return;
    };
    let url = single
        .url
        .unwrap()
        .expose()
        .replacen("redis://", "rediss://", 1);
    assert!(connect(&tls_settings(url, files.ca())).await.is_err());
}

#[tokio::test]
async fn bad_tls_files_are_config_errors_that_never_quote_a_key() {
    let Some(files) = tls_files() else { return };
    let dir = std::env::temp_dir().join(format!("kaiju-tls-bad-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("bad.key");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nU0VDUkVUS0VZTUFURVJJQUw=\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let not_pem = dir.join("not-pem.crt");
    std::fs::write(&not_pem, "SECRETKEYMATERIAL").unwrap();
    let base = RedisSettings {
        tls: true,
        ..RedisSettings::default()
    };
    let cases = [
        (
            "tls_ca_file",
            RedisSettings {
                tls_ca_file: Some(dir.join("missing.crt")),
                ..base.clone()
            },
        ),
        (
            // A device never ends: refused, not read.
            "tls_ca_file",
            RedisSettings {
                tls_ca_file: Some("/dev/zero".into()),
                ..base.clone()
            },
        ),
        (
            "tls_ca_file",
            RedisSettings {
                tls_ca_file: Some(dir.clone()),
                ..base.clone()
            },
        ),
        (
            "tls_ca_file",
            RedisSettings {
                tls_ca_file: Some(not_pem.clone()),
                ..base.clone()
            },
        ),
        (
            "tls_key_file",
            RedisSettings {
                tls_ca_file: Some(files.ca()),
                tls_cert_file: Some(files.client_cert()),
                tls_key_file: Some(key.clone()),
                ..base.clone()
            },
        ),
        (
            "tls_key_file",
            RedisSettings {
                tls_cert_file: Some(files.client_cert()),
                ..base.clone()
            },
        ),
        (
            "tls_key_file",
            RedisSettings {
                tls_ca_file: Some(files.ca()),
                tls_cert_file: Some(files.client_cert()),
                tls_key_file: Some(files.server_key()),
                ..base.clone()
            },
        ),
    ];
    for (field, settings) in cases {
        let err = match Transport::check(&settings) {
            Err(e) => e,
            Ok(()) => panic!("{settings:?} was accepted"),
        };
        let text = format!("{err} {err:?} {settings:?}");
        assert!(text.contains(field), "{text}");
        assert!(!text.contains("SECRETKEYMATERIAL"), "{text}");
        assert!(!text.contains("U0VDUkVUS0VZTUFURVJJQUw"), "{text}");
        let server_key = std::fs::read_to_string(files.server_key()).unwrap();
        let body = server_key.lines().nth(1).unwrap();
        assert!(!text.contains(body), "{text}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_reached_over_tls_on_every_node() {
    use kaiju_core::Namespace;
    let Some(files) = tls_files() else { return };
    if !can_spawn_servers() {
        return;
    }
    let options = kaiju_testkit::ClusterOptions {
        tls: Some(TlsOptions {
            files: files.clone(),
            wrong_name: false,
            client_auth: "optional",
        }),
        ..kaiju_testkit::ClusterOptions::default()
    };
    let cluster = tokio::task::spawn_blocking(move || kaiju_testkit::RedisCluster::start(options))
        .await
        .unwrap()
        .unwrap();
    let url = cluster.url();
    assert!(url.starts_with("rediss-cluster://"), "{url}");
    let t = connect(&tls_settings(url, files.ca())).await.unwrap();
    assert_eq!(t.deployment(), kaiju_transport::Deployment::Cluster);
    // Keys on every primary: each is reached over TLS, redirections included.
    let ns = Namespace::new("test", &uuid::Uuid::new_v4().simple().to_string()).unwrap();
    let keys: Vec<_> = (0..200)
        .map(|i| ns.key(&format!("k{i}")).unwrap())
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let _: () = t
            .pool()
            .set(key.as_str(), i as i64, None, None, false)
            .await
            .unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        let value: Option<i64> = t.pool().get(key.as_str()).await.unwrap();
        assert_eq!(value, Some(i as i64));
    }
    drop(cluster);
}
