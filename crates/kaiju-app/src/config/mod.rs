//! Loading kaiju's YAML (or JSON) config: files layered in order, templates filled from env
//! files, `--env` values and the OS environment, then checked.
//!
//! ```
//! use kaiju_app::config::ConfigLoader;
//!
//! let dir = std::env::temp_dir().join(format!("kaiju-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("app.yml"), r#"
//! main: {name: "[main_name]", env: "[main_env:dev]"}
//! services:
//!   - cls: RedisTransportService
//!     settings: {host: '[redis_host:"127.0.0.1"]', port: "[redis_port:6379]"}
//! "#)?;
//! let config = ConfigLoader::new()
//!     .file(dir.join("app.yml"))
//!     .env_arg("main_name=billing")?
//!     .env_arg("redis_port=6380")?
//!     .no_os_env()
//!     .load()?;
//! assert_eq!(config.project.main.name, "billing");
//! assert_eq!(config.project.services[0].settings.get("port").unwrap().to_json(), 6380);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Templates
//!
//! A string value that is a whole template, `"[...]"`, is replaced by a typed value before the
//! config is checked. kaiju's grammar (its select operator):
//!
//! | template | value |
//! |---|---|
//! | `"[main_name]"` | the value of `main_name`; an error naming the template and its place when there is none |
//! | `"[redis_port:6379]"` | the value of `redis_port`, else the default `6379` |
//! | `"[redis.host]"` | a dotted key descends the nested maps of env files |
//! | `"[debug:True]"`, `"[x:None]"`, `"[v:\"1.0.0\"]"` | a default is a Python literal: `True`/`False`, `None`, numbers, quoted strings |
//! | `"[v:1.0.0]"`, `"[h:127.0.0.1]"` | a default that is not a literal is kept as text (kaiju crashed on these) |
//! | ``'[url:`"redis://h:6379"`]'`` | backticks quote an argument, `:` and brackets included |
//! | `"[a:[b:1]]"` | a default may be a template, filled only when it is needed |
//! | `"[key:]"` | no default: the key is required |
//! | ``"`[not a template]`"`` | a whole string in backticks is that text, unquoted |
//!
//! Arguments are split on `:` outside nested brackets and backticks, so a default may hold
//! `:` (``[url:`redis://h:6379`]``). Templates nest at most 8 deep. kaiju's other operators,
//! `!e` (eval), `!x` (function calls) and `!f` (format), are errors: they run code that a
//! config names. A string that starts with `[` but does not end with `]`, or the other way
//! round, is an error (quote a literal bracket with backticks); brackets inside a string
//! (`"host-[n]-a"`) are text.
//!
//! Values come from, highest precedence first: `--env NAME=VALUE`
//! ([`ConfigLoader::env_arg`]), OS environment variables named exactly as the key (unless
//! [`ConfigLoader::no_os_env`]), env files ([`ConfigLoader::env_file`], YAML or JSON maps; later
//! files win), then the default. `--env` and OS values are typed as kaiju types them (`42` is
//! an int, `true`/`none` in any case are bool and null, `1.0.0` is text); env-file values keep
//! their YAML types.

mod literal;
mod merge;
mod node;
mod project;
mod template;
mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use node::{Node, Place, Value};
pub use project::{
    AppSection, MAX_SHUTDOWN_TIMEOUT, MainSettings, Project, RunSettings, ServiceEntry,
};
pub use yaml::YamlError;

use template::Env;

/// Largest config or env file read (a config is a few KiB; this stops a wrong path to a huge
/// file early).
pub const MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// A config could not be loaded: what is wrong and where (file, line, column; or the
/// command-line argument or environment variable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct ConfigError {
    /// Where.
    pub place: Place,
    /// What.
    pub message: String,
}

impl ConfigError {
    /// An error at `place`.
    pub fn new(place: Place, message: impl Into<String>) -> Self {
        Self {
            place,
            message: message.into(),
        }
    }
}

impl From<YamlError> for ConfigError {
    fn from(e: YamlError) -> Self {
        Self::new(e.place, e.message)
    }
}

/// A loaded config: the merged, filled tree and its checked sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The whole config after layering and template filling.
    pub tree: Node,
    /// The checked sections.
    pub project: Project,
}

