//! Lock helpers several lock test files share.

use kaiju_locks::AcquireOptions;

/// Options that fail at once on a held lock instead of waiting.
pub fn no_wait() -> AcquireOptions {
    AcquireOptions {
        wait: false,
        ..AcquireOptions::default()
    }
}
