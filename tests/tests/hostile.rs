//! Odd and hostile packets on the real kernel: PAWS-stale segments with IPv4 options, IPv6
//! extension headers, unusual or broken TCP options and IP fragments, each shape from its own
//! client address. For every shape the kernel's own counter (`nstat` TcpExtPAWSEstab in the
//! server namespace) is the reference: netdiag names the shape's address with exactly what the
//! kernel rejected, names nobody for a shape the kernel let through PAWS, and never names any
//! other address.
use std::collections::BTreeMap;

use netdiag::scenario::{HostileShape, HostileTopology, stale_shaped};
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

#[test]
fn odd_shapes_are_attributed_exactly_or_not_at_all() {
    require_root();
    let topo = HostileTopology::new("hostile").unwrap();
    let tracer = Diagnose::start(&[]).unwrap();
    let mut rejected: BTreeMap<String, (HostileShape, u64)> = BTreeMap::new();
    for shape in HostileShape::ALL {
        let before = nstat(&topo.server_ns, COUNTER).unwrap();
        let run = stale_shaped(&topo, shape, COPIES).unwrap();
        let delta = nstat(&topo.server_ns, COUNTER).unwrap() - before;
        eprintln!("{shape:?} from {}: kernel PAWS-rejected {delta} of {}", run.client_addr, run.sent);
        // What the kernel does with each shape (tcp_parse_options), checked, not assumed.
        let expected = if shape.kernel_rejects() { run.sent } else { 0 };
        assert_eq!(delta, expected, "{shape:?}: the kernel's PAWS verdict is not the documented one");
        rejected.insert(run.client_addr.to_string(), (shape, delta));
    }
    let report = tracer.finish().unwrap();

    for (addr, (shape, delta)) in &rejected {
        assert_eq!(reported(&report, addr, &topo.server_ns), *delta, "{shape:?} from {addr}: {report:#}");
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
    assert_eq!((row["kernel_delta"].as_u64(), row["attributed"].as_u64()), (Some(total), Some(total)), "{row:#}");
    assert_eq!(report["unparsed_packets"], 0, "every PAWS-dropped shape parses: {report:#}");
}
