//! `cargo xtask bench [cache|locks|streams|rpc|http|all] [--compare-python]`: the benchmark binary,
//! redis-benchmark and (optionally) the Python peer against one server started for the run, so
//! every ratio compares figures from the same machine state.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use kaiju_testkit::{RedisServer, ServerOptions};

use crate::{cannot_run_cargo, cargo_in, interop, procs, root, target_dir};

const GROUPS: [&str; 5] = ["cache", "locks", "streams", "rpc", "http"];

pub(crate) fn run(args: &[String]) -> Result<ExitCode, String> {
    let mut groups: Vec<&str> = Vec::new();
    let mut python = false;
    for arg in args {
        match arg.as_str() {
            "--compare-python" => python = true,
            "all" => groups.extend(GROUPS),
            name if GROUPS.contains(&name) => groups.push(name),
            other => {
                return Err(format!(
                    "unknown benchmark `{other}` (available: cache, locks, streams, rpc, http, all; option --compare-python)"
                ));
            }
        }
    }
    if groups.is_empty() {
        groups.push("cache");
    }
    procs::install_signal_handler();
    let python = if python { Some(interop::venv()?) } else { None };
    let root = root()?;
    let build = cargo_in(root)?
        .args(["build", "--release", "--quiet", "-p", "kaiju-bench"])
        .status()
        .map_err(cannot_run_cargo(root))?;
    if !build.success() {
        return Err("building kaiju-bench failed".into());
    }
    // Where cargo put it: the target directory of this workspace (CARGO_TARGET_DIR included),
    // not `target/` of the workspace.
    let bench = target_dir()?.join("release").join("kaiju-bench");
    if !bench.is_file() {
        return Err(format!(
            "cannot run {}: no such file after building kaiju-bench",
            bench.display()
        ));
    }
    let server = RedisServer::start(ServerOptions::default()).map_err(|e| e.to_string())?;
    procs::register(server.pid());
    let figures = target_dir()?.join("bench-figures.jsonl");
    // A stale file would mix in figures of an earlier run.
    let _ = std::fs::remove_file(&figures);
    for group in &groups {
        println!("## {group}\n");
        let status = Command::new(&bench)
            .arg(group)
            .env("KAIJU_REDIS_URL", server.url())
            .env("KAIJU_BENCH_JSON", &figures)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", bench.display()))?;
        if !status.success() {
            return Err(format!("kaiju-bench {group} failed"));
        }
        if *group == "cache" {
            redis_benchmark(server.port())?;
        }
        println!();
    }
    if let Some(python) = python {
        // The Python peer has no HTTP workload.
        groups.retain(|g| *g != "http");
        compare_python(&python, &groups, &server.url(), &figures)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn redis_benchmark(port: u16) -> Result<(), String> {
    println!();
    println!("| redis-benchmark (-c 50 -n 200000) | SET | GET |");
    println!("|---|---|---|");
    for pipeline in ["1", "16"] {
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-q", "-t", "set,get", "-n", "200000", "-c", "50", "-P", pipeline,
            ])
            .stderr(Stdio::null())
            .output()
            .map_err(|e| {
                format!("cannot run redis-benchmark (apt-get install redis-tools): {e}")
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let rate = |name: &str| {
            // redis-benchmark -q redraws progress with \r; the final figure is the last line.
            text.split(['\r', '\n'])
                .filter(|l| l.starts_with(name) && l.contains("requests per second"))
                .filter_map(|l| l.split_whitespace().nth(1))
                .next_back()
                .unwrap_or("?")
                .to_owned()
        };
        println!(
            "| -P {pipeline} | {} req/s | {} req/s |",
            rate("SET:"),
            rate("GET:")
        );
    }
    Ok(())
}

/// One figure: name, value (`None` when the side cannot produce it), unit, and why not.
struct Figure {
    name: String,
    value: Option<f64>,
    unit: String,
    why: String,
}

/// Runs the Python peer on the same server and prints its figures beside kaiju-rs's.
fn compare_python(python: &Path, groups: &[&str], url: &str, figures: &Path) -> Result<(), String> {
    let mut peer = Vec::new();
    let script = root()?.join("bench/python/peer.py");
    for group in groups {
        eprintln!("xtask: running the Python peer ({group}); its progress goes to stderr");
        let out = Command::new(python)
            .arg(&script)
            .args([group, "--url", url])
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| {
                format!(
                    "cannot run the Python peer ({} {}): {e}",
                    python.display(),
                    script.display()
                )
            })?;
        if !out.status.success() {
            return Err(format!(
                "the Python peer failed on {group} ({})",
                out.status
            ));
        }
        peer.extend(parse(&String::from_utf8_lossy(&out.stdout)));
    }
    let ours = parse(&std::fs::read_to_string(figures).unwrap_or_default());
    println!("## kaiju-rs beside Python kaiju-redis 2.4.2 (same server, same run)\n");
    println!("| workload | unit | kaiju-rs | kaiju-redis 2.4.2 | kaiju-rs advantage |");
    println!("|---|---|---|---|---|");
    for figure in &ours {
        let theirs = peer.iter().find(|p| p.name == figure.name);
        let (Some(k), Some(p)) = (figure.value, theirs.and_then(|p| p.value)) else {
            let why = theirs.map_or("no Python figure", |p| p.why.as_str());
            println!(
                "| {} | {} | {} | – ({why}) | |",
                figure.name,
                figure.unit,
                shown(figure.value)
            );
            continue;
        };
        // Times: lower is better; rates: higher is better.
        let advantage = if figure.unit == "ms" { p / k } else { k / p };
        println!(
            "| {} | {} | {} | {} | {advantage:.1}x |",
            figure.name,
            figure.unit,
            shown(Some(k)),
            shown(Some(p))
        );
    }
    Ok(())
}

fn shown(value: Option<f64>) -> String {
    match value {
        None => "–".into(),
        Some(v) if v < 100.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.0}"),
    }
}

/// Reads `{"name": ..., "value": ..., "unit": ..., "why": ...}` lines (what kaiju-bench and the
/// peer print; both are ours, so a line of another shape is skipped, not an error).
fn parse(text: &str) -> Vec<Figure> {
    let field = |line: &str, key: &str| -> Option<String> {
        let start = line.find(&format!("\"{key}\": "))? + key.len() + 4;
        let rest = &line[start..];
        if let Some(quoted) = rest.strip_prefix('"') {
            Some(quoted[..quoted.find('"')?].to_owned())
        } else {
            Some(rest[..rest.find([',', '}'])?].trim().to_owned())
        }
    };
    text.lines()
        .filter_map(|line| {
            Some(Figure {
                name: field(line, "name")?,
                value: field(line, "value").and_then(|v| v.parse().ok()),
                unit: field(line, "unit").unwrap_or_default(),
                why: field(line, "why").unwrap_or_default(),
            })
        })
        .collect()
}
