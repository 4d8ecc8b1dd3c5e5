//! An app: its services built from a config, started in order, stopped in reverse.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kaiju_core::AppSettings;
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
    /// Indexes of the services whose `init` succeeded, in order.
    started: Vec<usize>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("context", &self.cx)
            .field("started", &self.started)
            .finish()
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
        let mut slots: Vec<Slot> = Vec::new();
        for entry in config.project.services.iter().filter(|e| e.enabled) {
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
            let service = (class.factory)(&Build {
                name: &name,
                cls: &entry.cls,
                settings: &entry.settings,
                app: &app,
            })?;
            let slot = Slot {
                name: name.clone(),
                cls: entry.cls.clone(),
                place: entry.place.clone(),
                required: entry.required,
                service,
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
        Ok(Self {
            cx: Arc::new(Context {
                app,
                etc: config.project.etc.clone(),
                slots,
            }),
            started: Vec::new(),
            shutdown_timeout: Duration::from_secs(config.project.run.shutdown_timeout),
        })
    }

    /// The services and the app's identity.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// The service named `name`, if it is a `T`.
    pub fn get<T: Service>(&self, name: &str) -> Option<Arc<T>> {
        self.cx.get(name)
    }

    /// The names of the services, in config order, with whether each is running.
    pub fn services(&self) -> Vec<(String, bool)> {
        self.cx
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    s.name.clone(),
                    self.started.contains(&i) && !s.failed.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The stop deadline (`run.shutdown_timeout`).
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// Runs `init`, `post_init` and `start` of every service, in config order. When a
    /// required service fails, the started ones are closed in reverse order and the error is
    /// returned.
    pub async fn start(&mut self) -> Result<(), AppError> {
        let cx = self.cx.clone();
        for (i, slot) in cx.slots.iter().enumerate() {
            tracing::debug!(service = %slot.name, "init");
            match slot.service.init(&cx).await {
                Ok(()) => self.started.push(i),
                Err(e) => self.failed(slot, "init", e).await?,
            }
        }
        for phase in ["post_init", "start"] {
            for &i in &self.started.clone() {
                let slot = &cx.slots[i];
                if slot.failed.load(Ordering::Relaxed) {
                    continue;
                }
                tracing::debug!(service = %slot.name, phase, "starting");
                let result = if phase == "post_init" {
                    slot.service.post_init(&cx).await
                } else {
                    slot.service.start(&cx).await
                };
                if let Err(e) = result {
                    self.failed(slot, phase, e).await?;
                }
            }
        }
        tracing::info!(app = %cx.app.name, env = %cx.app.env, services = self.started.len(), "app started");
        Ok(())
    }

    /// A service failed in `phase`: left out if optional, otherwise the app stops.
    async fn failed(
        &mut self,
        slot: &Slot,
        phase: &'static str,
        e: crate::error::BoxError,
    ) -> Result<(), AppError> {
        let error = AppError::Service {
            service: slot.name.clone(),
            cls: slot.cls.clone(),
            phase,
            source: e,
        };
        if slot.required {
            tracing::error!(%error, at = %slot.place, "a required service failed; stopping the services started so far");
            self.stop().await;
            return Err(error);
        }
        tracing::warn!(%error, at = %slot.place, "an optional service failed and is left out");
        slot.failed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the started services in reverse order, sharing `run.shutdown_timeout` among
    /// them (each gets what is left). Errors are logged, and returned as
    /// `(service, error)` pairs; a failed close does not stop the others.
    pub async fn stop(&mut self) -> Vec<(String, String)> {
        let now = Instant::now();
        let deadline = now.checked_add(self.shutdown_timeout).unwrap_or(now);
        let mut errors = Vec::new();
        while let Some(i) = self.started.pop() {
            let slot = &self.cx.slots[i];
            let left = deadline.saturating_duration_since(Instant::now());
            tracing::debug!(service = %slot.name, ?left, "close");
            let result =
                tokio::time::timeout(left + Duration::from_millis(100), slot.service.close(left))
                    .await;
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

    /// Starts, waits for SIGINT or SIGTERM, and stops. Returns an error if the start failed,
    /// or [`AppError::Unclean`] if a service did not close cleanly. A signal that arrives while the app is still starting
    /// abandons the start and stops what had started.
    pub async fn run(mut self) -> Result<(), AppError> {
        let signal = stop_signal();
        tokio::pin!(signal);
        let early = {
            let start = self.start();
            tokio::select! {
                started = start => {
                    started?;
                    None
                }
                received = &mut signal => Some(received),
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
        received?;
        let errors = self.stop().await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::Unclean { errors })
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
