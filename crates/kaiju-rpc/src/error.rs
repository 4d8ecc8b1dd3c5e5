//! kaiju's error objects: codes, class names, and which side is at fault.

use std::borrow::Cow;
use std::fmt;

use kaiju_core::Value;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// kaiju's error codes, as the Python server sends them (JSON-RPC's own and kaiju's additions).
///
/// kaiju gives `-32000`, `-32001` and `-32002` other meanings than jsonrpsee does; these are
/// kaiju's, and they are what Python peers expect.
pub mod codes {
    /// The body is not valid JSON/msgpack (`JSONParseError`).
    pub const PARSE_ERROR: i64 = -32700;
    /// The request is not a request object (`InvalidRequest`).
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method, or not visible at the caller's scope (`MethodNotFound`).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params do not fit the method (`InvalidParams`).
    pub const INVALID_PARAMS: i64 = -32602;
    /// The method failed (`InternalError`); details stay in the server's log.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// A data model rejected the params (`ModelValidationError`).
    pub const MODEL_VALIDATION: i64 = -32702;
    /// Authentication failed (`NotAuthorized`).
    pub const NOT_AUTHORIZED: i64 = -32000;
    /// Not run because an earlier request of the batch failed (`Aborted`).
    pub const ABORTED: i64 = -32001;
    /// The request's deadline passed (`RequestTimeout`).
    pub const REQUEST_TIMEOUT: i64 = -32002;
    /// A generic client fault (`ClientError`).
    pub const CLIENT_ERROR: i64 = 400;
    /// Something the request names does not exist (`NotFound`).
    pub const NOT_FOUND: i64 = 404;
    /// The request conflicts with the current state (`Conflict`).
    pub const CONFLICT: i64 = 409;
    /// A service this one depends on failed (`FailedDependency`).
    pub const FAILED_DEPENDENCY: i64 = 424;
    /// Not allowed by the license (`InvalidLicense`).
    pub const INVALID_LICENSE: i64 = 451;
    /// A generic server fault (`APIException`).
    pub const SERVER_ERROR: i64 = 500;
}

/// kaiju's exception classes: name, direct base class, code, and whether it is the caller's
/// fault (a `ClientError`). Python clients rebuild exceptions from these names.
const CLASSES: [(&str, &str, i64, bool); 17] = [
    ("APIException", "Exception", codes::SERVER_ERROR, false),
    ("ClientError", "APIException", codes::CLIENT_ERROR, true),
    ("JSONParseError", "ClientError", codes::PARSE_ERROR, true),
    ("JSONRPCError", "ClientError", codes::CLIENT_ERROR, true),
    (
        "InvalidRequest",
        "JSONRPCError",
        codes::INVALID_REQUEST,
        true,
    ),
    (
        "MethodNotFound",
        "JSONRPCError",
        codes::METHOD_NOT_FOUND,
        true,
    ),
    ("InvalidParams", "JSONRPCError", codes::INVALID_PARAMS, true),
    (
        "ModelValidationError",
        "InvalidParams",
        codes::MODEL_VALIDATION,
        true,
    ),
    (
        "RequestTimeout",
        "ClientError",
        codes::REQUEST_TIMEOUT,
        true,
    ),
    ("Aborted", "ClientError", codes::ABORTED, true),
    (
        "InternalError",
        "APIException",
        codes::INTERNAL_ERROR,
        false,
    ),
    (
        "HTTPRequestError",
        "InternalError",
        codes::INTERNAL_ERROR,
        false,
    ),
    ("NotAuthorized", "ClientError", codes::NOT_AUTHORIZED, true),
    ("NotFound", "ClientError", codes::NOT_FOUND, true),
    ("Conflict", "ClientError", codes::CONFLICT, true),
    (
        "FailedDependency",
        "APIException",
        codes::FAILED_DEPENDENCY,
        false,
    ),
    (
        "InvalidLicense",
        "ClientError",
        codes::INVALID_LICENSE,
        true,
    ),
];

fn known(class: &str) -> Option<(&'static str, &'static str, i64, bool)> {
    CLASSES.iter().copied().find(|(name, ..)| *name == class)
}

