//! `RedisCache` (and the legacy `RedisCacheService`).

use std::sync::OnceLock;

use kaiju_cache::Cache;
use serde::Deserialize;

use super::TransportService;
use crate::error::AppError;
use crate::error::BoxError;
use crate::service::{Build, Context, Dependency, Service, ServiceClass};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    transport: Dependency,
    /// The legacy class's serializer: only msgpack exists.
    #[serde(default)]
    serializer_type: Option<String>,
}

/// kaiju's `RedisCache`: a [`Cache`] on the transport named by `transport` (`null`: the
/// first one).
#[derive(Debug)]
pub struct CacheService {
    transport: Dependency,
    cache: OnceLock<Cache>,
}

impl CacheService {
    /// The cache (after `init`).
    pub fn cache(&self) -> Result<Cache, BoxError> {
        super::ready(&self.cache, "the cache", "its init")
    }
}

impl ServiceClass for CacheService {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        let s: Settings = b.settings()?;
        if let Some(t) = s.serializer_type.filter(|t| t != "application/msgpack") {
            return Err(b.invalid(
                "serializer_type",
                format!("`{t}` is not supported; only application/msgpack"),
            ));
        }
        Ok(Self {
            transport: s.transport,
            cache: OnceLock::new(),
        })
    }
}

impl Service for CacheService {
    fn check(&self, cx: &Context) -> Result<(), BoxError> {
        cx.require::<TransportService>(&self.transport)?;
        Ok(())
    }

    async fn init(&self, cx: &Context) -> Result<(), BoxError> {
        let transport = TransportService::discover(cx, &self.transport)?;
        let _ = self.cache.set(Cache::new(transport));
        Ok(())
    }
}
