//! Helpers of the front's tests: an RPC server with a few methods, a front on a free port,
//! and a plain hyper client.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kaiju_core::{AppSettings, Value};
use kaiju_http::{HttpFront, HttpSettings, Running, StaticTokens};
use kaiju_rpc::{NoParams, RequestContext, RpcError, RpcModule, Scope, Server, ServerSettings};

/// `t.echo` (returns its params), `t.sleep {ms}` (GUEST), `adm.secret` (ADMIN).
pub fn server(settings: ServerSettings) -> Server {
    let mut t = RpcModule::new("t").permissions([("*", Scope::Guest)]);
    t.method("echo", |_, p: Value, _: RequestContext| async move {
        Ok::<_, RpcError>(p)
    })
    .unwrap();
    t.method(
        "sleep",
        |_, p: BTreeMap<String, u64>, _: RequestContext| async move {
            let ms = p.get("ms").copied().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, RpcError>(ms)
        },
    )
    .unwrap();
    let mut adm = RpcModule::new("adm").permissions([("*", Scope::Admin)]);
    adm.method("secret", |_, _: NoParams, _: RequestContext| async move {
        Ok::<_, RpcError>("s3cret")
    })
    .unwrap();
    t.merge(adm).unwrap();
    Server::new(&AppSettings::default(), settings, t).unwrap()
}

pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// A front on a free port with one admin token.
pub async fn front(settings: HttpSettings, server: Server) -> Running {
    HttpFront::new(settings, server)
        .auth(StaticTokens::new().token(ADMIN_TOKEN, Some("ops"), Scope::Admin))
        .serve()
        .await
        .unwrap()
}

pub async fn default_front() -> Running {
    front(HttpSettings::default(), server(ServerSettings::default())).await
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            client,
            base: format!("http://{addr}"),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(Full::new(body.into())).unwrap();
        let response = self.client.request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// `POST /public/rpc` with a JSON body.
    pub async fn rpc(&self, body: serde_json::Value, headers: &[(&str, &str)]) -> Answer {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(Method::POST, "/public/rpc", &all, body.to_string())
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }
}
