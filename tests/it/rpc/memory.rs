//! What one hostile entry may cost a listener: a real RPC listener process
//! (`tests/src/bin/rpc_listener.rs`, default settings) is fed one entry, and its peak RSS
//! (`VmHWM`) may rise at most 32 MiB above its idle RSS. Each attack gets a process of its own,
//! so that one's peak never hides another's. (Single node; Linux, which has `/proc`.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kaiju_core::{AppSettings, Codec, Msgpack, Value};
use kaiju_streams::Headers;
use kaiju_tests::streams::{dead_letters, field, pending_of, rpc_stream};
use kaiju_tests::{Target, app, eventually};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;

/// How far the peak may rise above the idle RSS.
const BUDGET: u64 = 32 << 20;

/// A field of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Kills the listener process when the test ends, however it ends.
struct Listener(Child);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(app: &AppSettings) -> Listener {
    let url = std::env::var(Target::Single.url_var()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rpc_listener"))
        .args([url.as_str(), &app.env, &app.name])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "started");
    Listener(child)
}

async fn xadd_raw(t: &Transport, stream: &str, payload: Vec<u8>) -> String {
    let fields: Vec<(Key, kaiju_transport::fred::types::Value)> = vec![(
        Key::from("_"),
        kaiju_transport::fred::types::Value::Bytes(payload.into()),
    )];
    t.pool()
        .xadd(stream, false, None, "*", fields)
        .await
        .unwrap()
}

/// `[body, headers]` with `body` given as msgpack bytes.
fn envelope(body: &[u8], headers: &Headers) -> Vec<u8> {
    let mut payload = vec![0x92];
    payload.extend_from_slice(body);
    payload.extend(Msgpack::WIRE.encode(headers).unwrap());
    payload
}

/// Writes `svc.mark` and waits until the listener ran it and has nothing pending: every entry
/// written before it was read and has ended.
async fn settle(t: &Transport, app: &AppSettings, mark: &str, n: i64) {
    let stream = rpc_stream(app);
    let body = Value::Array(vec![
        Value::Str("svc.mark".into()),
        Value::Map(vec![(Value::Str("key".into()), Value::Str(mark.into()))]),
    ]);
    let payload = kaiju_streams::encode(&body, &Headers::new()).unwrap();
    xadd_raw(t, stream.as_str(), payload).await;
    eventually("the entries ended", Duration::from_secs(60), || async {
        let marked: Option<i64> = t.pool().get(mark).await.unwrap();
        marked == Some(n) && pending_of(t, stream.as_str(), &app.name).await == 0
    })
    .await;
}

/// Runs `attack` (entries to write) against a fresh listener process; returns (idle RSS, peak
/// RSS) in bytes, and the dead letters it left.
async fn peak_of(
    t: &Transport,
    what: &str,
    attack: Vec<Vec<u8>>,
) -> (u64, u64, Vec<Vec<(Vec<u8>, Vec<u8>)>>) {
    peak_on(t, &kaiju_tests::namespace(), what, attack).await
}

