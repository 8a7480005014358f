//! `bench_chart`: turns `flowbench` result files into a chart and Markdown tables.
//!
//! ```text
//! cargo run --release --example bench_chart -- design/bench-results [--md design/benchmarks.md]
//! ```
//!
//! Reads every `flowbench-<flows>.txt` in the directory (the lines `flowbench` prints; other lines
//! are ignored) and writes, in the same directory:
//! - `chart.svg`: one panel per measurement (throughput per case and thread count, RFC 9693 rates,
//!   bytes per flow), one row per backend or peer, one bar per table size;
//! - `tables.md`: per table size, every measurement per backend with its ratio to `dashmap`.
//!
//! With `--md FILE`, the text between `<!-- BEGIN GENERATED TABLES -->` and
//! `<!-- END GENERATED TABLES -->` in FILE is replaced by `tables.md`, so the report's numbers come
//! from the result files and nothing is copied by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One `flowbench` line.
#[derive(Clone, Debug)]
struct Row {
    backend: String,
    case: String,
    flows: u64,
    threads: u32,
    value: f64,
    unit: String,
}

fn parse_line(line: &str) -> Option<Row> {
    if !line.starts_with("backend=") {
        return None;
    }
    let f: BTreeMap<&str, &str> = line.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
    Some(Row {
        backend: f.get("backend")?.to_string(),
        case: f.get("case")?.to_string(),
        flows: f.get("flows")?.parse().ok()?,
        threads: f.get("threads")?.parse().ok()?,
        value: f.get("value")?.parse().ok()?,
        unit: f.get("unit")?.to_string(),
    })
}

fn read_results(dir: &Path) -> Vec<Row> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("flowbench-") && n.ends_with(".txt"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| std::fs::read_to_string(p).unwrap_or_default().lines().filter_map(parse_line).collect::<Vec<_>>())
        .collect()
}

/// Backends first in the order the benchmarks ran them, peers after.
fn backends(rows: &[Row]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in rows {
        if !v.contains(&r.backend) {
            v.push(r.backend.clone());
        }
    }
    v.sort_by_key(|b| (b.starts_with("peer-"), b != "dashmap"));
    v
}

/// A measurement: case, threads, unit.
type Metric = (String, u32, String);

fn metrics(rows: &[Row]) -> Vec<Metric> {
    const ORDER: [&str; 9] = [
        "memory",
        "capacity_1gib",
        "get",
        "get_batch",
        "insert",
        "mixed",
        "setup_rate",
        "teardown_rate",
        "allocs_per_op",
    ];
    let mut v: Vec<Metric> = Vec::new();
    for r in rows {
        let m = (r.case.clone(), r.threads, r.unit.clone());
        if !v.contains(&m) {
            v.push(m);
        }
    }
    let rank = |c: &str| ORDER.iter().position(|o| c.starts_with(o)).unwrap_or(ORDER.len());
    v.sort_by(|a, b| (rank(&a.0), &a.0, a.1).cmp(&(rank(&b.0), &b.0, b.1)));
    v
}

fn value(rows: &[Row], backend: &str, m: &Metric, flows: u64) -> Option<f64> {
    rows.iter()
        .find(|r| r.backend == backend && r.case == m.0 && r.threads == m.1 && r.unit == m.2 && r.flows == flows)
        .map(|r| r.value)
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "bytes_per_flow" => format!("{v:.1}"),
        "flows_per_s" | "flows" if v >= 1e6 => format!("{:.2} M", v / 1e6),
        "flows_per_s" | "flows" => format!("{v:.0}"),
        "allocs_per_op" => format!("{v:.3}"),
        _ => format!("{v:.2}"),
    }
}

fn metric_title(m: &Metric) -> String {
    let better = if m.2 == "bytes_per_flow" || m.2 == "allocs_per_op" { "lower is better" } else { "higher is better" };
    format!("{} (threads={}) [{}; {better}]", m.0, m.1, m.2)
}

