//! `diagnose --pcap`: the headers of the segments the kernel dropped, written as pcapng and read
//! back with `tshark`, checked against what the reproduction injected.
use std::process::Command;

use netdiag::scenario::{self, PawsTopology};
use netdiag_tests::{Diagnose, require_root};

/// One row per packet: source, destination, TCP flags, destination port, comment.
fn tshark_rows(path: &str) -> Vec<Vec<String>> {
    let out = Command::new("tshark")
        .args(["-r", path, "-T", "fields", "-E", "separator=|"])
        .args(["-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst"])
        .args(["-e", "tcp.flags", "-e", "tcp.dstport", "-e", "frame.comment"])
        .output()
        .expect("tshark is installed by cargo xtask setup");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.split('|').map(str::to_string).collect()).collect()
}

fn evidence_path(tag: &str) -> String {
    let path = std::env::temp_dir().join(format!("netdiag-test-{tag}-{}.pcapng", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path.display().to_string()
}

fn check_evidence(v6: bool) {
    require_root();
    let path = evidence_path(if v6 { "pcap6" } else { "pcap4" });
    let topo = PawsTopology::new(if v6 { "pcap6" } else { "pcap4" }).unwrap();
    let tracer = Diagnose::start(&["--pcap", &path, "--netns", &topo.server_ns]).unwrap();
    let run = scenario::paws_established(&topo, v6, 4).unwrap();
    scenario::innocent_traffic(&topo, 2).unwrap();
    let report = tracer.finish().unwrap();
    assert_eq!(report["pcap"]["path"], path.as_str(), "{report:#}");
    assert_eq!(report["pcap"]["packets"], run.injected, "{report:#}");
    assert_eq!(report["pcap"]["skipped"], 0, "{report:#}");

    let rows = tshark_rows(&path);
    assert_eq!(rows.len() as u64, run.injected, "one packet per rejected segment: {rows:?}");
    let (client, server) = (run.client_addr.to_string(), run.server.ip().to_string());
    for row in &rows {
        let (src, dst) = if v6 { (&row[1], &row[3]) } else { (&row[0], &row[2]) };
        assert_eq!((src.as_str(), dst.as_str()), (client.as_str(), server.as_str()), "{row:?}");
        // The injected segments are data with ACK and PSH set (0x018).
        assert_eq!(row[4], "0x0018", "{row:?}");
        assert_eq!(row[5], run.server.port().to_string(), "{row:?}");
        assert!(row[6].contains("TCP_RFC7323_PAWS") && row[6].contains(&topo.server_ns), "{row:?}");
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn paws_rejections_are_written_as_pcapng_that_tshark_reads_ipv4() {
    check_evidence(false);
}

#[test]
fn paws_rejections_are_written_as_pcapng_that_tshark_reads_ipv6() {
    check_evidence(true);
}

/// An existing file is never replaced without --overwrite: a usage error, before any tracing.
#[test]
fn an_existing_file_is_kept_without_overwrite() {
    require_root();
    let path = evidence_path("keep");
    std::fs::write(&path, "keep").unwrap();
    let out = Command::new(netdiag_tests::netdiag_bin())
        .args(["diagnose", "--duration", "1", "--pcap", &path])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep");
    std::fs::remove_file(&path).unwrap();
}

/// `netdiag peer --pcap`: the evidence is the drilled-into peer's alone, even with an innocent
/// client's traffic (and other tests' drops) around.
#[test]
fn peer_writes_only_its_own_dropped_segments() {
    require_root();
    let path = evidence_path("peer");
    let topo = PawsTopology::new("pcappeer").unwrap();
    let tracer = Diagnose::start_command(&["peer", "198.51.100.2", "--json", "--duration", "300", "--pcap", &path, "--netns", &topo.server_ns]).unwrap();
    let run = scenario::paws_established(&topo, false, 3).unwrap();
    scenario::paws_established(&topo, true, 2).unwrap();
    let report = tracer.finish().unwrap();
    assert_eq!(report["pcap"]["packets"], run.injected, "{report:#}");
    let rows = tshark_rows(&path);
    assert_eq!(rows.len() as u64, run.injected, "{rows:?}");
    assert!(rows.iter().all(|row| row[0] == "198.51.100.2"), "{rows:?}");
    std::fs::remove_file(&path).unwrap();
}
