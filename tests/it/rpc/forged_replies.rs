//! Responses nobody can forge (issue 31, item 4). An attacker who may only write into another
//! app's stream can make that app publish the result of a method on any reply channel of the
//! env, with any `Request-Id`. Whoever guesses the `Request-Id` of a request some client is
//! waiting on answers it. (Single node.)
//!
//! Request-Ids used to be a counter and 40 bits of the per-thread xorshift that also makes
//! Correlation-Ids, so two seen requests gave the next id: [`predicted`] does that, and on that
//! code the first of its guesses answered the victim's request.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kaiju_core::{Lifecycle, Value};
use kaiju_rpc::{CallError, RpcClient, Scope};
use kaiju_streams::{HeaderValue, Headers, Outgoing, StreamWriter, decode};
use kaiju_tests::rpc::{Seen, seen_len, serve};
use kaiju_tests::streams::rpc_stream;
use kaiju_tests::{Target, app, eventually, namespace};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use serde_json::json;

/// Guesses in all.
const GUESSES: usize = 1_000_000;
/// Of them, those sent the attacker's way: each one an entry in a third app's stream, which
/// that app answers on the victim's reply channel, where the victim's client matches it.
const SENT: usize = 10_000;

/// The headers of every entry in `stream`, in order.
async fn headers_of(t: &Transport, stream: &str) -> Vec<Headers> {
    let entries: kaiju_transport::fred::types::Value =
        t.pool().xrange(stream, "-", "+", None).await.unwrap();
    entries
        .into_array()
        .into_iter()
        .map(|entry| {
            let fields = entry.into_array().pop().unwrap().into_array();
            let payload = fields[1].as_bytes().unwrap().to_vec();
            decode::<Value>(&payload).unwrap().1
        })
        .collect()
}

