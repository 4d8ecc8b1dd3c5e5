//! The newer servers' commands, probed at connect time: the probes change nothing, and the
//! transport README's capability matrix says what each server answered.

use kaiju_core::Namespace;
use kaiju_tests::{Target, on_both};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::{Capabilities, Feature, ServerKind, Transport};

on_both!(the_capability_matrix_is_true);

/// The README column of the server `caps` describe: `Redis 7.0`, `Redis 8.10`, `Valkey 9.1`.
fn column(caps: &Capabilities) -> String {
    let product = match caps.kind {
        ServerKind::Redis => "Redis",
        ServerKind::Valkey => "Valkey",
        ServerKind::KeyDb => "KeyDB",
        _ => "other",
    };
    format!(
        "{product} {}.{}",
        caps.server_version.major, caps.server_version.minor
    )
}

/// The matrix between the README's `capability-matrix` markers: its header, then one row per
/// feature (`| \`XNACK\` | ... |`), each cell `yes` or `–`.
fn matrix() -> (Vec<String>, Vec<(String, Vec<bool>)>) {
    let readme = include_str!("../../../crates/kaiju-transport/README.md");
    let start = readme
        .find("<!-- capability-matrix -->")
        .expect("the transport README has a capability matrix");
    let end = readme[start..]
        .find("<!-- /capability-matrix -->")
        .expect("the capability matrix is closed")
        + start;
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').to_owned())
            .collect()
    };
    let mut lines = readme[start..end].lines().filter(|l| l.starts_with('|'));
    let header = cells(lines.next().expect("a header row"));
    let rows = lines
        .skip(1) // |---|
        .map(|line| {
            let mut cells = cells(line).into_iter();
            let name = cells.next().unwrap_or_default();
            (name, cells.map(|c| c.starts_with("yes")).collect())
        })
        .collect();
    (header, rows)
}

async fn the_capability_matrix_is_true(t: &Transport, _: &Namespace, _: Target) {
    let caps = t.capabilities();
    let column = column(caps);
    let (header, rows) = matrix();
    let Some(index) = header.iter().position(|h| *h == column) else {
        panic!(
            "the capability matrix has no column for {column} (it has {header:?}); this server \
             answered {:?}: add the column",
            caps.features
        );
    };
    let names: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
    let expected: Vec<&str> = Feature::ALL.iter().map(|f| f.command()).collect();
    assert_eq!(
        names, expected,
        "one matrix row per Feature, in Feature::ALL's order"
    );
    let wrong: Vec<String> = Feature::ALL
        .into_iter()
        .zip(&rows)
        .filter(|(feature, (_, cells))| cells.get(index - 1).copied() != Some(caps.has(*feature)))
        .map(|(feature, _)| {
            let found = if caps.has(feature) {
                "there"
            } else {
                "missing"
            };
            format!("{feature}: the probe found it {found}")
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{column}: the capability matrix is wrong: {wrong:?} (probed: {:?})",
        caps.features
    );
}

/// The probes name a key that does not exist under conditions that cannot hold: a fresh server
/// is still empty after a connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_write_nothing() {
    let Some((_server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let size: u64 = t.pool().dbsize().await.unwrap();
    assert_eq!(size, 0, "the probes wrote keys");
}
