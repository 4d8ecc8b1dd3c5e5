//! The sections of a loaded config, checked as kaiju checks them (unknown keys are errors),
//! with errors that point at the file, line and column.

use super::ConfigError;
use super::node::{Node, Place, Value};

/// kaiju's `main` section: who the app is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MainSettings {
    /// App name: the second part of every key, the default consumer group.
    pub name: String,
    /// Environment: the first part of every key. Default: `dev` (kaiju requires it).
    pub env: String,
    /// App version. Default: `""` (kaiju requires it).
    pub version: String,
    /// `DEBUG`, `INFO`, `WARNING` or `ERROR`. Default: `INFO`.
    pub loglevel: String,
}

/// kaiju's `run` section (optional here; kaiju required it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSettings {
    /// How long a graceful stop may take, seconds, at most
    /// [`MAX_SHUTDOWN_TIMEOUT`]. Default: `30`.
    pub shutdown_timeout: u64,
    /// The HTTP front's host (`run.host`). With [`port`](Self::port), the app serves
    /// JSON-RPC over HTTP (kaiju-app's `http` feature). Default: none.
    pub host: Option<String>,
    /// The HTTP front's port (`run.port`, 1 to 65535). Default: none.
    pub port: Option<u16>,
    /// The HTTP front's Unix socket path (`run.path`, served beside host and port). Default:
    /// none.
    pub path: Option<String>,
    /// How long an idle HTTP keep-alive connection stays open, seconds. Default: `60`.
    pub keepalive_timeout: u64,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            shutdown_timeout: 30,
            host: None,
            port: None,
            path: None,
            keepalive_timeout: 60,
        }
    }
}

/// kaiju's `app` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSection {
    /// `app.debug`. Default: `false`.
    pub debug: bool,
    /// The largest HTTP request body, bytes (`app.client_max_size`, at least 1024). Default:
    /// 1 MiB (aiohttp's).
    pub client_max_size: u64,
}

impl Default for AppSection {
    fn default() -> Self {
        Self {
            debug: false,
            client_max_size: 1024 * 1024,
        }
    }
}

/// One entry of the `services` list.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry {
    /// The class name (`RedisListener`, or an app's own class).
    pub cls: String,
    /// The name given in the config, if any (otherwise the class's default name).
    pub name: Option<String>,
    /// `false` skips the entry, before its class is even looked up. Default: `true`.
    pub enabled: bool,
    /// `false` lets the app start without this service when it fails to start. Default: `true`.
    pub required: bool,
    /// Replace an earlier service of the same name, in its position. Default: `false`.
    pub override_: bool,
    /// The class's settings (a mapping; absent means none).
    pub settings: Node,
    /// Where the entry was written.
    pub place: Place,
}

/// A loaded project: the sections kaiju defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// `main`.
    pub main: MainSettings,
    /// `app`.
    pub app: AppSection,
    /// `run`.
    pub run: RunSettings,
    /// `etc`: free-form settings for the app's own use.
    pub etc: Node,
    /// `packages`: Python packages to import; kaiju-rs accepts and ignores them.
    pub packages: Vec<String>,
    /// `services`, in order.
    pub services: Vec<ServiceEntry>,
}

/// The longest `run.shutdown_timeout` accepted, seconds (a day).
pub const MAX_SHUTDOWN_TIMEOUT: i64 = 86_400;

const LOGLEVELS: [&str; 4] = ["DEBUG", "INFO", "WARNING", "ERROR"];

fn bad(node: &Node, message: impl Into<String>) -> ConfigError {
    ConfigError::new(node.key_place(), message)
}

fn entries<'a>(
    node: &'a Node,
    what: &str,
    allowed: &[&str],
) -> Result<&'a [(String, Node)], ConfigError> {
    let entries: &[(String, Node)] = match &node.value {
        Value::Map(e) => e,
        Value::Null => &[],
        _ => {
            return Err(bad(
                node,
                format!("{what} must be a mapping, not {}", node.kind()),
            ));
        }
    };
    if let Some((key, value)) = entries.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(bad(
            value,
            format!(
                "unknown key `{key}` in {what}; expected one of: {}",
                allowed.join(", ")
            ),
        ));
    }
    Ok(entries)
}

