//! `RpcModule`: methods registered under `service.method`, with typed params and results.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kaiju_core::Value;
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::context::RequestContext;
use crate::error::{RpcError, to_value};
use crate::scope::{Permissions, Scope};

/// A boxed method future.
pub(crate) type MethodFuture = Pin<Box<dyn Future<Output = Result<Value, Failure>> + Send>>;

/// How a method call failed: before the method ran (its params do not fit), or in it.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The params do not fit: the request is wrong, the method never ran.
    Params(RpcError),
    /// The method returned an error.
    Method(RpcError),
    /// The method finished, but its result cannot be encoded: running it again would redo its
    /// work and fail the same way.
    Unencodable(RpcError),
}

pub(crate) type Erased = Arc<dyn Fn(Value, RequestContext) -> MethodFuture + Send + Sync>;

/// One registered method.
#[derive(Clone)]
pub(crate) struct Method {
    pub(crate) call: Erased,
    pub(crate) permission: Scope,
}

/// The params of a method that takes none. Accepts `nil` or an empty map; any param is
/// "invalid params" (as kaiju rejects keys a method does not take).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NoParams;

impl<'de> Deserialize<'de> for NoParams {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NoParams;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("no params")
            }
            fn visit_unit<E>(self) -> Result<NoParams, E> {
                Ok(NoParams)
            }
            fn visit_none<E>(self) -> Result<NoParams, E> {
                Ok(NoParams)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoParams, A::Error> {
                match map.next_entry::<String, IgnoredAny>()? {
                    None => Ok(NoParams),
                    Some((key, _)) => Err(serde::de::Error::custom(format_args!(
                        "unknown field `{key}`: the method takes no params"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Reads a method's params: a map (or `nil`, read as an empty map). Positional (array) params
/// are rejected, not silently dropped as kaiju does; an error names the field.
pub(crate) fn parse_params<P: DeserializeOwned>(params: &Value) -> Result<P, RpcError> {
    let empty = Value::Map(Vec::new());
    let params = match params {
        Value::Map(_) => params,
        Value::Nil => &empty,
        Value::Array(_) => {
            return Err(RpcError::invalid_params(
                "Invalid params: positional (array) params are not supported, pass a map of named params",
            ));
        }
        _ => {
            return Err(RpcError::invalid_params(
                "Invalid params: params must be a map",
            ));
        }
    };
    serde_path_to_error::deserialize(params).map_err(|e| {
        // Both may quote the caller's text (a key, a value: serde escapes it, up to 5 bytes a
        // character): shown shortened, as every name a caller chose.
        let path = kaiju_core::shortened(&e.path().to_string()).to_string();
        // Rust's number types in words: `expected an integer from 0 to 255`, not `expected u8`.
        let reason = kaiju_core::codec::in_words(&e.inner().to_string());
        let reason = kaiju_core::shortened(&reason).to_string();
        let name = if path == "." {
            "params".to_owned()
        } else {
            format!("params.{path}")
        };
        RpcError::invalid_params(format!("Invalid params: {name}: {reason}"))
            .with_data("name", name)
            .with_data("reason", reason)
    })
}

/// A failure while registering methods.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Two methods with the same full name.
    #[error("method `{0}` is already registered")]
    AlreadyRegistered(String),
    /// A name kaiju could not call: empty, or with whitespace.
    #[error("`{0}` is not a valid method name")]
    InvalidName(String),
}

fn check_name(name: &str) -> Result<(), RegisterError> {
    if name.is_empty()
        || name.chars().any(char::is_whitespace)
        || name.starts_with('.')
        || name.ends_with('.')
    {
        return Err(RegisterError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// A method as the module holds it: its permission is fixed when it was registered with one
/// of its own, or comes from the module's patterns when the module is read.
struct Registered {
    call: Erased,
    /// The name within its service (what permission patterns match).
    route: String,
    /// Fixed: a method merged in from another module keeps that module's permission.
    permission: Option<Scope>,
}

impl Clone for Registered {
    fn clone(&self) -> Self {
        Self {
            call: self.call.clone(),
            route: self.route.clone(),
            permission: self.permission,
        }
    }
}

/// The methods of one service, named `service.method`, sharing a context `C`, as jsonrpsee's
/// `RpcModule`.
///
/// Every method receives the module's context (an `Arc<C>`; `()` for [`RpcModule::new`]), its
/// typed params and the [`RequestContext`]. A kaiju-app service registers its methods with
/// itself as the context, as a Python service's methods take `self`.
///
/// Permissions follow kaiju: `(pattern, scope)` pairs on the short method name, the last match
/// wins, and a method nothing matches is `SYSTEM` (reachable only by internal callers). They
/// apply to every method of the module, registered before or after
/// [`permissions`](Self::permissions) is called.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicI64, Ordering};
/// use kaiju_rpc::{NoParams, RpcError, RpcModule, Scope};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Add { a: i64, b: i64 }
///
/// // Methods that need nothing shared.
/// let mut math = RpcModule::new("math").permissions([("*", Scope::Guest)]);
/// math.method("add", |_, p: Add, _ctx| async move { Ok::<_, RpcError>(p.a + p.b) })?;
/// assert!(math.method("add", |_, _: NoParams, _| async { Ok::<_, RpcError>(1) }).is_err());
///
/// // Methods sharing state: each gets an `Arc` of the context.
/// let mut counter = RpcModule::with_context("counter", Arc::new(AtomicI64::new(0)))
///     .permissions([("*", Scope::User)]);
/// counter.method("incr", |n, _: NoParams, _| async move {
///     Ok::<_, RpcError>(n.fetch_add(1, Ordering::Relaxed) + 1)
/// })?;
/// math.merge(counter)?;
/// assert_eq!(math.names().collect::<Vec<_>>(), ["counter.incr", "math.add"]);
/// assert_eq!(math.permission("counter.incr"), Some(Scope::User));
/// # Ok::<(), kaiju_rpc::RegisterError>(())
/// ```
pub struct RpcModule<C: ?Sized = ()> {
    service: String,
    context: Arc<C>,
    permissions: Permissions,
    methods: BTreeMap<String, Registered>,
}

impl<C: ?Sized> Clone for RpcModule<C> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            context: self.context.clone(),
            permissions: self.permissions.clone(),
            methods: self.methods.clone(),
        }
    }
}

impl Default for RpcModule {
    fn default() -> Self {
        Self::new("")
    }
}

impl<C: ?Sized> fmt::Debug for RpcModule<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcModule")
            .field("service", &self.service)
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RpcModule {
    /// An empty module for `service` (the prefix of its method names), whose methods share
    /// nothing (their context is `()`).
    pub fn new(service: impl Into<String>) -> Self {
        Self::with_context(service, Arc::new(()))
    }
}

impl<C: ?Sized + Send + Sync + 'static> RpcModule<C> {
    /// An empty module for `service` whose methods share `context`.
    pub fn with_context(service: impl Into<String>, context: Arc<C>) -> Self {
        Self {
            service: service.into(),
            context,
            permissions: Permissions::default(),
            methods: BTreeMap::new(),
        }
    }

    /// The context the methods share.
    pub fn context(&self) -> &Arc<C> {
        &self.context
    }

    /// kaiju's `permissions` of the service: they apply to every method of this module,
    /// registered before or after this call (a later call replaces the patterns).
    #[must_use]
    pub fn permissions<P: Into<String>>(
        mut self,
        patterns: impl IntoIterator<Item = (P, Scope)>,
    ) -> Self {
        self.permissions = Permissions::new(patterns);
        self
    }

    /// Registers `service.route`. The method gets the module's context, `P` read from the
    /// request's params (a map) and the request's context; its result `R` is serialized back.
    /// Errors convert into [`RpcError`] (return the kaiju classes, [`RpcError::custom`], or
    /// [`RpcError::internal`] for a failure the caller should not see).
    ///
    /// A name already registered, or one kaiju could not call, is an error.
    pub fn method<P, R, E, F, Fut>(&mut self, route: &str, f: F) -> Result<&mut Self, RegisterError>
    where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        E: Into<RpcError> + 'static,
        F: Fn(Arc<C>, P, RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let f = Arc::new(f);
        let context = self.context.clone();
        let call: Erased = Arc::new(move |params: Value, ctx: RequestContext| {
            let parsed = parse_params::<P>(&params);
            let f = f.clone();
            let context = context.clone();
            Box::pin(async move {
                let params = parsed.map_err(Failure::Params)?;
                match f(context, params, ctx).await {
                    Ok(result) => to_value(&result).map_err(|e| {
                        Failure::Unencodable(RpcError::internal(format_args!(
                            "the result cannot be encoded: {e}"
                        )))
                    }),
                    Err(e) => Err(Failure::Method(e.into())),
                }
            })
        });
        self.insert(route, call, None)?;
        Ok(self)
    }

    /// Registers a method under `route` with a fixed permission (the server's built-ins).
    pub(crate) fn insert(
        &mut self,
        route: &str,
        call: Erased,
        permission: Option<Scope>,
    ) -> Result<(), RegisterError> {
        check_name(route)?;
        let name = if self.service.is_empty() {
            route.to_owned()
        } else {
            format!("{}.{route}", self.service)
        };
        check_name(&name)?;
        if self.methods.contains_key(&name) {
            return Err(RegisterError::AlreadyRegistered(name));
        }
        let method = Registered {
            call,
            route: route.to_owned(),
            permission,
        };
        self.methods.insert(name, method);
        Ok(())
    }

    /// Adds every method of `other` (whatever its context), each keeping the permission
    /// `other`'s patterns give it; fails, changing nothing, if a name is in both.
    pub fn merge<D: ?Sized>(&mut self, other: RpcModule<D>) -> Result<(), RegisterError> {
        if let Some(name) = other
            .methods
            .keys()
            .find(|name| self.methods.contains_key(*name))
        {
            return Err(RegisterError::AlreadyRegistered(name.clone()));
        }
        let permissions = other.permissions;
        self.methods
            .extend(other.methods.into_iter().map(|(name, mut method)| {
                method.permission = Some(resolve(&permissions, &method));
                (name, method)
            }));
        Ok(())
    }

    /// The full names of the methods, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.methods.keys().map(String::as_str)
    }

    /// The permission of a method, if it is registered.
    pub fn permission(&self, name: &str) -> Option<Scope> {
        self.methods
            .get(name)
            .map(|m| resolve(&self.permissions, m))
    }

    /// The methods with their permissions, as a server keeps them.
    pub(crate) fn into_methods(self) -> BTreeMap<String, Method> {
        let permissions = self.permissions;
        self.methods
            .into_iter()
            .map(|(name, m)| {
                let permission = resolve(&permissions, &m);
                (
                    name,
                    Method {
                        call: m.call,
                        permission,
                    },
                )
            })
            .collect()
    }
}

fn resolve(permissions: &Permissions, method: &Registered) -> Scope {
    method
        .permission
        .unwrap_or_else(|| permissions.of(&method.route))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaiju_streams::Headers;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct User {
        name: String,
        age: u8,
        address: Address,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Address {
        zip: u32,
    }

    fn map(pairs: Vec<(&str, Value)>) -> Value {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::Str(k.into()), v))
                .collect(),
        )
    }

    /// An invalid param's error quoted the caller's value whole, serde-escaped, twice (found
    /// by an adversarial review): 1 MiB of control characters made 10 MiB of error, logged
    /// and answered.
    #[test]
    fn invalid_params_errors_quote_the_callers_text_shortened() {
        let value = "\u{1}".repeat(1 << 20);
        let params = map(vec![
            ("name", Value::Str("a".into())),
            ("age", Value::Str(value)),
        ]);
        let e = parse_params::<User>(&params).unwrap_err();
        let Some(Value::Str(reason)) = e.data("reason") else {
            panic!("{e:?}");
        };
        assert!(reason.len() < 1024, "{} bytes", reason.len());
        assert!(e.message().len() < 2048, "{} bytes", e.message().len());
        let key = "\u{1}".repeat(1 << 20);
        let params = map(vec![(key.as_str(), Value::Int(1))]);
        let e = parse_params::<User>(&params).unwrap_err();
        assert!(e.message().len() < 2048, "{} bytes", e.message().len());
    }

    #[test]
    fn invalid_params_name_the_field() {
        let bad_type = map(vec![
            ("name", Value::Str("a".into())),
            ("age", Value::Int(3)),
            ("address", map(vec![("zip", Value::Str("x".into()))])),
        ]);
        let e = parse_params::<User>(&bad_type).unwrap_err();
        assert_eq!(e.code(), crate::codes::INVALID_PARAMS);
        assert_eq!(
            e.data("name"),
            Some(&Value::Str("params.address.zip".into())),
            "{e}"
        );
        assert!(
            e.message()
                .ends_with("expected an integer from 0 to 4294967295"),
            "a Rust type name is said in words: {e}"
        );
        let missing = map(vec![("name", Value::Str("a".into()))]);
        let e = parse_params::<User>(&missing).unwrap_err();
        assert!(e.message().contains("missing field `age`"), "{e}");
        let extra = map(vec![("nme", Value::Str("a".into()))]);
        let e = parse_params::<User>(&extra).unwrap_err();
        assert!(e.message().contains("unknown field `nme`"), "{e}");
    }

    #[test]
    fn positional_params_are_rejected_not_dropped() {
        let e = parse_params::<NoParams>(&Value::Array(vec![Value::Int(1)])).unwrap_err();
        assert_eq!(e.code(), crate::codes::INVALID_PARAMS);
        assert!(e.message().contains("positional"), "{e}");
        assert!(parse_params::<NoParams>(&Value::Nil).is_ok());
        assert!(parse_params::<NoParams>(&Value::Map(vec![])).is_ok());
        assert!(parse_params::<NoParams>(&map(vec![("x", Value::Int(1))])).is_err());
        assert!(parse_params::<NoParams>(&Value::Int(1)).is_err());
    }

    #[test]
    fn modules_reject_duplicates_and_merge() {
        let mut a = RpcModule::new("svc");
        a.method("x", |_, _: NoParams, _| async { Ok::<_, RpcError>(1) })
            .unwrap();
        let mut b = RpcModule::new("svc");
        b.method("x", |_, _: NoParams, _| async { Ok::<_, RpcError>(2) })
            .unwrap();
        b.method("y", |_, _: NoParams, _| async { Ok::<_, RpcError>(2) })
            .unwrap();
        assert_eq!(
            a.clone().merge(b),
            Err(RegisterError::AlreadyRegistered("svc.x".into()))
        );
        let mut c = RpcModule::new("other");
        c.method("y", |_, _: NoParams, _| async { Ok::<_, RpcError>(2) })
            .unwrap();
        a.merge(c).unwrap();
        assert_eq!(a.names().collect::<Vec<_>>(), ["other.y", "svc.x"]);
        assert!(
            a.method("", |_, _: NoParams, _| async { Ok::<_, RpcError>(1) })
                .is_err()
        );
        assert!(
            a.method("a b", |_, _: NoParams, _| async { Ok::<_, RpcError>(1) })
                .is_err()
        );
    }

    #[test]
    fn permissions_apply_to_short_names() {
        let mut m =
            RpcModule::new("svc").permissions([("*", Scope::Guest), ("admin.*", Scope::Admin)]);
        m.method("list", |_, _: NoParams, _| async { Ok::<_, RpcError>(1) })
            .unwrap();
        m.method("admin.drop", |_, _: NoParams, _| async {
            Ok::<_, RpcError>(1)
        })
        .unwrap();
        assert_eq!(m.permission("svc.list"), Some(Scope::Guest));
        assert_eq!(m.permission("svc.admin.drop"), Some(Scope::Admin));
    }

    #[test]
    fn permissions_apply_to_methods_registered_before_and_after() {
        let mut m = RpcModule::new("svc");
        m.method("early", |_, _: NoParams, _| async { Ok::<_, RpcError>(1) })
            .unwrap();
        let mut m = m.permissions([("*", Scope::User)]);
        m.method("late", |_, _: NoParams, _| async { Ok::<_, RpcError>(1) })
            .unwrap();
        assert_eq!(m.permission("svc.early"), Some(Scope::User));
        assert_eq!(m.permission("svc.late"), Some(Scope::User));
        // Merged into a module with other patterns, each method keeps its own module's.
        let mut all = RpcModule::new("").permissions([("*", Scope::Guest)]);
        all.merge(m).unwrap();
        assert_eq!(all.permission("svc.early"), Some(Scope::User));
        let methods = all.into_methods();
        assert_eq!(methods["svc.late"].permission, Scope::User);
    }

    #[tokio::test]
    async fn methods_share_the_module_context() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let mut m = RpcModule::with_context("counter", Arc::new(AtomicU32::new(0)));
        m.method("incr", |n, _: NoParams, _| async move {
            Ok::<_, RpcError>(n.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .unwrap();
        let shared = m.context().clone();
        let methods = m.into_methods();
        let ctx = || RequestContext::for_test("counter.incr", Headers::new(), Scope::Guest);
        for _ in 0..3 {
            (methods["counter.incr"].call)(Value::Nil, ctx())
                .await
                .unwrap();
        }
        assert_eq!(shared.load(Ordering::SeqCst), 3);
    }
}
