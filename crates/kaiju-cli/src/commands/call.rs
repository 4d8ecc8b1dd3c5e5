//! `kaiju call` and `kaiju write`.

use std::time::Duration;

use kaiju_core::{Key, Value};
use kaiju_rpc::{CallError, RpcClient};
use kaiju_streams::StreamWriter;
use serde_json::Value as Json;

use kaiju_transport::fred;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::{Classify as _, Transport};

use super::{call_failure, keys, redis_failure};
use crate::connect::connect;
use crate::json::{self, pretty, to_json};
use crate::out::outln;
use crate::{CallArgs, Conn, Failure};

/// `kaiju call`: a notification, or with `wait` a request.
pub(super) async fn call(args: CallArgs) -> Result<(), Failure> {
    let CallArgs {
        conn,
        app,
        method,
        params,
        wait,
        timeout,
        topic,
        headers,
        create,
    } = args;
    let params = match params {
        Some(p) => json::parse("params", &p)?,
        None => Json::Null,
    };
    if !matches!(params, Json::Object(_) | Json::Null) {
        return Err(Failure::usage(
            "params must be a JSON object (kaiju takes named params)",
        ));
    }
    let headers = json::headers(&headers)?;
    let (transport, me) = connect(&conn).await?;
    let (stream, _) = keys(&me.env, &app, &topic)?;
    if !create && !listened_to(&transport, &stream).await? {
        let hint = match other_envs(&transport, &me.env, &stream).await.as_slice() {
            [] => String::new(),
            envs => format!(" Did you mean --environment {}?", envs.join(" or ")),
        };
        let what = if wait {
            "nobody would answer"
        } else {
            "pass --create to write the notification anyway (it waits until the app starts)"
        };
        return Err(Failure::not_found(format!(
            "no app `{app}` listens in env `{}`: no consumer group reads {stream}; {what}.{hint}",
            me.env
        )));
    }
    let client = RpcClient::new(transport, &me);
    let timeout = Duration::from_secs(timeout.max(1));
    if wait {
        let mut request = client
            .request::<_, Value>(method.as_str(), params)
            .app(app.as_str())
            .topic(topic.as_str())
            .timeout(timeout);
        for (name, value) in headers.iter() {
            request = request.header(name, value.clone());
        }
        match request.await {
            Ok(result) => {
                outln!("{}", pretty(&to_json(&result)));
                Ok(())
            }
            Err(CallError::Rpc(e)) => {
                outln!("{e}");
                Err(Failure::failed(format!(
                    "{method} answered with an error (code {})",
                    e.code()
                )))
            }
            Err(e) => Err(call_failure(e)),
        }
    } else {
        let mut call = client
            .call(method.as_str(), params)
            .app(app.as_str())
            .topic(topic.as_str())
            .timeout(timeout);
        for (name, value) in headers.iter() {
            call = call.header(name, value.clone());
        }
        let id = call.await.map_err(call_failure)?;
        outln!("{id}");
        Ok(())
    }
}

/// `kaiju write`: one entry to a stream key.
pub(super) async fn write(
    conn: Conn,
    stream_key: String,
    body: String,
    headers: Vec<String>,
) -> Result<(), Failure> {
    let body = json::parse("the body", &body)?;
    let headers = json::headers(&headers)?;
    let (transport, _) = connect(&conn).await?;
    let id = StreamWriter::new(transport)
        .write(&Key::raw(stream_key), &body, headers)
        .await
        .map_err(redis_failure)?;
    outln!("{id}");
    Ok(())
}

/// Whether some consumer group reads `stream` (an app listens there, or did).
async fn listened_to(transport: &Transport, stream: &str) -> Result<bool, Failure> {
    let pool = transport.pool();
    let exists: u32 = pool
        .exists(stream)
        .await
        .classify()
        .map_err(redis_failure)?;
    if exists == 0 {
        return Ok(false);
    }
    let groups: Vec<fred::types::Value> = pool
        .xinfo_groups(stream)
        .await
        .classify()
        .map_err(redis_failure)?;
    Ok(!groups.is_empty())
}

/// The other environments where `app` listens on `topic`, for a hint: found by `SCAN` for at
/// most about a second (measured here: a keyspace of 995,000 keys scanned to the end in 1.0 s),
/// on a single server only. What was found by then is the hint.
async fn other_envs(transport: &Transport, env: &str, stream: &str) -> Vec<String> {
    if transport.deployment() != kaiju_transport::Deployment::Single {
        return Vec::new();
    }
    // `<env>.<app>._stream.<topic>` without its env: the same key in any other env ends so.
    let Some(suffix) = stream.strip_prefix(env) else {
        return Vec::new();
    };
    let pattern = format!("*{}", glob_escape(suffix));
    let started = std::time::Instant::now();
    let mut found = Vec::new();
    let mut cursor = "0".to_owned();
    while started.elapsed() < Duration::from_secs(1) {
        let page = tokio::time::timeout(
            Duration::from_secs(1),
            transport
                .pool()
                .next()
                .scan_page::<(String, Vec<String>), _, _>(
                    cursor.clone(),
                    pattern.clone(),
                    Some(1000),
                    Some(fred::types::scan::ScanType::Stream),
                ),
        )
        .await;
        let Ok(Ok((next, keys))) = page else { break };
        for key in keys {
            if let Some(other) = key.strip_suffix(suffix)
                && other != env
                && !other.contains('.')
                && !found.iter().any(|f| f == other)
                && listened_to(transport, &key).await.unwrap_or(false)
            {
                found.push(other.to_owned());
            }
        }
        if next == "0" || found.len() >= 3 {
            break;
        }
        cursor = next;
    }
    found
}

/// `text` with the `SCAN` glob's special characters escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
