//! The transport's metrics (docs/metrics.md): reconnects of the pool's connections, and
//! errors by kind. Both are rare, so they are looked up in the registry where they happen.

use fred::clients::Client;
use fred::interfaces::EventInterface;

/// A Redis error was classified as `kind` (`kaiju_transport_errors_total{kind}`).
pub(crate) fn error(kind: &'static str) {
    metrics::counter!("kaiju_transport_errors_total", "kind" => kind).increment(1);
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
