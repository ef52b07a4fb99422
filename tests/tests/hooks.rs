//! Hook selection against what the running kernel really supports. Whether fentry/fexit and
//! kprobes work is found out here independently of netdiag, by attaching trivial programs with
//! raw `bpf()` and `perf_event_open()` calls, so the expectations hold on a host that refuses
//! both as well as in a guest that allows both.
use std::{
    collections::HashMap,
    ffi::CString,
    net::IpAddr,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    process::Command,
};

use netdiag::{
    btf::Btf,
    events::ip_from,
    hooks::{self, BackendChoice, PAWS_REASONS, Probes},
    scenario::{self, CLIENT_V4, CLIENT_V6, INNOCENT_V4, PawsTopology},
};
use netdiag_tests::{netdiag_bin, nstat, require_root, time_wait_counter};
use serde_json::Value;

/// The function each function hook attaches to, and whether its first backend is fentry or
/// fexit.
const FUNCTION_HOOKS: &[(&str, &str, Trampoline)] = &[
    ("conn_request", "tcp_conn_request", Trampoline::Fentry),
    ("syn_timestamps", "tcp_conn_request", Trampoline::Fentry),
    ("dupack_sent", "tcp_send_dupack", Trampoline::Fentry),
    ("oow_limiter", "tcp_oow_rate_limited", Trampoline::Fexit),
];

/// Function hooks that also have a tracepoint program, tried last.
const WITH_TRACEPOINT: &[&str] = &["conn_request", "syn_timestamps"];
/// `paws_time_wait`: fentry, then kprobe on this function, then `kfree_skb` where the kernel has
/// the drop reason `TCP_RFC7323_TW_PAWS` (6.16).
const TIME_WAIT_FUNCTION: &str = "tcp_timewait_state_process";
/// The function firing `skb:kfree_skb` since 6.11, and the one before; `paws_checks` and
/// `oow_received` try both, in this order, with fentry, then kprobe.
const DROP_FUNCTIONS: [&str; 2] = ["sk_skb_reason_drop", "kfree_skb_reason"];
/// The SYN funnel's hooks, which exist only as tracepoints: served by them under any backend.
const TRACEPOINT_ONLY: [&str; 2] = ["synack_retransmit", "handshake_done"];
/// `synack_sent`: fentry, then kprobe on this function, then the transmit tracepoint.
const SYNACK_FUNCTION: &str = "tcp_make_synack";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Trampoline {
    Fentry,
    Fexit,
}

/// What this kernel lets a trivial program attach to, per function.
struct KernelSupport {
    trampoline: HashMap<&'static str, Result<(), String>>,
    kprobe: HashMap<&'static str, Result<(), String>>,
    /// skb:kfree_skb exists and the kernel has at least one of the PAWS drop reasons.
    paws_tracepoint: bool,
    /// skb:kfree_skb exists and the kernel has TCP_RFC7323_TW_PAWS.
    time_wait_tracepoint: bool,
}

impl KernelSupport {
    fn probe() -> KernelSupport {
        let btf = Btf::from_sys_fs().unwrap();
        let mut trampoline = HashMap::new();
        let mut kprobe = HashMap::new();
        let functions = FUNCTION_HOOKS
            .iter()
            .map(|(_, function, kind)| (*function, *kind))
            .chain([TIME_WAIT_FUNCTION, SYNACK_FUNCTION].into_iter().chain(DROP_FUNCTIONS).map(|f| (f, Trampoline::Fentry)));
        for (function, kind) in functions {
            trampoline.insert(function, trial::trampoline(&btf, function, kind));
            kprobe.insert(function, trial::kprobe(function));
        }
        let has_reason = |r: &str| btf.enum_value("skb_drop_reason", &format!("SKB_DROP_REASON_{r}")).is_some();
        let tracepoint = std::path::Path::new("/sys/kernel/tracing/events/skb/kfree_skb").exists();
        let paws_tracepoint = tracepoint && PAWS_REASONS.iter().any(|r| has_reason(r));
        let time_wait_tracepoint = tracepoint && has_reason("TCP_RFC7323_TW_PAWS");
        let support = KernelSupport { trampoline, kprobe, paws_tracepoint, time_wait_tracepoint };
        eprintln!(
            "kernel support: fentry/fexit {:?}; kprobe {:?}",
            support.trampoline, support.kprobe
        );
        support
    }

