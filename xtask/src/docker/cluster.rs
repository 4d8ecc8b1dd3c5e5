//! A 6-node cluster out of 6 bare servers, over RESP: what `redis-cli --cluster create
//! --cluster-replicas 1` does, without needing `redis-cli` on the host or in the image.

use std::time::{Duration, Instant};

use kaiju_testkit::wait_until as wait_for;

use crate::procs;
use crate::resp::{self, Reply};

/// What `redis-cli --cluster create --cluster-replicas 1` does, over RESP: slots to the first
/// three nodes, distinct config epochs, MEET, then each of the last three replicates one primary.
pub(super) fn create_cluster(ports: &[u16]) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("cluster setup: {what}: {e}");
    let ok = |port: u16, args: &[&str]| -> std::io::Result<()> {
        match resp::call(port, args)? {
            Reply::Error(e) => Err(std::io::Error::other(e)),
            _ => Ok(()),
        }
    };
    let ranges = [(0u16, 5460u16), (5461, 10922), (10923, 16383)];
    for (port, (lo, hi)) in ports.iter().zip(ranges) {
        let slots: Vec<String> = (lo..=hi).map(|s| s.to_string()).collect();
        let mut args = vec!["CLUSTER", "ADDSLOTS"];
        args.extend(slots.iter().map(String::as_str));
        ok(*port, &args).map_err(|e| fail("ADDSLOTS", e))?;
    }
    for (epoch, port) in ports.iter().enumerate() {
        let epoch = (epoch + 1).to_string();
        ok(*port, &["CLUSTER", "SET-CONFIG-EPOCH", &epoch])
            .map_err(|e| fail("SET-CONFIG-EPOCH", e))?;
    }
    for port in &ports[1..] {
        ok(
            ports[0],
            &["CLUSTER", "MEET", "127.0.0.1", &port.to_string()],
        )
        .map_err(|e| fail("MEET", e))?;
    }
    let all_known = wait_for(Duration::from_secs(30), || {
        procs::interrupted()
            || ports.iter().all(|port| {
                resp::text(*port, &["CLUSTER", "NODES"]).is_ok_and(|nodes| {
                    nodes.lines().count() == ports.len() && !nodes.contains("handshake")
                })
            })
    });
    interrupted()?;
    if !all_known {
        return Err("cluster setup: the nodes did not all meet within 30 s".into());
    }
    let ids = ports
        .iter()
        .map(|port| resp::text(*port, &["CLUSTER", "MYID"]))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| fail("MYID", e))?;
    for (replica, primary) in ports[3..].iter().zip(&ids) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            interrupted()?;
            match ok(*replica, &["CLUSTER", "REPLICATE", primary]) {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => return Err(fail("REPLICATE", e)),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    // Ready: every node serves all slots, every replica's link is up, and every node knows
    // the three replicas (so CLUSTER SLOTS lists them wherever a client asks).
    let ready = wait_for(Duration::from_secs(60), || {
        procs::interrupted()
            || ports.iter().all(|port| {
                let info = resp::text(*port, &["CLUSTER", "INFO"]).unwrap_or_default();
                let replication = resp::text(*port, &["INFO", "replication"]).unwrap_or_default();
                let nodes = resp::text(*port, &["CLUSTER", "NODES"]).unwrap_or_default();
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && (!replication.contains("role:slave")
                        || replication.contains("master_link_status:up"))
                    && nodes.lines().filter(|l| l.contains("slave")).count() == 3
            })
    });
    interrupted()?;
    if ready {
        Ok(())
    } else {
        Err("cluster setup: the cluster was not ready within 60 s".into())
    }
}

fn interrupted() -> Result<(), String> {
    if procs::interrupted() {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}
