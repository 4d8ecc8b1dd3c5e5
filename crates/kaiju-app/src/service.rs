//! What a service is to the runtime: a [`Service`] with lifecycle hooks written as plain
//! `async fn`s, built by a [`ServiceClass`] from its config entry, finding the services it
//! depends on by type through [`Context`].
//!
//! The runtime holds services of many types in one list, so it calls their hooks through
//! [`Erased`], an object-safe companion trait implemented for every [`Service`]: the boxing of
//! hook futures happens there, once, never in user code (as apalis does).

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
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

/// A part of an app: the runtime calls its hooks in config order to start, and in reverse
/// order to stop. Every hook has a default that does nothing; write the ones you need as
/// `async fn`.
///
/// Hooks take `&self`: a service keeps what it creates at start-up in a `OnceLock` or a
/// mutex, so that other services can hold an `Arc` of it from the moment it is built.
///
/// Not to be confused with [`kaiju_core::Lifecycle`], the start/stop of one component (a
/// stream listener) that a service may run inside its hooks.
///
/// ```
/// use std::sync::{Arc, OnceLock};
/// use kaiju_app::builtin::CacheService;
/// use kaiju_app::{AppError, BoxError, Build, Context, Dependency, Service, ServiceClass};
/// use kaiju_cache::Cache;
/// use kaiju_rpc::{RegisterError, RpcError, RpcModule, Scope};
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Settings { #[serde(default)] cache: Dependency }
///
/// struct Greeter { settings: Settings, cache: OnceLock<Cache> }
///
/// impl Service for Greeter {
///     async fn init(&self, cx: &Context) -> Result<(), BoxError> {
///         let cache = cx.require::<CacheService>(&self.settings.cache)?.cache()?;
///         let _ = self.cache.set(cache);
///         Ok(())
///     }
///
///     // Every method gets the service itself, as a Python method gets `self`.
///     fn rpc_module(self: Arc<Self>) -> Result<RpcModule<Self>, RegisterError> {
///         let mut m = RpcModule::with_context("greeter", self).permissions([("*", Scope::Guest)]);
///         m.method("hello", |this, name: String, _ctx| async move {
///             let cache = this.cache.get().ok_or_else(|| RpcError::internal("not ready"))?;
///             let _ = cache; // ... use it
///             Ok::<_, RpcError>(format!("hello, {name}"))
///         })?;
///         Ok(m)
///     }
/// }
///
/// impl ServiceClass for Greeter {
///     fn build(b: &Build<'_>) -> Result<Self, AppError> {
///         Ok(Self { settings: b.settings()?, cache: OnceLock::new() })
///     }
/// }
/// ```
pub trait Service: Send + Sync + Sized + 'static {
    /// Checks, without I/O, what needs the other services: that the services this one depends
    /// on exist and are of the right class, and settings whose limits come from theirs.
    /// [`App::build`](crate::App::build) runs it for every service once all are built, so a
    /// config that cannot start fails there (and in `kaiju check`), before anything connects.
    /// Return a [`SettingsError`] (see [`Build::place_of`]) to point at a setting.
    fn check(&self, cx: &Context) -> Result<(), BoxError> {
        let _ = cx;
        Ok(())
    }

    /// Connects and discovers dependencies (kaiju's `init`). Runs in config order.
    fn init(&self, cx: &Context) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = cx;
        async { Ok(()) }
    }

    /// Runs after every `init` (kaiju's `post_init`); the RPC server collects the routes of
    /// all services here.
    fn post_init(&self, cx: &Context) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = cx;
        async { Ok(()) }
    }

    /// Starts background work (listeners start reading), after every `post_init`, so no
    /// message is read before every route is registered.
    fn start(&self, cx: &Context) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = cx;
        async { Ok(()) }
    }

    /// Stops: finish in-flight work within `deadline`, then release connections. Called in
    /// reverse order, for the services whose `init` succeeded.
    fn close(&self, deadline: Duration) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = deadline;
        async { Ok(()) }
    }

    /// The RPC methods this service offers (kaiju's `PublicInterface`), with the service
    /// itself as their context: the app's `JSONRPCServer` collects them in its `post_init`,
    /// after every `init`. A route registered twice is an error that stops the start. The
    /// default offers none.
    #[cfg(feature = "rpc")]
    fn rpc_module(self: Arc<Self>) -> Result<kaiju_rpc::RpcModule<Self>, kaiju_rpc::RegisterError> {
        Ok(kaiju_rpc::RpcModule::with_context("", self))
    }
}

