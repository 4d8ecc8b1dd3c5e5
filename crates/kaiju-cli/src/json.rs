//! JSON in and out: msgpack values shown as JSON, and JSON arguments.

use kaiju_core::Value;
use kaiju_streams::{HeaderValue, Headers};
use serde_json::Value as Json;

use crate::Failure;

/// A msgpack value as JSON: bytes as `{"$bin": "<hex>"}` (a 16-byte one also as `$uuid`),
/// extensions as `{"$ext": [type, "<hex>"]}`, map keys that are not strings as their JSON text.
pub(crate) fn to_json(v: &Value) -> Json {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Str(s) => Json::String(s.clone()),
        Value::Bin(b) if b.len() == 16 => {
            let u = uuid::Uuid::from_slice(b)
                .map(|u| u.to_string())
                .unwrap_or_default();
            serde_json::json!({"$bin": hex(b), "$uuid": u})
        }
        Value::Bin(b) => serde_json::json!({"$bin": hex(b)}),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => s.clone(),
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Ext(t, data) => serde_json::json!({"$ext": [t, hex(data)]}),
        #[allow(unreachable_patterns)]
        _ => Json::Null,
    }
}

/// Parses a JSON argument.
pub(crate) fn parse(what: &str, text: &str) -> Result<Json, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::usage(format!("{what} is not valid JSON: {e}")))
}

/// `NAME=VALUE` headers; VALUE as JSON when it parses, else text.
pub(crate) fn headers(args: &[String]) -> Result<Headers, Failure> {
    let mut headers = Headers::new();
    for arg in args {
        let (name, value) = arg
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| Failure::usage(format!("header `{arg}`: expected NAME=VALUE")))?;
        let value = match serde_json::from_str::<Json>(value) {
            Ok(Json::Null) => HeaderValue::Nil,
            Ok(Json::Bool(b)) => HeaderValue::Bool(b),
            Ok(Json::Number(n)) if n.is_i64() => HeaderValue::Int(n.as_i64().unwrap_or_default()),
            Ok(Json::Number(n)) if n.is_u64() => HeaderValue::from(n.as_u64().unwrap_or_default()),
            Ok(Json::Number(n)) => HeaderValue::Float(n.as_f64().unwrap_or_default()),
            Ok(Json::String(s)) => HeaderValue::Str(s),
            _ => HeaderValue::Str(value.to_owned()),
        };
        headers.insert(name, value);
    }
    Ok(headers)
}

/// Pretty JSON text.
pub(crate) fn pretty(v: &Json) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}
