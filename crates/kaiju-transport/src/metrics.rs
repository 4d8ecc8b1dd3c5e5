//! The transport's metrics (docs/metrics.md): reconnects of the pool's connections, and
//! errors by kind. Both are rare, so they are looked up in the registry where they happen.

use fred::clients::Client;
use fred::interfaces::EventInterface;

use crate::TransportError;

/// The `kind` label of an error: its variant, in snake case (a fixed set).
pub(crate) fn kind(error: &TransportError) -> &'static str {
    match error {
        TransportError::Config(_) => "config",
        TransportError::Tls { .. } => "tls",
        TransportError::Auth { .. } => "auth",
        TransportError::Timeout { .. } => "timeout",
        TransportError::Connection { .. } => "connection",
        TransportError::BusyGroup { .. } => "busy_group",
        TransportError::NoGroup { .. } => "no_group",
        TransportError::NoScript { .. } => "no_script",
        TransportError::NoFunction { .. } => "no_function",
        TransportError::CrossSlot { .. } => "cross_slot",
        TransportError::WrongType { .. } => "wrong_type",
        TransportError::NoPermission { .. } => "no_permission",
        TransportError::Unavailable { .. } => "unavailable",
        TransportError::Protocol { .. } => "protocol",
        TransportError::Server { .. } => "server",
        TransportError::Client { .. } => "client",
    }
}

/// A Redis error was classified (`kaiju_transport_errors_total{kind}`).
pub(crate) fn error(error: &TransportError) {
    metrics::counter!("kaiju_transport_errors_total", "kind" => kind(error)).increment(1);
}

/// Counts the reconnects of `clients` (`kaiju_transport_reconnects_total`) until they close.
pub(crate) fn count_reconnects(clients: &[Client]) {
    for client in clients {
        crate::events::listen(
            client.reconnect_rx(),
            |_| {
                metrics::counter!("kaiju_transport_reconnects_total").increment(1);
                std::future::ready(())
            },
            |missed| metrics::counter!("kaiju_transport_reconnects_total").increment(missed),
        );
    }
}