fn tables(rows: &[Row], sizes: &[u64], dir: &Path) -> String {
    let bs = backends(rows);
    let mut out = String::new();
    for &n in sizes {
        let at_n: Vec<Row> = rows.iter().filter(|r| r.flows == n).cloned().collect();
        let _ = writeln!(out, "#### {n} flows (`{}/flowbench-{n}.txt`)\n", dir.display());
        let _ = writeln!(out, "Each cell: the value, and in parentheses its ratio to `dashmap`.\n");
        let _ = write!(out, "| case | threads | unit |");
        for b in &bs {
            let _ = write!(out, " {b} |");
        }
        let _ = write!(out, "\n|---|---|---|");
        for _ in &bs {
            let _ = write!(out, "---:|");
        }
        out.push('\n');
        for m in metrics(&at_n) {
            let base = value(&at_n, "dashmap", &m, n);
            let _ = write!(out, "| {} | {} | {} |", m.0, m.1, m.2);
            for b in &bs {
                match value(&at_n, b, &m, n) {
                    Some(v) => {
                        let ratio = match base {
                            Some(base) if base != 0.0 => format!(" ({:.2}×)", v / base),
                            _ => String::new(),
                        };
                        let _ = write!(out, " {}{ratio} |", fmt_value(v, &m.2));
                    }
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

const COLORS: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Horizontal bar panels in two columns.
fn chart(rows: &[Row], sizes: &[u64]) -> String {
    let bs = backends(rows);
    let ms: Vec<Metric> =
        metrics(rows).into_iter().filter(|m| m.2 != "allocs_per_op" && m.0 != "capacity_1gib").collect();
    let (label_w, bar_w, bar_h, gap) = (130.0, 300.0, 9.0, 5.0);
    let panel_w = label_w + bar_w + 90.0;
    let group_h = bar_h * sizes.len() as f64 + gap;
    let panel_h = 34.0 + group_h * bs.len() as f64 + 10.0;
    let cols = 2;
    let prows = ms.len().div_ceil(cols);
    let legend_h = 40.0;
    let (w, h) = (panel_w * cols as f64 + 20.0, legend_h + panel_h * prows as f64 + 10.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="10">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="16" font-size="13" font-weight="bold">flowbench: every backend and peer (generated by examples/bench_chart.rs from design/bench-results/flowbench-*.txt)</text>"#
    );
    for (i, n) in sizes.iter().enumerate() {
        let x = 10.0 + i as f64 * 130.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="24" width="10" height="10" fill="{}"/><text x="{}" y="33">{n} flows</text>"#,
            COLORS[i % COLORS.len()],
            x + 14.0
        );
    }
    for (pi, m) in ms.iter().enumerate() {
        let (px, py) = (10.0 + (pi % cols) as f64 * panel_w, legend_h + (pi / cols) as f64 * panel_h);
        let _ = writeln!(s, r#"<text x="{px}" y="{}" font-weight="bold">{}</text>"#, py + 14.0, esc(&metric_title(m)));
        let max = bs
            .iter()
            .flat_map(|b| sizes.iter().filter_map(|&n| value(rows, b, m, n)))
            .fold(0.0f64, f64::max)
            .max(f64::MIN_POSITIVE);
        for (bi, b) in bs.iter().enumerate() {
            let gy = py + 24.0 + bi as f64 * group_h;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                px + label_w - 6.0,
                gy + group_h / 2.0 + 1.0,
                esc(b)
            );
            for (si, &n) in sizes.iter().enumerate() {
                let y = gy + si as f64 * bar_h;
                if let Some(v) = value(rows, b, m, n) {
                    let len = (v / max * bar_w).max(0.5);
                    let _ = writeln!(
                        s,
                        r#"<rect x="{}" y="{y}" width="{len:.1}" height="{}" fill="{}"/><text x="{}" y="{}" font-size="8">{}</text>"#,
                        px + label_w,
                        bar_h - 1.0,
                        COLORS[si % COLORS.len()],
                        px + label_w + len + 3.0,
                        y + bar_h - 2.0,
                        esc(&fmt_value(v, &m.2))
                    );
                }
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The run's conditions from `machine.txt` (written by `scripts/bench-report.sh`), as a list.
fn machine(dir: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(dir.join("machine.txt")) else {
        return String::new();
    };
    const KEEP: [&str; 17] = [
        "date:",
        "git:",
        "command:",
        "rustc:",
        "kernel:",
        "nproc:",
        "memory:",
        "load average before:",
        "load average after:",
        "Model name:",
        "CPU(s):",
        "Thread(s) per core:",
        "L1d cache:",
        "L2 cache:",
        "L3 cache:",
        "Hypervisor vendor:",
        "Virtualization type:",
    ];
    let mut out = format!("Run conditions (from `{}/machine.txt`):\n\n", dir.display());
    for line in text.lines() {
        let l = line.trim();
        if KEEP.iter().any(|k| l.starts_with(k)) {
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            let _ = writeln!(out, "- {k}: {}", v.trim());
        }
    }
    out.push('\n');
    out
}

const BEGIN: &str = "<!-- BEGIN GENERATED TABLES -->";
const END: &str = "<!-- END GENERATED TABLES -->";

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "design/bench-results".into()));
    let md = match (args.next().as_deref(), args.next()) {
        (Some("--md"), Some(f)) => Some(PathBuf::from(f)),
        (None, _) => None,
        _ => {
            eprintln!("usage: bench_chart <results-dir> [--md FILE]");
            std::process::exit(2);
        }
    };
    let rows = read_results(&dir);
    if rows.is_empty() {
        eprintln!("no flowbench lines in {}/flowbench-*.txt", dir.display());
        std::process::exit(1);
    }
    let mut sizes: Vec<u64> = rows.iter().map(|r| r.flows).collect();
    sizes.sort_unstable();
    sizes.dedup();

    let svg = dir.join("chart.svg");
    std::fs::write(&svg, chart(&rows, &sizes)).expect("write chart.svg");
    let t = machine(&dir) + &tables(&rows, &sizes, &dir);
    std::fs::write(dir.join("tables.md"), &t).expect("write tables.md");
    eprintln!("wrote {} and tables.md ({} measurements, sizes {sizes:?})", svg.display(), rows.len());

    if let Some(md) = md {
        let text = std::fs::read_to_string(&md).unwrap_or_else(|e| panic!("{}: {e}", md.display()));
        let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else {
            eprintln!("{}: no {BEGIN} / {END} markers", md.display());
            std::process::exit(1);
        };
        let new = format!("{}{BEGIN}\n\n{t}{}", &text[..a], &text[b..]);
        std::fs::write(&md, new).expect("write the report");
        eprintln!("updated the tables in {}", md.display());
    }
}
