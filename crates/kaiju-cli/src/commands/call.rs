//! `kaiju call` and `kaiju write`.

use std::time::Duration;

use kaiju_core::{Key, Value};
use kaiju_rpc::{CallError, RpcClient};
use kaiju_streams::StreamWriter;
use serde_json::Value as Json;

use super::{call_failure, redis_failure};
use crate::connect::connect;
use crate::json::{self, pretty, to_json};
use crate::out::outln;
use crate::{Conn, Failure};

/// `kaiju call`: a notification, or with `wait` a request.
#[allow(clippy::too_many_arguments)]
pub(super) async fn call(
    conn: Conn,
    app: String,
    method: String,
    params: Option<String>,
    wait: bool,
    timeout: u64,
    topic: String,
    headers: Vec<String>,
) -> Result<(), Failure> {
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
