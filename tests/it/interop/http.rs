//! JSON-RPC over HTTP against the real Python kaiju-tools 2.4.26: kaiju-tools' own HTTP client
//! (`RPCClientService` over `HTTPService`) calls a Python kaiju app served by aiohttp and a Rust
//! app served by kaiju-http, running the same methods, and gets the same results and error
//! objects from both, except where kaiju has a defect (listed below, and in kaiju-http's README).
//!
//! Runs when `KAIJU_PYTHON` names a Python with kaiju-tools installed (`cargo xtask interop`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use kaiju_core::AppSettings;
use kaiju_http::{HttpFront, HttpSettings, StaticTokens};
use kaiju_rpc::{NoParams, RpcError, RpcModule, Scope, Server, ServerSettings};
use kaiju_tests::interop::{python, run_peer};
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// The `ext` service of `http_peer.py`, in Rust: the same routes, scopes and errors.
fn ext() -> RpcModule {
    let mut m = RpcModule::new("ext").permissions([("*", Scope::Guest), ("admin", Scope::System)]);
    m.method("echo", |_, p: Option<Json>, _| async move {
        Ok::<_, RpcError>(p.unwrap_or_else(|| json!({})))
    })
    .unwrap();
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Add {
        a: i64,
        b: i64,
    }
    m.method(
        "add",
        |_, p: Add, _| async move { Ok::<_, RpcError>(p.a + p.b) },
    )
    .unwrap();
    m.method("fail", |_, _: NoParams, _| async {
        Err::<(), _>(RpcError::not_found("no such thing"))
    })
    .unwrap();
    m.method("admin", |_, _: NoParams, _| async {
        Ok::<_, RpcError>("secret")
    })
    .unwrap();
    m
}

/// The Python app of `http_peer.py serve`, on a free port; killed on drop.
struct PythonHttpApp {
    child: Child,
    port: u16,
}

impl PythonHttpApp {
    fn start(python: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(python)
            .arg(format!(
                "{}/interop/http_peer.py",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args(["serve", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the Python HTTP app");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the Python HTTP app did not start");
        Self { child, port }
    }
}

impl Drop for PythonHttpApp {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `http_peer.py call <url> [auth]`: case name → its line.
fn cases(python: &str, url: &str, auth: Option<&str>) -> BTreeMap<String, Json> {
    let mut args = vec!["call", url];
    args.extend(auth);
    let (ok, out) = run_peer(python, "http_peer.py", &args);
    assert!(ok, "the Python HTTP client failed: {out}");
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let line: Json = serde_json::from_str(l).unwrap();
            (line["case"].as_str().unwrap().to_owned(), line)
        })
        .collect()
}

async fn rust_front(tokens: StaticTokens) -> kaiju_http::Running {
    let app = AppSettings {
        env: "test".into(),
        name: "rshttp".into(),
        ..AppSettings::default()
    };
    let server = Server::new(&app, ServerSettings::default(), ext()).unwrap();
    HttpFront::new(HttpSettings::default(), server)
        .auth(tokens)
        .serve()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_http_client_gets_the_same_answers_from_rust_and_python_apps() {
    let Some(python) = python() else { return };
    let py = PythonHttpApp::start(&python);
    let rs = rust_front(StaticTokens::new()).await;
    let from_py = cases(&python, &format!("http://127.0.0.1:{}", py.port), None);
    let from_rs = cases(&python, &format!("http://{}", rs.local_addr()), None);
    assert_eq!(from_py.len(), 12, "{from_py:#?}");
    assert_eq!(from_rs.len(), 12, "{from_rs:#?}");

    // The same answers, byte for byte as the client rebuilt them.
    for case in [
        "single",
        "add",
        "none",
        "fail",
        "unknown",
        "forbidden",
        "notify",
        "batch",
        "template",
    ] {
        assert_eq!(from_rs[case], from_py[case], "case {case}");
    }
    assert_eq!(
        from_rs["single"]["result"],
        json!({"value": 1, "text": "héllo"})
    );
    assert_eq!(
        from_rs["batch"]["results"],
        json!([{"result": 3}, {"result": 7}])
    );
    assert_eq!(from_rs["forbidden"]["error"]["class"], "MethodNotFound");

    // Invalid params: the same exception and code; kaiju-rs names the missing field where
    // kaiju listed the signature's arguments.
    for side in [&from_py, &from_rs] {
        let e = &side["bad_params"]["error"];
        assert_eq!(
            (e["class"].as_str(), e["code"].as_i64()),
            (Some("InvalidParams"), Some(-32602)),
            "{e}"
        );
    }

    // kaiju's defects, not copied:
    // - a batch with an unknown method: kaiju answers one error object for the whole batch
    //   (D13), on which its own client fails; kaiju-rs answers each request.
    assert_eq!(from_py["mixed"]["error"]["class"], "TypeError");
    let mixed = &from_rs["mixed"]["results"];
    assert_eq!(mixed[0], json!({"result": 2}), "{mixed}");
    assert_eq!(mixed[1]["error"]["class"], "NotFound", "{mixed}");
    assert_eq!(mixed[2]["error"]["class"], "MethodNotFound", "{mixed}");
    // - abort on error: kaiju replaced the failing request's error with an empty
    //   InvalidParams (D15); kaiju-rs keeps it. The rest is Aborted on both.
    assert_eq!(
        from_py["abort"]["results"][0]["error"]["class"],
        "InvalidParams"
    );
    assert_eq!(from_rs["abort"]["results"][0]["error"]["class"], "NotFound");
    for side in [&from_py, &from_rs] {
        assert_eq!(side["abort"]["results"][1]["error"]["class"], "Aborted");
    }
    rs.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_http_client_with_a_token_calls_at_the_tokens_scope() {
    let Some(python) = python() else { return };
    let rs =
        rust_front(StaticTokens::new().token("s3cret-token", Some("ops"), Scope::System)).await;
    let url = format!("http://{}", rs.local_addr());
    let with = cases(&python, &url, Some("Bearer s3cret-token"));
    assert_eq!(
        with["forbidden"],
        json!({"case": "forbidden", "result": "secret"})
    );
    // A wrong token runs at GUEST: the SYSTEM method looks unknown.
    let wrong = cases(&python, &url, Some("Bearer wrong"));
    assert_eq!(wrong["forbidden"]["error"]["class"], "MethodNotFound");
    assert_eq!(wrong["add"]["result"], 5);
    rs.shutdown(std::time::Duration::from_secs(5)).await;
}
