//! `Inventory`: the demo app's own service class. Its RPC methods keep stock counts in the
//! cache and take a lock per item, so concurrent reservations of one item queue up and hand
//! the lock on one by one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kaiju_app::builtin::{CacheService, LocksService};
use kaiju_app::{AppError, BoxError, Build, Context, Dependency, Service, ServiceClass};
use kaiju_cache::Cache;
use kaiju_core::Namespace;
use kaiju_locks::Locks;
use kaiju_rpc::{NoParams, RegisterError, RpcError, RpcModule, Scope};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    cache: Dependency,
    #[serde(default)]
    locks: Dependency,
    /// Simulated work while the lock is held, in ms.
    #[serde(default = "default_work")]
    work_ms: u64,
}

fn default_work() -> u64 {
    15
}

/// What the methods share.
struct State {
    cache: Cache,
    locks: Locks,
    ns: Namespace,
    work: Duration,
    reservations: AtomicU64,
    waits: AtomicU64,
}

/// The demo's service.
pub(crate) struct Inventory {
    settings: Settings,
    /// Set in `init`, once the cache and the locks are found.
    state: OnceLock<State>,
}

impl Inventory {
    fn state(&self) -> Result<&State, RpcError> {
        self.state
            .get()
            .ok_or_else(|| RpcError::internal("the inventory is not initialised"))
    }
}

impl ServiceClass for Inventory {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        Ok(Self {
            settings: b.settings()?,
            state: OnceLock::new(),
        })
    }
}

impl Service for Inventory {
    async fn init(&self, cx: &Context) -> Result<(), BoxError> {
        let cache = cx.require::<CacheService>(&self.settings.cache)?.cache()?;
        let locks = cx.require::<LocksService>(&self.settings.locks)?.locks()?;
        let state = State {
            cache,
            locks,
            ns: cx.app().namespace()?,
            work: Duration::from_millis(self.settings.work_ms),
            reservations: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        };
        let _ = self.state.set(state);
        Ok(())
    }

    fn rpc_module(self: Arc<Self>) -> Result<RpcModule<Self>, RegisterError> {
        let mut m = RpcModule::with_context("inventory", self).permissions([("*", Scope::Guest)]);
        m.method("restock", |inv, p: Restock, _| async move {
            inv.state()?.restock(p).await
        })?;
        m.method("reserve", |inv, p: Reserve, _| async move {
            inv.state()?.reserve(p).await
        })?;
        m.method("stock", |inv, p: Item, _| async move {
            inv.state()?.stock(&p.item).await
        })?;
        m.method("report", |inv, _: NoParams, _| async move {
            let s = inv.state()?;
            Ok::<_, RpcError>(Report {
                reservations: s.reservations.load(Ordering::Relaxed),
                lock_waits: s.waits.load(Ordering::Relaxed),
            })
        })?;
        Ok(m)
    }
}

/// `inventory.restock` params.
#[derive(Debug, Deserialize)]
pub(crate) struct Restock {
    item: String,
    qty: i64,
}

/// `inventory.reserve` params.
#[derive(Debug, Deserialize)]
pub(crate) struct Reserve {
    item: String,
    qty: i64,
    order: String,
}

/// `inventory.stock` params.
#[derive(Debug, Deserialize)]
pub(crate) struct Item {
    item: String,
}

/// `inventory.reserve` result.
#[derive(Debug, Serialize)]
pub(crate) struct Reserved {
    order: String,
    reserved: bool,
    left: i64,
    waited_ms: u64,
}

/// `inventory.report` result.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    reservations: u64,
    lock_waits: u64,
}

impl State {
    fn key(&self, item: &str) -> Result<String, RpcError> {
        let key = self
            .ns
            .join("stock")
            .and_then(|ns| ns.key(item))
            .map_err(|e| RpcError::invalid_params(e.to_string()))?;
        Ok(key.into_string())
    }

    async fn stock(&self, item: &str) -> Result<i64, RpcError> {
        let key = self.key(item)?;
        Ok(self
            .cache
            .get::<i64>(&key)
            .await
            .map_err(RpcError::internal)?
            .unwrap_or(0))
    }

    async fn restock(&self, p: Restock) -> Result<i64, RpcError> {
        let key = self.key(&p.item)?;
        let guard = self
            .locks
            .acquire(format!("{key}.lock"))
            .await
            .map_err(RpcError::internal)?;
        let now = self.stock(&p.item).await? + p.qty;
        self.cache
            .set(&key, &now, None)
            .await
            .map_err(RpcError::internal)?;
        guard.release().await.map_err(RpcError::internal)?;
        Ok(now)
    }

    async fn reserve(&self, p: Reserve) -> Result<Reserved, RpcError> {
        let key = self.key(&p.item)?;
        let asked = Instant::now();
        let guard = self
            .locks
            .acquire(format!("{key}.lock"))
            .await
            .map_err(RpcError::internal)?;
        let waited = asked.elapsed();
        if waited > Duration::from_millis(2) {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        let stock = self.stock(&p.item).await?;
        let reserved = stock >= p.qty;
        let left = if reserved { stock - p.qty } else { stock };
        tokio::time::sleep(self.work).await;
        if reserved {
            self.cache
                .set(&key, &left, None)
                .await
                .map_err(RpcError::internal)?;
            self.reservations.fetch_add(1, Ordering::Relaxed);
        }
        guard.release().await.map_err(RpcError::internal)?;
        Ok(Reserved {
            order: p.order,
            reserved,
            left,
            waited_ms: waited.as_millis() as u64,
        })
    }
}
