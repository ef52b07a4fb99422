//! PAWS rejections end to end: real namespaces, real TCP, injected segments, the real
//! `netdiag diagnose --json` binary, and the kernel's own counters as the reference.
use netdiag::scenario::{self, CLIENT_V4, INNOCENT_V4, PawsTopology};
use netdiag_tests::{Diagnose, counter, findings_for, nstat, require_root};

fn assert_named_once(report: &serde_json::Value, variant: &str, peer: &str, netns: &str, expected: u64) {
    let found: Vec<_> = findings_for(report, "paws_rejections", peer).into_iter().filter(|f| f["netns"] == netns).collect();
    assert_eq!(found.len(), 1, "one finding for {peer}: {report:#}");
    let f = found[0];
    assert_eq!(f["variant"], variant, "{f:#}");
    assert_eq!(f["netns"], netns, "{f:#}");
    assert_eq!(f["count"].as_u64(), Some(expected), "{f:#}");
    for field in ["first_seen", "last_seen", "summary", "advice"] {
        assert!(f[field].as_str().is_some_and(|s| !s.is_empty()), "{field} missing: {f:#}");
    }
    assert!(f["summary"].as_str().unwrap().contains(peer));
}

fn assert_innocent_unnamed(report: &serde_json::Value) {
    let innocent = INNOCENT_V4.to_string();
    assert!(findings_for(report, "paws_rejections", &innocent).is_empty(), "innocent client named: {report:#}");
    assert!(report["peers"].as_array().unwrap().iter().all(|p| p["addr"] != innocent.as_str()));
}

fn assert_attribution_complete(report: &serde_json::Value, netns: &str, counter_name: &str) {
    let row = report["attribution"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["netns"] == netns && a["counter"] == counter_name)
        .unwrap_or_else(|| panic!("no attribution row for {netns} {counter_name}: {report:#}"));
    assert_eq!(row["kernel_delta"], row["attributed"], "{row:#}");
}

fn established(v6: bool) {
    require_root();
    let topo = PawsTopology::new(if v6 { "est6" } else { "est4" }).unwrap();
    let srv = topo.server_ns.clone();
    let before = nstat(&srv, "TcpExtPAWSEstab").unwrap();
    let tracer = Diagnose::start(&[]).unwrap();
    let run = scenario::paws_established(&topo, v6, 5).unwrap();
    scenario::innocent_traffic(&topo, 3).unwrap();
    let report = tracer.finish().unwrap();
    let by_nstat = nstat(&srv, "TcpExtPAWSEstab").unwrap() - before;

    assert_eq!(by_nstat, run.injected, "the kernel rejected every injected segment");
    assert_eq!(counter(&report, &srv, "TcpExtPAWSEstab"), by_nstat, "netdiag's counter delta = nstat's");
    assert_named_once(&report, "established", &run.client_addr.to_string(), &srv, by_nstat);
    assert_attribution_complete(&report, &srv, "TcpExtPAWSEstab");
    assert_innocent_unnamed(&report);
    assert_eq!(report["lost_events"], 0);
}

#[test]
fn established_ipv4_names_the_client_with_the_kernel_count() {
    established(false);
}

#[test]
fn established_ipv6_names_the_client_with_the_kernel_count() {
    established(true);
}

/// Seed 002: a reconnect on the same 4-tuple with a timestamp clock behind the first one
/// (another host behind the same NAT address) is dropped against the server's TIME_WAIT.
#[test]
fn time_wait_reconnect_with_an_older_clock_names_the_client() {
    require_root();
    let topo = PawsTopology::new("tw").unwrap();
    let srv = topo.server_ns.clone();
    let before = nstat(&srv, "TcpExtPAWSTimewait").unwrap();
    let tracer = Diagnose::start(&[]).unwrap();
    let run = scenario::paws_time_wait(&topo).unwrap();
    scenario::innocent_traffic(&topo, 3).unwrap();
    let report = tracer.finish().unwrap();
    let by_nstat = nstat(&srv, "TcpExtPAWSTimewait").unwrap() - before;

    assert!(by_nstat > 0, "the reconnect was rejected by PAWS in TIME_WAIT");
    assert_eq!(counter(&report, &srv, "TcpExtPAWSTimewait"), by_nstat);
    assert_named_once(&report, "time_wait", &run.client_addr.to_string(), &srv, by_nstat);
    let local = &findings_for(&report, "paws_rejections", &run.client_addr.to_string())[0]["local"];
    assert_eq!(local[0], run.server.to_string(), "the finding names the listener that was hit");
    assert_attribution_complete(&report, &srv, "TcpExtPAWSTimewait");
    assert_innocent_unnamed(&report);
}

#[test]
fn handshake_echoing_a_timestamp_never_sent_is_a_tsecr_finding() {
    require_root();
    let topo = PawsTopology::new("tsecr").unwrap();
    let srv = topo.server_ns.clone();
    let before = nstat(&srv, "TcpExtTSEcrRejected").unwrap();
    let tracer = Diagnose::start(&[]).unwrap();
    let run = scenario::paws_tsecr(&topo, 3).unwrap();
    let report = tracer.finish().unwrap();
    let by_nstat = nstat(&srv, "TcpExtTSEcrRejected").unwrap() - before;

    assert_eq!(by_nstat, run.injected);
    assert_named_once(&report, "tsecr", &run.client_addr.to_string(), &srv, by_nstat);
    assert_attribution_complete(&report, &srv, "TcpExtTSEcrRejected");
}

/// `--peer` limits the report to one address: the client is named, nobody else appears.
#[test]
fn peer_filter_keeps_only_the_matching_peer() {
    require_root();
    let topo = PawsTopology::new("filt").unwrap();
    let client = CLIENT_V4.to_string();
    let tracer = Diagnose::start(&["--peer", "203.0.113.0/24"]).unwrap();
    scenario::paws_established(&topo, false, 2).unwrap();
    let report = tracer.finish().unwrap();
    assert!(findings_for(&report, "paws_rejections", &client).is_empty(), "{report:#}");
    assert!(report["peers"].as_array().unwrap().is_empty(), "{report:#}");
}
