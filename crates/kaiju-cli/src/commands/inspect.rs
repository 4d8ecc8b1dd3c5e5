//! `kaiju locks owner`, `kaiju cache get` and `kaiju functions load`.

use bytes::Bytes;
use kaiju_cache::{Cache, CacheError};
use kaiju_core::Value;
use kaiju_locks::Locks;
use kaiju_transport::Classify as _;
use kaiju_transport::fred::prelude::*;

use super::redis_failure;
use crate::connect::connect;
use crate::json::{pretty, to_json};
use crate::out::{errln, outln};
use crate::{Conn, Failure};

/// `kaiju locks owner KEY`: the owner on stdout; its time left, fencing token and waiters on
/// stderr (all of it in the JSON).
pub(super) async fn lock_owner(conn: Conn, key: String, json: bool) -> Result<(), Failure> {
    let (transport, me) = connect(&conn).await?;
    let locks = Locks::new(transport, me.id.to_string())
        .await
        .map_err(redis_failure)?;
    let holder = locks.holder(&key).await.map_err(redis_failure);
    locks.close().await;
    let Some(h) = holder? else {
        return Err(Failure::not_found(format!("{key} is not locked")));
    };
    let ttl_ms = h
        .ttl
        .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
    if json {
        outln!(
            "{}",
            pretty(&serde_json::json!({
                "key": key,
                "owner": h.owner,
                "ttl_ms": ttl_ms,
                "token": h.token,
                "waiters": h.waiters,
            }))
        );
        return Ok(());
    }
    outln!("{}", super::printable(&h.owner));
    errln!(
        "{}; fencing token {}; {} waiting",
        h.ttl.map_or("never expires".to_owned(), |t| format!(
            "expires in {:.1} s unless renewed",
            t.as_secs_f64()
        )),
        h.token
            .map_or("none (a kaiju-redis holder)".to_owned(), |t| t.to_string()),
        h.waiters
    );
    Ok(())
}

/// `kaiju cache get KEY`: the value, msgpack shown as JSON.
pub(super) async fn cache_get(conn: Conn, key: String, json: bool) -> Result<(), Failure> {
    let (transport, _) = connect(&conn).await?;
    let value = match Cache::new(transport.clone()).get::<Value>(&key).await {
        Ok(Some(v)) => v,
        Ok(None) => return Err(Failure::not_found(format!("no value at {key}"))),
        Err(CacheError::Decode { message, .. }) => {
            let raw: Option<Bytes> = transport
                .pool()
                .get(key.as_str())
                .await
                .classify()
                .map_err(redis_failure)?;
            let raw = raw.unwrap_or_default();
            return Err(Failure::failed(format!(
                "{key} holds {} bytes that are not a kaiju cache value (msgpack): {message}; they look like {}",
                raw.len(),
                looks_like(&raw)
            )));
        }
        Err(e) => return Err(redis_failure(e)),
    };
    if json {
        outln!(
            "{}",
            pretty(&serde_json::json!({ "key": key, "value": to_json(&value) }))
        );
    } else {
        outln!("{}", pretty(&to_json(&value)));
    }
    Ok(())
}

/// What `bytes` look like, for a person: text (quoted, escaped, the first 40 characters) when
/// they are UTF-8, else their first 16 bytes in hex.
fn looks_like(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let shown: String = text.chars().take(40).collect();
            let more = if shown.len() < text.len() { "..." } else { "" };
            format!("the text {:?}{more}", shown)
        }
        Err(_) => {
            let hex: Vec<String> = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
            let more = if bytes.len() > 16 { " ..." } else { "" };
            format!("binary: {}{more}", hex.join(" "))
        }
    }
}

/// `kaiju functions load`.
pub(super) async fn load_functions(conn: Conn) -> Result<(), Failure> {
    let (transport, _) = connect(&conn).await?;
    if !transport.capabilities().has_functions() {
        return Err(Failure::failed(format!(
            "this server ({:?} {}) has no functions; apps use EVALSHA here",
            transport.capabilities().kind,
            transport.capabilities().server_version
        )));
    }
    let scripts = kaiju_scripts();
    for script in &scripts {
        script
            .load_function(&transport)
            .await
            .map_err(redis_failure)?;
        outln!("{}", script.function_name());
    }
    errln!("loaded {} function libraries", scripts.len());
    transport.close().await.ok();
    Ok(())
}

/// Every Lua script kaiju-rs runs: the cache's, the locks', the streams'.
fn kaiju_scripts() -> Vec<&'static kaiju_transport::Script> {
    let mut all = kaiju_cache::scripts();
    all.extend(kaiju_locks::scripts());
    all.extend(kaiju_streams::scripts());
    all
}
