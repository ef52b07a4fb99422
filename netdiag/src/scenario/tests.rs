//! Runs each scenario on the real kernel and checks that the server namespace's own counters
//! moved exactly as the scenario claims. Without root they print why and pass without running.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
};

use anyhow::{Result, ensure};

use super::*;
use crate::{
    counters::{self, Counters},
    netns::{self, Netns},
};

/// Kernel state number of a request socket in /proc/net/tcp.
const TCP_SYN_RECV: u8 = 3;

const PAWS_COUNTERS: [&str; 5] = [
    "TcpExtPAWSActive",
    "TcpExtPAWSEstab",
    "TcpExtPAWSOldAck",
    "TcpExtPAWSTimewait",
    "TcpExtTSEcrRejected",
];

fn lacks_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("{test}: skipped, needs root for namespaces and raw sockets");
    }
    !root
}

fn server_counters(topo: &PawsTopology) -> Result<Counters> {
    let path = topo.server_path();
    let ns = Netns { inode: netns::inode_of(&path)?, name: topo.server_ns.clone(), path };
    counters::read_in(&ns)
}

/// How much each PAWS-related counter of the server rose while `scenario` ran.
fn paws_deltas<T>(
    topo: &PawsTopology,
    scenario: impl FnOnce() -> Result<T>,
) -> Result<(T, BTreeMap<&'static str, u64>)> {
    let before = server_counters(topo)?;
    let outcome = scenario()?;
    let after = server_counters(topo)?;
    let rises = counters::delta(&before, &after);
    let mut deltas = BTreeMap::new();
    for name in PAWS_COUNTERS {
        ensure!(after.contains_key(name), "this kernel has no counter {name}");
        deltas.insert(name, rises.get(name).copied().unwrap_or(0));
    }
    Ok((outcome, deltas))
}

/// Drops the topology and checks `ip netns` no longer knows any of its namespaces.
fn assert_removed_on_drop(topo: PawsTopology) {
    let paths: Vec<_> = topo.lab().namespaces().map(|ns| topo.lab().ns_path(ns)).collect();
    drop(topo);
    for path in paths {
        assert!(!path.exists(), "{} survived the drop", path.display());
    }
}

/// Asserts `counter` rose by `expected` and every other PAWS counter stayed put.
fn assert_only_moved(deltas: &BTreeMap<&str, u64>, counter: &str, expected: u64) {
    for (name, delta) in deltas {
        let want = if *name == counter { expected } else { 0 };
        assert_eq!(*delta, want, "{name} moved by {delta}; all: {deltas:?}");
    }
}

fn check_established(tag: &str, v6: bool) {
    let topo = PawsTopology::new(tag).unwrap();
    let (run, deltas) = paws_deltas(&topo, || paws_established(&topo, v6, 7)).unwrap();
    assert_eq!(run.injected, 7);
    assert_only_moved(&deltas, "TcpExtPAWSEstab", run.injected);
    let client: IpAddr = if v6 { CLIENT_V6.into() } else { CLIENT_V4.into() };
    assert_eq!(run.client_addr, client);
    assert_removed_on_drop(topo);
}

#[test]
fn established_v4_each_stale_segment_counts_once_in_paws_estab() {
    if lacks_root("established_v4") {
        return;
    }
    check_established("estab4", false);
}

#[test]
fn established_v6_each_stale_segment_counts_once_in_paws_estab() {
    if lacks_root("established_v6") {
        return;
    }
    check_established("estab6", true);
}

#[test]
fn time_wait_reconnect_with_clock_behind_is_rejected_syn_by_syn() {
    if lacks_root("time_wait") {
        return;
    }
    let topo = PawsTopology::new("tw").unwrap();
    let original = topo.lab().read_sysctl(&topo.client_ns, "net.ipv4.tcp_timestamps").unwrap();
    let (run, deltas) = paws_deltas(&topo, || paws_time_wait(&topo)).unwrap();
    assert!(run.injected > 0);
    assert_only_moved(&deltas, "TcpExtPAWSTimewait", run.injected);
    assert_eq!(
        topo.lab().read_sysctl(&topo.client_ns, "net.ipv4.tcp_timestamps").unwrap(),
        original
    );
    assert_removed_on_drop(topo);
}

