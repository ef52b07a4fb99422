//! PAWS rejections end to end: real namespaces, real TCP, injected segments, the real
//! `netdiag diagnose --json` binary, and the kernel's own counters (read with `nstat` in the
//! server's namespace) as the reference.
use netdiag::scenario::{self, CLIENT_V4, INNOCENT_V4, PawsRun, PawsTopology};
use netdiag_tests::{Diagnose, counter, findings_for, netdiag_bin, nstat, require_root, time_wait_counter};
use serde_json::Value;

/// One reproduction traced by netdiag, with what `nstat` saw meanwhile.
struct Traced {
    report: Value,
    run: PawsRun,
    server_ns: String,
    /// Rise of the scenario's PAWS counter in the server namespace, by `nstat`.
    by_nstat: u64,
}

/// Whether the running kernel has a drop reason (older kernels lack the TIME_WAIT and TSecr ones).
fn kernel_has_reason(reason: &str) -> bool {
    let btf = netdiag::btf::Btf::from_sys_fs().unwrap();
    btf.enum_value("skb_drop_reason", &format!("SKB_DROP_REASON_{reason}")).is_some()
}

/// `netdiag hooks --json` with `args` (a `--backend`, or none).
fn hooks_survey(args: &[&str]) -> Value {
    let out = std::process::Command::new(netdiag_bin()).args(["hooks", "--json"]).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hook<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["hooks"].as_array().unwrap().iter().find(|h| h["name"] == name).unwrap_or_else(|| panic!("{name}: {report:#}"))
}

/// Whether netdiag run with `args` sees drops of `reason` here: the kernel has the reason, or,
/// for TIME_WAIT rejections, the `paws_time_wait` hook is served (by a function program on a
/// kernel without the reason).
fn seen_here(reason: &str, args: &[&str]) -> bool {
    if reason == "TCP_RFC7323_TW_PAWS" {
        return hook(&hooks_survey(args), "paws_time_wait")["active"] == true;
    }
    kernel_has_reason(reason)
}

/// On a kernel without the scenario's drop reason the tracepoint backend cannot see those
/// drops: netdiag must say so in its hooks and must not blame the client under another variant.
fn assert_gap_reported(
    tag: &str,
    reason: &str,
    args: &[&str],
    scenario: impl FnOnce(&PawsTopology) -> anyhow::Result<PawsRun>,
) {
    let topo = PawsTopology::new(tag).unwrap();
    let tracer = Diagnose::start(args).unwrap();
    // Such a kernel may not reject the segments at all (before 6.14 a bad TSecr completes the
    // handshake), so the scenario's own check may fail; what netdiag says is what is tested.
    let outcome = scenario(&topo);
    eprintln!("scenario on a kernel without {reason}: {:?}", outcome.map(|run| run.injected));
    let report = tracer.finish().unwrap();
    let paws = hook(&report, "paws_checks");
    let detail = paws["detail"].as_str().unwrap();
    assert!(detail.contains(reason) && detail.contains("not on this kernel"), "{paws:#}");
    if reason == "TCP_RFC7323_TW_PAWS" {
        let time_wait = hook(&report, "paws_time_wait");
        assert_eq!(time_wait["active"], false, "{time_wait:#}");
        let refused = time_wait["refused"].as_array().unwrap();
        let why = format!("tracepoint: {reason} not on this kernel");
        assert!(refused.iter().any(|r| r.as_str() == Some(why.as_str())), "{time_wait:#}");
    }
    let client = CLIENT_V4.to_string();
    let blamed: Vec<_> =
        findings_for(&report, "paws_rejections", &client).into_iter().filter(|f| f["netns"] == topo.server_ns.as_str()).collect();
    assert!(blamed.is_empty(), "{report:#}");
}

/// Builds the topology, starts netdiag, runs the scenario (plus innocent traffic), stops netdiag.
/// `None` when the kernel lacks `reason` (after checking netdiag says so).
fn traced(
    tag: &str,
    reason: &str,
    counter_name: &str,
    scenario: impl FnOnce(&PawsTopology) -> anyhow::Result<PawsRun>,
) -> Option<Traced> {
    traced_with(tag, reason, counter_name, &[], scenario)
}

