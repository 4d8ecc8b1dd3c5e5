//! Why an app could not be built, started or stopped.

use crate::config::{ConfigError, Place};

/// A boxed error from a service hook.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Building or running an app failed. The message names the service, its class and where its
/// entry is in the config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The config could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No class of that name is registered.
    #[error("{place}: unknown service class `{cls}`{hint}")]
    UnknownClass {
        /// The class.
        cls: String,
        /// Where the entry is.
        place: Place,
        /// A suggestion (" (did you mean ...?)") and the known classes.
        hint: String,
    },
    /// A kaiju (Python) class that kaiju-rs does not implement.
    #[error(
        "{place}: service class `{cls}` is not available in kaiju-rs: {why}; remove the entry or set `enabled: false`"
    )]
    NotAvailable {
        /// The class.
        cls: String,
        /// Where the entry is.
        place: Place,
        /// Why, and what to use instead.
        why: &'static str,
    },
    /// A class name was registered twice ([`Registry::register`](crate::Registry::register)).
    #[error("service class `{cls}` is already registered; register yours under another name")]
    DuplicateClass {
        /// The class name.
        cls: String,
    },
    /// Two services have one name and the second has no `override: true`.
    #[error(
        "{place}: a service named `{name}` already exists; give this one another `name`, or set `override: true` to replace it"
    )]
    DuplicateName {
        /// The name.
        name: String,
        /// Where the second entry is.
        place: Place,
    },
    /// A setting is unknown or has the wrong type or value.
    #[error(transparent)]
    Settings(Box<SettingsError>),
    /// A service cannot start with the others of the config: a dependency is missing or of
    /// another class, or a setting does not fit theirs ([`Service::check`](crate::Service::check)).
    #[error("{place}: service `{service}` ({cls}): {source}")]
    Check {
        /// The service name.
        service: String,
        /// Its class.
        cls: String,
        /// Where its entry is.
        place: Place,
        /// What is wrong.
        #[source]
        source: BoxError,
    },
    /// A service failed in one of its lifecycle hooks.
    #[error("service `{service}` ({cls}) failed in {phase}: {source}")]
    Service {
        /// The service name.
        service: String,
        /// Its class.
        cls: String,
        /// `init`, `post_init`, `start` or `close`.
        phase: &'static str,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The app stopped, but some services did not close cleanly (in-flight work abandoned at
    /// the deadline; it stays pending for redelivery where the service supports it).
    #[error("stopped, but {} service(s) did not close cleanly: {}", errors.len(), errors.iter().map(|(s, e)| format!("{s}: {e}")).collect::<Vec<_>>().join("; "))]
    Unclean {
        /// `(service, error)` pairs.
        errors: Vec<(String, String)>,
    },
    /// [`App::start`](crate::App::start) was called a second time (or `run` after a start
    /// that failed or a stop).
    #[error("the app was started already; an app starts once")]
    AlreadyStarted,
    /// [`App::stop`](crate::App::stop) was called while the app was starting: the start ended
    /// at its next hook, and the stop closed what had started.
    #[error("the app was stopped while it was starting")]
    Stopped,
    /// Waiting for a stop signal failed.
    #[error("cannot wait for SIGINT/SIGTERM: {0}")]
    Signal(#[source] std::io::Error),
}

/// A service's setting is unknown or has the wrong type or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: service `{service}` ({cls}): setting `{field}`: {message}")]
pub struct SettingsError {
    /// The service name.
    pub service: String,
    /// Its class.
    pub cls: String,
    /// Where the setting (or the entry) is.
    pub place: Place,
    /// The setting's path (`nodes[1]`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}
