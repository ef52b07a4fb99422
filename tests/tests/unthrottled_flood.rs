//! Loop or flood, said with the evidence: spoofed out-of-window ACKs on a live connection while
//! the server answers every one (`tcp_invalid_ratelimit=0`). At the server, segments in equal
//! duplicate ACKs out, as in an ACK loop; but the client, which netdiag sees too, never finds
//! our answers out of window. The real `netdiag diagnose --json` must call it an
//! `out_of_window_flood` (variant `unthrottled`), never an `ack_loop`, with counts the server
//! kernel's own counters (`nstat`) confirm.
use std::time::Duration;

use netdiag::scenario::{self, LoopTopology};
use netdiag_tests::{Diagnose, nstat, require_root};
use serde_json::Value;

/// Long enough after the flood stops for the detector to see a second of quiet.
const SETTLE: Duration = Duration::from_millis(2500);

fn findings_in<'a>(report: &'a Value, kind: &str, netns: &str) -> Vec<&'a Value> {
    report["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == kind && f["netns"] == netns).collect()
}

#[test]
fn an_unthrottled_out_of_window_stream_is_a_flood_not_a_loop() {
    require_root();
    let topo = LoopTopology::new("unthrot").unwrap();
    let (segs_in, segs_out, skipped) = ("TcpInSegs", "TcpOutSegs", "TcpExtTCPACKSkippedSeq");
    let before: Vec<u64> = [segs_in, segs_out, skipped].iter().map(|c| nstat(&topo.server_ns, c).unwrap()).collect();
    let tracer = Diagnose::start(&[]).unwrap();
    let run = scenario::unthrottled_oow_flood(&topo, scenario::OWN_PACE_PER_S, Duration::from_secs(3)).unwrap();
    std::thread::sleep(SETTLE);
    let report = tracer.finish().unwrap();
    let after: Vec<u64> = [segs_in, segs_out, skipped].iter().map(|c| nstat(&topo.server_ns, c).unwrap()).collect();
    let (got, sent, held_back) = (after[0] - before[0], after[1] - before[1], after[2] - before[2]);
    eprintln!("server: {got} segments in, {sent} out, {held_back} answers held back, {} spoofed", run.amount);
    // The kernel's side of it: nothing held back, every spoofed segment answered.
    assert_eq!(held_back, 0, "the limiter was off");
    assert!(got >= run.amount && sent >= run.amount, "every spoofed segment answered: {got} in, {sent} out");

    for ns in [&topo.client_ns, &topo.server_ns] {
        assert!(findings_in(&report, "ack_loop", ns).is_empty(), "no loop without the other end answering: {report:#}");
    }
    let floods = findings_in(&report, "out_of_window_flood", &topo.server_ns);
    assert_eq!(floods.len(), 1, "{report:#}");
    let f = floods[0];
    eprintln!("{f:#}");
    assert_eq!(f["variant"], "unthrottled", "{f:#}");
    assert_eq!(f["why"], "sequence", "{f:#}");
    assert_eq!(f["peer"], run.client.ip().to_string());
    assert_eq!(f["peer_port"], run.client.port());
    assert_eq!(f["local"][0], run.server.to_string());
    let count = f["count"].as_u64().unwrap();
    assert!(count <= run.amount && count * 10 >= run.amount * 8, "{count} of {} spoofed counted: {f:#}", run.amount);
    assert!(f["dupacks_out"].as_u64().unwrap() * 10 >= count * 8, "answered one by one: {f:#}");
    let summary = f["summary"].as_str().unwrap();
    assert!(summary.contains("nothing shows that the segments answer ours"), "{f:#}");
    // The pace, against the connection's RTT as the kernel program read it: far slower than one
    // segment per round trip on a path of microseconds.
    assert!(f["srtt_us"].as_u64().is_some_and(|us| us > 0), "{f:#}");
    assert!(f["segments_per_round_trip"].as_f64().is_some_and(|n| n < 0.5), "{f:#}");
    let evidence: Vec<&str> = f["evidence"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(evidence.iter().any(|e| e.contains("not one per round trip")), "{evidence:?}");
    assert!(!summary.contains("ACK loop ") || summary.contains("as in an ACK loop"), "{f:#}");
    let advice = f["advice"].as_str().unwrap();
    assert!(advice.contains("hostile sender") && advice.contains("tcp_invalid_ratelimit is 0"), "{f:#}");
    assert!(findings_in(&report, "out_of_window_flood", &topo.client_ns).is_empty(), "{report:#}");
    // The scorecard: the flow's count beside the namespace's own segment counter, which holds
    // it (`Diagnose::finish` fails any finding whose needed facts did not move).
    let facts = &f["kernel_facts"];
    assert_eq!(facts["out-of-window segments in on the flow (kernel map)"].as_u64(), Some(count), "{f:#}");
    assert!(facts["TcpInSegs"].as_u64().is_some_and(|segs| segs >= count), "{f:#}");
}
