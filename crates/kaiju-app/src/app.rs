//! An app: its services built from a config, started in order, stopped in reverse.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kaiju_core::{AppSettings, Shutdown};
use tokio::time::Instant;

use crate::config::Config;
use crate::error::AppError;
use crate::registry::Registry;
use crate::service::{Build, Context, Service, Slot};

/// A kaiju app built from its config.
///
/// [`build`](Self::build) checks everything it can without connecting: class names, names,
/// every service's settings. [`start`](Self::start) runs the hooks in config order:
/// every `init`, then every `post_init` (the RPC server collects routes), then every `start`
/// (listeners begin to read). [`stop`](Self::stop) closes the started services in reverse
/// order within the config's `run.shutdown_timeout`. [`run`](Self::run) does all three around
/// a wait for SIGINT or SIGTERM.
///
/// A service with `required: false` whose start fails is logged and left out: it is not
/// discoverable by the others and gets no further hooks (kaiju kept it, half started).
///
/// Every method takes `&self`, so an app can be shared; [`handle`](Self::handle) gives a
/// cheap, cloneable [`AppHandle`] that finds services by type and asks a running app to stop.
///
/// ```no_run
/// use kaiju_app::{App, Registry, config::ConfigLoader};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ConfigLoader::new().file("settings/config.yml").load()?;
/// App::build(&config, &Registry::builtin())?.run().await?;
/// # Ok(()) }
/// ```
pub struct App {
    cx: Arc<Context>,
    /// Indexes of the services whose `init` succeeded and that are not closed yet, in order.
    started: Mutex<Vec<usize>>,
    /// Where the app is in its life.
    phase: Mutex<Phase>,
    /// Held by `start` and `stop` for their whole run: they never interleave, so no hook of a
    /// service runs after its `close`, and concurrent stops close in reverse order once.
    lifecycle: tokio::sync::Mutex<()>,
    /// Set by `stop` before it waits for a running `start`: the start stops at its next hook.
    abandon: AtomicBool,
    /// A copy of the error a required service failed with during the start, for `run` when a
    /// stop signal cut the start short.
    failure: Mutex<Option<AppError>>,
    shutdown_timeout: Duration,
    /// A stop asked for through an [`AppHandle`].
    stop: Shutdown,
    /// The HTTP front `run.host` and `run.port` ask for.
    #[cfg(feature = "http")]
    http: Option<crate::http::Front>,
}

/// Where an [`App`] is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Built,
    Starting,
    Running,
    /// A required service failed; what had started is closed.
    Failed,
    Stopped,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("context", &self.cx)
            .field("started", &self.started_indexes())
            .finish()
    }
}

/// A cloneable handle on an [`App`]: finds its services by type while it runs, and asks it to
/// stop as a signal would.
///
/// ```no_run
/// use kaiju_app::{App, Registry, builtin::ListenerService, config::ConfigLoader};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ConfigLoader::new().file("settings/config.yml").load()?;
/// let app = App::build(&config, &Registry::builtin())?;
/// let handle = app.handle();
/// let running = tokio::spawn(app.run());
/// // ... later, from anywhere:
/// if let Some(listener) = handle.service::<ListenerService>() {
///     println!("{:?}", listener.stats().await);
/// }
/// handle.stop();
/// running.await??;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AppHandle {
    cx: Arc<Context>,
    stop: Shutdown,
}

impl std::fmt::Debug for AppHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppHandle")
            .field("context", &self.cx)
            .finish()
    }
}

impl AppHandle {
    /// The services and the app's identity.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// The first service of type `T` (in config order) that has not failed.
    pub fn service<T: Service>(&self) -> Option<Arc<T>> {
        self.cx.first()
    }

    /// The service named `name`, if it is a `T` and has not failed.
    pub fn get<T: Service>(&self, name: &str) -> Option<Arc<T>> {
        self.cx.get(name)
    }

    /// Asks the app to stop, as SIGTERM does: [`App::run`] (or [`App::stopped`]) returns, and
    /// `run` closes the services within `run.shutdown_timeout`.
    pub fn stop(&self) {
        self.stop.trigger();
    }
}