/// An error object as kaiju sends it: `{"code", "message", "data": {..., "type", "base_type"}}`.
///
/// `data` always carries `type` and `base_type` (kaiju's exception class and its base), so a
/// Python client rebuilds the right exception class (`NotFound`, or the app's own class when
/// it knows it, else its base). Apps return the kaiju classes through the constructors, or
/// their own class with [`custom`](Self::custom):
///
/// ```
/// use kaiju_rpc::{RpcError, codes};
///
/// let e = RpcError::not_found("no such invoice").with_data("invoice", 42);
/// assert_eq!(e.code(), codes::NOT_FOUND);
/// assert_eq!(
///     e.to_string(),
///     r#"{"code":404,"message":"no such invoice","data":{"invoice":42,"type":"NotFound","base_type":"ClientError"}}"#
/// );
/// // An app-defined class: a Python client that defines `InvoiceLocked` raises it; one that
/// // does not raises its base, `Conflict`.
/// let e = RpcError::custom("InvoiceLocked", "Conflict", codes::CONFLICT, "invoice is locked");
/// assert!(e.is_client_error());
/// ```
#[derive(Clone, PartialEq)]
pub struct RpcError(Box<Inner>);

#[derive(Clone, PartialEq)]
struct Inner {
    code: i64,
    message: String,
    class: Cow<'static, str>,
    base: Cow<'static, str>,
    data: Vec<(String, Value)>,
    client: bool,
    retryable: bool,
    /// What the server logs and never sends (the cause of an internal error).
    detail: Option<String>,
}

impl RpcError {
    fn kaiju(class: &'static str, message: impl Into<String>) -> Self {
        let (class, base, code, client) = known(class).unwrap_or((
            "InternalError",
            "APIException",
            codes::INTERNAL_ERROR,
            false,
        ));
        Self(Box::new(Inner {
            code,
            message: message.into(),
            class: Cow::Borrowed(class),
            base: Cow::Borrowed(base),
            data: Vec::new(),
            client,
            retryable: false,
            detail: None,
        }))
    }

    /// An app-defined error class. It counts as the caller's fault (not retried, answered as
    /// the call's result) when its base is one of kaiju's client classes (`ClientError`,
    /// `NotFound`, ...) or, for an unknown base, when the code is in `400..500`.
    pub fn custom(
        class: impl Into<Cow<'static, str>>,
        base: impl Into<Cow<'static, str>>,
        code: i64,
        message: impl Into<String>,
    ) -> Self {
        let base = base.into();
        let client = match known(&base) {
            Some((.., client)) => client,
            None => (400..500).contains(&code),
        };
        Self(Box::new(Inner {
            code,
            message: message.into(),
            class: class.into(),
            base,
            data: Vec::new(),
            client,
            retryable: false,
            detail: None,
        }))
    }

