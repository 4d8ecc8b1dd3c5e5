//! Watching what a test cannot see from its calls: the log lines a component writes
//! ([`Captured`]) and every command a server receives ([`Monitor`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kaiju_testkit::RedisServer;
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;

/// A `tracing` writer into a shared buffer: give a clone to
/// `tracing_subscriber::fmt().with_writer(...)`, read with [`text`](Self::text).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Captures every `tracing` event at `level` or above that this thread emits (for a
    /// `#[tokio::test]` on the current-thread runtime: every task of the test) until the
    /// guard is dropped.
    pub fn this_thread(level: tracing::Level) -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (captured, guard)
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// How many bytes were written so far.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Adds `bytes`, as a write would (for loggers other than `tracing`'s).
    pub fn push(&self, bytes: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(bytes);
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// `redis-cli monitor` on a server of the test's own: every command the server receives from
/// [`start`](Self::start) on, as MONITOR prints them.
pub struct Monitor {
    child: std::process::Child,
    lines: std::thread::JoinHandle<Vec<String>>,
}

impl Monitor {
    /// Starts MONITOR on `server`, and returns once the server shows it (`t` connects there):
    /// commands sent after this are all seen.
    pub async fn start(server: &RedisServer, t: &Transport) -> Self {
        let mut child = std::process::Command::new(kaiju_testkit::cli_path().unwrap())
            .args(["-p", &server.port().to_string(), "monitor"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        crate::eventually("MONITOR", Duration::from_secs(10), || async {
            t.pool()
                .client_list::<String, String>(None, None)
                .await
                .unwrap()
                .contains("cmd=monitor")
        })
        .await;
        Self { child, lines }
    }

    /// Stops MONITOR and returns every line it printed.
    pub fn lines(mut self) -> Vec<String> {
        self.child.kill().unwrap();
        let _ = self.child.wait();
        self.lines.join().unwrap()
    }
}