impl Config {
    /// The config as JSON with secrets hidden, for printing: every value taken from the OS
    /// environment or an env file (shown as `<hidden: the environment variable NAME>`), the
    /// values of keys whose name says they are secrets ([`is_secret_name`]), `Bearer ...`-like
    /// credentials, and the password and secret query parameters of URLs.
    pub fn redacted(&self) -> serde_json::Value {
        fn walk(node: &Node, secret: bool) -> serde_json::Value {
            use serde_json::Value as J;
            if let Some(from) = &node.from_env {
                return J::String(format!("<hidden: {from}>"));
            }
            if secret && !matches!(node.value, Value::Null) {
                return J::String("<hidden>".into());
            }
            match &node.value {
                Value::Map(entries) => J::Object(
                    entries
                        .iter()
                        .map(|(k, v)| (k.clone(), walk(v, template::is_secret_key(k))))
                        .collect(),
                ),
                Value::Seq(items) => J::Array(items.iter().map(|i| walk(i, false)).collect()),
                Value::Str(s) => J::String(template::shown(s, false)),
                _ => node.to_json(),
            }
        }
        walk(&self.tree, false)
    }
}

/// Whether a setting's name says its value is a secret: it holds `passw`, `pwd`, `pass`,
/// `secret`, `token`, `auth`, `private`, `credential`, `cookie`, `jwt`, `bearer`, `session` or
/// `salt`, or one of its words ends in `key` (`api-key`, `apiKey`, `signing_key`) or starts
/// with `sign`. Such values are hidden in printed configs and in errors.
pub fn is_secret_name(name: &str) -> bool {
    template::is_secret_key(name)
}

/// Loads a config as kaiju's `ConfigLoader` does, with its defects fixed (see the crate docs).
#[derive(Debug, Clone, Default)]
pub struct ConfigLoader {
    files: Vec<PathBuf>,
    env_files: Vec<PathBuf>,
    cli: Vec<(String, Node)>,
    os: Option<Vec<(String, String)>>,
    no_os: bool,
}

impl ConfigLoader {
    /// A loader with no files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a config file (`.yml`, `.yaml` or `.json`), layered over the ones before it.
    #[must_use]
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push(path.into());
        self
    }

    /// Adds an env file (a YAML or JSON mapping of template values; values keep their YAML
    /// types). Later files win.
    #[must_use]
    pub fn env_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.env_files.push(path.into());
        self
    }

    /// Sets a template value as `--env NAME=VALUE` does: typed like an environment variable,
    /// and above every other source. An empty VALUE is ignored, as in kaiju.
    pub fn env_arg(mut self, arg: &str) -> Result<Self, ConfigError> {
        let (name, value) = arg
            .split_once('=')
            .filter(|(n, _)| !n.trim().is_empty())
            .ok_or_else(|| {
                // No `=`: the argument holds no value to hide.
                ConfigError::new(Place::whole(format!("--env {arg}")), "expected NAME=VALUE")
            })?;
        let name = name.trim();
        // The place names the variable, never its value.
        let place = Place::whole(format!("--env {name}"));
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(ConfigError::new(
                place,
                "a template name has only letters, digits, `_`, `.` and `-` (a config's `[name]` could never use this one)",
            ));
        }
        match literal::env_value(value, &place) {
            Some(node) => self.cli.push((name.to_owned(), node)),
            None => {
                return Err(ConfigError::new(
                    place,
                    format!(
                        "no value after `=`; give one (`--env {name}=\"\"` is the empty string), or leave the argument out to use the config's default"
                    ),
                ));
            }
        }
        Ok(self)
    }

    /// Does not read OS environment variables (kaiju's `--no-os-env`).
    #[must_use]
    pub fn no_os_env(mut self) -> Self {
        self.no_os = true;
        self
    }

    /// Reads template values from these variables instead of the process environment.
    #[must_use]
    pub fn os_env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.os = Some(vars.into_iter().collect());
        self
    }

    /// Loads, layers, fills and checks.
    pub fn load(self) -> Result<Config, ConfigError> {
        let mut tree = yaml::parse(
            "{packages: [], main: {}, app: {}, etc: {}, services: []}",
            &Arc::from("<defaults>"),
        )?;
        if self.files.is_empty() {
            return Err(ConfigError::new(
                Place::whole("the command line"),
                "no config file given (-c FILE)",
            ));
        }
        let mut has_main = false;
        for path in &self.files {
            let node = read(path)?;
            has_main |= node.get("main").is_some();
            match node.value {
                Value::Map(_) => merge::layer(&mut tree, node),
                Value::Null => {}
                _ => {
                    return Err(ConfigError::new(
                        node.place.clone(),
                        "a config file must hold a mapping",
                    ));
                }
            }
        }
        let mut env = Env {
            cli: self.cli,
            os: Vec::new(),
            files: Vec::new(),
        };
        for path in &self.env_files {
            let node = read(path)?;
            match node.value {
                Value::Map(entries) => {
                    for (k, v) in entries {
                        env.files.retain(|(e, _)| *e != k);
                        env.files.push((k, v));
                    }
                }
                Value::Null => {}
                _ => {
                    return Err(ConfigError::new(
                        node.place.clone(),
                        "an env file must hold a mapping",
                    ));
                }
            }
        }
        if !self.no_os {
            // Variables that are not UTF-8 cannot be template values; they are skipped.
            env.os = self.os.unwrap_or_else(|| {
                std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                    .collect()
            });
        }
        template::fill(&mut tree, &env)?;
        // A snippet (a services list to layer over an app's config) run on its own.
        if !has_main {
            let files: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
            return Err(ConfigError::new(
                Place::whole(files.join(", ")),
                "this config has no `main` section; add `main: {name: ..., env: ...}` or layer it over a file that has one (-c app.yml -c this.yml)",
            ));
        }
        let project = Project::read(&tree)?;
        Ok(Config { tree, project })
    }
}

