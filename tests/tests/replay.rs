//! One host with one clock, and packets that make it look like more: its own SYN replayed on
//! its live 4-tuple (intact and with a broken checksum) beside stale-timestamp segments, and
//! SYN retransmissions through a lossy link. Traced by the real `netdiag diagnose --json`,
//! checked against the server kernel's own counters (`nstat`): netdiag must count the PAWS
//! rejections, account for every SYN (challenge ACK, TCP_CSUM) and claim no NAT.
use std::collections::BTreeMap;

use netdiag::scenario::{self, REPLAY_CLIENT_V4, ReplayTopology};
use netdiag_tests::{Diagnose, findings_for, nstat, require_root};
use serde_json::Value;

const COUNTERS: [&str; 5] =
    ["TcpExtTCPSYNChallenge", "TcpExtTCPChallengeACK", "TcpInCsumErrors", "TcpExtPAWSEstab", "TcpExtTCPACKSkippedChallenge"];

fn kernel_has_reason(reason: &str) -> bool {
    let btf = netdiag::btf::Btf::from_sys_fs().unwrap();
    btf.enum_value("skb_drop_reason", &format!("SKB_DROP_REASON_{reason}")).is_some()
}

fn counters(netns: &str) -> BTreeMap<&'static str, u64> {
    COUNTERS.iter().map(|name| (*name, nstat(netns, name).unwrap())).collect()
}

fn deltas(netns: &str, before: &BTreeMap<&'static str, u64>) -> BTreeMap<&'static str, u64> {
    counters(netns).into_iter().map(|(name, now)| (name, now - before[name])).collect()
}

/// What the kernel said (counter deltas by `nstat`) against what netdiag concluded, each finding
/// with the kernel facts it names (`kernel_facts`); a finding about the server namespace with no
/// kernel fact behind it fails, and so does a fact the kernel's own counters contradict.
fn scorecard(report: &Value, netns: &str, kernel: &BTreeMap<&'static str, u64>) {
    eprintln!("kernel: {kernel:?}");
    for f in report["findings"].as_array().unwrap().iter().filter(|f| f["netns"] == netns) {
        let facts = f["kernel_facts"].as_object().unwrap_or_else(|| panic!("no kernel_facts: {f:#}"));
        eprintln!("netdiag: {} / {} count {} <- {facts:?}", f["kind"], f["variant"], f["count"]);
        assert!(!facts.is_empty(), "a finding with no kernel fact behind it: {f:#}");
        for (name, value) in facts {
            if let Some(by_nstat) = kernel.get(name.as_str()) {
                assert_eq!(value.as_u64(), Some(*by_nstat), "{name} as netdiag read it, against nstat: {f:#}");
            }
        }
    }
}

/// How the kernel handled a SYN replayed on a live connection, by its own counters: 6.12 and
/// later send the RFC 5961 challenge ACK (`TCPSYNChallenge`); 6.1 checks PAWS first and answers
/// the replay, whose TSval is older than the connection's, as a stale segment (`PAWSEstab` and a
/// duplicate ACK). Neither is "unanswered", and neither is a second clock.
#[derive(Debug, PartialEq)]
enum SynOnLiveTuple {
    Challenged,
    RejectedByPaws,
}

fn syn_on_live_tuple(kernel: &BTreeMap<&'static str, u64>, run: &scenario::ReplayRun) -> SynOnLiveTuple {
    let challenged = (kernel["TcpExtTCPSYNChallenge"], kernel["TcpExtTCPChallengeACK"], kernel["TcpExtPAWSEstab"]);
    if challenged == (run.intact_replays, run.intact_replays, run.stale_segments) {
        return SynOnLiveTuple::Challenged;
    }
    let by_paws = (kernel["TcpExtTCPSYNChallenge"], kernel["TcpExtPAWSEstab"]);
    assert_eq!(by_paws, (0, run.stale_segments + run.intact_replays), "neither challenged nor PAWS-rejected: {kernel:?}");
    SynOnLiveTuple::RejectedByPaws
}

/// Whether `hook` is served at a kernel function (fentry/kprobe), where SYNs are seen at the
/// listener, not as they arrive.
fn at_function(report: &Value, hook: &str) -> bool {
    let at_tracepoint = ["tp_btf", "raw_tracepoint", "tracepoint"];
    report["hooks"].as_array().unwrap().iter().any(|h| {
        h["name"] == hook && h["active"] == true && !at_tracepoint.contains(&h["backend"].as_str().unwrap_or(""))
    })
}

/// The SYN funnel rows of `peer` on the server's `port`.
fn funnel_rows<'a>(report: &'a Value, peer: &str, port: u16) -> Vec<&'a Value> {
    report["syn_funnel"].as_array().unwrap().iter().filter(|r| r["peer"] == peer && r["port"] == port).collect()
}