fn text(h: &Headers, name: &str) -> String {
    match h.get(name) {
        Some(HeaderValue::Str(s)) => s.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

const LOW40: u64 = 0xff_ffff_ffff;

/// The ids the old client would give its next requests, from two requests seen in a row
/// (`<counter>-<low 40 bits of xorshift>`, the Request-Id drawn just before the request's
/// Correlation-Id on the same thread): the 24 unknown high bits of the state are found by
/// trying them all, then the generator is run forward. Nothing for ids of another form.
fn predicted(seen: &[(String, String)]) -> Vec<String> {
    let parse = |id: &str| -> Option<(u64, u64)> {
        let (n, uid) = id.split_once('-')?;
        Some((n.parse().ok()?, u64::from_str_radix(uid, 16).ok()?))
    };
    let (Some((n1, r1)), Some(c1)) = (parse(&seen[0].0), u64::from_str_radix(&seen[0].1, 16).ok())
    else {
        return Vec::new();
    };
    let Some((_, r2)) = parse(&seen[1].0) else {
        return Vec::new();
    };
    let mut guesses = Vec::new();
    for high in 0..(1_u64 << 24) {
        let s1 = (high << 40) | r1;
        let s2 = xorshift(s1);
        if s2 & LOW40 != c1 || xorshift(s2) & LOW40 != r2 {
            continue;
        }
        // The state after the second request's Correlation-Id; the next outputs, a few in
        // case something else on the thread drew from it meanwhile.
        let mut s = xorshift(xorshift(s2));
        for _ in 0..8 {
            s = xorshift(s);
            for n in n1 + 2..n1 + 4 {
                guesses.push(format!("{n}-{:010x}", s & LOW40));
            }
        }
    }
    guesses
}

/// Every guess, in order: [`predicted`], the ids next to those seen (read as numbers, up to
/// 100,000 either side), then ids made at random; `GUESSES` in all.
fn guesses(seen: &[(String, String)]) -> impl Iterator<Item = String> {
    let near: Vec<u128> = seen
        .iter()
        .filter_map(|(id, _)| u128::from_str_radix(id, 16).ok())
        .collect();
    let neighbours = (1..=100_000_u128).flat_map(move |d| {
        near.clone()
            .into_iter()
            .flat_map(move |n| [n.wrapping_add(d), n.wrapping_sub(d)])
            .map(|g| format!("{g:032x}"))
    });
    let random = std::iter::repeat_with(|| uuid::Uuid::new_v4().simple().to_string());
    predicted(seen)
        .into_iter()
        .chain(neighbours)
        .chain(random)
        .take(GUESSES)
}

/// The victim ("shop") waits on a request to billing, which never answers (nothing reads its
/// stream). The attacker saw the victim's two earlier requests and makes a million guesses of
/// the waiting request's id: the first [`SENT`] through a third app (the real attack: the app
/// answers each on the victim's reply channel), the rest checked against the ids the victim
/// really used. The client matches a response to a request only when its `Request-Id` is the
/// whole id the request waits on (`replies::route`: one exact lookup in a map, nothing else),
/// so a guess that is not that id cannot answer it whichever way it is delivered; the sent ones
/// show the path works end to end. Single-threaded runtime, so the old client's ids came from
/// one thread's generator in turn, as in the attack.
#[tokio::test]
async fn a_million_guessed_request_ids_never_answer_a_request() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let shop = app(&namespace());
    let billing = app(&namespace());
    let third = app(&namespace());
    let seen = Seen::default();
    let mut third_listener = serve(&t, &third, &seen, Scope::System).await;
    let victim = RpcClient::new(t.clone(), &shop);
    let billing_stream = rpc_stream(&billing);
    // Two requests the attacker gets to see.
    for _ in 0..2 {
        let r = victim
            .request::<_, serde_json::Value>("invoices.get", json!({"id": 1}))
            .app(&billing.name)
            .timeout(Duration::from_millis(100))
            .await;
        assert!(matches!(r, Err(CallError::Timeout(_))), "{r:?}");
    }
    let observed: Vec<(String, String)> = headers_of(&t, billing_stream.as_str())
        .await
        .iter()
        .map(|h| (text(h, "Request-Id"), text(h, "Correlation-Id")))
        .collect();
    let reply_to = text(
        &headers_of(&t, billing_stream.as_str()).await[0],
        "Reply-To",
    );
    let started = Instant::now();
    let mut guesses = guesses(&observed);
    let sent: Vec<String> = guesses.by_ref().take(SENT).collect();
    let predicting = started.elapsed();
    // The request the attacker wants to answer.
    let waiting = {
        let victim = victim.clone();
        let billing = billing.name.clone();
        tokio::spawn(async move {
            victim
                .request::<_, serde_json::Value>("invoices.get", json!({"id": 3}))
                .app(&billing)
                .timeout(Duration::from_secs(60))
                .await
        })
    };
    eventually("the victim's request", Duration::from_secs(10), || async {
        t.pool()
            .xlen::<u64, _>(billing_stream.as_str())
            .await
            .unwrap()
            == 3
    })
    .await;
    // The sent guesses: the third app answers each on the victim's channel.
    let writer = StreamWriter::new(t.clone());
    let third_stream = rpc_stream(&third);
    let body = Value::Array(vec![
        Value::Str("svc.echo".into()),
        Value::Map(vec![(
            Value::Str("forged".into()),
            Value::Str("billing never answered this".into()),
        )]),
    ]);
    let sending = Instant::now();
    for chunk in sent.chunks(500) {
        let entries = chunk
            .iter()
            .map(|guess| {
                let mut h = Headers::new();
                h.insert("Correlation-Id", "attacker")
                    .insert("Reply-To", reply_to.as_str())
                    .insert("Request-Id", guess.as_str());
                Outgoing {
                    stream: &third_stream,
                    body: &body,
                    headers: h,
                }
            })
            .collect();
        writer.write_many(entries).await.unwrap();
    }
    seen_len(&seen, SENT).await;
    // The last answers reach the victim's client.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_in = sending.elapsed();
    let answered = waiting.is_finished();
    waiting.abort();
    let outcome = if answered {
        format!("{:?}", waiting.await)
    } else {
        String::new()
    };
    assert!(
        !answered,
        "a guessed Request-Id answered the victim's request: {outcome}"
    );
    // The rest, against every id the victim really used.
    let real: HashSet<String> = headers_of(&t, billing_stream.as_str())
        .await
        .iter()
        .map(|h| text(h, "Request-Id"))
        .collect();
    assert_eq!(real.len(), 3, "three requests, three ids");
    let mut checked = sent.len();
    let mut hits = sent.iter().filter(|g| real.contains(*g)).count();
    for guess in guesses {
        checked += 1;
        hits += usize::from(real.contains(&guess));
    }
    assert_eq!(checked, GUESSES);
    eprintln!(
        "{GUESSES} guesses ({SENT} sent through the third app in {sent_in:?}; \
         prediction {predicting:?}): {hits} hit; ids look like {:?}",
        real.iter().next()
    );
    assert_eq!(hits, 0, "guessed ids of the victim's requests");
    for id in &real {
        assert!(
            id.len() >= 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "a Request-Id of at least 128 bits in hex: {id}"
        );
    }
    third_listener.stop(Duration::from_secs(5)).await.unwrap();
}

/// A reply too large to decode (here 150 KB of nested one-item arrays, 21 MB once decoded) is
/// never decoded by the client: the request it answers fails at once, saying why, instead of
/// costing the client a hundred times the reply's size. The publisher here is a test playing
/// a server of the env that answers with such a thing.
#[tokio::test]
async fn an_oversized_reply_fails_its_request_undecoded() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let shop = app(&namespace());
    let billing = app(&namespace());
    let client = RpcClient::new(t.clone(), &shop);
    let billing_stream = rpc_stream(&billing);
    let started = Instant::now();
    let waiting = {
        let client = client.clone();
        let billing = billing.name.clone();
        tokio::spawn(async move {
            client
                .request::<_, serde_json::Value>("invoices.get", json!({"id": 3}))
                .app(&billing)
                .timeout(Duration::from_secs(30))
                .await
        })
    };
    eventually("the request", Duration::from_secs(10), || async {
        t.pool()
            .xlen::<u64, _>(billing_stream.as_str())
            .await
            .unwrap()
            == 1
    })
    .await;
    let request = &headers_of(&t, billing_stream.as_str()).await[0];
    let mut headers = Headers::new();
    headers
        .insert("Correlation-Id", text(request, "Correlation-Id"))
        .insert("Request-Id", text(request, "Request-Id"));
    // `[nil, headers]`, with the nil replaced by 150,000 one-item arrays nested around it.
    let small = kaiju_streams::encode(&Value::Nil, &headers).unwrap();
    assert_eq!(&small[..2], b"\x92\xc0");
    let mut reply = vec![0x92];
    reply.extend(std::iter::repeat_n(0x91, 150_000));
    reply.extend_from_slice(&small[1..]);
    use kaiju_transport::fred::interfaces::PubsubInterface;
    let _: i64 = t
        .client()
        .publish(text(request, "Reply-To"), reply)
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the request fails at once, not after its timeout")
        .unwrap();
    let message = format!("{answer:?}");
    assert!(
        message.contains("larger than a client decodes"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}
