//! What the runtime tests share: logs that test services write into, found by an id the
//! config names (a service is built from YAML, so it cannot be handed its log directly).

use std::sync::{Arc, Mutex};

/// What happened to the services of one test, in order.
pub(crate) type Log = Arc<Mutex<Vec<String>>>;

fn logs() -> &'static Mutex<Vec<(String, Log)>> {
    static LOGS: Mutex<Vec<(String, Log)>> = Mutex::new(Vec::new());
    &LOGS
}

/// The log named `id`, made on first use.
pub(crate) fn log_for(id: &str) -> Log {
    let mut logs = logs().lock().unwrap();
    if let Some((_, l)) = logs.iter().find(|(k, _)| k == id) {
        return l.clone();
    }
    let l = Log::default();
    logs.push((id.to_owned(), l.clone()));
    l
}
