//! Odd and hostile packets on the real kernel: PAWS-stale segments with IPv4 options, IPv6
//! extension headers, unusual or broken TCP options, IP fragments, TCP headers outside the
//! linear area and GSO packets, each shape from its own client address. For every shape the
//! kernel's own counter (`nstat` TcpExtPAWSEstab in the server namespace) is the reference:
//! netdiag names the shape's address with exactly what the kernel rejected, names nobody for a
//! shape the kernel let through PAWS, never names any other address, and counts as unparsed
//! (never attributes) the packets dropped before TCP pulled their header into the linear area.
use std::collections::BTreeMap;

use netdiag::scenario::{
    HostileShape, HostileTopology, LONE_FRAGMENT_V4, LONE_FRAGMENT_V6, filtered_drops, lone_fragments, stale_shaped,
};
use netdiag_tests::{Diagnose, nstat, require_root};
use serde_json::Value;

const COPIES: u32 = 3;
const COUNTER: &str = "TcpExtPAWSEstab";
const REASON: &str = "TCP_RFC7323_PAWS";

/// Exact kernel count netdiag reports for `addr` in `netns`, over all reasons.
fn reported(report: &Value, addr: &str, netns: &str) -> u64 {
    report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["addr"] == addr && p["netns"] == netns)
        .map(|p| p["by_reason"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>())
        .sum()
}

fn kernel_has_reason(reason: &str) -> bool {
    let btf = netdiag::btf::Btf::from_sys_fs().unwrap();
    btf.enum_value("skb_drop_reason", &format!("SKB_DROP_REASON_{reason}")).is_some()
}

#[test]
fn odd_shapes_are_attributed_exactly_or_not_at_all() {
    require_root();
    // Before 6.13 the kernel has no PAWS drop reason: the tracepoint backend then sees no PAWS
    // drop at all, and netdiag must name nobody (the kernel's verdicts are checked all the same).
    let attributes = kernel_has_reason(REASON);
    let topo = HostileTopology::new("hostile").unwrap();
    let tracer = Diagnose::start(&["--reason", "NETFILTER_DROP"]).unwrap();
    let mut rejected: BTreeMap<String, (HostileShape, u64)> = BTreeMap::new();
    for shape in HostileShape::ALL {
        let before = nstat(&topo.server_ns, COUNTER).unwrap();
        let run = stale_shaped(&topo, shape, COPIES).unwrap();
        let delta = nstat(&topo.server_ns, COUNTER).unwrap() - before;
        eprintln!("{shape:?} from {}: kernel PAWS-rejected {delta} for {} sent", run.client_addr, run.sent);
        // What the kernel does with each shape (tcp_parse_options), checked, not assumed. A GSO
        // packet is rejected once if it reaches TCP whole, per segment if segmented on the way.
        if shape.kernel_rejects() {
            assert!(delta == run.sent || delta == run.sent * shape.segments(), "{shape:?}: {delta} PAWS drops");
        } else {
            assert_eq!(delta, 0, "{shape:?}: the kernel's PAWS verdict is not the documented one");
        }
        rejected.insert(run.client_addr.to_string(), (shape, delta));
    }
    let filtered = filtered_drops(&topo).unwrap();
    let report = tracer.finish().unwrap();

    assert_eq!(filtered, u64::from(COPIES), "the nftables rule dropped every large copy");
    assert_eq!(report["unparsed_packets"], filtered, "headers outside the linear area are unparsed: {report:#}");
    for (addr, (shape, delta)) in &rejected {
        let expected = if attributes { *delta } else { 0 };
        assert_eq!(reported(&report, addr, &topo.server_ns), expected, "{shape:?} from {addr}: {report:#}");
    }
    for peer in report["peers"].as_array().unwrap() {
        if peer["netns"] != topo.server_ns.as_str() {
            continue;
        }
        let addr = peer["addr"].as_str().unwrap();
        let shape = rejected.get(addr).unwrap_or_else(|| panic!("a peer no shape came from was named: {peer:#}"));
        assert!(shape.1 > 0, "{:?} was named though the kernel rejected none: {peer:#}", shape.0);
        assert_eq!(peer["by_reason"].as_object().unwrap().keys().collect::<Vec<_>>(), [REASON], "{peer:#}");
    }
    let total: u64 = rejected.values().map(|(_, d)| d).sum();
    let row = report["attribution"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["netns"] == topo.server_ns.as_str() && a["counter"] == COUNTER)
        .unwrap_or_else(|| panic!("no attribution row: {report:#}"));
    let attributed = if attributes { total } else { 0 };
    assert_eq!((row["kernel_delta"].as_u64(), row["attributed"].as_u64()), (Some(total), Some(attributed)), "{row:#}");
}

/// Fragments that hold no TCP header (the first half never came) and are freed when their
/// reassembly times out: watched with `--reason FRAG_REASM_TIMEOUT`, each one is unparsed,
/// none attributed; the kernel's own counters say how many timed out.
#[test]
fn lone_non_first_fragments_are_unparsed_never_attributed() {
    require_root();
    if !kernel_has_reason("FRAG_REASM_TIMEOUT") {
        eprintln!("this kernel has no FRAG_REASM_TIMEOUT drop reason: nothing for netdiag to watch");
        return;
    }
    let topo = HostileTopology::new("lonefrag").unwrap();
    let counters = [("IpReasmTimeout", false), ("Ip6ReasmTimeout", true)];
    let before: Vec<u64> = counters.iter().map(|(c, _)| nstat(&topo.server_ns, c).unwrap()).collect();
    let tracer = Diagnose::start(&["--reason", "FRAG_REASM_TIMEOUT"]).unwrap();
    for (_, v6) in counters {
        lone_fragments(&topo, v6, 4).unwrap();
    }
    let report = tracer.finish().unwrap();
    let timed_out: u64 =
        counters.iter().zip(&before).map(|((c, _), b)| nstat(&topo.server_ns, c).unwrap() - b).sum();
    assert_eq!(timed_out, 8, "the kernel timed out every lone fragment");
    assert_eq!(report["unparsed_packets"], timed_out, "{report:#}");
    for addr in [LONE_FRAGMENT_V4.to_string(), LONE_FRAGMENT_V6.to_string()] {
        assert!(report["peers"].as_array().unwrap().iter().all(|p| p["addr"] != addr.as_str()), "{report:#}");
    }
}
