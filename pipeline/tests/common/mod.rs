//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use clap::Parser;
use flowtable_pipeline::{run_to_memory, Args, DefaultTable, Report, RunError};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    flowtable_pipeline::pipeline::workspace_root()
}

/// The reference captures: `$FLOWTABLE_TRACES`, or `<workspace root>/../shared/traces`.
pub fn traces_dir() -> PathBuf {
    match std::env::var_os("FLOWTABLE_TRACES") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("../shared/traces"),
    }
}

/// Every `.pcap` / `.pcapng` in `dir`, sorted by name.
pub fn captures_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs the pipeline on `input` with extra command-line `opts`; returns the report and the export.
pub fn try_run(input: &Path, opts: &[&str]) -> Result<(Report, String), RunError> {
    let mut argv = vec!["flowpipe".to_owned(), "--quiet".to_owned()];
    argv.extend(opts.iter().map(|s| s.to_string()));
    argv.push(input.display().to_string());
    let args = Args::parse_from(argv);
    let (report, bytes) = run_to_memory::<DefaultTable>(&args)?;
    Ok((report, String::from_utf8(bytes).expect("the export is UTF-8")))
}

/// [`try_run`], panicking on an error.
pub fn run(input: &Path, opts: &[&str]) -> (Report, String) {
    try_run(input, opts).unwrap_or_else(|e| panic!("{}: {e}", input.display()))
}

/// The data rows of a CSV export cut to the reference's 11 columns, sorted as strings.
pub fn rows11(csv: &str) -> Vec<String> {
    let mut rows: Vec<String> =
        csv.lines().skip(1).map(|l| l.split(',').take(11).collect::<Vec<_>>().join(",")).collect();
    rows.sort();
    rows
}
