//! Service classes by name: the built-in ones (behind cargo features), kaiju classes that
//! kaiju-rs does not implement, and the app's own.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::AppError;
use crate::service::{Build, Erased, ServiceClass};

/// A built service, as its two faces: the hooks the runtime calls, and `Any` for discovery.
pub(crate) type Built = (Arc<dyn Erased>, Arc<dyn Any + Send + Sync>);

type Factory = Arc<dyn Fn(&Build<'_>) -> Result<Built, AppError> + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Class {
    pub(crate) default_name: String,
    pub(crate) factory: Factory,
    pub(crate) type_id: TypeId,
}

/// kaiju-tools / kaiju-redis classes that kaiju-rs does not implement, and why.
const NOT_AVAILABLE: [(&str, &str); 9] = [
    (
        "HealthService",
        "health checks belong to the deployment (the `kaiju streams` command and `rpc.status` report the state)",
    ),
    (
        "SessionService",
        "sessions are not part of kaiju-rs yet; RPC calls run at the listener's `scope`",
    ),
    (
        "AuthenticationService",
        "authentication is not part of kaiju-rs yet; RPC calls run at the listener's `scope`",
    ),
    ("LoginService", "login is not part of kaiju-rs yet"),
    (
        "HTTPService",
        "kaiju-rs has no HTTP client service; use an HTTP crate such as reqwest in your own service",
    ),
    (
        "RPCClientService",
        "kaiju-rs has no HTTP RPC client; use RedisStreamRPCClient",
    ),
    (
        "TokenClientService",
        "token authentication is not part of kaiju-rs yet",
    ),
    (
        "JSONRPCHTTPService",
        "kaiju-rs has no HTTP server; RPC runs over Redis streams (RedisListener)",
    ),
    (
        "PermissionService",
        "permissions are set per route in code (RpcModule::permissions)",
    ),
];

/// Service classes by the name a config's `cls` gives.
///
/// [`Registry::builtin`] has every class kaiju-rs implements (as enabled by cargo features);
/// an app adds its own with [`register`](Self::register).
#[derive(Clone, Default)]
pub struct Registry {
    classes: BTreeMap<String, Class>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.classes.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `T` as `cls`, named `default_name` when its entry gives no `name`. One type
    /// may be registered under several class names (kaiju's `RedisCache` and
    /// `RedisCacheService`); a class name that is registered already is an error, as a
    /// duplicate RPC method is.
    ///
    /// ```
    /// use kaiju_app::{Registry, Service, ServiceClass};
    /// # struct Mine;
    /// # impl Service for Mine {}
    /// # impl ServiceClass for Mine {
    /// #     fn build(_: &kaiju_app::Build<'_>) -> Result<Self, kaiju_app::AppError> { Ok(Mine) }
    /// # }
    /// let mut registry = Registry::builtin();
    /// registry.register::<Mine>("Mine", "mine")?;
    /// assert!(registry.register::<Mine>("RedisCache", "cache").is_err());
    /// # Ok::<(), kaiju_app::AppError>(())
    /// ```
    pub fn register<T: ServiceClass>(
        &mut self,
        cls: &str,
        default_name: &str,
    ) -> Result<&mut Self, AppError> {
        if self.classes.contains_key(cls) {
            return Err(AppError::DuplicateClass {
                cls: cls.to_owned(),
            });
        }
        self.insert::<T>(cls, default_name);
        Ok(self)
    }

    /// Registers a class whose name is known to be new (the built-in ones).
    pub(crate) fn insert<T: ServiceClass>(&mut self, cls: &str, default_name: &str) {
        let factory: Factory = Arc::new(|b: &Build<'_>| {
            let service = Arc::new(T::build(b)?);
            Ok((
                service.clone() as Arc<dyn Erased>,
                service as Arc<dyn Any + Send + Sync>,
            ))
        });
        self.classes.insert(
            cls.to_owned(),
            Class {
                default_name: default_name.to_owned(),
                factory,
                type_id: TypeId::of::<T>(),
            },
        );
    }

    /// The class names each registered type is registered under, for error messages.
    pub(crate) fn kinds(&self) -> BTreeMap<TypeId, Vec<String>> {
        let mut kinds: BTreeMap<TypeId, Vec<String>> = BTreeMap::new();
        for (name, class) in &self.classes {
            kinds.entry(class.type_id).or_default().push(name.clone());
        }
        kinds
    }

    /// The registered class names.
    pub fn classes(&self) -> impl Iterator<Item = &str> {
        self.classes.keys().map(String::as_str)
    }

    pub(crate) fn get(&self, cls: &str) -> Option<&Class> {
        self.classes.get(cls)
    }

    /// Why `cls` is not available, for a known kaiju class kaiju-rs does not implement.
    pub(crate) fn not_available(cls: &str) -> Option<&'static str> {
        NOT_AVAILABLE
            .iter()
            .find(|(c, _)| *c == cls)
            .map(|(_, why)| *why)
    }

    /// A registered class whose name is a near miss of `cls` (case, `-`/`_`, a typo or two).
    pub(crate) fn suggest(&self, cls: &str) -> Option<&str> {
        crate::hints::did_you_mean(cls, self.classes())
    }
}
