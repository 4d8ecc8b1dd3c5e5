//! The lifecycle of long-running components: start, then a graceful stop within a deadline.
//!
//! A component that runs background work until it is told to stop (today: the stream
//! listener, `kaiju_streams::Listener`) implements [`Lifecycle`]: [`start`](Lifecycle::start)
//! returns once the component is ready (a listener's group exists and its handler is
//! registered), and [`stop`](Lifecycle::stop) stops taking new work, finishes what is in flight and
//! returns within the deadline it is given. Components whose background work ends with a value
//! (a lock guard's renewal, a near cache's invalidations) stop when that value is dropped.
//!
//! Background tasks learn about a stop through a [`Shutdown`] signal:
//!
//! ```
//! use std::time::Duration;
//! use kaiju_core::lifecycle::Shutdown;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let shutdown = Shutdown::new();
//! let signal = shutdown.clone();
//! let worker = tokio::spawn(async move {
//!     let mut rounds = 0;
//!     while !signal.is_triggered() {
//!         tokio::select! {
//!             _ = signal.triggered() => break,
//!             _ = tokio::time::sleep(Duration::from_millis(1)) => rounds += 1,
//!         }
//!     }
//!     rounds
//! });
//! shutdown.trigger();
//! assert!(worker.await.is_ok());
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Starting or stopping a [`Lifecycle`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// [`Lifecycle::start`] was called on a running service.
    #[error("service `{service}` is already running")]
    AlreadyStarted {
        /// The service name.
        service: String,
    },
    /// The service did not finish its in-flight work within the stop deadline. What was not
    /// finished is left for redelivery where the service supports it.
    #[error("service `{service}` did not stop within {deadline:?}")]
    StopTimeout {
        /// The service name.
        service: String,
        /// The deadline it was given.
        deadline: Duration,
    },
    /// The service failed while starting or running.
    #[error("service `{service}` failed: {source}")]
    Failed {
        /// The service name.
        service: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A long-running component with an explicit start and a graceful, bounded stop.
///
/// This is the lifecycle of one component (a stream listener, an RPC listener); it is not
/// `kaiju_app::Service`, the part of an app built from a kaiju YAML config, whose hooks the
/// app runtime calls. A built-in app service that runs such a component starts it in its
/// `start` hook and stops it in its `close` hook.
pub trait Lifecycle: Send {
    /// A short name for logs and errors.
    fn name(&self) -> &str;

    /// Start the background work; resolves once the service is ready to do its job.
    fn start(&mut self) -> impl Future<Output = Result<(), LifecycleError>> + Send;

    /// Stop taking new work, finish what is in flight, and return within `deadline`.
    /// Returns [`LifecycleError::StopTimeout`] if in-flight work was abandoned.
    fn stop(
        &mut self,
        deadline: Duration,
    ) -> impl Future<Output = Result<(), LifecycleError>> + Send;
}

/// A cloneable stop signal for background tasks.
///
/// Every clone observes the same signal; [`trigger`](Self::trigger) is idempotent.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A new, untriggered signal.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self { tx, rx }
    }

    /// Ask every holder of a clone to stop.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once a stop is asked for (at once if it already was).
    pub async fn triggered(&self) {
        let mut rx = self.rx.clone();
        // The sender lives in `self`, so `wait_for` cannot fail with a closed channel here.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Runs `work` for at most `deadline`; used by [`Lifecycle::stop`] implementations.
pub async fn within<T>(
    service: &str,
    deadline: Duration,
    work: impl Future<Output = T>,
) -> Result<T, LifecycleError> {
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| LifecycleError::StopTimeout {
            service: service.to_owned(),
            deadline,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_reaches_every_clone() {
        let s = Shutdown::new();
        let c = s.clone();
        assert!(!c.is_triggered());
        let waiter = tokio::spawn(async move { c.triggered().await });
        s.trigger();
        s.trigger();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(s.is_triggered());
    }

    #[tokio::test]
    async fn within_reports_the_deadline() {
        let err = within(
            "slow",
            Duration::from_millis(10),
            std::future::pending::<()>(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, LifecycleError::StopTimeout { ref service, .. } if service == "slow")
        );
        assert_eq!(
            within("fast", Duration::from_secs(1), async { 7 })
                .await
                .unwrap(),
            7
        );
    }
}
