//! The driver: calls the demo app the way another service would, and prints what happened.

use std::time::{Duration, Instant};

use kaiju_app::builtin::TransportService;
use kaiju_app::config::Config;
use kaiju_app::{App, Dependency, Registry};
use kaiju_cache::Cache;
use kaiju_core::AppSettings;
use kaiju_rpc::{CallError, NoParams, RpcClient};
use kaiju_streams::admin;
use kaiju_transport::Transport;
use serde_json::{Value, json};

const ITEMS: [(&str, i64); 3] = [("apple", 50), ("pear", 20), ("plum", 5)];

fn step(n: u32, what: &str) {
    println!("\n== {n}. {what}");
}

pub(crate) async fn run(config: Config, registry: Registry) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    // The app's own config names the connection; the driver does not start the app's services.
    let app = App::build(&config, &registry).map_err(|e| err(&e))?;
    let settings = app
        .context()
        .require::<TransportService>(&Dependency::Any)
        .map_err(|e| err(&e))?
        .settings()
        .clone();
    let transport = Transport::connect(&settings).await.map_err(|e| err(&e))?;
    let target = config.project.main.name.clone();
    let me = AppSettings {
        env: config.project.main.env.clone(),
        name: "demo-driver".into(),
        ..AppSettings::default()
    };
    let client = RpcClient::new(transport.clone(), &me);
    let ns = kaiju_core::Namespace::new(&me.env, &target).map_err(|e| err(&e))?;

    step(
        1,
        "notifications: restock three items, written as 3 stream entries in one round trip",
    );
    let calls: Vec<(String, Value)> = ITEMS
        .iter()
        .map(|(item, qty)| {
            (
                "inventory.restock".to_owned(),
                json!({"item": item, "qty": qty}),
            )
        })
        .collect();
    let ids = client
        .call_each(calls)
        .app(target.as_str())
        .await
        .map_err(|e| err(&e))?;
    println!(
        "   wrote {} entries to {}: {}",
        ids.len(),
        ns.stream("rpc").map_err(|e| err(&e))?,
        ids.join(", ")
    );

    step(
        2,
        "request/response: read the stock back (the listener ran the notifications meanwhile)",
    );
    for (item, qty) in ITEMS {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stock: i64 = client
                .request("inventory.stock", json!({"item": item}))
                .app(target.as_str())
                .await
                .map_err(|e| err(&e))?;
            if stock >= qty || Instant::now() > deadline {
                println!("   {item:<6} {stock}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    step(
        3,
        "12 concurrent reservations of 5 apples: one lock per item, so they queue and hand it on",
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 1..=12 {
        let client = client.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            client
                .request::<_, Value>(
                    "inventory.reserve",
                    json!({"item": "apple", "qty": 5, "order": format!("order-{i:02}")}),
                )
                .app(target.as_str())
                .await
        }));
    }
    let mut waited = 0;
    for t in tasks {
        let r = t.await.map_err(|e| err(&e))?.map_err(|e| err(&e))?;
        if r["waited_ms"].as_u64().unwrap_or(0) > 2 {
            waited += 1;
        }
        println!(
            "   {}  {:<12} {:>2} left  waited {:>3} ms for the lock",
            r["order"].as_str().unwrap_or("?"),
            if r["reserved"] == json!(true) {
                "reserved"
            } else {
                "sold out"
            },
            r["left"].as_i64().unwrap_or(0),
            r["waited_ms"]
        );
    }
    println!(
        "   {waited} of 12 reservations waited for the lock (hand-offs); all done in {} ms",
        started.elapsed().as_millis()
    );
    let report: Value = client
        .request("inventory.report", NoParams)
        .app(target.as_str())
        .await
        .map_err(|e| err(&e))?;
    println!("   the service counted: {report}");

    step(
        4,
        "the values in the cache (msgpack, as kaiju-redis stores them)",
    );
    let cache = Cache::new(transport.clone());
    for (item, _) in ITEMS {
        let key = ns
            .join("stock")
            .and_then(|n| n.key(item))
            .map_err(|e| err(&e))?;
        let value: Option<i64> = cache.get(key.as_str()).await.map_err(|e| err(&e))?;
        println!(
            "   {key} = {}",
            value.map_or("(none)".into(), |v| v.to_string())
        );
    }

    step(
        5,
        "errors: a request to an unknown method gets kaiju's error object, and a notification to it \
         (nobody to answer) is dead-lettered; the request is dead-lettered too, so the method's \
         author sees every call that missed: two dead letters",
    );
    match client
        .request::<_, Value>("inventory.steal", json!({"item": "apple"}))
        .app(target.as_str())
        .await
    {
        Err(CallError::Rpc(e)) => println!("   error object: {e}"),
        other => println!("   unexpected: {other:?}"),
    }
    client
        .call("inventory.steal", json!({"item": "plum"}))
        .app(target.as_str())
        .await
        .map_err(|e| err(&e))?;

    step(6, "the stream (what `kaiju streams inventory` shows)");
    let stream = ns.stream("rpc").map_err(|e| err(&e))?;
    let dead = ns.dead_letter_stream("rpc").map_err(|e| err(&e))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let report = loop {
        let r = admin::inspect(&transport, stream.as_str(), dead.as_str())
            .await
            .map_err(|e| err(&e))?;
        if r.dead_letters >= 2 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "   {}: {} entries, {} dead letters",
        report.stream, report.length, report.dead_letters
    );
    for g in &report.groups {
        println!(
            "   group {}: lag {}, pending {}, {} consumer(s)",
            g.name,
            g.lag.map_or("?".into(), |l| l.to_string()),
            g.pending,
            g.consumers.len()
        );
    }

    step(7, "rpc.status of the server");
    let status: Value = client
        .request("rpc.status", NoParams)
        .app(target.as_str())
        .await
        .map_err(|e| err(&e))?;
    println!("   {status}");

    if let (Some(host), Some(port)) = (&config.project.run.host, config.project.run.port) {
        step(
            8,
            "the HTTP front (run: {host, port}): JSON-RPC over HTTP, /ready, /metrics",
        );
        let token = config
            .project
            .etc
            .get("http")
            .and_then(|h| h.to_json().pointer("/tokens/0/token").cloned())
            .and_then(|t| t.as_str().map(str::to_owned))
            .ok_or("the demo config has no etc.http.tokens")?;
        crate::http::show(&format!("{host}:{port}"), &token).await?;
    }
    Ok(())
}
