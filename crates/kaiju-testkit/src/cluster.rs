//! A six-node Redis Cluster: 3 primaries, 3 replicas.

use std::io;
use std::time::Duration;

use crate::{RedisServer, ServerOptions, TlsOptions, wait_until};

/// How to run a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `cluster-node-timeout` in ms: how long a silent node takes to be considered failed.
    pub node_timeout_ms: u32,
    /// Extra arguments for every node.
    pub extra_args: Vec<String>,
    /// Serve TLS only, the cluster bus and replication included (`tls-cluster`,
    /// `tls-replication`). `None`: plain TCP.
    pub tls: Option<TlsOptions>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            node_timeout_ms: 2000,
            extra_args: Vec::new(),
            tls: None,
        }
    }
}

/// A running cluster; dropping it kills every node it started.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

const NODES: usize = 6;

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until it is fully usable (30 s at most).
    pub fn start(options: ClusterOptions) -> io::Result<Self> {
        let mut extra_args = options.extra_args.clone();
        if options.tls.is_some() {
            extra_args
                .extend(["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from));
        }
        let node_options = ServerOptions {
            cluster_node_timeout_ms: Some(options.node_timeout_ms),
            extra_args,
            port: None,
            tls: options.tls.clone(),
            sentinel_conf: None,
        };
        let nodes = (0..NODES)
            .map(|_| RedisServer::start(node_options.clone()))
            .collect::<io::Result<Vec<_>>>()?;
        let cluster = Self { nodes };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        cluster.nodes[0].cli(&args)?;
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Waits until every running node reports `cluster_state:ok` with all slots served, and every
    /// replica's link to its primary is up.
    pub fn wait_ready(&self, timeout: Duration) -> io::Result<()> {
        let ok = wait_until(timeout, || {
            self.nodes.iter().all(|node| {
                let info = node.cli(&["cluster", "info"]).unwrap_or_default();
                if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
                    return false;
                }
                let replication = node.cli(&["info", "replication"]).unwrap_or_default();
                !replication.contains("role:slave") || replication.contains("master_link_status:up")
            })
        });
        if ok {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("cluster not ready within {timeout:?}"),
            ))
        }
    }

    /// The nodes, in creation order (the first three start as primaries).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, taken out of the cluster value (to [`RedisServer::detach`] them).
    pub fn into_nodes(mut self) -> Vec<RedisServer> {
        std::mem::take(&mut self.nodes)
    }

    /// One node, mutably (to kill or restart it).
    pub fn node_mut(&mut self, index: usize) -> Option<&mut RedisServer> {
        self.nodes.get_mut(index)
    }

    /// A fred-compatible URL: `redis-cluster://127.0.0.1:<p0>?node=127.0.0.1:<p1>&...`
    /// (`rediss-cluster://` for a TLS cluster).
    pub fn url(&self) -> String {
        let scheme = if self.nodes[0].url().starts_with("rediss") {
            "rediss-cluster"
        } else {
            "redis-cluster"
        };
        let mut url = format!("{scheme}://127.0.0.1:{}", self.nodes[0].port());
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", node.port()));
        }
        url
    }

    /// The index of the node that is the primary for `slot` now, as seen by `CLUSTER NODES` on
    /// a live node.
    pub fn primary_of_slot(&mut self, slot: u16) -> io::Result<usize> {
        let ports: Vec<u16> = self.nodes.iter().map(RedisServer::port).collect();
        let mut last_error = None;
        for index in 0..self.nodes.len() {
            if !self.nodes[index].is_running() {
                continue;
            }
            match self.nodes[index].cli(&["cluster", "nodes"]) {
                Ok(listing) => {
                    return primary_in_listing(&listing, slot, &ports).ok_or_else(|| {
                        io::Error::other(format!("no primary for slot {slot}:\n{listing}"))
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no node is running")))
    }
}

/// Parses `CLUSTER NODES` output: `<id> <ip:port@bus> <flags> <master> ... <slot ranges>`.
fn primary_in_listing(listing: &str, slot: u16, ports: &[u16]) -> Option<usize> {
    listing.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = fields.get(2)?;
        if !flags.contains("master") || flags.contains("fail") {
            return None;
        }
        let serves = fields.iter().skip(8).any(|range| {
            let mut bounds = range.split('-').map(|b| b.parse::<u16>());
            match (bounds.next(), bounds.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) => (lo..=hi).contains(&slot),
                (Some(Ok(only)), None) => only == slot,
                _ => false,
            }
        });
        if !serves {
            return None;
        }
        let port: u16 = fields
            .get(1)?
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        ports.iter().position(|p| *p == port)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes() {
        let listing = "\
a 127.0.0.1:7001@17001 master - 0 1 2 connected 5461-10922
b 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
c 127.0.0.1:7002@17002 master,fail - 0 1 3 connected 10923-16383
d 127.0.0.1:7003@17003 slave b 0 1 1 connected
e 127.0.0.1:7004@17004 master - 0 1 7 connected 10923-16383";
        let ports = [7000, 7001, 7002, 7003, 7004];
        assert_eq!(primary_in_listing(listing, 0, &ports), Some(0));
        assert_eq!(primary_in_listing(listing, 6000, &ports), Some(1));
        assert_eq!(primary_in_listing(listing, 16000, &ports), Some(4));
    }
}