    fn trampoline_works(&self, function: &str) -> bool {
        self.trampoline[function].is_ok()
    }

    fn kprobe_works(&self, function: &str) -> bool {
        self.kprobe[function].is_ok()
    }

    /// The candidates of a hook with fentry and kprobe programs on `functions`, then `tracepoints`
    /// (each with whether the kernel has it), in netdiag's order of preference.
    fn candidates(&self, functions: &[&'static str], tracepoints: &[(&'static str, bool)]) -> Vec<Candidate> {
        let on = |family, backend, works: &dyn Fn(&str) -> bool| {
            functions.iter().map(move |f| Candidate { family, backend, works: works(f) }).collect::<Vec<_>>()
        };
        let mut all = on("fentry", "fentry", &|f| self.trampoline_works(f));
        all.extend(on("kprobe", "kprobe", &|f| self.kprobe_works(f)));
        all.extend(tracepoints.iter().map(|(backend, works)| Candidate { family: "tracepoint", backend, works: *works }));
        all
    }
}

/// One way netdiag may serve a hook, and whether this kernel takes it (found out independently).
struct Candidate {
    family: &'static str,
    backend: &'static str,
    works: bool,
}

/// The hook is served by the first candidate of the forced family (any, with `auto`) this kernel
/// takes, after one refusal for each candidate before it.
fn assert_served(hook: &Value, candidates: &[Candidate], forced: &str) {
    let tried: Vec<&Candidate> = candidates.iter().filter(|c| forced == "auto" || c.family == forced).collect();
    let refusals = refused(hook);
    match tried.iter().position(|c| c.works) {
        Some(first) => {
            assert_active(hook, tried[first].backend);
            assert_eq!(refusals.len(), first, "{hook:#}");
        }
        None => {
            assert_inactive(hook);
            assert_eq!(refusals.len(), tried.len(), "{hook:#}");
        }
    }
    for (refusal, candidate) in refusals.iter().zip(&tried) {
        assert!(refusal.starts_with(&format!("{}: ", candidate.backend)), "{hook:#}");
    }
}

fn survey(backend: &str) -> Value {
    let out = Command::new(netdiag_bin())
        .args(["hooks", "--json", "--backend", backend])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "netdiag hooks --backend {backend}: {err}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {err}"))
}

fn hook<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {report:#}"))
}

fn refused(hook: &Value) -> Vec<&str> {
    hook["refused"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect()
}

fn assert_active(hook: &Value, backend: &str) {
    assert_eq!(hook["active"], true, "{hook:#}");
    assert_eq!(hook["backend"], backend, "{hook:#}");
}

fn assert_inactive(hook: &Value) {
    assert_eq!(hook["active"], false, "{hook:#}");
    assert_eq!(hook["backend"], "none", "{hook:#}");
    assert!(!hook["detail"].as_str().unwrap().is_empty(), "an inactive hook says why: {hook:#}");
}

fn trampoline_name(kind: Trampoline) -> &'static str {
    if kind == Trampoline::Fentry { "fentry" } else { "fexit" }
}

fn kprobe_name(kind: Trampoline) -> &'static str {
    if kind == Trampoline::Fentry { "kprobe" } else { "kretprobe" }
}

/// A refusal of `backend` that says why in the kernel's terms where the trial could tell.
fn assert_refusal(reason: &str, backend: &str, trial: &Result<(), String>) {
    assert!(reason.starts_with(&format!("{backend}: ")), "{reason}");
    if let Err(why) = trial {
        if why.contains("EPERM") {
            assert!(reason.contains("EPERM"), "the kernel said EPERM, netdiag says: {reason}");
        }
        if why.contains("no kprobe PMU") {
            assert!(reason.contains("kprobe PMU not available on this kernel"), "{reason}");
        }
    }
}

