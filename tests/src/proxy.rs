//! A TCP proxy between the client and Redis that can misbehave on command: drop the next reply
//! and cut the connection (the command ran, the client never hears of it), or black-hole every
//! connection (a half-open network: bytes go nowhere, nothing is closed).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic.
#[derive(Debug, Default)]
struct Faults {
    /// Replies to drop (each drop also cuts that connection).
    drop_replies: AtomicUsize,
    /// Forward nothing in either direction, close nothing.
    black_hole: AtomicBool,
    /// Replies dropped so far.
    dropped: AtomicUsize,
    /// Connections accepted so far (each gets the next number).
    accepted: AtomicUsize,
    /// Connections numbered below this forward nothing, forever (half-open).
    dead_below: AtomicUsize,
}

/// A proxy to a Redis server on loopback; dropped, it closes its listener and connections.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    faults: Arc<Faults>,
    _stop: watch::Sender<bool>,
}

impl Proxy {
    /// A proxy in front of `127.0.0.1:<upstream>`.
    pub async fn start(upstream: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let faults = Arc::new(Faults::default());
        let (stop, stopped) = watch::channel(false);
        let shared = faults.clone();
        tokio::spawn(async move {
            loop {
                let mut stopped = stopped.clone();
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stopped.changed() => return,
                };
                let Ok((client, _)) = accepted else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let number = shared.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(relay(client, server, shared.clone(), stopped, number));
            }
        });
        Ok(Self {
            port,
            faults,
            _stop: stop,
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Settings for a transport through this proxy, with one pooled connection so the proxy
    /// sees every command in order.
    pub fn settings(&self) -> kaiju_core::RedisSettings {
        kaiju_core::RedisSettings {
            pool_size: 1,
            ..kaiju_core::RedisSettings::from_url(self.url())
        }
    }

    /// The next reply from the server is dropped and its connection cut: the command ran, and
    /// the client sees a dead connection.
    pub fn drop_next_reply(&self) {
        self.faults.drop_replies.fetch_add(1, Ordering::SeqCst);
    }

    /// How many replies were dropped so far.
    pub fn dropped(&self) -> usize {
        self.faults.dropped.load(Ordering::SeqCst)
    }

    /// Stop (or resume) forwarding anything, without closing connections.
    pub fn black_hole(&self, on: bool) {
        self.faults.black_hole.store(on, Ordering::SeqCst);
    }

    /// Every connection open now goes half-open for good: nothing is forwarded on it, nothing
    /// is closed. New connections work normally.
    pub fn cut_existing(&self) {
        let accepted = self.faults.accepted.load(Ordering::SeqCst);
        self.faults.dead_below.store(accepted, Ordering::SeqCst);
    }
}

async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    faults: Arc<Faults>,
    mut stopped: watch::Receiver<bool>,
    number: usize,
) {
    let dead = |faults: &Faults| {
        faults.black_hole.load(Ordering::SeqCst)
            || number < faults.dead_below.load(Ordering::SeqCst)
    };
    let mut from_client = vec![0_u8; 64 * 1024];
    let mut from_server = vec![0_u8; 64 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut from_client) => {
                let Ok(n) = read else { return };
                if n == 0 { return; }
                if dead(&faults) { continue; }
                if server.write_all(&from_client[..n]).await.is_err() { return; }
            }
            read = server.read(&mut from_server) => {
                let Ok(n) = read else { return };
                if n == 0 { return; }
                if dead(&faults) { continue; }
                let drop_it = faults
                    .drop_replies
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if drop_it {
                    faults.dropped.fetch_add(1, Ordering::SeqCst);
                    return; // both sockets close here
                }
                if client.write_all(&from_server[..n]).await.is_err() { return; }
            }
            _ = stopped.changed() => return,
        }
    }
}