impl App {
    /// Builds every enabled service of `config` with the classes of `registry`.
    pub fn build(config: &Config, registry: &Registry) -> Result<Self, AppError> {
        let main = &config.project.main;
        let app = AppSettings {
            env: main.env.clone(),
            name: main.name.clone(),
            ..AppSettings::default()
        };
        // Before any service is built: components register their metric handles when they
        // are built, with the recorder installed then.
        #[cfg(feature = "http")]
        let http = crate::http::Front::from_config(config)?;
        let mut slots: Vec<Slot> = Vec::new();
        for (index, entry) in config
            .project
            .services
            .iter()
            .enumerate()
            .filter(|(_, e)| e.enabled)
        {
            let class = match registry.get(&entry.cls) {
                Some(class) => class,
                None => {
                    if let Some(why) = Registry::not_available(&entry.cls) {
                        return Err(AppError::NotAvailable {
                            cls: entry.cls.clone(),
                            place: entry.place.clone(),
                            why,
                        });
                    }
                    let hint = registry
                        .suggest(&entry.cls)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    let known: Vec<&str> = registry.classes().collect();
                    let hint = format!("{hint}; the known classes are {}", known.join(", "));
                    return Err(AppError::UnknownClass {
                        cls: entry.cls.clone(),
                        place: entry.place.clone(),
                        hint,
                    });
                }
            };
            let name = entry
                .name
                .clone()
                .unwrap_or_else(|| class.default_name.clone());
            let (hooks, any) = (class.factory)(&Build {
                name: &name,
                cls: &entry.cls,
                settings: &entry.settings,
                app: &app,
            })?;
            let slot = Slot {
                name: name.clone(),
                cls: entry.cls.clone(),
                place: entry.place.clone(),
                entry: index,
                required: entry.required,
                hooks,
                any,
                failed: AtomicBool::new(false),
            };
            match slots.iter().position(|s| s.name == name) {
                Some(i) if entry.override_ => slots[i] = slot,
                Some(_) => {
                    return Err(AppError::DuplicateName {
                        name,
                        place: entry.place.clone(),
                    });
                }
                None => slots.push(slot),
            }
        }
        let cx = Context {
            app,
            etc: config.project.etc.clone(),
            slots,
            kinds: registry.kinds(),
        };
        check(&cx)?;
        Ok(Self {
            cx: Arc::new(cx),
            started: Mutex::new(Vec::new()),
            phase: Mutex::new(Phase::Built),
            lifecycle: tokio::sync::Mutex::new(()),
            abandon: AtomicBool::new(false),
            failure: Mutex::new(None),
            shutdown_timeout: Duration::from_secs(config.project.run.shutdown_timeout),
            stop: Shutdown::new(),
            #[cfg(feature = "http")]
            http,
        })
    }

    /// A cloneable handle: services by type, and a stop request.
    pub fn handle(&self) -> AppHandle {
        AppHandle {
            cx: self.cx.clone(),
            stop: self.stop.clone(),
        }
    }

    /// The services and the app's identity.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// The first service of type `T` (in config order) that has not failed.
    pub fn service<T: Service>(&self) -> Option<Arc<T>> {
        self.cx.first()
    }

    /// The service named `name`, if it is a `T` and has not failed.
    pub fn get<T: Service>(&self, name: &str) -> Option<Arc<T>> {
        self.cx.get(name)
    }

    fn started_indexes(&self) -> Vec<usize> {
        lock(&self.started).clone()
    }

    /// The names of the services, in config order, with whether each is running.
    pub fn services(&self) -> Vec<(String, bool)> {
        let started = self.started_indexes();
        self.cx
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    s.name.clone(),
                    started.contains(&i) && !s.failed.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The services as they will run, in start order, after `enabled: false` and
    /// `override: true` are applied: each one's name, and the index of the entry it was built
    /// from in the config's [`services`](crate::config::Project::services). A layered config
    /// lists an overridden service twice; this lists it once, as its last entry gives it.
    ///
    /// ```no_run
    /// use kaiju_app::{App, Registry, config::ConfigLoader};
    ///
    /// // base.yml lists a RedisTransportService; local.yml another with `override: true`.
    /// let config = ConfigLoader::new().file("base.yml").file("local.yml").load()?;
    /// let app = App::build(&config, &Registry::builtin())?;
    /// for (name, entry) in app.entries() {
    ///     println!("{name}: {}", config.project.services[entry].place);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn entries(&self) -> Vec<(String, usize)> {
        self.cx
            .slots
            .iter()
            .map(|s| (s.name.clone(), s.entry))
            .collect()
    }

    /// The stop deadline (`run.shutdown_timeout`).
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    fn phase(&self) -> Phase {
        *lock(&self.phase)
    }

    fn set_phase(&self, phase: Phase) {
        *lock(&self.phase) = phase;
    }