#[test]
fn auto_picks_the_best_backend_the_kernel_allows_for_each_hook() {
    require_root();
    let support = KernelSupport::probe();
    let report = survey("auto");
    assert_eq!(report["backend"], "auto");
    let names: Vec<&str> =
        report["hooks"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "conn_request",
            "dupack_sent",
            "oow_limiter",
            "paws_checks",
            "syn_timestamps",
            "synack_sent",
            "synack_retransmit",
            "handshake_done",
            "paws_time_wait",
            "oow_received",
            "flow_dupacks"
        ]
    );

    for (name, function, kind) in FUNCTION_HOOKS {
        let hook = hook(&report, name);
        let refusals = refused(hook);
        if support.trampoline_works(function) {
            assert_active(hook, trampoline_name(*kind));
            assert!(refusals.is_empty(), "{hook:#}");
            continue;
        }
        assert_refusal(refusals[0], trampoline_name(*kind), &support.trampoline[function]);
        if support.kprobe_works(function) {
            assert_active(hook, kprobe_name(*kind));
            assert_eq!(refusals.len(), 1, "{hook:#}");
            continue;
        }
        assert_refusal(refusals[1], kprobe_name(*kind), &support.kprobe[function]);
        if WITH_TRACEPOINT.contains(name) {
            // The BTF-typed tracepoint, which every kernel here takes.
            assert_active(hook, "tp_btf");
            assert_eq!(refusals.len(), 2, "{hook:#}");
            continue;
        }
        assert_inactive(hook);
        assert_eq!(refusals.len(), 3, "{hook:#}");
        assert_eq!(refusals[2], "tracepoint: no tracepoint equivalent implemented");
    }

    assert_drop_and_flow_hooks(&report, &support, "auto");

    // paws_time_wait: fentry, else kprobe, else the kfree_skb program if the kernel has the reason.
    let time_wait = hook(&report, "paws_time_wait");
    let refusals = refused(time_wait);
    let (fentry, kprobe) = (&support.trampoline[TIME_WAIT_FUNCTION], &support.kprobe[TIME_WAIT_FUNCTION]);
    if fentry.is_ok() {
        assert_active(time_wait, "fentry");
        assert!(refusals.is_empty(), "{time_wait:#}");
        return;
    }
    assert_refusal(refusals[0], "fentry", fentry);
    if kprobe.is_ok() {
        assert_active(time_wait, "kprobe");
        assert_eq!(refusals.len(), 1, "{time_wait:#}");
        return;
    }
    assert_refusal(refusals[1], "kprobe", kprobe);
    if support.time_wait_tracepoint {
        // The program serving paws_checks counts the reason.
        assert_active(time_wait, hook(&report, "paws_checks")["backend"].as_str().unwrap());
        assert!(time_wait["detail"].as_str().unwrap().contains("TCP_RFC7323_TW_PAWS="), "{time_wait:#}");
    } else {
        assert_inactive(time_wait);
        assert!(refusals[2].starts_with("tracepoint: "), "{time_wait:#}");
    }
}

/// `paws_checks`, `oow_received`, `flow_dupacks` and `synack_sent`: function programs first, then tracepoints;
/// the SYN funnel's tracepoint-only hooks are served whatever the backend.
fn assert_drop_and_flow_hooks(report: &Value, support: &KernelSupport, forced: &str) {
    let tracepoint = std::path::Path::new("/sys/kernel/tracing/events/skb/kfree_skb").exists();
    let paws_tracepoints = [
        ("tp_btf", support.paws_tracepoint),
        ("raw_tracepoint", support.paws_tracepoint),
        ("tracepoint", support.paws_tracepoint),
    ];
    let paws = support.candidates(&DROP_FUNCTIONS, &paws_tracepoints);
    assert_served(hook(report, "paws_checks"), &paws, forced);
    // The BTF-typed tracepoint is tried first; the kernels here all take it.
    let raw = [("tp_btf", tracepoint), ("raw_tracepoint", tracepoint), ("tracepoint", tracepoint)];
    assert_served(hook(report, "oow_received"), &support.candidates(&DROP_FUNCTIONS, &raw), forced);
    assert_served(hook(report, "flow_dupacks"), &support.candidates(&["tcp_send_dupack"], &raw), forced);
    assert_served(hook(report, "synack_sent"), &support.candidates(&[SYNACK_FUNCTION], &raw), forced);
    for name in TRACEPOINT_ONLY {
        let funnel = hook(report, name);
        assert_eq!(funnel["active"], true, "{funnel:#}");
        assert!(["tp_btf", "raw_tracepoint", "tracepoint"].contains(&funnel["backend"].as_str().unwrap()), "{funnel:#}");
        assert!(refused(funnel).is_empty(), "{funnel:#}");
    }
}

