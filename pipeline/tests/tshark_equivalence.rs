//! The check that matters: with `--no-timeouts`, the export of every reference capture equals
//! tshark's flow table (`CAPTURE.flows.csv`, made by `flows-from-tshark`) row for row, with 1 and
//! with 3 workers. tshark is the arbiter: a difference is a pipeline bug.

mod common;

use std::path::Path;

use common::{captures_in, rows11, run, traces_dir, workspace_root};

/// Compares two sorted row lists; returns a report of the first differences, or `None`.
fn diff(ours: &[String], reference: &[String]) -> Option<String> {
    if ours == reference {
        return None;
    }
    let only_ours: Vec<&String> = ours.iter().filter(|r| reference.binary_search(r).is_err()).take(5).collect();
    let only_ref: Vec<&String> = reference.iter().filter(|r| ours.binary_search(r).is_err()).take(5).collect();
    let first = ours.iter().zip(reference).position(|(a, b)| a != b).unwrap_or(ours.len().min(reference.len()));
    let mut s = format!(
        "{} rows vs {} in the reference; first difference at sorted row {first}\n",
        ours.len(),
        reference.len()
    );
    for r in only_ours {
        s += &format!("  only in ours:      {r}\n");
    }
    for r in only_ref {
        s += &format!("  only in reference: {r}\n");
    }
    Some(s)
}

fn check(capture: &Path, reference: Option<&Path>, failures: &mut Vec<String>) {
    let name = capture.display();
    let mut outputs = Vec::new();
    for workers in ["1", "3"] {
        let (report, csv) = run(capture, &["--no-timeouts", "--workers", workers]);
        if let Some(e) = &report.read_error {
            failures.push(format!("{name} ({workers} workers): read error {e}"));
        }
        let ours = rows11(&csv);
        // Every IP packet is in exactly one row.
        let counted: u64 = ours
            .iter()
            .map(|r| {
                let c: Vec<&str> = r.split(',').collect();
                c[5].parse::<u64>().unwrap_or(0) + c[7].parse::<u64>().unwrap_or(0)
            })
            .sum();
        if counted != report.summary.ip_packets {
            failures.push(format!(
                "{name} ({workers} workers): rows hold {counted} packets of {}",
                report.summary.ip_packets
            ));
        }
        if let Some(reference) = reference {
            let text = std::fs::read_to_string(reference).unwrap_or_else(|e| panic!("{}: {e}", reference.display()));
            let mut expected: Vec<String> = text.lines().skip(1).map(str::to_owned).collect();
            expected.sort();
            if let Some(d) = diff(&ours, &expected) {
                failures.push(format!("{name} ({workers} workers): {d}"));
            } else {
                eprintln!("ok  {name} ({workers} workers): {} flows", ours.len());
            }
        }
        outputs.push(ours);
    }
    if outputs[0] != outputs[1] {
        failures.push(format!("{name}: 1 and 3 workers disagree"));
    }
}

#[test]
fn every_reference_capture_matches_tshark() {
    let dir = traces_dir();
    let captures = captures_in(&dir);
    assert!(!captures.is_empty(), "no capture found in {} (set FLOWTABLE_TRACES)", dir.display());
    let mut failures = Vec::new();
    for capture in &captures {
        let reference = capture
            .with_file_name(format!("{}.flows.csv", capture.file_name().and_then(|n| n.to_str()).unwrap_or_default()));
        if !reference.exists() {
            failures.push(format!("{}: no reference {}", capture.display(), reference.display()));
            continue;
        }
        check(capture, Some(&reference), &mut failures);
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// The bundled demo capture, if present: against its reference if one exists, otherwise at least
/// consistent across worker counts and complete.
#[test]
fn bundled_demo_capture() {
    let demo = workspace_root().join("data/demo.pcapng");
    if !demo.exists() {
        eprintln!("skipped: {} does not exist yet", demo.display());
        return;
    }
    let reference = demo.with_file_name("demo.pcapng.flows.csv");
    let mut failures = Vec::new();
    check(&demo, reference.exists().then_some(reference.as_path()), &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Synthetic edge cases (every link type, per-interface timestamp resolutions, cut headers, IPv6
/// extension chains, tags, address forms), made by `tests/data/make-edge-cases.py`; their
/// references were computed by `flows-from-tshark` with tshark 4.0.17, like the real captures'.
#[test]
fn synthetic_edge_cases_match_tshark() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let captures = captures_in(&dir);
    assert!(captures.len() >= 2, "edge-case captures missing in {}", dir.display());
    let mut failures = Vec::new();
    for capture in &captures {
        let reference = capture
            .with_file_name(format!("{}.flows.csv", capture.file_name().and_then(|n| n.to_str()).unwrap_or_default()));
        check(capture, Some(&reference), &mut failures);
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}