fn string(node: &Node, what: &str) -> Result<String, ConfigError> {
    match &node.value {
        Value::Str(s) if !s.is_empty() => Ok(s.clone()),
        Value::Str(_) => Err(bad(node, format!("{what} must not be empty"))),
        _ => Err(bad(
            node,
            format!("{what} must be a non-empty string, not {}", node.kind()),
        )),
    }
}

fn boolean(node: &Node, what: &str) -> Result<bool, ConfigError> {
    match node.value {
        Value::Bool(b) => Ok(b),
        _ => Err(bad(
            node,
            format!(
                "{what} must be a boolean (true/false/yes/no), not {}",
                node.kind()
            ),
        )),
    }
}

impl Project {
    /// Checks a merged, filled config tree.
    pub(crate) fn read(root: &Node) -> Result<Self, ConfigError> {
        let top = entries(
            root,
            "the config",
            &["packages", "app", "run", "main", "etc", "services"],
        )?;
        let section = |name: &str| top.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let main_node = section("main")
            .filter(|n| !matches!(n.value, Value::Null))
            .ok_or_else(|| {
                ConfigError::new(
                    // `main:` written empty: there; never the built-in defaults.
                    section("main").map_or_else(|| root.place.clone(), Node::key_place),
                    "the `main` section with at least `name` is missing",
                )
            })?;
        let main = read_main(main_node)?;
        let mut app_section = AppSection::default();
        if let Some(app) = section("app") {
            for (key, value) in entries(app, "`app`", &["debug", "client_max_size"])? {
                match key.as_str() {
                    "debug" => {
                        app_section.debug = boolean(value, "app.debug")?;
                    }
                    _ => match value.value {
                        Value::Int(i) if i >= 1024 => app_section.client_max_size = i as u64,
                        _ => {
                            return Err(bad(
                                value,
                                "app.client_max_size must be an integer of at least 1024",
                            ));
                        }
                    },
                }
            }
        }
        let mut run = RunSettings::default();
        if let Some(run_node) = section("run") {
            for (key, value) in entries(
                run_node,
                "`run`",
                &[
                    "host",
                    "port",
                    "path",
                    "shutdown_timeout",
                    "keepalive_timeout",
                ],
            )? {
                match (key.as_str(), &value.value) {
                    ("shutdown_timeout", Value::Int(i))
                        if (0..=MAX_SHUTDOWN_TIMEOUT).contains(i) =>
                    {
                        run.shutdown_timeout = *i as u64
                    }
                    ("keepalive_timeout", Value::Int(i))
                        if (0..=MAX_SHUTDOWN_TIMEOUT).contains(i) =>
                    {
                        run.keepalive_timeout = *i as u64
                    }
                    ("port", Value::Int(p @ 1..=65535)) => run.port = u16::try_from(*p).ok(),
                    ("host", Value::Str(h)) => run.host = Some(h.clone()),
                    ("path", Value::Str(p)) => run.path = Some(p.clone()),
                    ("port" | "host" | "path", Value::Null) => {}
                    _ => {
                        return Err(bad(
                            value,
                            format!(
                                "run.{key}: {} is not valid here (shutdown_timeout and keepalive_timeout: 0 to {MAX_SHUTDOWN_TIMEOUT} seconds; port: 1 to 65535; host, path: strings)",
                                value.kind()
                            ),
                        ));
                    }
                }
            }
        }
        let etc = section("etc")
            .cloned()
            .unwrap_or_else(|| Node::new(Value::Map(Vec::new()), root.place.clone()));
        if !matches!(etc.value, Value::Map(_) | Value::Null) {
            return Err(bad(&etc, "`etc` must be a mapping"));
        }
        let mut packages = Vec::new();
        if let Some(node) = section("packages") {
            for p in list(node, "`packages`")? {
                let p = string(p, "a package name")?;
                if !matches!(p.as_str(), "kaiju_tools" | "kaiju_redis") {
                    tracing::warn!(package = %p, at = %node.place, "kaiju-rs ignores `packages`: register the app's classes in code instead");
                }
                packages.push(p);
            }
        }
        let mut services = Vec::new();
        if let Some(node) = section("services") {
            for entry in list(node, "`services`")? {
                services.push(read_service(entry)?);
            }
        }
        Ok(Self {
            main,
            app: app_section,
            run,
            etc,
            packages,
            services,
        })
    }
}

