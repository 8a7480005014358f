//! `flowpipe`: see `flowpipe --help`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use flowtable_pipeline::{run_cli, Args, DefaultTable};

fn main() -> ExitCode {
    let args = Args::parse();
    match run_cli::<DefaultTable>(&args) {
        Ok(report) => {
            if !args.quiet {
                eprint!("{}", report.summary);
            }
            let write_failed = report.summary.export.as_ref().is_some_and(|e| e.write_error.is_some());
            match report.read_error {
                Some(e) => {
                    eprintln!(
                        "flowpipe: {}: {e} (every flow seen before it was exported)",
                        report.summary.input.display()
                    );
                    ExitCode::from(2)
                }
                None if write_failed => ExitCode::from(3),
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("flowpipe: {e}");
            ExitCode::FAILURE
        }
    }
}
