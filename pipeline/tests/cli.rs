//! The `flowpipe` binary itself: exit codes, the error that names the byte offset, output options.

mod common;

use std::process::Command;

use common::traces_dir;

fn flowpipe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowpipe")).args(args).output().expect("flowpipe runs")
}

#[test]
fn csv_jsonl_output_file_and_parse_only() {
    let capture = traces_dir().join("web-ipv4-ipv6.pcap");
    let capture = capture.to_str().expect("UTF-8 path");
    let csv = flowpipe(&["--no-timeouts", "--quiet", capture]);
    assert!(csv.status.success());
    let csv = String::from_utf8(csv.stdout).expect("UTF-8");
    assert!(csv.starts_with(
        "proto,addr_a,port_a,addr_b,port_b,packets_ab,bytes_ab,packets_ba,bytes_ba,first_ts,last_ts,cause,tcp_state\n"
    ));
    assert_eq!(csv.lines().count(), 198);

    let dir = std::env::temp_dir().join(format!("flowpipe-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("flows.jsonl");
    let run = flowpipe(&["--no-timeouts", "-f", "jsonl", "-o", out.to_str().expect("UTF-8"), capture]);
    assert!(run.status.success());
    let summary = String::from_utf8(run.stderr).expect("UTF-8");
    let backend = <flowtable_pipeline::DefaultTable as flowtable::FlowTable<_, _>>::NAME;
    assert!(
        summary.contains(&format!("backend            {backend}")) && summary.contains("exported rows      197"),
        "{summary}"
    );
    let jsonl = std::fs::read_to_string(&out).expect("output file");
    assert_eq!(jsonl.lines().count(), 197);
    assert!(jsonl
        .lines()
        .all(|l| l.starts_with("{\"proto\":") && l.ends_with('}') && l.contains("\"cause\":\"flushed\"")));
    let _ = std::fs::remove_dir_all(&dir);

    let parse = flowpipe(&["--parse-only", capture]);
    assert!(parse.status.success() && parse.stdout.is_empty());
    assert!(String::from_utf8_lossy(&parse.stderr).contains("packets            1723"));
}

#[test]
fn exit_codes_and_offsets() {
    let bytes = std::fs::read(traces_dir().join("ftp-bruteforce.pcap")).expect("capture");
    let dir = std::env::temp_dir().join(format!("flowpipe-cli-exit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..100_000]).expect("write");
    let run = flowpipe(&["--quiet", cut.to_str().expect("UTF-8")]);
    assert_eq!(run.status.code(), Some(3));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("broken capture at byte offset 99954"), "{err}");
    assert!(String::from_utf8_lossy(&run.stdout).lines().count() > 50, "flows before the damage are exported");

    let text = dir.join("text.pcap");
    std::fs::write(&text, b"not a capture at all").expect("write");
    let run = flowpipe(&[text.to_str().expect("UTF-8")]);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("not a pcap or pcapng file"));
    assert_eq!(flowpipe(&["/nonexistent/x.pcap"]).status.code(), Some(1));
    assert_eq!(flowpipe(&["--workers", "0"]).status.code(), Some(2));
    let shards = flowpipe(&["--shards", "3", cut.to_str().expect("UTF-8")]);
    assert_eq!(shards.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&shards.stderr).contains("not a power of two"));
    assert!(shards.stdout.is_empty(), "no CSV header for a run that never started");
    let _ = std::fs::remove_dir_all(&dir);
}
