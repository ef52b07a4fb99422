//! The SYN funnel end to end: hosts behind a real NAT (nftables masquerade) reconnecting to a
//! server that holds their 4-tuple in TIME_WAIT, a listener that never accepts, and clients
//! with one clock each that are not behind a NAT — traced by the real `netdiag diagnose --json`,
//! checked against the packets captured at the server and the kernel's own counters (`nstat`).
use netdiag::scenario::{self, NAT_PUBLIC_V4, NAT_SERVER_PORT, NatTopology};
use netdiag_tests::{Diagnose, counter, findings_for, nstat, require_root, time_wait_counter};
use serde_json::Value;

fn kernel_has_reason(reason: &str) -> bool {
    let btf = netdiag::btf::Btf::from_sys_fs().unwrap();
    btf.enum_value("skb_drop_reason", &format!("SKB_DROP_REASON_{reason}")).is_some()
}

fn hook<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["hooks"].as_array().unwrap().iter().find(|h| h["name"] == name).unwrap()
}

/// Whether the funnel's SYNs come from the ingress tracepoint (every SYN that arrives), as on
/// this kernel; `tcp_conn_request` hooks count only SYNs that reach a listener.
fn syns_counted_at_ingress(report: &Value) -> bool {
    let conn_request = hook(report, "conn_request");
    assert_eq!(conn_request["active"], true, "{conn_request:#}");
    conn_request["backend"].as_str().unwrap().ends_with("tracepoint")
}

fn funnel_row<'a>(report: &'a Value, peer: &str, netns: &str, port: u16) -> &'a Value {
    let rows: Vec<&Value> = report["syn_funnel"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["peer"] == peer && r["netns"] == netns && r["port"] == port)
        .collect();
    assert_eq!(rows.len(), 1, "one funnel row for {peer} on :{port}: {:#}", report["syn_funnel"]);
    rows[0]
}

fn in_ns<'a>(found: Vec<&'a Value>, netns: &str) -> Vec<&'a Value> {
    found.into_iter().filter(|f| f["netns"] == netns).collect()
}