/// Reads one YAML or JSON file.
fn read(path: &Path) -> Result<Node, ConfigError> {
    let source: Arc<str> = Arc::from(path.display().to_string());
    let place = Place::whole(source.clone());
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "yml" | "yaml" | "json") {
        return Err(ConfigError::new(
            place,
            "unknown file type: use .yml, .yaml or .json",
        ));
    }
    let size = std::fs::metadata(path)
        .map_err(|e| ConfigError::new(place.clone(), format!("cannot read: {e}")))?
        .len();
    if size > MAX_FILE_SIZE {
        return Err(ConfigError::new(
            place,
            format!("larger than {MAX_FILE_SIZE} bytes"),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(place.clone(), format!("cannot read: {e}")))?;
    if ext == "json" {
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| ConfigError {
            place: Place::at(source.clone(), e.line(), e.column()),
            message: e.to_string(),
        })?;
        return Ok(Node::from_json(&json, &place));
    }
    Ok(yaml::parse(&text, &source)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const VALID: &str = "main: {name: '[main_name:app]', env: dev}\nservices:\n  - cls: RedisListener\n    settings: {scope: SYSTEM, max_batch_size: '[n:10]'}\netc: {a: &x [1, 2], b: *x, c: {<<: {d: 1}}}\n";

    /// Arbitrary and mutated config text through the whole loader path (YAML, literals,
    /// templates, section checks) never panics or hangs. `cargo xtask fuzz` runs it with more
    /// cases.
    #[test]
    fn fuzz_config_loader() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config as RunnerConfig, TestRunner};
        let cases = kaiju_testkit::fuzz_cases();
        let source: Arc<str> = Arc::from("fuzz.yml");
        let env = Env {
            cli: vec![("n".into(), Node::new(Value::Int(3), Place::whole("t")))],
            os: vec![("main_name".into(), "x".into())],
            files: Vec::new(),
        };
        let check = |text: &str| {
            if let Ok(mut node) = yaml::parse(text, &source)
                && template::fill(&mut node, &env).is_ok()
            {
                let _ = Project::read(&node);
            }
            let _ = literal::parse(text, &Place::whole("t"));
            let _ = literal::env_value(text, &Place::whole("t"));
        };
        let mut runner = TestRunner::new(RunnerConfig::with_cases(cases));
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..300), |bytes| {
                check(&String::from_utf8_lossy(&bytes));
                Ok(())
            })
            .unwrap();
        let edits = proptest::collection::vec((0..VALID.len(), any::<u8>()), 1..6);
        runner
            .run(&edits, |edits| {
                let mutated = kaiju_testkit::mutate(VALID.as_bytes(), &edits);
                check(&String::from_utf8_lossy(&mutated));
                Ok(())
            })
            .unwrap();
        runner
            .run(&"\\[[^\\n]{0,60}\\]", |t| {
                check(&format!("v: '{}'\n", t.replace('\'', "''")));
                Ok(())
            })
            .unwrap();
        eprintln!(
            "fuzz_config_loader: {cases} arbitrary, {cases} mutated and {cases} template inputs loaded without a panic"
        );
    }
}
