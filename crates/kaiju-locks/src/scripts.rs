//! The lock scripts (`lua/`), assembled once: the queued and all-or-nothing acquires include
//! `token.lua`.

use std::sync::LazyLock;

use kaiju_transport::Script;

/// The next-token and replay functions, included by the scripts that take locks.
const TOKEN: &str = include_str!("../lua/token.lua");

/// `lua` with [`TOKEN`] in place of its include line.
fn with_token(lua: &str) -> String {
    lua.replacen("-- #include token.lua", TOKEN, 1)
}

pub(crate) static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_token(include_str!("../lua/acquire.lua"))));
pub(crate) static ACQUIRE_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_token(include_str!("../lua/acquire_many.lua"))));
pub(crate) static RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/renew.lua")));
pub(crate) static ABANDON: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/abandon.lua")));
/// First tries and releases, one or many per call (`batch.lua`).
pub(crate) static BATCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/batch.lua")));

/// Every script of the locks.
pub(crate) fn all() -> Vec<&'static Script> {
    vec![&*ACQUIRE, &*ACQUIRE_MANY, &*RENEW, &*ABANDON, &*BATCH]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_include_is_resolved() {
        for script in [&ACQUIRE, &ACQUIRE_MANY, &RENEW, &ABANDON, &BATCH] {
            let directive = |l: &str| l.trim_start().starts_with("-- #include");
            assert!(
                !script.source().lines().any(directive),
                "{}",
                script.source()
            );
        }
    }
}