/// The one `unanswered_syns` finding of the NAT run: PAWS against TIME_WAIT, with the kernel's
/// count, in the seed incident's words.
fn assert_unanswered_time_wait(unanswered: &[&Value], nat: &str, by_nstat: u64, has_reason: bool) {
    assert_eq!(unanswered.len(), 1, "{unanswered:#?}");
    let f = unanswered[0];
    eprintln!("{f:#}");
    assert_eq!(f["listener_port"], NAT_SERVER_PORT);
    assert_eq!(f["count"].as_u64(), Some(by_nstat), "{f:#}");
    assert_eq!(f["variant"], "time_wait_paws", "{f:#}");
    // With a drop reason from the kernel, else from the namespace's counter.
    let drops = &f["drops"];
    let counted = ["TCP_RFC7323_TW_PAWS", "TcpExtPAWSTimewait", "TcpExtPAWSEstab"]
        .iter()
        .map(|name| drops[*name].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert_eq!(counted, by_nstat, "{f:#}");
    let summary = f["summary"].as_str().unwrap();
    if has_reason {
        let seed = format!(
            "SYNs from {nat} to :{NAT_SERVER_PORT} dropped: PAWS against TIME_WAIT; this address hides hosts \
             with different timestamp clocks (NAT)"
        );
        assert!(summary.starts_with(&seed), "{f:#}");
    } else {
        assert!(summary.contains("PAWS against TIME_WAIT") && summary.contains("(NAT)"), "{f:#}");
    }
}

#[test]
fn hosts_behind_a_nat_read_as_unanswered_syns_and_several_clocks() {
    require_root();
    let topo = NatTopology::new("synnat", 2, 3).unwrap();
    let server_ns = topo.server_ns.clone();
    // Unlike the host's default (1): the advice must follow the server namespace's own setting.
    topo.lab().sysctl(&server_ns, "net.ipv4.tcp_timestamps", "2").unwrap();
    let paws_counter = time_wait_counter();
    let before = nstat(&server_ns, paws_counter).unwrap();
    // Only the server's namespace: a SYN flood elsewhere on the machine must not crowd it out.
    let tracer = Diagnose::start(&["--netns", &server_ns]).unwrap();
    let run = scenario::nat_time_wait(&topo).unwrap();
    let (_plain, direct) = scenario::direct_traffic(&topo, 4).unwrap();
    let report = tracer.finish().unwrap();
    let by_nstat = nstat(&server_ns, paws_counter).unwrap() - before;
    eprintln!("rejected client {}: {} SYNs; wire {:?}", run.rejected_client_ns, run.rejected_syns, run.wire);
    assert_eq!(by_nstat, run.rejected_syns, "PAWS rejected every SYN of the reconnect");
    assert_eq!(counter(&report, &server_ns, paws_counter), by_nstat);
    assert_eq!(report["lost_events"], 0);

    let nat = NAT_PUBLIC_V4.to_string();
    let clocks = in_ns(findings_for(&report, "nat_timestamp_clocks", &nat), &server_ns);
    assert_eq!(clocks.len(), 1, "{:#}", report["findings"]);
    assert!(clocks[0]["clocks"].as_u64().unwrap() >= 2, "{:#}", clocks[0]);
    let evidence: Vec<&str> = clocks[0]["evidence"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(evidence.iter().any(|e| e.contains("source port 41000 carried TSvals of 2 clocks")), "{evidence:#?}");
    if kernel_has_reason("TCP_RFC7323_TW_PAWS") {
        // The rejected SYNs' own drop samples: time went backwards on the 4-tuple.
        assert!(evidence.iter().any(|e| e.contains("went backwards")), "{evidence:#?}");
    }
    let advice = clocks[0]["advice"].as_str().unwrap();
    assert!(advice.contains("tcp_tw_recycle") && advice.contains("(tcp_timestamps=2)"), "{:#}", clocks[0]);

    let unanswered = in_ns(findings_for(&report, "unanswered_syns", &nat), &server_ns);
    // The rejections are seen with a reason where the kernel gives one, or where a function
    // hook on tcp_timewait_state_process recomputes it (paws_time_wait).
    let has_reason = kernel_has_reason("TCP_RFC7323_TW_PAWS") || hook(&report, "paws_time_wait")["active"] == true;
    if !has_reason && !syns_counted_at_ingress(&report) {
        // SYNs counted at the listener, and the rejections have no drop reason: the funnel
        // cannot see them; the clocks above still name the NAT.
        eprintln!("this kernel gives PAWS against TIME_WAIT no drop reason and counts SYNs at the listener");
        assert!(unanswered.is_empty(), "{:#}", report["findings"]);
    } else {
        assert_unanswered_time_wait(&unanswered, &nat, by_nstat, has_reason);
    }

    let row = funnel_row(&report, &nat, &server_ns, NAT_SERVER_PORT);
    assert_eq!(row["handshakes"].as_u64(), Some(run.connections), "{row:#}");
    assert_eq!(row["synacks"].as_u64(), Some(run.wire.synacks), "{row:#}");
    // SYNs counted at the listener get those TIME_WAIT rejected added from the drops.
    if syns_counted_at_ingress(&report) || has_reason {
        assert_eq!(row["syns"].as_u64(), Some(run.wire.syns), "{row:#}");
        assert_eq!(row["unanswered"].as_u64(), Some(run.rejected_syns), "{row:#}");
    }

    for (addr, connections) in direct {
        let peer = addr.to_string();
        assert!(findings_for(&report, "nat_timestamp_clocks", &peer).is_empty(), "{peer}: {:#}", report["findings"]);
        assert!(findings_for(&report, "unanswered_syns", &peer).is_empty(), "{peer}: {:#}", report["findings"]);
        let row = funnel_row(&report, &peer, &server_ns, scenario::PLAIN_PORT);
        assert_eq!(row["handshakes"].as_u64(), Some(connections), "{row:#}");
        assert_eq!(row["unanswered"], 0, "{row:#}");
    }
}

#[test]
fn a_listener_that_never_accepts_reads_as_listen_overflow() {
    require_root();
    let topo = NatTopology::new("synovf", 0, 1).unwrap();
    let server_ns = topo.server_ns.clone();
    let before = nstat(&server_ns, "TcpExtListenOverflows").unwrap();
    // Only the server's namespace: a SYN flood elsewhere on the machine must not crowd it out.
    let tracer = Diagnose::start(&["--netns", &server_ns]).unwrap();
    let run = scenario::listen_overflow(&topo, 2).unwrap();
    let report = tracer.finish().unwrap();
    let by_nstat = nstat(&server_ns, "TcpExtListenOverflows").unwrap() - before;
    assert!(by_nstat > 0, "the full accept queue dropped SYNs");
    assert_eq!(counter(&report, &server_ns, "TcpExtListenOverflows"), by_nstat);

    let peer = run.client_addr.to_string();
    let found = in_ns(findings_for(&report, "unanswered_syns", &peer), &server_ns);
    assert_eq!(found.len(), 1, "{:#}", report["findings"]);
    let f = found[0];
    eprintln!("{f:#}");
    assert_eq!(f["variant"], "listen_overflow", "{f:#}");
    assert_eq!(f["listener_port"], run.server.port());
    assert_eq!(f["local"][0], run.server.to_string(), "{f:#}");
    // Reconciled: overflows with a drop reason (final ACKs) plus those the kernel dropped
    // silently (SYNs), which netdiag takes from the counter, are the counter's rise.
    let drops = &f["drops"];
    let with_reason = drops["TCP_LISTEN_OVERFLOW"].as_u64().unwrap_or(0);
    let silent = drops["TcpExtListenOverflows"].as_u64().unwrap_or(0);
    assert_eq!(with_reason + silent, by_nstat, "{f:#}");
    assert!(f["summary"].as_str().unwrap().contains("listen queue overflow"), "{f:#}");
    assert!(f["advice"].as_str().unwrap().contains("accept"), "{f:#}");

    let row = funnel_row(&report, &peer, &server_ns, run.server.port());
    assert_eq!(row["handshakes"].as_u64(), Some(run.connections), "{row:#}");
    assert_eq!(row["synacks"].as_u64(), Some(run.wire.synacks), "{row:#}");
    if syns_counted_at_ingress(&report) {
        assert_eq!(row["syns"].as_u64(), Some(run.wire.syns), "{row:#}");
        assert_eq!(row["unanswered"].as_u64(), Some(run.unanswered_syns), "{row:#}");
        assert_eq!(f["count"].as_u64(), Some(run.unanswered_syns), "{f:#}");
    }
}

#[test]
fn the_conn_request_hook_says_which_backend_serves_it() {
    require_root();
    let out = std::process::Command::new(netdiag_tests::netdiag_bin()).args(["hooks", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let conn_request = hook(&report, "conn_request");
    assert_eq!(conn_request["active"], true, "{conn_request:#}");
    let backend = conn_request["backend"].as_str().unwrap();
    assert!(["fentry", "kprobe", "tp_btf", "raw_tracepoint", "tracepoint"].contains(&backend), "{conn_request:#}");
    if backend.ends_with("tracepoint") || backend == "tp_btf" {
        assert!(conn_request["target"].as_str().unwrap().ends_with("netif_receive_skb"), "{conn_request:#}");
        assert!(conn_request["refused"].as_array().unwrap().len() >= 2, "fentry and kprobe were refused first");
    }
    for name in ["syn_timestamps", "synack_sent", "synack_retransmit", "handshake_done"] {
        assert_eq!(hook(&report, name)["active"], true, "{:#}", hook(&report, name));
    }
}