#[test]
fn a_replayed_syn_on_a_live_connection_is_no_nat_and_every_syn_is_accounted_for() {
    require_root();
    let topo = ReplayTopology::new("replay").unwrap();
    let before = counters(&topo.server_ns);
    let tracer = Diagnose::start(&["--netns", &topo.server_ns]).unwrap();
    let run = scenario::syn_replay(&topo).unwrap();
    let report = tracer.finish().unwrap();
    let kernel = deltas(&topo.server_ns, &before);

    // What the kernel did, checked rather than assumed.
    let handled = syn_on_live_tuple(&kernel, &run);
    eprintln!("the kernel handled the replays: {handled:?}");
    assert_eq!(kernel["TcpInCsumErrors"], run.corrupt_replays, "{kernel:?}");
    scorecard(&report, &topo.server_ns, &kernel);

    let client = REPLAY_CLIENT_V4.to_string();
    let mine = |kind: &str| -> Vec<Value> {
        findings_for(&report, kind, &client).into_iter().filter(|f| f["netns"] == topo.server_ns.as_str()).cloned().collect()
    };
    assert!(mine("nat_timestamp_clocks").is_empty(), "one host, its own SYN replayed: {:#}", report["findings"]);
    let clocks: Vec<&Value> =
        report["timestamp_clocks"].as_array().unwrap().iter().filter(|c| c["peer"] == client.as_str()).collect();
    assert_eq!(clocks.len(), 1, "{report:#}");
    assert_eq!(clocks[0]["hosts_at_least"], 0, "{:#}", clocks[0]);
    let excluded: u64 = clocks[0]["excluded"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    if at_function(&report, "syn_timestamps") {
        // Sampled at the listener: a SYN on an established tuple never reaches it.
        assert_eq!((clocks[0]["syns"].as_u64(), excluded), (Some(1), 0), "only the connection's own SYN: {:#}", clocks[0]);
    } else {
        assert_eq!(excluded, run.intact_replays + run.corrupt_replays, "every replay left out: {:#}", clocks[0]);
    }

    // Before 6.13 the kernel gives PAWS no drop reason: the tracepoint backend cannot see them.
    let paws = mine("paws_rejections");
    if kernel_has_reason("TCP_RFC7323_PAWS") || paws.len() == 1 {
        assert_eq!(paws.len(), 1, "{:#}", report["findings"]);
        assert_eq!(paws[0]["count"].as_u64(), Some(kernel["TcpExtPAWSEstab"]), "{:#}", paws[0]);
    }

    let rows = funnel_rows(&report, &client, run.server.port());
    assert_eq!(rows.len(), 1, "{:#}", report["syn_funnel"]);
    let row = rows[0];
    eprintln!("funnel {row:#}");
    let with_reasons = kernel_has_reason("TCP_INVALID_SYN") && kernel_has_reason("TCP_CSUM");
    if with_reasons && handled == SynOnLiveTuple::Challenged {
        assert_eq!(row["challenge_acks"].as_u64(), Some(run.intact_replays), "{row:#}");
        assert_eq!(row["drops"]["TCP_INVALID_SYN"].as_u64(), Some(run.intact_replays), "{row:#}");
    }
    if with_reasons {
        assert!(row["unanswered"].as_u64().unwrap() <= run.corrupt_replays, "{row:#}");
    }
    if at_function(&report, "conn_request") {
        // Counted at the listener: a SYN on a live tuple, corrupt or not, never reaches it, so
        // none is counted and none is left unanswered.
        assert_eq!(row["unanswered"].as_u64(), Some(0), "{row:#}");
    } else {
        // Counted as it arrived: the corrupt replay is accounted for by the kernel's reason, or
        // where no drop sample showed it was a SYN, by the checksum counter.
        let drops = &row["drops"];
        let by_checksum = drops["TCP_CSUM"].as_u64().or(drops["TcpInCsumErrors"].as_u64());
        assert_eq!(by_checksum, Some(run.corrupt_replays), "{row:#}");
        assert_eq!(mine("unanswered_syns").len(), 1, "the corrupt replay, unanswered and named: {:#}", report["findings"]);
    }
    for f in mine("unanswered_syns") {
        // Only the corrupt SYN is left without an answer, and the kernel said why; without the
        // drop reasons, the counters say it.
        assert!(!f["summary"].as_str().unwrap().contains("NAT"), "{f:#}");
        if with_reasons {
            assert_eq!(f["variant"], "bad_checksum", "{f:#}");
            assert_eq!(f["count"].as_u64(), Some(run.corrupt_replays), "{f:#}");
        } else {
            assert!(f["variant"] == "bad_checksum" || f["variant"] == "invalid_syn", "{f:#}");
        }
    }
}

/// Time went backwards on a 4-tuple the server holds in TIME_WAIT, but only because the
/// connection's own first SYN came again: PAWS against TIME_WAIT, and still no NAT.
#[test]
fn a_syn_replayed_on_a_time_wait_tuple_is_a_paws_rejection_not_a_nat() {
    require_root();
    let topo = ReplayTopology::new("replaytw").unwrap();
    let counter = netdiag_tests::time_wait_counter();
    let before = nstat(&topo.server_ns, counter).unwrap();
    let tracer = Diagnose::start(&["--netns", &topo.server_ns]).unwrap();
    let run = scenario::syn_replay_on_time_wait(&topo).unwrap();
    let report = tracer.finish().unwrap();
    let rejected = nstat(&topo.server_ns, counter).unwrap() - before;
    assert_eq!(rejected, run.intact_replays, "PAWS rejected the replay against TIME_WAIT ({counter})");
    scorecard(&report, &topo.server_ns, &BTreeMap::from([(counter, rejected)]));

    let client = REPLAY_CLIENT_V4.to_string();
    if kernel_has_reason("TCP_RFC7323_TW_PAWS") {
        // The kernel's rejection was seen, with its sample: the clocks had it as evidence.
        let paws = findings_for(&report, "paws_rejections", &client);
        assert_eq!(paws.len(), 1, "{:#}", report["findings"]);
        assert_eq!((paws[0]["variant"].as_str(), paws[0]["count"].as_u64()), (Some("time_wait"), Some(rejected)));
    }
    assert!(findings_for(&report, "nat_timestamp_clocks", &client).is_empty(), "{:#}", report["findings"]);
    let clocks: Vec<&Value> =
        report["timestamp_clocks"].as_array().unwrap().iter().filter(|c| c["peer"] == client.as_str()).collect();
    assert_eq!(clocks.len(), 1, "{:#}", report["timestamp_clocks"]);
    assert_eq!(clocks[0]["hosts_at_least"], 0, "{:#}", clocks[0]);
    let excluded: u64 = clocks[0]["excluded"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(excluded, run.intact_replays, "{:#}", clocks[0]);
    for f in findings_for(&report, "unanswered_syns", &client) {
        assert_eq!(f["variant"], "time_wait_paws", "{f:#}");
        assert!(!f["summary"].as_str().unwrap().contains("NAT"), "{f:#}");
    }
}

#[test]
fn syn_retransmissions_through_a_lossy_link_are_no_second_clock() {
    require_root();
    let topo = ReplayTopology::new("synretx").unwrap();
    let tracer = Diagnose::start(&["--netns", &topo.server_ns]).unwrap();
    let run = scenario::syn_retransmissions(&topo).unwrap();
    let report = tracer.finish().unwrap();
    eprintln!("{} SYNs on the wire for {} connections", run.syns_sent, run.connections);
    assert!(run.syns_sent > run.connections, "the link lost no SYN-ACK: nothing was retransmitted");

    let client = run.client_addr.to_string();
    let clocks: Vec<&Value> =
        report["timestamp_clocks"].as_array().unwrap().iter().filter(|c| c["peer"] == client.as_str()).collect();
    assert_eq!(clocks.len(), 1, "{:#}", report["timestamp_clocks"]);
    let sampled = clocks[0]["syns"].as_u64().unwrap();
    if at_function(&report, "syn_timestamps") {
        // At the listener (tcp_conn_request): a retransmission whose first copy made a request
        // socket is handled there (tcp_check_req) and never comes back to the listener.
        assert!((run.connections..=run.syns_sent).contains(&sampled), "a SYN per connection at least: {:#}", clocks[0]);
    } else {
        assert_eq!(sampled, run.syns_sent, "every SYN sampled as it arrived: {:#}", clocks[0]);
    }
    assert_eq!(clocks[0]["hosts_at_least"], 0, "{:#}", clocks[0]);
    assert!(findings_for(&report, "nat_timestamp_clocks", &client).is_empty(), "{:#}", report["findings"]);
    assert!(findings_for(&report, "unanswered_syns", &client).is_empty(), "{:#}", report["findings"]);
}

/// SYNs with FIN also set: the listener refuses each (drop reason `TCP_FLAGS`), which is a
/// reason, not an unexplained silence, and one host's clock, not a NAT.
#[test]
fn syns_with_fin_are_refused_for_their_flags_not_left_unexplained() {
    require_root();
    let topo = ReplayTopology::new("synfin").unwrap();
    let tracer = Diagnose::start(&["--netns", &topo.server_ns]).unwrap();
    let run = scenario::syns_with_fin(&topo).unwrap();
    let report = tracer.finish().unwrap();
    assert_eq!(run.answers, 0, "the listener answered a SYN with FIN");

    let client = run.client_addr.to_string();
    assert!(findings_for(&report, "nat_timestamp_clocks", &client).is_empty(), "{:#}", report["findings"]);
    let unanswered = findings_for(&report, "unanswered_syns", &client);
    assert!(unanswered.iter().all(|f| f["variant"] != "unknown"), "{unanswered:#?}");
    let rows = funnel_rows(&report, &client, run.server.port());
    eprintln!("funnel {rows:#?}");
    if !kernel_has_reason("TCP_FLAGS") {
        return;
    }
    if at_function(&report, "conn_request") {
        // Counted at the listener: refused before tcp_conn_request, none is counted as a SYN,
        // so none is left unanswered either.
        assert!(unanswered.is_empty(), "{unanswered:#?}");
        assert!(rows.iter().all(|r| r["unanswered"] == 0), "{rows:#?}");
    } else {
        assert_eq!(rows.len(), 1, "{:#}", report["syn_funnel"]);
        assert_eq!((rows[0]["syns"].as_u64(), rows[0]["drops"]["TCP_FLAGS"].as_u64()), (Some(run.syns), Some(run.syns)), "{:#}", rows[0]);
        assert_eq!(unanswered.len(), 1, "{:#}", report["findings"]);
        assert_eq!((unanswered[0]["variant"].as_str(), unanswered[0]["count"].as_u64()), (Some("invalid_flags"), Some(run.syns)));
    }
}