#[test]
fn a_forced_backend_serves_what_it_can_and_says_why_not_for_the_rest() {
    require_root();
    let support = KernelSupport::probe();
    for backend in ["fentry", "kprobe", "tracepoint"] {
        let report = survey(backend);
        assert_eq!(report["backend"], backend);
        for (name, function, kind) in FUNCTION_HOOKS {
            let hook = hook(&report, name);
            let (works, label, trial) = match backend {
                "fentry" => (
                    support.trampoline_works(function),
                    trampoline_name(*kind),
                    &support.trampoline[function],
                ),
                "kprobe" => {
                    (support.kprobe_works(function), kprobe_name(*kind), &support.kprobe[function])
                }
                _ => (WITH_TRACEPOINT.contains(name), "tp_btf", &Ok(())),
            };
            if works {
                assert_active(hook, label);
                assert!(refused(hook).is_empty(), "{hook:#}");
            } else {
                assert_inactive(hook);
                let refusals = refused(hook);
                assert_eq!(refusals.len(), 1, "only the forced backend is tried: {hook:#}");
                // A hook with no program of the family says so under the family's name.
                assert_refusal(refusals[0], if backend == "tracepoint" { backend } else { label }, trial);
            }
        }
        let time_wait = hook(&report, "paws_time_wait");
        let works = match backend {
            "fentry" => support.trampoline[TIME_WAIT_FUNCTION].is_ok(),
            "kprobe" => support.kprobe[TIME_WAIT_FUNCTION].is_ok(),
            _ => support.time_wait_tracepoint,
        };
        if works {
            let paws = hook(&report, "paws_checks");
            assert_active(time_wait, if backend == "tracepoint" { paws["backend"].as_str().unwrap() } else { backend });
            assert!(refused(time_wait).is_empty(), "{time_wait:#}");
        } else {
            assert_inactive(time_wait);
            let refusals = refused(time_wait);
            assert_eq!(refusals.len(), 1, "only the forced backend is tried: {time_wait:#}");
            assert!(refusals[0].starts_with(&format!("{backend}: ")), "{time_wait:#}");
        }
        assert_drop_and_flow_hooks(&report, &support, backend);
    }
}

#[test]
fn function_hooks_count_what_the_kernel_did() {
    require_root();
    let support = KernelSupport::probe();
    let best_everywhere = FUNCTION_HOOKS
        .iter()
        .all(|(_, f, _)| support.trampoline_works(f) || support.kprobe_works(f));
    if !best_everywhere {
        eprintln!(
            "skipping: this kernel lets neither fentry nor kprobes attach to every function hook"
        );
        return;
    }
    counts_match_the_scenario(BackendChoice::Auto);
}

#[test]
fn kprobe_hooks_count_what_the_kernel_did() {
    require_root();
    let support = KernelSupport::probe();
    if !FUNCTION_HOOKS.iter().all(|(_, f, _)| support.kprobe_works(f)) {
        eprintln!("skipping: this kernel does not let kprobes attach to every function hook");
        return;
    }
    counts_match_the_scenario(BackendChoice::Kprobe);
}

/// Every counter the out-of-window rate limiter bumps when it suppresses an answer.
const ACK_SKIPPED: &[&str] = &[
    "TcpExtTCPACKSkippedSynRecv",
    "TcpExtTCPACKSkippedPAWS",
    "TcpExtTCPACKSkippedSeq",
    "TcpExtTCPACKSkippedFinWait2",
    "TcpExtTCPACKSkippedTimeWait",
    "TcpExtTCPACKSkippedChallenge",
];