    /// `InvalidRequest` (−32600): the request is not `[method, params]` or a request object.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::kaiju("InvalidRequest", message)
    }

    /// `MethodNotFound` (−32601), with `data.request_method`. Also what a caller gets for a
    /// method above its scope: the two look the same, as in kaiju.
    ///
    /// A name longer than [`kaiju_core::SHOWN_CHARS`] characters is shown
    /// [shortened](kaiju_core::shortened) (its start and its length): the name is the caller's,
    /// and this error ends up in logs, replies and dead letters.
    pub fn method_not_found(method: Option<&str>) -> Self {
        Self::kaiju("MethodNotFound", "Method not found").with_data(
            "request_method",
            method.map(|m| kaiju_core::shortened(m).to_string()),
        )
    }

    /// `InvalidParams` (−32602).
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::kaiju("InvalidParams", message)
    }

    /// `ModelValidationError` (−32702): a data model rejected the params.
    pub fn model_validation(message: impl Into<String>) -> Self {
        Self::kaiju("ModelValidationError", message)
    }

    /// `RequestTimeout` (−32002), with `data.request_deadline` (unix seconds).
    pub fn request_timeout(deadline_unix: u64) -> Self {
        Self::kaiju("RequestTimeout", "Request timeout")
            .with_data("request_deadline", deadline_unix)
    }

    /// `Aborted` (−32001): not run, because an earlier request of the batch failed.
    pub fn aborted() -> Self {
        Self::kaiju("Aborted", "Aborted")
    }

    /// `NotAuthorized` (−32000).
    pub fn not_authorized(message: impl Into<String>) -> Self {
        Self::kaiju("NotAuthorized", message)
    }

    /// `ClientError` (400): a generic fault of the caller.
    pub fn client(message: impl Into<String>) -> Self {
        Self::kaiju("ClientError", message)
    }

    /// `NotFound` (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::kaiju("NotFound", message)
    }

    /// `Conflict` (409).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::kaiju("Conflict", message)
    }

    /// `FailedDependency` (424): a service this one depends on failed (not the caller's fault).
    pub fn failed_dependency(message: impl Into<String>) -> Self {
        Self::kaiju("FailedDependency", message)
    }

    /// `InvalidLicense` (451).
    pub fn invalid_license(message: impl Into<String>) -> Self {
        Self::kaiju("InvalidLicense", message)
    }

    /// `InternalError` (−32603) with the message `"Internal error"`. `cause` is logged by the
    /// server and never sent: callers do not see a server's internals.
    pub fn internal(cause: impl fmt::Display) -> Self {
        let mut e = Self::kaiju("InternalError", "Internal error");
        e.0.detail = Some(cause.to_string());
        e
    }

    /// Adds a `data` member. A value that cannot be represented is stored as `nil`.
    #[must_use]
    pub fn with_data(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        let key = key.into();
        let value = to_value(&value).unwrap_or(Value::Nil);
        match self.0.data.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.data.push((key, value)),
        }
        self
    }

    /// Marks the error transient: a request with `RPC-Retries` runs the method again (within
    /// its deadline), and the stream listener delivers the entry again later.
    #[must_use]
    pub fn retryable(mut self) -> Self {
        self.0.retryable = true;
        self
    }

    /// The code.
    pub fn code(&self) -> i64 {
        self.0.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// kaiju's class name (`data.type`), e.g. `"NotFound"`.
    pub fn class(&self) -> &str {
        &self.0.class
    }

    /// The base class name (`data.base_type`), e.g. `"ClientError"`.
    pub fn base_class(&self) -> &str {
        &self.0.base
    }

    /// A `data` member (other than `type` and `base_type`).
    pub fn data(&self, key: &str) -> Option<&Value> {
        self.0.data.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether the caller is at fault (a kaiju `ClientError`): such an error is the call's
    /// answer, not a failure of the server, and is never retried.
    pub fn is_client_error(&self) -> bool {
        self.0.client
    }

    /// Whether the error is transient (see [`retryable`](Self::retryable)).
    pub fn is_retryable(&self) -> bool {
        self.0.retryable
    }

    /// The cause an [`internal`](Self::internal) error was made from (never sent).
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// Reads an error object as a kaiju server sends it. The class comes from `data.type`, then
    /// `data.base_type` (as kaiju's client does); a missing `data` (a non-kaiju server) gives
    /// `ClientError` or `APIException` by code.
    pub fn from_value(value: &Value) -> Option<Self> {
        let code = value.get("code")?.as_i64()?;
        let message = value.get("message").and_then(Value::as_str).unwrap_or("");
        let data = value.get("data");
        let name = |key| data.and_then(|d| d.get(key)).and_then(Value::as_str);
        let fallback = if (400..500).contains(&code) || (-32700..=-32000).contains(&code) {
            "ClientError"
        } else {
            "APIException"
        };
        let class = name("type").unwrap_or(fallback).to_owned();
        let base = name("base_type")
            .map(str::to_owned)
            .unwrap_or_else(|| known(&class).map_or(fallback, |k| k.1).to_owned());
        let mut error = Self::custom(class, base, code, message);
        if let Some((_, _, _, client)) = known(&error.0.class) {
            error.0.client = client;
        }
        if let Some(Value::Map(entries)) = data {
            for (k, v) in entries {
                if let Value::Str(k) = k
                    && k != "type"
                    && k != "base_type"
                {
                    error.0.data.push((k.clone(), v.clone()));
                }
            }
        }
        Some(error)
    }

    /// The error object as a [`Value`] (what goes on the wire).
    pub fn to_value(&self) -> Value {
        let mut data: Vec<(Value, Value)> = self
            .0
            .data
            .iter()
            .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
            .collect();
        data.push((
            Value::Str("type".into()),
            Value::Str(self.0.class.to_string()),
        ));
        data.push((
            Value::Str("base_type".into()),
            Value::Str(self.0.base.to_string()),
        ));
        Value::Map(vec![
            (Value::Str("code".into()), Value::Int(self.0.code)),
            (
                Value::Str("message".into()),
                Value::Str(self.0.message.clone()),
            ),
            (Value::Str("data".into()), Value::Map(data)),
        ])
    }
}

pub(crate) use kaiju_core::to_value;

impl Serialize for RpcError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Data<'a>(&'a RpcError);
        impl Serialize for Data<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let e = self.0;
                let mut map = serializer.serialize_map(Some(e.0.data.len() + 2))?;
                for (k, v) in &e.0.data {
                    map.serialize_entry(k, v)?;
                }
                map.serialize_entry("type", &e.0.class)?;
                map.serialize_entry("base_type", &e.0.base)?;
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("code", &self.0.code)?;
        map.serialize_entry("message", &self.0.message)?;
        map.serialize_entry("data", &Data(self))?;
        map.end()
    }
}

/// The error object as compact JSON (what a dead letter's `reason` holds).
impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => f.write_str(&json),
            Err(_) => write!(f, "{} {}", self.0.code, self.0.message),
        }
    }
}