fn list<'a>(node: &'a Node, what: &str) -> Result<&'a [Node], ConfigError> {
    match &node.value {
        Value::Seq(items) => Ok(items),
        Value::Null => Ok(&[]),
        _ => Err(bad(
            node,
            format!("{what} must be a list, not {}", node.kind()),
        )),
    }
}

fn read_main(node: &Node) -> Result<MainSettings, ConfigError> {
    let mut main = MainSettings {
        name: String::new(),
        env: "dev".into(),
        version: String::new(),
        loglevel: "INFO".into(),
    };
    for (key, value) in entries(node, "`main`", &["name", "version", "env", "loglevel"])? {
        match key.as_str() {
            "name" => main.name = string(value, "main.name")?,
            "env" => main.env = string(value, "main.env")?,
            "version" => main.version = string(value, "main.version (quote numbers: \"1.0\")")?,
            _ => {
                let level = string(value, "main.loglevel")?;
                if !LOGLEVELS.contains(&level.as_str()) {
                    return Err(bad(
                        value,
                        format!("main.loglevel must be one of {}", LOGLEVELS.join(", ")),
                    ));
                }
                main.loglevel = level;
            }
        }
    }
    if main.name.is_empty() {
        return Err(bad(node, "main.name is missing"));
    }
    for (key, part) in [("name", &main.name), ("env", &main.env)] {
        let checked = if key == "env" {
            kaiju_core::Namespace::new(part, "x")
        } else {
            kaiju_core::Namespace::new("x", part)
        };
        if let Err(e) = checked {
            let why = match e {
                kaiju_core::KeyError::Delimiter { .. } => {
                    "it holds `.`, which separates the parts of a key".to_owned()
                }
                other => other.to_string(),
            };
            // At the setting (its key), not at the `main` mapping.
            return Err(bad(
                node.get(key).unwrap_or(node),
                format!("main.{key} `{part}` cannot be part of a key: {why}"),
            ));
        }
    }
    Ok(main)
}

fn read_service(node: &Node) -> Result<ServiceEntry, ConfigError> {
    let mut entry = ServiceEntry {
        cls: String::new(),
        name: None,
        enabled: true,
        required: true,
        override_: false,
        settings: Node::new(Value::Map(Vec::new()), node.place.clone()),
        place: node.place.clone(),
    };
    if let Value::Str(cls) = &node.value {
        entry.cls = string(node, "a service class")?;
        let _ = cls;
        return Ok(entry);
    }
    let fields = entries(
        node,
        "a service entry",
        &[
            "cls", "name", "enabled", "required", "override", "loglevel", "settings",
        ],
    )?;
    for (key, value) in fields {
        match key.as_str() {
            "cls" => entry.cls = string(value, "cls")?,
            "name" => entry.name = Some(string(value, "name")?),
            "enabled" => entry.enabled = boolean(value, "enabled")?,
            "required" => entry.required = boolean(value, "required")?,
            "override" => entry.override_ = boolean(value, "override")?,
            "loglevel" => {
                if !matches!(&value.value, Value::Null) {
                    let level = string(value, "loglevel")?;
                    if !LOGLEVELS.contains(&level.as_str()) {
                        return Err(bad(
                            value,
                            format!("loglevel must be one of {}", LOGLEVELS.join(", ")),
                        ));
                    }
                }
            }
            _ => match value.value {
                Value::Map(_) => entry.settings = value.clone(),
                Value::Null => {}
                _ => {
                    return Err(bad(
                        value,
                        format!("settings must be a mapping, not {}", value.kind()),
                    ));
                }
            },
        }
    }
    if entry.cls.is_empty() {
        return Err(bad(node, "a service entry needs `cls`"));
    }
    Ok(entry)
}