/// Runs PAWS reproductions under netdiag's hooks (in this process, to read their maps) and
/// compares the counts with the scenario and the kernel's own counters:
/// - conn_request: one SYN per connection the clients opened;
/// - dupack_sent: one duplicate ACK per data segment PAWS rejected on an established
///   connection (data is exempt from the rate limit), `TcpExtPAWSEstab`;
/// - oow_limiter: the answers suppressed once the limit is raised to 10 s, which the TIME_WAIT
///   reconnect triggers, `TcpExtTCPACKSkipped*`.
fn counts_match_the_scenario(backend: BackendChoice) {
    let topo = PawsTopology::new("hooks").unwrap();
    let server_ns = topo.server_ns.clone();
    topo.lab().sysctl(&server_ns, "net.ipv4.tcp_invalid_ratelimit", "10000").unwrap();
    let netns = std::fs::metadata(topo.server_path()).unwrap().ino() as u32;
    let counter = |name: &str| nstat(&server_ns, name).unwrap();
    let ack_skipped = || ACK_SKIPPED.iter().map(|name| counter(name)).sum::<u64>();

    let probes = Probes::attach(&hooks::Options { backend, ..Default::default() }).unwrap();
    for name in ["conn_request", "dupack_sent", "oow_limiter"] {
        let status = probes.hooks.iter().find(|h| h.name == name).unwrap();
        assert!(status.active, "{status:?}");
    }
    let (paws_before, skipped_before) = (counter("TcpExtPAWSEstab"), ack_skipped());
    let v4 = scenario::paws_established(&topo, false, 3).unwrap();
    let v6 = scenario::paws_established(&topo, true, 2).unwrap();
    assert_eq!(
        counter("TcpExtPAWSEstab") - paws_before,
        5,
        "the kernel rejected every stale segment"
    );
    // Before the TIME_WAIT reconnect, which kernels before 6.16 answer with dupacks too.
    let dupacks = per_peer(
        netns,
        probes
            .dupack_counts()
            .unwrap()
            .into_iter()
            .map(|(k, s)| (k.netns, k.family, k.addr, s.count)),
    );
    let time_wait_before = counter(time_wait_counter());
    let time_wait = scenario::paws_time_wait(&topo).unwrap();
    scenario::innocent_traffic(&topo, 3).unwrap();
    let time_wait_by_kernel = counter(time_wait_counter()) - time_wait_before;
    assert_eq!(time_wait_by_kernel, time_wait.injected, "the kernel rejected every reconnect SYN");
    let suppressed = ack_skipped() - skipped_before;
    assert!(suppressed > 0, "raising tcp_invalid_ratelimit suppressed some TIME_WAIT answer");

    assert_eq!(
        dupacks,
        HashMap::from([(IpAddr::from(CLIENT_V4), 3), (IpAddr::from(CLIENT_V6), 2)])
    );
    let oow = per_peer(
        netns,
        probes
            .oow_suppressed()
            .unwrap()
            .into_iter()
            .map(|(k, s)| (k.netns, k.family, k.addr, s.count)),
    );
    assert_eq!(oow, HashMap::from([(IpAddr::from(CLIENT_V4), suppressed)]));

    let syns: Vec<(IpAddr, u16, u64)> = probes
        .syn_counts()
        .unwrap()
        .into_iter()
        .filter(|(key, _)| key.netns == netns)
        .map(|(key, stats)| (ip_from(key.family, &key.addr).unwrap(), key.port, stats.count))
        .collect();
    let syns_from = |addr: IpAddr, port: Option<u16>| -> u64 {
        syns.iter()
            .filter(|(a, p, _)| *a == addr && port.is_none_or(|port| port == *p))
            .map(|(_, _, n)| n)
            .sum()
    };
    assert_eq!(syns_from(CLIENT_V4.into(), Some(v4.server.port())), 1, "{syns:?}");
    assert_eq!(syns_from(CLIENT_V6.into(), Some(v6.server.port())), 1, "{syns:?}");
    assert_eq!(syns_from(INNOCENT_V4.into(), None), 3, "{syns:?}");
    assert_eq!(probes.stats().unwrap().hook_unparsed, 0);

    // paws_time_wait, by the function program of the chosen backend: one per rejected SYN, in
    // the server's namespace, against its listening port.
    let status = probes.hooks.iter().find(|h| h.name == "paws_time_wait").unwrap();
    let expected = if backend == BackendChoice::Kprobe { "kprobe" } else { "fentry" };
    assert!(status.active && status.backend == expected, "{status:?}");
    let rejected: Vec<(IpAddr, u8, u16, u64)> = probes
        .peer_drops()
        .unwrap()
        .into_iter()
        .filter(|(key, _)| key.netns == netns && probes.reasons.name(key.reason.into()) == "TCP_RFC7323_TW_PAWS")
        .map(|(key, stats)| (ip_from(key.family, &key.addr).unwrap(), key.sk_state, key.local_port, stats.count))
        .collect();
    assert_eq!(rejected, [(IpAddr::from(CLIENT_V4), 6, time_wait.server.port(), time_wait.injected)]);
}

