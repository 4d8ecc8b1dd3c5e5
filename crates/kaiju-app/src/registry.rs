//! Service classes by name: the built-in ones (behind cargo features), kaiju classes that
//! kaiju-rs does not implement, and the app's own.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::AppError;
use crate::service::{Build, Service, ServiceClass};

type Factory = Arc<dyn Fn(&Build<'_>) -> Result<Arc<dyn Service>, AppError> + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Class {
    pub(crate) default_name: String,
    pub(crate) factory: Factory,
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

    /// Registers `T` as `cls`, named `default_name` when its entry gives no `name`. A class
    /// registered again replaces the earlier one.
    pub fn register<T: ServiceClass>(&mut self, cls: &str, default_name: &str) -> &mut Self {
        let factory: Factory =
            Arc::new(|b: &Build<'_>| Ok(Arc::new(T::build(b)?) as Arc<dyn Service>));
        self.classes.insert(
            cls.to_owned(),
            Class {
                default_name: default_name.to_owned(),
                factory,
            },
        );
        self
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

    /// A registered class whose name differs from `cls` only in case, or by one character.
    pub(crate) fn suggest(&self, cls: &str) -> Option<&str> {
        self.classes()
            .find(|c| c.eq_ignore_ascii_case(cls) || close(c, cls))
    }
}

fn close(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    prefix + suffix + 1 >= a.len().max(b.len())
}
