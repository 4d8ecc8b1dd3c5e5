//! The deployments of the transport README, against servers of their own or the shared ones:
//! TLS, Sentinel, least-privilege ACL users, and recovery from restarts and failovers.

mod acl;
mod recovery;
mod sentinel;
mod tls;