    /// Runs `init`, `post_init` and `start` of every service, in config order. When a
    /// required service fails, the started ones are closed in reverse order and the error is
    /// returned. An app starts once: a second call is [`AppError::AlreadyStarted`].
    ///
    /// A [`stop`](Self::stop) called while the start runs makes it end at the next hook, with
    /// [`AppError::Stopped`]; the stop then closes what had started.
    pub async fn start(&self) -> Result<(), AppError> {
        let _lifecycle = self.lifecycle.lock().await;
        if self.phase() != Phase::Built {
            return Err(AppError::AlreadyStarted);
        }
        self.set_phase(Phase::Starting);
        let cx = self.cx.clone();
        for (i, slot) in cx.slots.iter().enumerate() {
            if slot.failed.load(Ordering::Relaxed) {
                continue; // left out at build: its check failed
            }
            self.continuing()?;
            tracing::debug!(service = %slot.name, "init");
            match slot.hooks.init(&cx).await {
                Ok(()) => lock(&self.started).push(i),
                Err(e) => self.failed(slot, "init", e).await?,
            }
        }
        for phase in ["post_init", "start"] {
            for i in self.started_indexes() {
                let slot = &cx.slots[i];
                if slot.failed.load(Ordering::Relaxed) {
                    continue;
                }
                self.continuing()?;
                tracing::debug!(service = %slot.name, phase, "starting");
                let result = if phase == "post_init" {
                    slot.hooks.post_init(&cx).await
                } else {
                    slot.hooks.start(&cx).await
                };
                if let Err(e) = result {
                    self.failed(slot, phase, e).await?;
                }
            }
        }
        #[cfg(feature = "http")]
        if let Some(front) = &self.http {
            self.continuing()?;
            if let Err(source) = front.start(&cx).await {
                let error = AppError::Service {
                    service: "http".to_owned(),
                    cls: "HttpFront".to_owned(),
                    phase: "start",
                    source,
                };
                tracing::error!(%error, "the HTTP front did not start; stopping the services");
                *lock(&self.failure) = Some(AppError::Service {
                    service: "http".to_owned(),
                    cls: "HttpFront".to_owned(),
                    phase: "start",
                    source: error.to_string().into(),
                });
                self.close_started().await;
                self.set_phase(Phase::Failed);
                return Err(error);
            }
        }
        self.set_phase(Phase::Running);
        let services = self.started_indexes().len();
        tracing::info!(app = %cx.app.name, env = %cx.app.env, services, "app started");
        Ok(())
    }

    /// Whether the start may go on: not when a stop is waiting for it.
    fn continuing(&self) -> Result<(), AppError> {
        if self.abandon.load(Ordering::SeqCst) {
            tracing::info!("a stop was asked for while starting; the start ends here");
            return Err(AppError::Stopped);
        }
        Ok(())
    }

    /// A service failed in `phase`: left out if optional, otherwise the started services are
    /// closed and the app's start fails.
    async fn failed(
        &self,
        slot: &Slot,
        phase: &'static str,
        source: crate::error::BoxError,
    ) -> Result<(), AppError> {
        let error = |source| AppError::Service {
            service: slot.name.clone(),
            cls: slot.cls.clone(),
            phase,
            source,
        };
        if slot.required {
            let copy = error(source.to_string().into());
            let error = error(source);
            tracing::error!(%error, at = %slot.place, "a required service failed; stopping the services started so far");
            // Recorded before the rollback: a stop signal may cut the rollback short, and
            // `run` must still report why the app did not start.
            *lock(&self.failure) = Some(copy);
            self.close_started().await;
            self.set_phase(Phase::Failed);
            return Err(error);
        }
        let error = error(source);
        tracing::warn!(%error, at = %slot.place, "an optional service failed and is left out");
        slot.failed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the started services in reverse order, sharing `run.shutdown_timeout` among
    /// them (each gets what is left). Errors are logged, and returned as
    /// `(service, error)` pairs; a failed close does not stop the others.
    ///
    /// A start that is running is asked to end at its next hook, and waited for; a second
    /// stop waits for the first and closes nothing more.
    ///
    /// The whole stop keeps to `run.shutdown_timeout`: when a start hook does not return
    /// within it (it hangs), nothing is closed, and the error says so. Do not await `stop`
    /// inside a hook; [`AppHandle::stop`] asks for a stop without waiting for it.
    pub async fn stop(&self) -> Vec<(String, String)> {
        self.abandon.store(true, Ordering::SeqCst);
        let Ok(_lifecycle) =
            tokio::time::timeout(self.shutdown_timeout, self.lifecycle.lock()).await
        else {
            let error = format!(
                "the start did not reach its next hook within {:?}; nothing was closed",
                self.shutdown_timeout
            );
            tracing::error!(%error, "stop gave up");
            return vec![("app".to_owned(), error)];
        };
        // The HTTP front stops first (its in-flight requests finish, new ones get 503), so
        // that the RPC server it feeds is still there for them; it gets half the stop's time.
        #[cfg(feature = "http")]
        if let Some(front) = &self.http {
            front.stop(self.shutdown_timeout / 2).await;
        }
        let errors = self.close_started().await;
        self.set_phase(Phase::Stopped);
        errors
    }

    /// Closes what `started` holds, last first. A service leaves the list once its close
    /// returned or panicked; a close cut short (a stop signal during a failed start's
    /// rollback drops it) leaves the service on the list, so the next stop closes it.
    async fn close_started(&self) -> Vec<(String, String)> {
        let now = Instant::now();
        let deadline = now.checked_add(self.shutdown_timeout).unwrap_or(now);
        let mut errors = Vec::new();
        loop {
            let next = lock(&self.started).last().copied();
            let Some(i) = next else { break };
            let slot = &self.cx.slots[i];
            let left = deadline.saturating_duration_since(Instant::now());
            tracing::debug!(service = %slot.name, ?left, "close");
            let closing = Closing {
                app: self,
                index: i,
                returned: false,
            };
            let result =
                tokio::time::timeout(left + Duration::from_millis(100), slot.hooks.close(left))
                    .await;
            closing.done();
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("did not close within {left:?}"),
            };
            tracing::warn!(service = %slot.name, %error, "close failed");
            errors.push((slot.name.clone(), error));
        }
        errors
    }