/// The future an erased hook returns.
pub(crate) type Hook<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// The object-safe face of a [`Service`], so that the runtime can hold services of many types.
pub(crate) trait Erased: Send + Sync {
    fn check(&self, cx: &Context) -> Result<(), BoxError>;
    fn init<'a>(&'a self, cx: &'a Context) -> Hook<'a>;
    fn post_init<'a>(&'a self, cx: &'a Context) -> Hook<'a>;
    fn start<'a>(&'a self, cx: &'a Context) -> Hook<'a>;
    fn close(&self, deadline: Duration) -> Hook<'_>;
    /// Adds the service's RPC methods to `all`.
    #[cfg(feature = "rpc")]
    fn rpc_into(
        self: Arc<Self>,
        all: &mut kaiju_rpc::RpcModule,
    ) -> Result<(), kaiju_rpc::RegisterError>;
}

impl<T: Service> Erased for T {
    fn check(&self, cx: &Context) -> Result<(), BoxError> {
        Service::check(self, cx)
    }
    fn init<'a>(&'a self, cx: &'a Context) -> Hook<'a> {
        Box::pin(Service::init(self, cx))
    }
    fn post_init<'a>(&'a self, cx: &'a Context) -> Hook<'a> {
        Box::pin(Service::post_init(self, cx))
    }
    fn start<'a>(&'a self, cx: &'a Context) -> Hook<'a> {
        Box::pin(Service::start(self, cx))
    }
    fn close(&self, deadline: Duration) -> Hook<'_> {
        Box::pin(Service::close(self, deadline))
    }
    #[cfg(feature = "rpc")]
    fn rpc_into(
        self: Arc<Self>,
        all: &mut kaiju_rpc::RpcModule,
    ) -> Result<(), kaiju_rpc::RegisterError> {
        all.merge(Service::rpc_module(self)?)
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
            let mut path = e.path().to_string();
            let message = e.into_inner().to_string();
            // An unknown setting: point at it, not at the mapping it is in.
            if let Some(name) = crate::hints::unknown_field(&message)
                && path.rsplit('.').next() != Some(name)
            {
                path = match path.trim_start_matches(['.', '?']) {
                    "" => name.to_owned(),
                    parent => format!("{parent}.{name}"),
                };
            }
            self.invalid(&path, crate::hints::settings_message(&path, &message))
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
        AppError::Settings(Box::new(self.setting_error(field, message)))
    }

    /// Where `field` is written (the entry's place when it is not), for an error found
    /// later, in [`Service::check`].
    pub fn place_of(&self, field: &str) -> Place {
        self.settings.locate(field).key_place()
    }

    /// A [`SettingsError`] at `field`, to keep for [`Service::check`] or return from it.
    ///
    /// The message never quotes a value taken from the OS environment or an env file, nor the
    /// value of a setting whose name says it is a secret: it names where the value came from
    /// (`<the value of the environment variable DB_PASSWORD>`) or says `<hidden>` instead.
    pub fn setting_error(&self, field: &str, message: impl Into<String>) -> SettingsError {
        let node = self.settings.locate(field);
        let secret = field.split(['.', '[']).any(crate::config::is_secret_name);
        SettingsError {
            service: self.name.to_owned(),
            cls: self.cls.to_owned(),
            place: node.key_place(),
            field: field.to_owned(),
            message: node.scrub(message.into(), secret),
        }
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
    /// The index of its entry in the config's `services`.
    pub(crate) entry: usize,
    pub(crate) required: bool,
    pub(crate) hooks: Arc<dyn Erased>,
    pub(crate) any: Arc<dyn Any + Send + Sync>,
    /// Its start failed (a service with `required: false`): not discoverable, not started.
    pub(crate) failed: AtomicBool,
}

impl Slot {
    fn live(&self) -> bool {
        !self.failed.load(Ordering::Relaxed)
    }

    fn downcast<T: Service>(&self) -> Option<Arc<T>> {
        self.any.clone().downcast::<T>().ok()
    }
}

