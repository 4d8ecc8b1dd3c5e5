//! A Sentinel deployment: one primary, one replica, three sentinels (quorum 2).

use std::io;
use std::time::Duration;

use crate::{RedisServer, ServerOptions, redis_cli, wait_until};

/// How to run a Sentinel set.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    /// The monitored primary's name (`sentinel monitor <name> ...`).
    pub service_name: String,
    /// `requirepass` (and `masterauth`) of the primary and the replica. `None`: no password.
    pub password: Option<String>,
    /// `requirepass` of the sentinels themselves. `None`: no password.
    pub sentinel_password: Option<String>,
    /// `down-after-milliseconds`: how long a silent primary takes to be considered down.
    pub down_after_ms: u32,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        Self {
            service_name: "kaiju".into(),
            password: None,
            sentinel_password: None,
            down_after_ms: 1000,
        }
    }
}

/// A running Sentinel set; dropping it kills every process it started.
#[derive(Debug)]
pub struct SentinelSet {
    options: SentinelOptions,
    /// The primary at start, then the replica.
    data: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl SentinelSet {
    /// Starts the primary, its replica and three sentinels, and waits (30 s at most) until the
    /// replica is in sync and every sentinel knows the replica and the two other sentinels.
    pub fn start(options: SentinelOptions) -> io::Result<Self> {
        let mut auth = Vec::new();
        if let Some(password) = &options.password {
            auth.extend(["--requirepass", password, "--masterauth", password].map(String::from));
        }
        let primary = RedisServer::start(ServerOptions {
            extra_args: auth.clone(),
            ..ServerOptions::default()
        })?;
        let mut replica_args = auth;
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port().to_string(),
        ]);
        let replica = RedisServer::start(ServerOptions {
            extra_args: replica_args,
            ..ServerOptions::default()
        })?;
        let mut conf = format!(
            "sentinel monitor {name} 127.0.0.1 {port} 2\n\
             sentinel down-after-milliseconds {name} {down}\n\
             sentinel failover-timeout {name} 10000\n\
             sentinel parallel-syncs {name} 1\n",
            name = options.service_name,
            port = primary.port(),
            down = options.down_after_ms,
        );
        if let Some(password) = &options.password {
            conf.push_str(&format!(
                "sentinel auth-pass {} {password}\n",
                options.service_name
            ));
        }
        if let Some(password) = &options.sentinel_password {
            conf.push_str(&format!("requirepass {password}\n"));
        }
        let sentinels = (0..3)
            .map(|_| {
                RedisServer::start(ServerOptions {
                    sentinel_conf: Some(conf.clone()),
                    ..ServerOptions::default()
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let set = Self {
            options,
            data: vec![primary, replica],
            sentinels,
        };
        let expected = format!(
            "status=ok,address=127.0.0.1:{},slaves=1,sentinels=3",
            set.data[0].port()
        );
        let ready = wait_until(Duration::from_secs(30), || {
            set.sentinels.iter().all(|s| {
                set.sentinel_cli(s.port(), &["info", "sentinel"])
                    .is_ok_and(|info| info.contains(&expected))
            }) && set
                .data_cli(set.data[1].port(), &["info", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"))
        });
        if ready {
            Ok(set)
        } else {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the sentinel set was not ready within 30 s",
            ))
        }
    }

    /// The monitored primary's name.
    pub fn service_name(&self) -> &str {
        &self.options.service_name
    }

    /// The sentinels' addresses, `127.0.0.1:<port>`.
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect()
    }

    /// The primary's port as the sentinels report it now (`SENTINEL get-master-addr-by-name`).
    pub fn primary_port(&self) -> io::Result<u16> {
        let mut last = None;
        for sentinel in &self.sentinels {
            match self.sentinel_cli(
                sentinel.port(),
                &[
                    "sentinel",
                    "get-master-addr-by-name",
                    &self.options.service_name,
                ],
            ) {
                Ok(out) => {
                    if let Some(port) = out.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                        return Ok(port);
                    }
                    last = Some(io::Error::other(format!("unexpected reply: {out}")));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no sentinel")))
    }

    /// The ports of the data nodes (the first primary, then the replica).
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(RedisServer::port).collect()
    }

    /// The process id of the data node on `port`, while it runs.
    pub fn data_pid(&self, port: u16) -> Option<u32> {
        self.data.iter().find(|n| n.port() == port)?.pid()
    }

    /// SIGKILLs the data node that is the primary now; returns its port.
    pub fn kill_primary(&mut self) -> io::Result<u16> {
        let port = self.primary_port()?;
        let node = self
            .data
            .iter_mut()
            .find(|n| n.port() == port)
            .ok_or_else(|| io::Error::other(format!("no data node on port {port}")))?;
        node.kill();
        Ok(port)
    }

    /// Runs `redis-cli` against a data node, with its password.
    pub fn data_cli(&self, port: u16, args: &[&str]) -> io::Result<String> {
        with_password(port, self.options.password.as_deref(), args)
    }

    fn sentinel_cli(&self, port: u16, args: &[&str]) -> io::Result<String> {
        with_password(port, self.options.sentinel_password.as_deref(), args)
    }
}

fn with_password(port: u16, password: Option<&str>, args: &[&str]) -> io::Result<String> {
    match password {
        Some(password) => {
            let mut all = vec!["-a", password, "--no-auth-warning"];
            all.extend_from_slice(args);
            redis_cli(port, &all)
        }
        None => redis_cli(port, args),
    }
}