    /// The failure of a required service during the start, once.
    fn take_failure(&self) -> Option<AppError> {
        lock(&self.failure).take()
    }

    /// Resolves once a stop is asked for: SIGINT, SIGTERM, or [`AppHandle::stop`].
    pub async fn stopped(&self) -> Result<(), AppError> {
        tokio::select! {
            received = stop_signal() => received,
            () = self.stop.triggered() => Ok(()),
        }
    }

    /// Starts (unless [`start`](Self::start) was called already and succeeded), waits for
    /// SIGINT or SIGTERM (or [`AppHandle::stop`]), and stops. Returns an error if the start
    /// failed, or [`AppError::Unclean`] if a service did not close cleanly. After a start that
    /// failed or was cancelled, or after a stop, it closes whatever is still open and returns
    /// the start's failure (or [`AppError::AlreadyStarted`]).
    ///
    /// A signal that arrives while the app is still starting abandons the start and stops
    /// what had started; if a required service had failed by then, that failure is returned.
    pub async fn run(self) -> Result<(), AppError> {
        let signal = self.stopped();
        tokio::pin!(signal);
        let early = match self.phase() {
            Phase::Built => {
                tokio::select! {
                    started = self.start() => {
                        started?;
                        None
                    }
                    received = &mut signal => Some(received),
                }
            }
            Phase::Running => None,
            // A start that was cancelled (dropped) or failed, or a stop: close whatever is
            // still open, and say why the app cannot run.
            Phase::Starting | Phase::Failed | Phase::Stopped => {
                self.stop().await;
                return Err(self.take_failure().unwrap_or(AppError::AlreadyStarted));
            }
        };
        let received = match early {
            Some(received) => {
                tracing::info!("stop signal received while starting; stopping what started");
                received
            }
            None => {
                let received = signal.await;
                tracing::info!(
                    "stop signal received; stopping within {:?}",
                    self.shutdown_timeout
                );
                received
            }
        };
        let errors = self.stop().await;
        if let Some(failure) = self.take_failure() {
            return Err(failure);
        }
        received?;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::Unclean { errors })
        }
    }
}

/// A service being closed: it leaves the started list when its close returns ([`done`]) or
/// panics (this guard is dropped while unwinding), but not when the close is cancelled, so
/// that a later stop closes it again. A close that panics is not run again: the services
/// started before it still get theirs.
///
/// [`done`]: Closing::done
struct Closing<'a> {
    app: &'a App,
    index: usize,
    returned: bool,
}

impl Closing<'_> {
    fn done(mut self) {
        self.returned = true;
    }
}

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        if self.returned || std::thread::panicking() {
            lock(&self.app.started).retain(|&s| s != self.index);
        }
    }
}

/// A lock of the app's state; a panic while it was held (in a hook's caller) leaves the state
/// as it was, which is still the truth, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs every service's [`Service::check`]. A required service's failure fails the build;
/// an optional one is left out (as if its start had failed). Leaving one out can break the
/// check of a service listed before it, so the checks run again until no more are left out.
fn check(cx: &Context) -> Result<(), AppError> {
    loop {
        let mut left_out = false;
        for slot in cx
            .slots
            .iter()
            .filter(|s| !s.failed.load(Ordering::Relaxed))
        {
            let Err(source) = slot.hooks.check(cx) else {
                continue;
            };
            let error = match source.downcast::<crate::error::SettingsError>() {
                Ok(settings) => AppError::Settings(settings),
                Err(source) => AppError::Check {
                    service: slot.name.clone(),
                    cls: slot.cls.clone(),
                    place: slot.place.clone(),
                    source,
                },
            };
            if slot.required {
                return Err(error);
            }
            tracing::warn!(%error, "an optional service cannot start and is left out");
            slot.failed.store(true, Ordering::Relaxed);
            left_out = true;
        }
        if !left_out {
            return Ok(());
        }
    }
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
pub async fn stop_signal() -> Result<(), AppError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(AppError::Signal)?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(AppError::Signal),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(AppError::Signal)
    }
}
