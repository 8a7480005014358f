//! `flowpipe`: see `flowpipe --help`.
//!
//! Exit status: 0 done; 1 the run could not start (missing input, not a capture, bad options for
//! the table); 2 command-line usage error (clap); 3 the capture broke part-way (every flow seen
//! before the damage was exported); 4 writing the output failed.
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
                    ExitCode::from(3)
                }
                None if write_failed => ExitCode::from(4),
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("flowpipe: {e}");
            ExitCode::FAILURE
        }
    }
}
