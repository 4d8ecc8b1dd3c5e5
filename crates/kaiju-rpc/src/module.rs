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
        let path = e.path().to_string();
        let reason = e.inner().to_string();
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

/// The methods of one service, named `service.method`, as jsonrpsee's `RpcModule`.
///
/// Permissions follow kaiju: `(pattern, scope)` pairs on the short method name, the last match
/// wins, and a method nothing matches is `SYSTEM` (reachable only by internal callers).
///
/// ```
/// use kaiju_rpc::{NoParams, RequestContext, RpcError, RpcModule, Scope};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Add { a: i64, b: i64 }
///
/// let mut math = RpcModule::new("math").permissions([("*", Scope::Guest)]);
/// math.method("add", |p: Add, _ctx: RequestContext| async move { Ok::<_, RpcError>(p.a + p.b) })?;
/// math.method("zero", |_: NoParams, _ctx| async { Ok::<_, RpcError>(0) })?;
/// assert!(math.method("add", |_: NoParams, _ctx| async { Ok::<_, RpcError>(1) }).is_err());
/// assert_eq!(math.names().collect::<Vec<_>>(), ["math.add", "math.zero"]);
/// # Ok::<(), kaiju_rpc::RegisterError>(())
/// ```
#[derive(Clone, Default)]
pub struct RpcModule {
    service: String,
    permissions: Permissions,
    methods: BTreeMap<String, Method>,
}

impl fmt::Debug for RpcModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcModule")
            .field("service", &self.service)
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RpcModule {
    /// An empty module for `service` (the prefix of its method names).
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            ..Self::default()
        }
    }

    /// kaiju's `permissions` of the service, for the methods registered after this call.
    #[must_use]
    pub fn permissions<P: Into<String>>(
        mut self,
        patterns: impl IntoIterator<Item = (P, Scope)>,
    ) -> Self {
        self.permissions = Permissions::new(patterns);
        self
    }

    /// Registers `service.route`. `P` is read from the request's params (a map); the result
    /// `R` is serialized back. Errors convert into [`RpcError`] (return the kaiju classes,
    /// [`RpcError::custom`], or [`RpcError::internal`] for a failure the caller should not
    /// see).
    pub fn method<P, R, E, F, Fut>(&mut self, route: &str, f: F) -> Result<&mut Self, RegisterError>
    where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        E: Into<RpcError> + 'static,
        F: Fn(P, RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let f = Arc::new(f);
        let call: Erased = Arc::new(move |params: Value, ctx: RequestContext| {
            let parsed = parse_params::<P>(&params);
            let f = f.clone();
            Box::pin(async move {
                let params = parsed.map_err(Failure::Params)?;
                match f(params, ctx).await {
                    Ok(result) => to_value(&result).map_err(|e| {
                        Failure::Unencodable(RpcError::internal(format_args!(
                            "the result cannot be encoded: {e}"
                        )))
                    }),
                    Err(e) => Err(Failure::Method(e.into())),
                }
            })
        });
        let permission = self.permissions.of(route);
        self.insert(route, Method { call, permission })?;
        Ok(self)
    }

    pub(crate) fn insert(&mut self, route: &str, method: Method) -> Result<(), RegisterError> {
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
        self.methods.insert(name, method);
        Ok(())
    }

    /// Adds every method of `other`; fails, changing nothing, if a name is in both.
    pub fn merge(&mut self, other: RpcModule) -> Result<(), RegisterError> {
        if let Some(name) = other
            .methods
            .keys()
            .find(|name| self.methods.contains_key(*name))
        {
            return Err(RegisterError::AlreadyRegistered(name.clone()));
        }
        self.methods.extend(other.methods);
        Ok(())
    }

    /// The full names of the methods, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.methods.keys().map(String::as_str)
    }

    /// The permission of a method, if it is registered.
    pub fn permission(&self, name: &str) -> Option<Scope> {
        self.methods.get(name).map(|m| m.permission)
    }

    pub(crate) fn into_methods(self) -> BTreeMap<String, Method> {
        self.methods
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        a.method("x", |_: NoParams, _| async { Ok::<_, RpcError>(1) })
            .unwrap();
        let mut b = RpcModule::new("svc");
        b.method("x", |_: NoParams, _| async { Ok::<_, RpcError>(2) })
            .unwrap();
        b.method("y", |_: NoParams, _| async { Ok::<_, RpcError>(2) })
            .unwrap();
        assert_eq!(
            a.clone().merge(b),
            Err(RegisterError::AlreadyRegistered("svc.x".into()))
        );
        let mut c = RpcModule::new("other");
        c.method("y", |_: NoParams, _| async { Ok::<_, RpcError>(2) })
            .unwrap();
        a.merge(c).unwrap();
        assert_eq!(a.names().collect::<Vec<_>>(), ["other.y", "svc.x"]);
        assert!(
            a.method("", |_: NoParams, _| async { Ok::<_, RpcError>(1) })
                .is_err()
        );
        assert!(
            a.method("a b", |_: NoParams, _| async { Ok::<_, RpcError>(1) })
                .is_err()
        );
    }

    #[test]
    fn permissions_apply_to_short_names() {
        let mut m =
            RpcModule::new("svc").permissions([("*", Scope::Guest), ("admin.*", Scope::Admin)]);
        m.method("list", |_: NoParams, _| async { Ok::<_, RpcError>(1) })
            .unwrap();
        m.method("admin.drop", |_: NoParams, _| async {
            Ok::<_, RpcError>(1)
        })
        .unwrap();
        assert_eq!(m.permission("svc.list"), Some(Scope::Guest));
        assert_eq!(m.permission("svc.admin.drop"), Some(Scope::Admin));
    }
}