/// The app's services as hooks see them: the app's identity, `etc`, and discovery by type.
pub struct Context {
    pub(crate) app: AppSettings,
    pub(crate) etc: Node,
    pub(crate) slots: Vec<Slot>,
    /// The class names each service type is registered under, for error messages.
    pub(crate) kinds: BTreeMap<TypeId, Vec<String>>,
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
        /// The class (or classes) wanted.
        wanted: String,
    },
    /// The named service failed to start (`required: false`).
    #[error("service `{0}` failed to start")]
    Failed(String),
    /// No service of the class exists (or every one failed).
    #[error("no {0} service is configured")]
    NoneOfClass(String),
    /// The dependency is `false` but is required.
    #[error("a {0} is required here; `false` is not allowed")]
    Disabled(String),
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

    /// The names of the services that have not failed, in config order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots
            .iter()
            .filter(|s| s.live())
            .map(|s| s.name.as_str())
    }

    /// The service `dep` names, which must be a `T` (kaiju's `discover_service`): by name, or
    /// the first `T` in config order for `null`. `false` is an error here; use
    /// [`optional`](Self::optional) where a dependency may be switched off.
    pub fn require<T: Service>(&self, dep: &Dependency) -> Result<Arc<T>, DiscoveryError> {
        self.optional::<T>(dep)?
            .ok_or_else(|| DiscoveryError::Disabled(self.kind::<T>()))
    }

    /// Like [`require`](Self::require), but `false` gives `None`.
    pub fn optional<T: Service>(&self, dep: &Dependency) -> Result<Option<Arc<T>>, DiscoveryError> {
        match dep {
            Dependency::Disabled => Ok(None),
            Dependency::Named(name) => {
                let slot = self
                    .slots
                    .iter()
                    .find(|s| s.name == *name)
                    .ok_or_else(|| DiscoveryError::NotFound(name.clone()))?;
                if !slot.live() {
                    return Err(DiscoveryError::Failed(name.clone()));
                }
                slot.downcast::<T>()
                    .map(Some)
                    .ok_or_else(|| DiscoveryError::WrongClass {
                        name: name.clone(),
                        cls: slot.cls.clone(),
                        wanted: self.kind::<T>(),
                    })
            }
            Dependency::Any => self
                .first::<T>()
                .map(Some)
                .ok_or_else(|| DiscoveryError::NoneOfClass(self.kind::<T>())),
        }
    }

    /// The first service of type `T` that has not failed, in config order.
    pub fn first<T: Service>(&self) -> Option<Arc<T>> {
        self.slots
            .iter()
            .filter(|s| s.live())
            .find_map(Slot::downcast::<T>)
    }

    /// Every service of type `T` that has not failed, with its name, in config order.
    pub fn all<T: Service>(&self) -> Vec<(&str, Arc<T>)> {
        self.slots
            .iter()
            .filter(|s| s.live())
            .filter_map(|s| Some((s.name.as_str(), s.downcast::<T>()?)))
            .collect()
    }

    /// The service named `name` if it is a `T` and has not failed.
    pub fn get<T: Service>(&self, name: &str) -> Option<Arc<T>> {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .filter(|s| s.live())
            .and_then(Slot::downcast::<T>)
    }

    /// The RPC methods of every service that has not failed, in one module.
    #[cfg(feature = "rpc")]
    pub(crate) fn rpc_methods(&self) -> Result<kaiju_rpc::RpcModule, BoxError> {
        let mut all = kaiju_rpc::RpcModule::new("");
        for slot in self.slots.iter().filter(|s| s.live()) {
            slot.hooks
                .clone()
                .rpc_into(&mut all)
                .map_err(|e| format!("the methods of service `{}`: {e}", slot.name))?;
        }
        Ok(all)
    }

    /// How error messages name the kind of `T`: its registered class names.
    fn kind<T: Service>(&self) -> String {
        match self.kinds.get(&TypeId::of::<T>()) {
            Some(names) if !names.is_empty() => names.join(" or "),
            _ => {
                let full = std::any::type_name::<T>();
                let short = full.split('<').next().unwrap_or(full);
                short.rsplit("::").next().unwrap_or(short).to_owned()
            }
        }
    }
}
