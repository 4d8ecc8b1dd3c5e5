//! `HttpFront` (the builder) and `Running` (the served front): listeners, connections and
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kaiju_rpc::Server;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::auth::{Authenticate, GuestOnly};
use crate::error::HttpError;
use crate::ready::Readiness;
use crate::settings::HttpSettings;
use crate::state::Shared;

/// The HTTP front of an RPC [`Server`]: configure it, then [`serve`](Self::serve) it.
///
/// ```no_run
/// # async fn demo(server: kaiju_rpc::Server) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use kaiju_http::{HttpFront, HttpSettings, StaticTokens};
/// use kaiju_rpc::Scope;
///
/// let settings = HttpSettings { port: 8080, ..HttpSettings::default() };
/// let running = HttpFront::new(settings, server)
///     .auth(StaticTokens::new().token("s3cret", Some("ops"), Scope::System))
///     .metrics(kaiju_http::install_metrics()?)
///     .serve()
///     .await?;
/// println!("listening on {}", running.local_addr());
/// running.shutdown(Duration::from_secs(30)).await;
/// # Ok(()) }
/// ```
pub struct HttpFront {
    settings: HttpSettings,
    server: Server,
    auth: Arc<dyn Authenticate>,
    checks: Vec<Arc<dyn Readiness>>,
    metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for HttpFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFront")
            .field("settings", &self.settings)
            .field("checks", &self.checks.len())
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpFront {
    /// A front for `server`: everyone a guest, `/ready` always ready, no `/metrics` (404).
    pub fn new(settings: HttpSettings, server: Server) -> Self {
        Self {
            settings,
            server,
            auth: Arc::new(GuestOnly),
            checks: Vec::new(),
            metrics: None,
        }
    }

    /// Who callers are (default: [`GuestOnly`]).
    #[must_use]
    pub fn auth(mut self, auth: impl Authenticate) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// Adds a `/ready` check.
    #[must_use]
    pub fn readiness(mut self, check: impl Readiness) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// Serves `/metrics` from this handle (see [`install_metrics`](crate::install_metrics)).
    #[must_use]
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Binds the TCP address (and the Unix socket, when `path` is set) and serves until
    /// [`Running::shutdown`] (or until `Running` is dropped, which stops at once).
    ///
    /// # Errors
    /// An address or socket path cannot be bound.
    pub async fn serve(self) -> Result<Running, HttpError> {
        let addr = format!("{}:{}", self.settings.host, self.settings.port);
        let tcp = TcpListener::bind(&addr)
            .await
            .map_err(|source| HttpError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local_addr = tcp.local_addr().map_err(|source| HttpError::Bind {
            addr: addr.clone(),
            source,
        })?;
        #[cfg(unix)]
        let unix = match &self.settings.path {
            Some(path) => {
                // A socket file left by an earlier run would make bind fail; only a socket
                // nobody answers on is removed, never another kind of file, and never the
                // socket of a running app.
                remove_stale_socket(path).map_err(|source| HttpError::BindUnix {
                    path: path.display().to_string(),
                    source,
                })?;
                Some(tokio::net::UnixListener::bind(path).map_err(|source| {
                    HttpError::BindUnix {
                        path: path.display().to_string(),
                        source,
                    }
                })?)
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            permits: Arc::new(Semaphore::new(self.settings.max_concurrent_requests.max(1))),
            settings: self.settings,
            server: self.server,
            auth: self.auth,
            checks: self.checks,
            metrics: self.metrics,
            closing: AtomicBool::new(false),
        });
        let router = crate::routes::router(Arc::clone(&shared));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(accept(
            tcp,
            router.clone(),
            Arc::clone(&shared),
            stopped.clone(),
        ))];
        #[cfg(unix)]
        if let Some(unix) = unix {
            tasks.push(tokio::spawn(accept(
                unix,
                router,
                Arc::clone(&shared),
                stopped,
            )));
        }
        tracing::info!(%local_addr, path = ?shared.settings.path, "the HTTP front is listening");
        Ok(Running {
            local_addr,
            shared,
            stop,
            tasks,
        })
    }
}

/// Removes a socket file at `path` that no process answers on; a socket something answers on
/// is an error (another app serves there: taking it over would cut that app off silently).
#[cfg(unix)]
fn remove_stale_socket(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another process serves on this socket",
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

/// Removes the socket file this front bound, if it is still a socket.
#[cfg(unix)]
fn remove_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Accepts connections until told to stop, then waits for the open ones to finish their
/// requests (hyper's graceful shutdown: an idle connection closes, a busy one after its
/// response).
async fn accept<L: Listener>(
    mut listener: L,
    router: Router,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    // Owned by this task: when it is aborted (the shutdown's grace ran out), dropping the set
    // aborts every connection still open. A method already running goes on in the RPC server
    // (rpc.rs spawns it), only its HTTP answer is dropped.
    let mut connections = tokio::task::JoinSet::new();
    let mut http = http1::Builder::new();
    // An idle keep-alive connection, or one slow to send its headers, is closed after this.
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.settings.keepalive_timeout);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            (io, _) = listener.accept() => {
                let service = TowerToHyperService::new(router.clone());
                let conn = http.serve_connection(TokioIo::new(io), service);
                let conn = graceful.watch(conn);
                connections.spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "an HTTP connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
}

/// A served [`HttpFront`]. Dropping it stops accepting at once and closes idle connections;
/// [`shutdown`](Self::shutdown) is the graceful way.
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The bound TCP address (the real port when `port` was `0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Requests being handled on `/public/rpc` now.
    pub fn in_flight(&self) -> usize {
        self.shared.settings.max_concurrent_requests.max(1)
            - self.shared.permits.available_permits()
    }

    /// Stops gracefully: no new connections; idle keep-alive connections are closed, and a
    /// request that still arrives on an open one gets 503 (and `Connection: close`); requests
    /// already being handled finish. Waits at most `within`, then closes the connections left
    /// (their methods still run to their end in the RPC server; only the answers are lost).
    /// Removes the Unix socket file it bound. Returns whether everything finished in time.
    /// The RPC server is not drained here: drain it after (its listeners may still feed it).
    pub async fn shutdown(mut self, within: Duration) -> bool {
        self.shared.closing.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        let finished = tokio::time::timeout(within, all).await.is_ok();
        if !finished {
            tracing::warn!(
                in_flight = self.in_flight(),
                "HTTP requests still running after the shutdown grace; dropping them"
            );
            for abort in aborts {
                abort.abort();
            }
        }
        #[cfg(unix)]
        if let Some(path) = &self.shared.settings.path {
            remove_socket(path);
        }
        finished
    }
}
