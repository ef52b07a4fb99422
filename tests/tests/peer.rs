//! `netdiag peer <IP>` on the NAT address of a real NAT reproduction: the drill-down shows the
//! SYN funnel, both findings, the PAWS count the kernel counted, the clocks, the flow and the
//! TIME_WAIT socket the server still holds — and nothing about any other peer.
use netdiag::scenario::{self, NAT_PUBLIC_V4, NAT_SERVER_PORT, NAT_SERVER_V4, NatTopology};
use netdiag_tests::{Diagnose, nstat, require_root, time_wait_counter};
use serde_json::Value;

fn items<'a>(report: &'a Value, field: &str) -> &'a Vec<Value> {
    report[field].as_array().unwrap_or_else(|| panic!("no {field} list: {report:#}"))
}

#[test]
fn peer_on_the_nat_address_shows_its_funnel_clocks_sockets_and_findings() {
    require_root();
    let topo = NatTopology::new("peer", 2, 1).unwrap();
    let server_ns = topo.server_ns.clone();
    let nat = NAT_PUBLIC_V4.to_string();
    let paws_counter = time_wait_counter();
    let before = nstat(&server_ns, paws_counter).unwrap();
    // Only the server's namespace: a SYN flood elsewhere on the machine must not crowd it out.
    let tracer = Diagnose::start_command(&["peer", &nat, "--json", "--duration", "300", "--netns", &server_ns]).unwrap();
    let run = scenario::nat_time_wait(&topo).unwrap();
    let (_plain, _) = scenario::direct_traffic(&topo, 2).unwrap();
    let report = tracer.finish().unwrap();
    let by_nstat = nstat(&server_ns, paws_counter).unwrap() - before;
    assert_eq!(by_nstat, run.rejected_syns);
    assert_eq!(report["peer"], nat.as_str());

    for list in ["flows", "syn_funnel", "timestamp_clocks", "sockets", "findings", "drops"] {
        for item in items(&report, list) {
            let addr = item.get("peer").or(item.get("addr")).or(item.get("remote")).unwrap_or(&Value::Null);
            let addr = addr.as_str().unwrap_or_default();
            assert!(addr == nat || addr.starts_with(&format!("{nat}:")), "{list} names another peer: {item:#}");
        }
    }
    // Every row of the server's namespace names its workload: no container there, so the
    // namespace by its `ip netns` name.
    for list in ["flows", "syn_funnel", "paws_by_variant", "timestamp_clocks", "out_of_window", "sockets", "findings", "drops"] {
        for item in items(&report, list).iter().filter(|item| item["netns"] == server_ns.as_str()) {
            assert_eq!(item["workload"], serde_json::json!({"kind": "netns", "name": server_ns}), "{list}: {item:#}");
        }
    }
    let has_tw_reason = netdiag::btf::Btf::from_sys_fs()
        .unwrap()
        .enum_value("skb_drop_reason", "SKB_DROP_REASON_TCP_RFC7323_TW_PAWS")
        .is_some();
    let kinds: Vec<&str> = items(&report, "findings")
        .iter()
        .filter(|f| f["netns"] == server_ns.as_str())
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"nat_timestamp_clocks"), "{:#}", report["findings"]);
    let conn_request = items(&report, "hooks").iter().find(|h| h["name"] == "conn_request").unwrap();
    if has_tw_reason || conn_request["backend"].as_str().unwrap().ends_with("tracepoint") {
        assert!(kinds.contains(&"unanswered_syns"), "{:#}", report["findings"]);
    }

    let funnel: Vec<&Value> = items(&report, "syn_funnel").iter().filter(|r| r["netns"] == server_ns.as_str()).collect();
    assert_eq!(funnel.len(), 1, "{:#}", report["syn_funnel"]);
    assert_eq!(funnel[0]["port"], NAT_SERVER_PORT);
    assert_eq!(funnel[0]["handshakes"].as_u64(), Some(run.connections));
    assert_eq!(funnel[0]["synacks"].as_u64(), Some(run.wire.synacks));

    let paws: u64 = items(&report, "paws_by_variant")
        .iter()
        .filter(|p| p["netns"] == server_ns.as_str() && p["variant"] == "time_wait")
        .map(|p| p["count"].as_u64().unwrap())
        .sum();
    if has_tw_reason {
        assert_eq!(paws, by_nstat, "{:#}", report["paws_by_variant"]);
    }

    let clocks: Vec<&Value> =
        items(&report, "timestamp_clocks").iter().filter(|c| c["netns"] == server_ns.as_str()).collect();
    assert_eq!(clocks.len(), 1);
    assert!(clocks[0]["hosts_at_least"].as_u64().unwrap() >= 2, "{:#}", clocks[0]);

    let server = format!("{NAT_SERVER_V4}:{NAT_SERVER_PORT}");
    let flow = items(&report, "flows").iter().find(|f| f["netns"] == server_ns.as_str() && f["local"] == server.as_str());
    let flow = flow.unwrap_or_else(|| panic!("no flow to {server}: {:#}", report["flows"]));
    assert_eq!(flow["remote"], format!("{nat}:41000"));
    assert!(flow["syns"].as_u64().unwrap() >= 1, "{flow:#}");

    // The server closed the last good connection first: it still holds it in TIME_WAIT.
    let sockets = items(&report, "sockets");
    assert!(
        sockets.iter().any(|s| s["netns"] == server_ns.as_str()
            && s["state"] == "TIME-WAIT"
            && s["local"] == server.as_str()
            && s["remote"] == format!("{nat}:41000")),
        "{sockets:#?}"
    );
    // Duplicate-ACK counts exist where a hook counts them (the function hook, else the per-flow
    // egress tracepoint), and are null (not 0) where none can.
    let counted = items(&report, "hooks").iter().any(|h| (h["name"] == "dupack_sent" || h["name"] == "flow_dupacks") && h["active"] == true);
    let out_of_window = items(&report, "out_of_window");
    assert!(!out_of_window.is_empty());
    for o in out_of_window {
        assert_eq!(o["dup_acks_sent"].is_null(), !counted, "{o:#}");
    }
}