/// [`peak_of`] in the namespace `ns`.
async fn peak_on(
    t: &Transport,
    ns: &kaiju_core::Namespace,
    what: &str,
    attack: Vec<Vec<u8>>,
) -> (u64, u64, Vec<Vec<(Vec<u8>, Vec<u8>)>>) {
    let app = app(ns);
    let mark = ns.key("mark").unwrap().into_string();
    let listener = spawn(&app);
    let pid = listener.0.id();
    // Warm up with a request of each kind, then let the process settle.
    settle(t, &app, &mark, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = status_bytes(pid, "VmRSS:");
    let stream = rpc_stream(&app);
    for payload in attack {
        xadd_raw(t, stream.as_str(), payload).await;
    }
    settle(t, &app, &mark, 2).await;
    let peak = status_bytes(pid, "VmHWM:");
    let dead = ns.dead_letter_stream("rpc").unwrap();
    let letters = dead_letters(t, dead.as_str()).await;
    eprintln!(
        "{what}: idle {} MiB, peak {} MiB, +{} MiB; dead letters {:?}",
        idle >> 20,
        peak >> 20,
        peak.saturating_sub(idle) >> 20,
        letters
            .iter()
            .map(|l| (
                field(l, "kind"),
                field(l, "reason").map(|r| &r[..r.len().min(120)])
            ))
            .collect::<Vec<_>>()
    );
    drop(listener);
    (idle, peak, letters)
}

fn reply_headers(app: &AppSettings) -> Headers {
    let channel = app.namespace().unwrap().reply_channel("nobody").unwrap();
    let mut h = Headers::new();
    h.insert("Correlation-Id", "attack")
        .insert("Reply-To", channel.as_str())
        .insert("Request-Id", "1");
    h
}

/// Issue 31 item 6: a 1 MB entry holding a batch of a million empty requests, far over
/// `max_batch_length`. Before: 1.48 GB peak and a 165 MB reply (an error per item).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_batch_costs_a_bounded_amount() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let app = app(&ns);
    let n: u32 = 1 << 20;
    let mut body = vec![0xdd];
    body.extend(n.to_be_bytes());
    body.extend(std::iter::repeat_n(0x90, n as usize));
    // The requester listens for its answer.
    let sub = kaiju_tests::connect(Target::Single).await.unwrap();
    let watcher = sub.dedicated_connection().await.unwrap();
    let mut answers = watcher.client().message_rx();
    let channel = app.namespace().unwrap().reply_channel("nobody").unwrap();
    watcher.client().subscribe(channel.as_str()).await.unwrap();
    let (idle, peak, letters) = peak_on(
        &t,
        &ns,
        "over-long batch (1 MiB)",
        vec![envelope(&body, &reply_headers(&app))],
    )
    .await;
    assert!(peak < idle + BUDGET, "peak {peak}, idle {idle}");
    assert_eq!(letters.len(), 1);
    // One answer, a kaiju error object: not one per item.
    let answer = tokio::time::timeout(Duration::from_secs(5), answers.recv())
        .await
        .unwrap()
        .unwrap();
    let bytes = answer.value.as_bytes().unwrap().to_vec();
    assert!(bytes.len() < 1024, "an answer of {} bytes", bytes.len());
    let (reply, _): (Value, Headers) = kaiju_streams::decode(&bytes).unwrap();
    let code = reply.get("error").and_then(|e| e.get("code")).cloned();
    assert_eq!(code, Some(Value::Int(-32600)), "{reply:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(answers.try_recv().is_err(), "answered more than once");
}

/// A batch just over `max_batch_length`, small enough to decode, is refused from its array
/// header: never decoded (dead-lettered as `too_large`), and none of its requests runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_batch_is_refused_before_it_is_decoded() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let mark = ns.key("mark").unwrap().into_string();
    let item = Value::Array(vec![
        Value::Str("svc.mark".into()),
        Value::Map(vec![(Value::Str("key".into()), Value::Str(mark.clone()))]),
    ]);
    let payload = kaiju_streams::encode(&Value::Array(vec![item; 101]), &Headers::new()).unwrap();
    let (_, _, letters) = peak_on(&t, &ns, "a batch of 101", vec![payload]).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(field(&letters[0], "kind"), Some("too_large"));
    let reason = field(&letters[0], "reason").unwrap();
    assert!(reason.contains("a batch of 101 requests"), "{reason}");
    // The two marks are the warm-up's and the settling one's: none of the batch's 101 ran.
    let marked: i64 = t.pool().get(mark.as_str()).await.unwrap();
    assert_eq!(marked, 2);
}