/// Counts per remote address in one namespace, from `(netns, family, addr, count)` rows.
fn per_peer(
    netns: u32,
    rows: impl Iterator<Item = (u32, u8, [u8; 16], u64)>,
) -> HashMap<IpAddr, u64> {
    let mut out = HashMap::new();
    for (_, family, addr, count) in rows.filter(|row| row.0 == netns) {
        *out.entry(ip_from(family, &addr).unwrap()).or_default() += count;
    }
    out
}

/// Trivial programs attached with raw syscalls: does the kernel allow it at all?
mod trial {
    use super::*;

    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
    const BPF_PROG_TYPE_KPROBE: u32 = 2;
    const BPF_PROG_TYPE_TRACING: u32 = 26;
    const BPF_TRACE_FENTRY: u32 = 24;
    const BPF_TRACE_FEXIT: u32 = 25;
    const PERF_EVENT_IOC_SET_BPF: libc::Ioctl = 0x4004_2408;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
    const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";
    /// `r0 = 0; exit`.
    const RETURN_ZERO: [u64; 2] = [0xb7, 0x95];

    pub fn trampoline(btf: &Btf, function: &str, kind: Trampoline) -> Result<(), String> {
        let id = btf.func_id(function).ok_or("no BTF FUNC")?;
        let attach_type =
            if kind == Trampoline::Fentry { BPF_TRACE_FENTRY } else { BPF_TRACE_FEXIT };
        let prog = load(BPF_PROG_TYPE_TRACING, attach_type, id)?;
        let mut attr = [0u8; 16];
        attr[8..12].copy_from_slice(&fd_number(&prog).to_ne_bytes());
        bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr)
            .map(drop)
            .map_err(|e| format!("attach: {}", errno(e)))
    }

    pub fn kprobe(function: &str) -> Result<(), String> {
        let pmu_type: u32 = std::fs::read_to_string(format!("{KPROBE_PMU}/type"))
            .map_err(|_| "no kprobe PMU".to_string())?
            .trim()
            .parse()
            .map_err(|e| format!("kprobe PMU type: {e}"))?;
        let name = CString::new(function).unwrap();
        // struct perf_event_attr: type, size, then config1 (the function's name) at 56.
        const ATTR_SIZE: u32 = 128;
        let mut attr = [0u8; ATTR_SIZE as usize];
        attr[0..4].copy_from_slice(&pmu_type.to_ne_bytes());
        attr[4..8].copy_from_slice(&ATTR_SIZE.to_ne_bytes());
        attr[56..64].copy_from_slice(&(name.as_ptr() as u64).to_ne_bytes());
        let fd = unsafe {
            libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
        };
        let event = owned(fd).map_err(|e| format!("perf_event_open: {}", errno(e)))?;
        let prog = load(BPF_PROG_TYPE_KPROBE, 0, 0)?;
        if unsafe { libc::ioctl(fd_number(&event), PERF_EVENT_IOC_SET_BPF, fd_number(&prog)) } != 0
        {
            return Err(format!("attach: {}", errno(std::io::Error::last_os_error())));
        }
        Ok(())
    }

    fn load(prog_type: u32, attach_type: u32, attach_btf_id: u32) -> Result<OwnedFd, String> {
        let license = c"GPL";
        // union bpf_attr, BPF_PROG_LOAD: the fields up to attach_btf_id.
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&prog_type.to_ne_bytes());
        attr[4..8].copy_from_slice(&(RETURN_ZERO.len() as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(RETURN_ZERO.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        attr[68..72].copy_from_slice(&attach_type.to_ne_bytes());
        attr[108..112].copy_from_slice(&attach_btf_id.to_ne_bytes());
        bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| format!("load: {}", errno(e)))
    }

    /// EPERM by name: the refusal netdiag must report as such.
    fn errno(err: std::io::Error) -> String {
        match err.raw_os_error() {
            Some(libc::EPERM) => "EPERM".into(),
            _ => err.to_string(),
        }
    }

    fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> std::io::Result<OwnedFd> {
        owned(unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) })
    }

    fn owned(ret: libc::c_long) -> std::io::Result<OwnedFd> {
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
    }

    fn fd_number(fd: &OwnedFd) -> i32 {
        fd.as_raw_fd()
    }
}
