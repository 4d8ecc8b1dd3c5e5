//! What a service is to the runtime: a [`Service`] with lifecycle hooks, built by a
//! [`ServiceClass`] from its config entry, finding the services it depends on through
//! [`Context`].

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kaiju_core::AppSettings;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::config::{Node, Place};
use crate::error::{AppError, BoxError, SettingsError};

/// The future a lifecycle hook returns.
pub type Hook<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// A hook that does nothing.
pub fn done<'a>() -> Hook<'a> {
    Box::pin(async { Ok(()) })
}

/// A part of an app: the runtime calls its hooks in config order to start, and in reverse
/// order to stop. Every hook has a default that does nothing.
///
/// Hooks take `&self`: a service keeps what it creates at start-up in a `OnceLock` or a
/// mutex, so that other services can hold an `Arc` of it from the moment it is built.
pub trait Service: Any + Send + Sync {
    /// Connects and discovers dependencies (kaiju's `init`). Runs in config order.
    fn init<'a>(&'a self, cx: &'a Context) -> Hook<'a> {
        let _ = cx;
        done()
    }

    /// Runs after every `init` (kaiju's `post_init`); the RPC server collects the routes of
    /// all services here.
    fn post_init<'a>(&'a self, cx: &'a Context) -> Hook<'a> {
        let _ = cx;
        done()
    }

    /// Starts background work (listeners start reading), after every `post_init`, so no
    /// message is read before every route is registered.
    fn start<'a>(&'a self, cx: &'a Context) -> Hook<'a> {
        let _ = cx;
        done()
    }

    /// Stops: finish in-flight work within `deadline`, then release connections. Called in
    /// reverse order, for the services whose `init` succeeded.
    fn close(&self, deadline: Duration) -> Hook<'_> {
        let _ = deadline;
        done()
    }

    /// The RPC methods this service offers (kaiju's `PublicInterface`): the app's
    /// `JSONRPCServer` collects them in its `post_init`, after every `init`.
    #[cfg(feature = "rpc")]
    fn rpc_module(&self) -> Option<kaiju_rpc::RpcModule> {
        None
    }
}

/// A service class: how a `services` entry with this class becomes a service. Register it
/// with [`Registry::register`](crate::Registry::register).
///
/// ```
/// use kaiju_app::{Build, Service, ServiceClass, AppError};
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct GreeterSettings { greeting: String }
///
/// struct Greeter { greeting: String }
/// impl Service for Greeter {}
/// impl ServiceClass for Greeter {
///     fn build(b: &Build<'_>) -> Result<Self, AppError> {
///         let s: GreeterSettings = b.settings()?;
///         Ok(Self { greeting: s.greeting })
///     }
/// }
/// ```
pub trait ServiceClass: Service + Sized {
    /// Builds the service from its entry: read and check its settings here (no I/O; connect
    /// in [`Service::init`]), so that a config error stops the app before anything connects.
    fn build(b: &Build<'_>) -> Result<Self, AppError>;
}

/// What a [`ServiceClass`] builds from: the entry's name, class, settings and the app.
#[derive(Debug)]
pub struct Build<'a> {
    pub(crate) name: &'a str,
    pub(crate) cls: &'a str,
    pub(crate) settings: &'a Node,
    pub(crate) app: &'a AppSettings,
}

impl Build<'_> {
    /// The service's name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// The class name it was built as.
    pub fn cls(&self) -> &str {
        self.cls
    }

    /// The app (env, name, id).
    pub fn app(&self) -> &AppSettings {
        self.app
    }

    /// The settings as written (after templates were filled).
    pub fn raw_settings(&self) -> &Node {
        self.settings
    }

    /// The settings as `T`. Use `#[serde(deny_unknown_fields)]`, so that a misspelt setting
    /// is an error naming the field and its place in the file.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, AppError> {
        self.parse(self.settings.to_json())
    }

    /// Settings as `T` from a JSON form of (a part of) the settings, errors located in the file.
    pub fn parse<T: DeserializeOwned>(&self, json: serde_json::Value) -> Result<T, AppError> {
        serde_path_to_error::deserialize(json).map_err(|e| {
            let path = e.path().to_string();
            self.invalid(&path, e.into_inner().to_string())
        })
    }

    /// A settings check's error (`validate()` of a settings struct) as an error at its field.
    pub fn config_error(&self, e: kaiju_core::ConfigError) -> AppError {
        match e {
            kaiju_core::ConfigError::Invalid { field, reason } => self.invalid(field, reason),
            other => self.invalid("", other.to_string()),
        }
    }

    /// An error about this service's settings, at `field`.
    pub fn invalid(&self, field: &str, message: impl Into<String>) -> AppError {
        AppError::Settings(Box::new(SettingsError {
            service: self.name.to_owned(),
            cls: self.cls.to_owned(),
            place: self.settings.locate(field).place.clone(),
            field: field.to_owned(),
            message: message.into(),
        }))
    }
}