/// Issue 31 item 7: 600-odd bytes of templates, each request doubling the data of the one
/// before (20 times: 2^20 times the first result, if nothing stops it). Before: 191 MB peak for
/// one entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doubling_template_chain_costs_a_bounded_amount() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let s = |v: &str| Value::Str(v.into());
    let echo = |params: Vec<(&str, Value)>| {
        Value::Array(vec![
            s("svc.echo"),
            Value::Map(params.into_iter().map(|(k, v)| (s(k), v)).collect()),
        ])
    };
    let mut items = vec![echo(vec![("a", s("xxxx"))])];
    for i in 0..20 {
        let earlier = s(&format!("[{i}]"));
        items.push(echo(vec![("a", earlier.clone()), ("b", earlier)]));
    }
    let mut h = reply_headers(&app);
    h.insert("RPC-Batch-Template", "?1");
    let payload = kaiju_streams::encode(&Value::Array(items), &h).unwrap();
    assert!(payload.len() < 700, "{} bytes", payload.len());
    let (idle, peak, letters) = peak_of(&t, "template chain", vec![payload]).await;
    assert!(peak < idle + BUDGET, "peak {peak}, idle {idle}");
    assert_eq!(letters.len(), 1, "the batch is rejected");
}

/// Issue 31 item 9 and issue 25 item 4: the shape that amplifies most (arrays of one item,
/// nested 120 deep, side by side), as large as the default `max_entry_bytes` allows; and the
/// same shape just small enough to be decoded, as a method's params.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worst_decode_shape_costs_a_bounded_amount() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let nested = |bytes: usize| {
        let tower = [vec![0x91; 120], vec![0xc0]].concat();
        let towers = (bytes / tower.len()) as u32;
        // ["svc.echo", {"a": [tower, tower, ...]}]
        let mut body = vec![0x92, 0xa8];
        body.extend(b"svc.echo");
        body.extend([0x81, 0xa1, b'a', 0xdd]);
        body.extend(towers.to_be_bytes());
        for _ in 0..towers {
            body.extend(&tower);
        }
        envelope(&body, &Headers::new())
    };
    let at_limit = nested(kaiju_streams::DEFAULT_MAX_ENTRY_BYTES - 1024);
    let (idle, peak, letters) = peak_of(&t, "nested arrays (8 MiB entry)", vec![at_limit]).await;
    assert!(peak < idle + BUDGET, "peak {peak}, idle {idle}");
    assert_eq!(letters.len(), 1);
    assert_eq!(field(&letters[0], "kind"), Some("too_large"));
    // 50 KiB: about 7 MiB decoded, within max_decoded_bytes: decoded, run and answered (the
    // method's typed params are a copy, and its result another).
    let within = nested(50 << 10);
    let (idle, peak, letters) = peak_of(&t, "nested arrays (50 KiB entry)", vec![within]).await;
    assert!(peak < idle + BUDGET, "peak {peak}, idle {idle}");
    assert!(letters.is_empty(), "it ran");
}

/// Issue 25 item 4: ten 5 MiB entries of tiny values in a row. Before: 401-448 MiB peak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_tiny_values_cost_a_bounded_amount() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let n: u32 = 5 << 20;
    let mut body = vec![0x92, 0xa8];
    body.extend(b"svc.echo");
    body.extend([0x81, 0xa1, b'a', 0xdd]);
    body.extend(n.to_be_bytes());
    body.extend(std::iter::repeat_n(0x01, n as usize));
    let entry = envelope(&body, &Headers::new());
    let (idle, peak, letters) = peak_of(&t, "10 x 5 MiB of tiny values", vec![entry; 10]).await;
    // Ten entries of 5 MiB are read at once (max_batch_size 10): 50 MiB that XREADGROUP hands
    // over whole, held while they are refused; the rest must stay small.
    assert!(
        peak < idle + 2 * BUDGET + (50 << 20),
        "peak {peak}, idle {idle}"
    );
    assert_eq!(letters.len(), 10);
    assert!(
        letters
            .iter()
            .all(|l| field(l, "kind") == Some("too_large"))
    );
}