impl fmt::Debug for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RpcError");
        d.field("code", &self.0.code)
            .field("message", &self.0.message)
            .field("class", &self.0.class)
            .field("base", &self.0.base);
        if !self.0.data.is_empty() {
            d.field("data", &self.0.data);
        }
        if let Some(detail) = &self.0.detail {
            d.field("detail", detail);
        }
        d.finish()
    }
}

impl std::error::Error for RpcError {}

impl From<kaiju_transport::TransportError> for RpcError {
    /// An internal error; retryable when the transport error is (a lost connection, a timeout).
    fn from(e: kaiju_transport::TransportError) -> Self {
        let retry = e.is_retryable();
        let error = Self::internal(e);
        if retry { error.retryable() } else { error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kaiju_class_has_its_code_and_base() {
        let cases = [
            (
                RpcError::invalid_request("x"),
                -32600,
                "InvalidRequest",
                "JSONRPCError",
                true,
            ),
            (
                RpcError::method_not_found(Some("a.b")),
                -32601,
                "MethodNotFound",
                "JSONRPCError",
                true,
            ),
            (
                RpcError::invalid_params("x"),
                -32602,
                "InvalidParams",
                "JSONRPCError",
                true,
            ),
            (
                RpcError::model_validation("x"),
                -32702,
                "ModelValidationError",
                "InvalidParams",
                true,
            ),
            (
                RpcError::request_timeout(5),
                -32002,
                "RequestTimeout",
                "ClientError",
                true,
            ),
            (RpcError::aborted(), -32001, "Aborted", "ClientError", true),
            (
                RpcError::not_authorized("x"),
                -32000,
                "NotAuthorized",
                "ClientError",
                true,
            ),
            (
                RpcError::not_found("x"),
                404,
                "NotFound",
                "ClientError",
                true,
            ),
            (
                RpcError::conflict("x"),
                409,
                "Conflict",
                "ClientError",
                true,
            ),
            (
                RpcError::failed_dependency("x"),
                424,
                "FailedDependency",
                "APIException",
                false,
            ),
            (
                RpcError::invalid_license("x"),
                451,
                "InvalidLicense",
                "ClientError",
                true,
            ),
            (
                RpcError::client("x"),
                400,
                "ClientError",
                "APIException",
                true,
            ),
            (
                RpcError::internal("boom"),
                -32603,
                "InternalError",
                "APIException",
                false,
            ),
        ];
        for (e, code, class, base, client) in cases {
            assert_eq!(
                (e.code(), e.class(), e.base_class(), e.is_client_error()),
                (code, class, base, client),
                "{e:?}"
            );
            // `data` is always there, with the class names Python clients rebuild from.
            let v = e.to_value();
            assert_eq!(
                v.get("data")
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str),
                Some(class)
            );
            assert_eq!(
                v.get("data")
                    .and_then(|d| d.get("base_type"))
                    .and_then(Value::as_str),
                Some(base)
            );
            assert_eq!(
                RpcError::from_value(&v).as_ref(),
                Some(&e)
                    .map(|e| {
                        let mut e = e.clone();
                        e.0.detail = None;
                        e
                    })
                    .as_ref()
            );
        }
    }

    #[test]
    fn the_method_not_found_object_is_byte_for_byte_kaijus() {
        // kaiju's JSON for an unknown method (KAIJU-TOOLS §1.10).
        let e = RpcError::method_not_found(Some("svc.nope"));
        assert_eq!(
            e.to_string(),
            r#"{"code":-32601,"message":"Method not found","data":{"request_method":"svc.nope","type":"MethodNotFound","base_type":"JSONRPCError"}}"#
        );
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = RpcError::internal("password=hunter2 at db.rs:10");
        assert!(!e.to_string().contains("hunter2"));
        assert_eq!(e.detail(), Some("password=hunter2 at db.rs:10"));
    }

    #[test]
    fn custom_classes_are_client_errors_by_base_or_code() {
        assert!(RpcError::custom("Locked", "Conflict", 409, "x").is_client_error());
        assert!(RpcError::custom("Mine", "Unknown", 418, "x").is_client_error());
        assert!(!RpcError::custom("Mine", "Unknown", 503, "x").is_client_error());
        assert!(!RpcError::custom("Mine", "InternalError", 400, "x").is_client_error());
    }

    #[test]
    fn error_objects_without_data_are_read() {
        let v = Value::Map(vec![
            (Value::Str("code".into()), Value::Int(-32601)),
            (Value::Str("message".into()), Value::Str("nope".into())),
        ]);
        let e = RpcError::from_value(&v).unwrap();
        assert_eq!(
            (e.code(), e.class(), e.message()),
            (-32601, "ClientError", "nope")
        );
        assert!(RpcError::from_value(&Value::Int(1)).is_none());
    }
}
