//! `cargo xtask bench [cache|locks|streams|rpc|http|all] [--compare-python] [--server a,b]`: the
//! benchmark binary,
//! redis-benchmark and (optionally) the Python peer against one server started for the run, so
//! every ratio compares figures from the same machine state. With several servers
//! (`--server redis7,redis8,valkey9`), each runs alone in turn and the tables are printed side
//! by side.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use kaiju_testkit::{RedisServer, ServerOptions};

use crate::server_bins::{self, ServerChoice};
use crate::{cannot_run_cargo, cargo_in, interop, procs, root, target_dir};

const GROUPS: [&str; 5] = ["cache", "locks", "streams", "rpc", "http"];

pub(crate) fn run(args: &[String]) -> Result<ExitCode, String> {
    let (servers, args) = server_bins::take_server_flag(args)?;
    let servers = match servers {
        Some(list) => ServerChoice::parse_list(&list)?,
        None => Vec::new(),
    };
    let mut groups: Vec<&str> = Vec::new();
    let mut python = false;
    for arg in &args {
        match arg.as_str() {
            "--compare-python" => python = true,
            "all" => groups.extend(GROUPS),
            name if GROUPS.contains(&name) => groups.push(name),
            other => {
                return Err(format!(
                    "unknown benchmark `{other}` (available: cache, locks, streams, rpc, http, all; options --compare-python, --server <name>[,<name>...])"
                ));
            }
        }
    }
    if groups.is_empty() {
        groups.push("cache");
    }
    if servers.len() > 1 && python {
        return Err("--compare-python goes with one server only".into());
    }
    procs::install_signal_handler();
    let python = if python { Some(interop::venv()?) } else { None };
    if let [choice] = servers.as_slice() {
        server_bins::apply(choice)?;
    }
    let bench = build_bench()?;
    if servers.len() > 1 {
        return side_by_side(&bench, &groups, &servers);
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
            print!("{}", redis_benchmark(server.port())?);
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

/// Builds kaiju-bench in release mode; returns the binary.
fn build_bench() -> Result<PathBuf, String> {
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
    Ok(bench)
}

/// `--server a,b,...`: every group on each server in turn (one server running at a time), then
/// each group's tables with the figures of every server side by side.
fn side_by_side(
    bench: &Path,
    groups: &[&str],
    servers: &[ServerChoice],
) -> Result<ExitCode, String> {
    // outputs[group][server]
    let mut outputs: Vec<Vec<String>> = vec![Vec::new(); groups.len()];
    for choice in servers {
        server_bins::apply(choice)?;
        let server = RedisServer::start(ServerOptions::default()).map_err(|e| e.to_string())?;
        procs::register(server.pid());
        for (i, group) in groups.iter().enumerate() {
            eprintln!("xtask: bench {group} on {choice}");
            let out = Command::new(bench)
                .arg(group)
                .env("KAIJU_REDIS_URL", server.url())
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", bench.display()))?;
            if !out.status.success() {
                return Err(format!("kaiju-bench {group} failed on {choice}"));
            }
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            if *group == "cache" {
                text.push_str(&redis_benchmark(server.port())?);
            }
            outputs[i].push(text);
        }
    }
    let labels: Vec<String> = servers.iter().map(ToString::to_string).collect();
    for (group, texts) in groups.iter().zip(&outputs) {
        println!("## {group} ({})\n", labels.join(" | "));
        print!("{}", merge_tables(&labels, texts));
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// Puts the outputs of one group on several servers side by side: a table row is the row's
/// name followed by the cells of that row on each server in turn, the header cells naming
/// their server. Text outside tables is printed once per server. When the outputs do not have
/// the same shape (a row missing on one server), each is printed whole under its server.
fn merge_tables(labels: &[String], texts: &[String]) -> String {
    let split: Vec<Vec<&str>> = texts.iter().map(|t| t.lines().collect()).collect();
    let is_row = |line: &str| line.trim_start().starts_with('|');
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect()
    };
    let same_shape = split.iter().all(|lines| {
        lines.len() == split[0].len()
            && lines.iter().zip(&split[0]).all(|(a, b)| {
                is_row(a) == is_row(b) && (!is_row(a) || cells(a).first() == cells(b).first())
            })
    });
    let mut out = String::new();
    if !same_shape {
        for (label, text) in labels.iter().zip(texts) {
            out.push_str(&format!("### {label}\n\n{text}\n"));
        }
        return out;
    }
    let mut in_table = false;
    for (row, line) in split[0].iter().enumerate() {
        if !is_row(line) {
            in_table = false;
            if line.trim().is_empty() {
                out.push('\n');
            } else {
                for (label, lines) in labels.iter().zip(&split) {
                    out.push_str(&format!("{label}: {}\n", lines[row]));
                }
            }
            continue;
        }
        let header = !in_table;
        in_table = true;
        let first = cells(line);
        let mut merged = format!("| {} ", first.first().map_or("", String::as_str));
        for (label, lines) in labels.iter().zip(&split) {
            for cell in cells(lines[row]).iter().skip(1) {
                if header && !cell.is_empty() {
                    merged.push_str(&format!("| {cell} ({label}) "));
                } else {
                    merged.push_str(&format!("| {cell} "));
                }
            }
        }
        merged.push_str("|\n");
        out.push_str(&merged);
    }
    out
}

/// redis-benchmark's SET and GET rates on `port`, as a table (after an empty line).
fn redis_benchmark(port: u16) -> Result<String, String> {
    let mut table =
        String::from("\n| redis-benchmark (-c 50 -n 200000) | SET | GET |\n|---|---|---|\n");
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
        table.push_str(&format!(
            "| -P {pipeline} | {} req/s | {} req/s |\n",
            rate("SET:"),
            rate("GET:")
        ));
    }
    Ok(table)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_of_several_servers_are_merged_row_by_row() {
        let labels = ["redis7".to_owned(), "valkey9".to_owned()];
        let a = "| op | rate | ratio |\n|---|---|---|\n| get | 10 | 1.5 |\n\nnote\n";
        let b = "| op | rate | ratio |\n|---|---|---|\n| get | 20 | 2.5 |\n\nnote\n";
        let merged = merge_tables(&labels, &[a.to_owned(), b.to_owned()]);
        let lines: Vec<&str> = merged.lines().collect();
        assert_eq!(
            lines[0],
            "| op | rate (redis7) | ratio (redis7) | rate (valkey9) | ratio (valkey9) |"
        );
        assert_eq!(lines[1], "| --- | --- | --- | --- | --- |");
        assert_eq!(lines[2], "| get | 10 | 1.5 | 20 | 2.5 |");
        assert_eq!(lines[4], "redis7: note");
        assert_eq!(lines[5], "valkey9: note");
        // A row missing on one server: each output whole, under its server.
        let c = "| op | rate | ratio |\n|---|---|---|\n";
        let merged = merge_tables(&labels, &[a.to_owned(), c.to_owned()]);
        assert!(merged.contains("### redis7") && merged.contains("### valkey9"));
    }
}