/// How a setting names a service it depends on, as kaiju writes it: a service name, `null`
/// (the first service of the right class, in config order) or `false` (none, where the
/// dependency is optional).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Dependency {
    /// `null` (or absent): the first service of the class.
    #[default]
    Any,
    /// A service name.
    Named(String),
    /// `false`: none.
    Disabled,
}

impl<'de> Deserialize<'de> for Dependency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null | serde_json::Value::Bool(true) => Ok(Self::Any),
            serde_json::Value::Bool(false) => Ok(Self::Disabled),
            serde_json::Value::String(s) if s.is_empty() => Ok(Self::Any),
            serde_json::Value::String(s) => Ok(Self::Named(s)),
            other => Err(serde::de::Error::custom(format!(
                "expected a service name, null or false, found {other}"
            ))),
        }
    }
}

/// One built service, as the runtime and discovery see it.
pub(crate) struct Slot {
    pub(crate) name: String,
    pub(crate) cls: String,
    pub(crate) place: Place,
    pub(crate) required: bool,
    pub(crate) service: Arc<dyn Service>,
    /// Its start failed (a service with `required: false`): not discoverable, not started.
    pub(crate) failed: AtomicBool,
}

/// The app's services as hooks see them: the app's identity, `etc`, and discovery.
pub struct Context {
    pub(crate) app: AppSettings,
    pub(crate) etc: Node,
    pub(crate) slots: Vec<Slot>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("app", &self.app)
            .field(
                "services",
                &self.slots.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A dependency could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// No service has that name.
    #[error("no service is named `{0}`")]
    NotFound(String),
    /// The named service is of another class.
    #[error("service `{name}` is a `{cls}`, not a {wanted}")]
    WrongClass {
        /// The name.
        name: String,
        /// Its class.
        cls: String,
        /// What was wanted.
        wanted: &'static str,
    },
    /// The named service failed to start (`required: false`).
    #[error("service `{0}` failed to start")]
    Failed(String),
    /// No service of the class exists (or every one failed).
    #[error("no {0} service is configured")]
    NoneOfClass(&'static str),
    /// The dependency is `false` but is required.
    #[error("a {0} is required here; `false` is not allowed")]
    Disabled(&'static str),
}

impl Context {
    /// The app's identity (env, name, and the process's id).
    pub fn app(&self) -> &AppSettings {
        &self.app
    }

    /// The `etc` section.
    pub fn etc(&self) -> &Node {
        &self.etc
    }

    /// Every service that has not failed, in config order.
    pub fn services(&self) -> impl Iterator<Item = (&str, &Arc<dyn Service>)> {
        self.slots
            .iter()
            .filter(|s| !s.failed.load(Ordering::Relaxed))
            .map(|s| (s.name.as_str(), &s.service))
    }

    /// The service `dep` names, which must be a `T` (kaiju's `discover_service`); `wanted`
    /// names the kind for error messages.
    pub fn require<T: Service>(
        &self,
        dep: &Dependency,
        wanted: &'static str,
    ) -> Result<Arc<T>, DiscoveryError> {
        self.optional(dep, wanted)?
            .ok_or(DiscoveryError::Disabled(wanted))
    }

    /// Like [`require`](Self::require), but `false` gives `None`.
    pub fn optional<T: Service>(
        &self,
        dep: &Dependency,
        wanted: &'static str,
    ) -> Result<Option<Arc<T>>, DiscoveryError> {
        let live = |s: &Slot| !s.failed.load(Ordering::Relaxed);
        match dep {
            Dependency::Disabled => Ok(None),
            Dependency::Named(name) => {
                let slot = self
                    .slots
                    .iter()
                    .find(|s| s.name == *name)
                    .ok_or_else(|| DiscoveryError::NotFound(name.clone()))?;
                if !live(slot) {
                    return Err(DiscoveryError::Failed(name.clone()));
                }
                downcast::<T>(&slot.service)
                    .map(Some)
                    .ok_or_else(|| DiscoveryError::WrongClass {
                        name: name.clone(),
                        cls: slot.cls.clone(),
                        wanted,
                    })
            }
            Dependency::Any => self
                .slots
                .iter()
                .filter(|s| live(s))
                .find_map(|s| downcast::<T>(&s.service))
                .map(Some)
                .ok_or(DiscoveryError::NoneOfClass(wanted)),
        }
    }

    /// The service named `name` if it is a `T`.
    pub fn get<T: Service>(&self, name: &str) -> Option<Arc<T>> {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| downcast::<T>(&s.service))
    }
}

fn downcast<T: Service>(service: &Arc<dyn Service>) -> Option<Arc<T>> {
    let any: Arc<dyn Any + Send + Sync> = service.clone();
    any.downcast::<T>().ok()
}
