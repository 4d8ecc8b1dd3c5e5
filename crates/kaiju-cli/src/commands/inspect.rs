//! `kaiju locks owner`, `kaiju cache get` and `kaiju functions load`.

use kaiju_cache::Cache;
use kaiju_core::Value;
use kaiju_locks::Locks;

use super::redis_failure;
use crate::connect::connect;
use crate::json::{pretty, to_json};
use crate::out::{errln, outln};
use crate::{Conn, Failure};

/// `kaiju locks owner KEY`.
pub(super) async fn lock_owner(conn: Conn, key: String, _json: bool) -> Result<(), Failure> {
    let (transport, me) = connect(&conn).await?;
    let locks = Locks::new(transport, me.id.to_string())
        .await
        .map_err(redis_failure)?;
    let owner = locks.owner(&key).await.map_err(redis_failure);
    locks.close().await;
    match owner? {
        Some(owner) => {
            outln!("{owner}");
            Ok(())
        }
        None => Err(Failure::not_found(format!("{key} is not locked"))),
    }
}

/// `kaiju cache get KEY`.
pub(super) async fn cache_get(conn: Conn, key: String, _json: bool) -> Result<(), Failure> {
    let (transport, _) = connect(&conn).await?;
    match Cache::new(transport)
        .get::<Value>(&key)
        .await
        .map_err(redis_failure)?
    {
        Some(v) => {
            outln!("{}", pretty(&to_json(&v)));
            Ok(())
        }
        None => Err(Failure::not_found(format!("no value at {key}"))),
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