/// [`traced`] with netdiag run with `args`.
fn traced_with(
    tag: &str,
    reason: &str,
    counter_name: &str,
    args: &[&str],
    scenario: impl FnOnce(&PawsTopology) -> anyhow::Result<PawsRun>,
) -> Option<Traced> {
    require_root();
    if !seen_here(reason, args) {
        assert_gap_reported(tag, reason, args, scenario);
        return None;
    }
    let topo = PawsTopology::new(tag).unwrap();
    let server_ns = topo.server_ns.clone();
    let before = nstat(&server_ns, counter_name).unwrap();
    let tracer = Diagnose::start(args).unwrap();
    let run = scenario(&topo).unwrap();
    scenario::innocent_traffic(&topo, 3).unwrap();
    let report = tracer.finish().unwrap();
    let by_nstat = nstat(&server_ns, counter_name).unwrap() - before;
    assert_eq!(by_nstat, run.injected, "the kernel rejected every segment the scenario sent");
    assert_eq!(counter(&report, &server_ns, counter_name), by_nstat, "netdiag's counter delta is nstat's");
    assert_attribution_complete(&report, &server_ns, counter_name);
    assert_innocent_unnamed(&report);
    assert_eq!(report["lost_events"], 0);
    Some(Traced { report, run, server_ns, by_nstat })
}

/// The one finding about the client, checked for variant, namespace, count and words.
fn assert_named_once<'a>(t: &'a Traced, variant: &str) -> &'a Value {
    let peer = t.run.client_addr.to_string();
    let found: Vec<_> =
        findings_for(&t.report, "paws_rejections", &peer).into_iter().filter(|f| f["netns"] == t.server_ns.as_str()).collect();
    assert_eq!(found.len(), 1, "one finding for {peer}: {:#}", t.report);
    let f = found[0];
    assert_eq!(f["variant"], variant, "{f:#}");
    assert_eq!(f["count"].as_u64(), Some(t.by_nstat), "{f:#}");
    for field in ["first_seen", "last_seen", "summary", "advice"] {
        assert!(f[field].as_str().is_some_and(|s| !s.is_empty()), "{field} missing: {f:#}");
    }
    assert!(f["summary"].as_str().unwrap().contains(&peer));
    f
}

fn assert_innocent_unnamed(report: &Value) {
    let innocent = INNOCENT_V4.to_string();
    assert!(findings_for(report, "paws_rejections", &innocent).is_empty(), "innocent client named: {report:#}");
    assert!(report["peers"].as_array().unwrap().iter().all(|p| p["addr"] != innocent.as_str()));
}

fn assert_attribution_complete(report: &Value, netns: &str, counter_name: &str) {
    let row = report["attribution"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["netns"] == netns && a["counter"] == counter_name)
        .unwrap_or_else(|| panic!("no attribution row for {netns} {counter_name}: {report:#}"));
    assert_eq!(row["kernel_delta"], row["attributed"], "{row:#} in {report:#}");
}

#[test]
fn established_ipv4_names_the_client_with_the_kernel_count() {
    let Some(t) = traced("est4", "TCP_RFC7323_PAWS", "TcpExtPAWSEstab", |topo| scenario::paws_established(topo, false, 5))
    else {
        return;
    };
    assert_named_once(&t, "established");
}

#[test]
fn established_ipv6_names_the_client_with_the_kernel_count() {
    let Some(t) = traced("est6", "TCP_RFC7323_PAWS", "TcpExtPAWSEstab", |topo| scenario::paws_established(topo, true, 5))
    else {
        return;
    };
    assert_named_once(&t, "established");
}

/// Seed 002: a reconnect on the same 4-tuple with a timestamp clock behind the first one
/// (another host behind the same NAT address) is dropped against the server's TIME_WAIT.
/// Kernels before 6.16 have no drop reason for it: there the `paws_time_wait` function hook
/// (fentry, else kprobe) names the client, with the count the kernel put in `PAWSEstab`.
#[test]
fn time_wait_reconnect_with_an_older_clock_names_the_client() {
    time_wait_named("tw", &[]);
}