#[test]
fn tsecr_each_bogus_final_ack_counts_once_in_tsecr_rejected() {
    if lacks_root("tsecr") {
        return;
    }
    let topo = PawsTopology::new("tsecr").unwrap();
    let (run, deltas) = paws_deltas(&topo, || paws_tsecr(&topo, 5)).unwrap();
    assert_eq!(run.injected, 5);
    assert_only_moved(&deltas, "TcpExtTSEcrRejected", run.injected);
    let half_open = super::wire::tcp4_sockets(&topo.server_path()).unwrap();
    assert!(
        half_open.iter().all(|row| row.state != TCP_SYN_RECV),
        "request sockets left: {half_open:?}"
    );
    assert_removed_on_drop(topo);
}

#[test]
fn innocent_traffic_causes_no_paws_drops() {
    if lacks_root("innocent") {
        return;
    }
    let topo = PawsTopology::new("inn").unwrap();
    let ((), deltas) = paws_deltas(&topo, || innocent_traffic(&topo, 20)).unwrap();
    assert!(deltas.values().all(|delta| *delta == 0), "PAWS counters moved: {deltas:?}");
    assert_removed_on_drop(topo);
}

#[test]
fn lab_removes_its_namespaces_when_a_scenario_panics() {
    if lacks_root("lab_panic") {
        return;
    }
    let mut names = Vec::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut lab = Lab::new("panic").unwrap();
        let a = lab.add_ns("a").unwrap();
        let b = lab.add_ns("b").unwrap();
        lab.link(&a, &["192.0.2.1/24"], &b, &["192.0.2.2/24"]).unwrap();
        names = lab.namespaces().map(str::to_owned).collect();
        panic!("scenario failed midway");
    }));
    assert!(outcome.is_err());
    assert_eq!(names.len(), 2);
    for name in names {
        assert!(
            !Path::new(netns::NAMED_NETNS_DIR).join(&name).exists(),
            "{name} survived the panic"
        );
    }
}

#[test]
fn lab_refuses_foreign_namespaces_and_global_sysctls() {
    if lacks_root("lab_refuses") {
        return;
    }
    let mut lab = Lab::new("refuse").unwrap();
    let ns = lab.add_ns("only").unwrap();
    assert!(lab.sysctl(&ns, "kernel.pid_max", "4096").is_err());
    assert!(lab.sysctl(&ns, "net.core.rmem_max", "4096").is_err());
    assert!(lab.sysctl(&ns, "net.ipv4.../x", "1").is_err());
    assert!(lab.sysctl("root", "net.ipv4.tcp_timestamps", "1").is_err());
    assert!(lab.add_ns("only").is_err(), "duplicate role");
    assert!(Lab::new("has-dash").is_err() && Lab::new("waytoolongtag").is_err());
    lab.sysctl(&ns, "net.ipv4.tcp_timestamps", "2").unwrap();
    assert_eq!(lab.read_sysctl(&ns, "net.ipv4.tcp_timestamps").unwrap(), "2");
}

#[test]
fn ordinary_workloads_move_data_with_no_drop_counted_and_stop_on_time() {
    if lacks_root("ordinary") {
        return;
    }
    let topo = OrdinaryTopology::new("ordinary").unwrap();
    let read = |ns: &str| {
        let path = topo.lab().ns_path(ns);
        counters::read_in(&Netns { inode: netns::inode_of(&path).unwrap(), name: ns.to_owned(), path }).unwrap()
    };
    let before = [read(&topo.server_ns), read(&topo.client_ns)];
    for workload in Workload::ALL {
        let run = run_ordinary(&topo, workload, std::time::Duration::from_millis(300), Pinning::same(0)).unwrap();
        assert!(run.amount > 0, "{workload:?} moved nothing");
        assert!(run.elapsed < std::time::Duration::from_secs(3), "{workload:?} ran {:?}", run.elapsed);
    }
    assert!(run_ordinary(&topo, Workload::Bulk, MAX_ORDINARY * 2, Pinning::same(0)).is_err(), "unbounded run accepted");
    for (side, before) in [&topo.server_ns, &topo.client_ns].into_iter().zip(before) {
        let rises = counters::delta(&before, &read(side));
        for name in PAWS_COUNTERS.iter().chain(&["TcpExtListenDrops", "TcpExtListenOverflows", "TcpExtTCPAbortOnData"]) {
            assert_eq!(rises.get(*name).copied().unwrap_or(0), 0, "{name} rose in {side}: {rises:?}");
        }
    }
    let paths: Vec<_> = topo.lab().namespaces().map(|ns| topo.lab().ns_path(ns)).collect();
    drop(topo);
    assert!(paths.iter().all(|p| !p.exists()), "namespaces survived the drop");
}
