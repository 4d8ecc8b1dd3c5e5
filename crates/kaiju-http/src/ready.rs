//! `/ready`: the [`Readiness`] checks and the shipped [`TransportPing`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The future a [`Readiness`] check returns: `Err` says why the part is not ready.
pub type ReadyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One named part of the app that `/ready` asks. Every check runs at once on each `/ready`,
/// each bounded by [`HttpSettings::ready_timeout`](crate::HttpSettings::ready_timeout) (a
/// check past it fails as "timed out").
///
/// ```
/// use kaiju_http::{ReadyFuture, Readiness};
///
/// struct DiskSpace;
/// impl Readiness for DiskSpace {
///     fn name(&self) -> &str { "disk" }
///     fn check(&self) -> ReadyFuture<'_> { Box::pin(async { Ok(()) }) }
/// }
/// ```
pub trait Readiness: Send + Sync + 'static {
    /// The part's name in `/ready`'s body.
    fn name(&self) -> &str;
    /// Whether the part is ready.
    fn check(&self) -> ReadyFuture<'_>;
}

/// Ready once [`set`](Self::set): the app's "every service started" flag.
///
/// ```
/// use kaiju_http::{Flag, Readiness};
///
/// let started = Flag::new("services");
/// started.set(true);
/// assert_eq!(started.name(), "services");
/// ```
#[derive(Debug, Clone)]
pub struct Flag {
    name: String,
    ready: Arc<AtomicBool>,
}

impl Flag {
    /// A flag named `name`, not set.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ready: Arc::default(),
        }
    }

    /// Sets or clears the flag (clones share it).
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

impl Readiness for Flag {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> ReadyFuture<'_> {
        let ready = self.ready.load(Ordering::Acquire);
        Box::pin(std::future::ready(if ready {
            Ok(())
        } else {
            Err("not started".to_owned())
        }))
    }
}

/// Ready when a Redis connection answers `PING`.
#[cfg(feature = "transport")]
#[derive(Debug, Clone)]
pub struct TransportPing {
    name: String,
    transport: kaiju_transport::Transport,
}

#[cfg(feature = "transport")]
impl TransportPing {
    /// A check named `name` that PINGs `transport`.
    pub fn new(name: impl Into<String>, transport: kaiju_transport::Transport) -> Self {
        Self {
            name: name.into(),
            transport,
        }
    }
}

#[cfg(feature = "transport")]
impl Readiness for TransportPing {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> ReadyFuture<'_> {
        Box::pin(async move { self.transport.ping().await.map_err(|e| e.to_string()) })
    }
}

/// Runs every check at once, each within `bound`; the failing ones with their reasons.
pub(crate) async fn run(
    checks: &[Arc<dyn Readiness>],
    bound: Duration,
) -> Vec<(String, Result<(), String>)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, check) in checks.iter().enumerate() {
        let check = Arc::clone(check);
        set.spawn(async move {
            let result = match tokio::time::timeout(bound, check.check()).await {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {bound:?}")),
            };
            (i, check.name().to_owned(), result)
        });
    }
    let mut results = Vec::with_capacity(checks.len());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => results.push((usize::MAX, "check".to_owned(), Err(e.to_string()))),
        }
    }
    results.sort_by_key(|r| r.0);
    results.into_iter().map(|(_, n, r)| (n, r)).collect()
}