/// The same through kprobes, where the kernel allows them (the guests).
#[test]
fn time_wait_reconnect_is_named_through_a_kprobe() {
    require_root();
    if hook(&hooks_survey(&["--backend", "kprobe"]), "paws_time_wait")["active"] != true {
        eprintln!("skipping: no kprobe on tcp_timewait_state_process here");
        return;
    }
    time_wait_named("twkp", &["--backend", "kprobe"]);
}

/// With only the tracepoint allowed, a kernel without the reason cannot see these drops and
/// says so; one with it names the client.
#[test]
fn time_wait_through_the_tracepoint_alone_needs_the_kernel_reason() {
    time_wait_named("twtp", &["--backend", "tracepoint"]);
}

fn time_wait_named(tag: &str, args: &[&str]) {
    let Some(t) = traced_with(tag, "TCP_RFC7323_TW_PAWS", time_wait_counter(), args, scenario::paws_time_wait) else {
        return;
    };
    assert!(t.by_nstat > 0, "the reconnect was rejected by PAWS in TIME_WAIT");
    let finding = assert_named_once(&t, "time_wait");
    assert_eq!(finding["local"][0], t.run.server.to_string(), "the finding names the listener that was hit");
    let time_wait = hook(&t.report, "paws_time_wait");
    assert_eq!(time_wait["active"], true, "{time_wait:#}");
    if !kernel_has_reason("TCP_RFC7323_TW_PAWS") {
        let backend = time_wait["backend"].as_str().unwrap();
        assert!(backend == "fentry" || backend == "kprobe", "{time_wait:#}");
    }
}

#[test]
fn handshake_echoing_a_timestamp_never_sent_is_a_tsecr_finding() {
    let Some(t) = traced("tsecr", "TCP_RFC7323_TSECR", "TcpExtTSEcrRejected", |topo| scenario::paws_tsecr(topo, 3)) else {
        return;
    };
    assert_named_once(&t, "tsecr");
}

/// `--peer` limits the report to one address range: the client is outside it and unnamed.
#[test]
fn peer_filter_keeps_only_the_matching_peer() {
    require_root();
    let topo = PawsTopology::new("filt").unwrap();
    let tracer = Diagnose::start(&["--peer", "203.0.113.0/24"]).unwrap();
    scenario::paws_established(&topo, false, 2).unwrap();
    let report = tracer.finish().unwrap();
    assert!(findings_for(&report, "paws_rejections", &CLIENT_V4.to_string()).is_empty(), "{report:#}");
    assert!(report["peers"].as_array().unwrap().is_empty(), "{report:#}");
}

/// `--netns` keeps the server's namespace and drops others; `--port` keeps only drops sent to
/// that local port. Three sessions with different filters watch the same reproduction.
#[test]
fn netns_and_port_filters_select_what_is_reported() {
    require_root();
    let topo = PawsTopology::new("nsport").unwrap();
    let client = CLIENT_V4.to_string();
    let in_server_ns = Diagnose::start(&["--netns", &topo.server_ns]).unwrap();
    let in_root_ns = Diagnose::start(&["--netns", "root"]).unwrap();
    let on_port_1 = Diagnose::start(&["--port", "1"]).unwrap();
    let run = scenario::paws_established(&topo, false, 3).unwrap();
    let (server_view, root_view, port_view) =
        (in_server_ns.finish().unwrap(), in_root_ns.finish().unwrap(), on_port_1.finish().unwrap());

    let named = findings_for(&server_view, "paws_rejections", &client);
    assert_eq!(named.len(), 1, "{server_view:#}");
    assert_eq!(named[0]["count"], run.injected, "{server_view:#}");
    assert_eq!(named[0]["local"][0], run.server.to_string());
    assert!(server_view["counters"].as_object().unwrap().keys().all(|ns| *ns == topo.server_ns), "{server_view:#}");
    assert!(findings_for(&root_view, "paws_rejections", &client).is_empty(), "{root_view:#}");
    assert!(port_view["peers"].as_array().unwrap().iter().all(|p| p["netns"] != topo.server_ns.as_str()), "{port_view:#}");
}
