//! A diagnose session: attach, collect until the deadline or Ctrl-C, detach, report.
use std::{
    collections::{BTreeMap, HashMap},
    io::{IsTerminal, Write},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Result;
use netdiag_common::{FlowKey, FlowStats, PacketCapture, PeerAddrKey, PeerKey, PeerStats};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::watch,
};

use crate::{
    aggregate::{Aggregator, FlowId, FlowSeen, flows::FlowMonitor},
    clock::Clock,
    counters::{self, CounterWatch},
    events::{self, ip_from},
    filter::PeerFilter,
    handshakes,
    hooks::{self, Probes, ReasonTable},
    netns,
    output::{
        Attribution, PcapSummary, PeerReport, Report,
        pcap::{self, PcapTarget, PcapWriter},
    },
    verdict::{Finding, paws, scorecard},
    workload::{self, Table, Workload, Workloads},
};

#[derive(Clone, Debug)]
pub struct DiagnoseOptions {
    pub duration: Duration,
    pub peer: Option<PeerFilter>,
    /// Only drops sent to this local port.
    pub port: Option<u16>,
    /// Only this namespace (`root` or an `ip netns` name); all when `None`.
    pub netns: Option<String>,
    /// Only the namespace of this container or pod (`--container`, `--pod`).
    pub workload: Option<workload::Selector>,
    pub hooks: hooks::Options,
    /// Write the headers of dropped segments here as pcapng.
    pub pcap: Option<PcapTarget>,
}

/// Header captures allowed per CPU and second with `--pcap`: evidence, not a full trace.
pub const CAPTURES_PER_SECOND: u32 = 200;

/// Printed on stderr once every hook is attached; scripts and tests wait for it.
pub const READY_LINE: &str = "netdiag: tracing started";

pub async fn diagnose(opts: &DiagnoseOptions) -> Result<Report> {
    diagnose_until(opts, std::future::pending()).await
}

/// A session that also ends as soon as `done` completes: `selftest` traces exactly as long as
/// a reproduction runs.
pub async fn diagnose_until(opts: &DiagnoseOptions, done: impl Future<Output = ()>) -> Result<Report> {
    Ok(diagnose_detailed(opts, done).await?.0)
}

/// What a session saw beyond the report, for `netdiag peer`: flows and the per-peer counts of
/// the duplicate-ACK and out-of-window hooks (None where the hook is not active).
pub struct Details {
    pub flows: Vec<(FlowId, FlowSeen)>,
    pub dupacks: Option<Vec<(PeerAddrKey, PeerStats)>>,
    pub oow_suppressed: Option<Vec<(PeerAddrKey, PeerStats)>>,
    /// Display names of namespaces by inode, as the report spells them.
    pub netns_names: HashMap<u32, String>,
    /// The workloads the report's rows were given, so the rows `netdiag peer` adds name the same.
    pub workloads: Table,
    pub socket_owners: SocketOwners,
    pub clock: Clock,
}

impl Details {
    /// Who owns local `port` of namespace `inode`, as a finding there is told.
    pub fn owner(&self, inode: u32, port: Option<u16>) -> Option<Workload> {
        Owners { workloads: &self.workloads, sockets: &self.socket_owners }.of(inode, port)
    }

    /// The workload behind the namespace the report names `netns`.
    pub fn workload_named(&self, netns: &str) -> Option<Workload> {
        workload_named(netns, &self.netns_names, &self.workloads)
    }
}

/// Socket cgroup ids by namespace inode and local port, as the kernel programs read them.
pub type SocketOwners = HashMap<(u32, u16), u64>;

/// A session that returns the report and the [`Details`] behind it.
pub async fn diagnose_detailed(opts: &DiagnoseOptions, done: impl Future<Output = ()>) -> Result<(Report, Details)> {
    let started = Instant::now();
    // First: without privileges, one line saying so, not an error from whatever is tried next.
    hooks::privileges::check()?;
    // Registered before anything attaches: Ctrl-C or SIGTERM (kill, systemd, timeout) at any
    // moment after this ends the session with a report instead of killing the process.
    let stop_signals = StopSignals::register()?;
    let netns_filter = match (&opts.netns, &opts.workload) {
        (Some(name), _) => Some(netns_inode_by_name(name)?),
        (None, Some(selected)) => Some(selected.netns()?),
        (None, None) => None,
    };
    // Before attaching: a file that cannot be created is the user's to fix, and says so at once.
    let pcap_writer = opts.pcap.as_ref().map(PcapWriter::create).transpose()?;
    let mut watch_counters = CounterWatch::start()?;
    let captures_per_second = if pcap_writer.is_some() { CAPTURES_PER_SECOND } else { 0 };
    let hook_options = hooks::Options { captures_per_second, only_netns: netns_filter, ..opts.hooks.clone() };
    let mut probes = Probes::attach(&hook_options)?;
    let ring = probes.take_events()?;
    let aggregator = Arc::new(Mutex::new(Aggregator::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let pump = tokio::spawn(events::pump(ring, aggregator.clone(), stop_rx.clone()));
    let evidence = match pcap_writer {
        Some(writer) => {
            let captures = probes.take_captures()?;
            let scope = EvidenceScope { peer: opts.peer, port: opts.port, netns: netns_filter };
            Some(tokio::spawn(write_evidence(captures, writer, probes.reasons.clone(), scope, stop_rx)))
        }
        None => None,
    };

    let active: Vec<String> = probes.hooks.iter().filter(|h| h.active).map(|h| format!("{} via {}", h.name, h.backend)).collect();
    eprintln!(
        "{READY_LINE} ({}); {} s, Ctrl-C to stop early",
        active.join(", "),
        opts.duration.as_secs_f64()
    );
    let mut flows = FlowMonitor::new(&probes.hooks);
    let workloads = Workloads::watch();
    let mut poll_flows = || {
        if let Err(e) = flows.poll(&probes) {
            log::warn!("reading per-flow counts: {e:#}");
        }
        flows.namespaces()
    };
    wait_for_end(opts.duration, stop_signals, done, &aggregator, &mut watch_counters, started, &mut poll_flows).await;
    poll_flows();

    let _ = stop_tx.send(true);
    pump.await??;
    let pcap_packets = match evidence {
        Some(task) => Some(task.await??),
        None => None,
    };
    let filter = ReportFilter {
        peers: opts.peer.into_iter().collect(),
        port: opts.port,
        netns: netns_filter.into_iter().collect(),
    };
    let aggregator = aggregator.lock().unwrap_or_else(|e| e.into_inner());
    // A copy, not the lock: `netdiag peer` names its own rows with it after the session.
    let settled = workloads.settle().clone();
    let (mut report, netns_names, socket_owners) =
        build(&probes, &aggregator, &flows, &mut watch_counters, &filter, &settled, started)?;
    report.pcap = opts.pcap.as_ref().zip(pcap_packets).map(|(target, packets)| PcapSummary {
        path: target.path.display().to_string(),
        packets,
        skipped: report.probe_stats.capture_skipped,
    });
    let active = |name: &str| probes.hooks.iter().any(|h| h.name == name && h.active);
    // Per peer from the function hook where it is attached, else summed from the per-flow
    // egress counts (the tracepoint backend).
    let dupacks = if active("dupack_sent") {
        Some(probes.dupack_counts()?)
    } else if active("flow_dupacks") {
        Some(dupacks_per_peer(&probes.flow_counts()?))
    } else {
        None
    };
    let oow_suppressed = if active("oow_limiter") { Some(probes.oow_suppressed()?) } else { None };
    drop(probes);
    let flows: Vec<(FlowId, FlowSeen)> = aggregator
        .tuples
        .flows
        .iter()
        .filter(|(id, _)| filter.keeps_addr(id.remote.ip(), id.netns, Some(id.local.port())))
        .map(|(id, seen)| (*id, *seen))
        .collect();
    Ok((report, Details { flows, dupacks, oow_suppressed, netns_names, workloads: settled, socket_owners, clock: Clock::now() }))
}

/// Which peers, local port and namespaces a report covers; empty lists cover all.
#[derive(Clone, Debug, Default)]
pub struct ReportFilter {
    pub peers: Vec<PeerFilter>,
    pub port: Option<u16>,
    /// Namespace inodes.
    pub netns: Vec<u32>,
}

impl ReportFilter {
    fn keeps(&self, key: &PeerKey) -> bool {
        let peer_ok = self.peers.is_empty()
            || ip_from(key.family, &key.addr).is_some_and(|a| self.peers.iter().any(|f| f.contains(a)));
        peer_ok && self.port.is_none_or(|port| key.local_port == port) && self.keeps_netns(key.netns)
    }

    fn keeps_netns(&self, inode: u32) -> bool {
        self.netns.is_empty() || self.netns.contains(&inode)
    }

    /// An address in a namespace, on a local port where one is known.
    fn keeps_addr(&self, addr: std::net::IpAddr, inode: u32, port: Option<u16>) -> bool {
        (self.peers.is_empty() || self.peers.iter().any(|f| f.contains(addr)))
            && self.keeps_netns(inode)
            && self.port.is_none_or(|want| port.is_none_or(|p| p == want))
    }
}

/// The report of everything gathered since `started`: the kernel's per-peer maps and program
/// stats as they are now, the samples, and the counter deltas. `diagnose` calls it once at the
/// end, `agent` every cycle, so both see the same findings from every detector. Findings and
/// peers are given the workloads `workloads` knows.
pub fn build_report(
    probes: &Probes,
    aggregator: &Aggregator,
    flows: &FlowMonitor,
    watch_counters: &mut CounterWatch,
    filter: &ReportFilter,
    workloads: &Table,
    started: Instant,
) -> Result<Report> {
    Ok(build(probes, aggregator, flows, watch_counters, filter, workloads, started)?.0)
}

/// [`build_report`], the display names of the namespaces it spoke of, by inode, and the socket
/// owners its rows were named by.
fn build(
    probes: &Probes,
    aggregator: &Aggregator,
    flows: &FlowMonitor,
    watch_counters: &mut CounterWatch,
    filter: &ReportFilter,
    workloads: &Table,
    started: Instant,
) -> Result<(Report, HashMap<u32, String>, SocketOwners)> {
    // Stats, then the map: a peer inserted in between is present but not counted as inserted,
    // so the eviction count is never overstated by the drops still arriving.
    let mut stats = probes.stats()?;
    let kernel_counts = probes.peer_drops()?;
    stats.account_peer_map(kernel_counts.len() as u64);
    let funnel_counts = probes.funnel_counts()?;
    let syns_seen = probes.syn_counts()?;
    let hooks = probes.hooks.clone();
    let reasons = &probes.reasons;
    let duration_s = started.elapsed().as_secs_f64();

    let kernel_counts: Vec<(PeerKey, PeerStats)> = kernel_counts.into_iter().filter(|(key, _)| filter.keeps(key)).collect();
    let event_namespaces: Vec<u32> = kernel_counts
        .iter()
        .map(|(k, _)| k.netns)
        .chain(funnel_counts.iter().map(|(k, _)| k.netns))
        .chain(syns_seen.iter().map(|(k, _)| k.netns))
        .chain(flows.namespaces().into_iter().filter(|inode| filter.keeps_netns(*inode)))
        .collect();
    let deltas = watch_counters.deltas(&event_namespaces)?;
    let known = netns::named().unwrap_or_default();
    let mut names = netns::names_by_inode(&known);
    for (ns, _) in &deltas {
        names.entry(ns.inode).or_insert_with(|| ns.name.clone());
    }
    let root = netns::root_inode().ok();
    let facts = paws::KernelFacts {
        release: kernel_release(),
        tcp_timestamps: read_sysctl("net/ipv4/tcp_timestamps"),
        tcp_invalid_ratelimit_ms: read_sysctl("net/ipv4/tcp_invalid_ratelimit"),
    };
    let mut findings = paws::findings(&paws::Input {
        kernel_counts: &kernel_counts,
        reasons,
        samples: aggregator,
        clock: &Clock::now(),
        duration_s,
        netns_names: &names,
        facts: &facts,
    });
    let by_inode: HashMap<u32, counters::Counters> = deltas.iter().map(|(ns, d)| (ns.inode, d.clone())).collect();
    let wanted = |addr: std::net::IpAddr, inode: u32, port: Option<u16>| filter.keeps_addr(addr, inode, port);
    let handshakes = handshakes::analyse(
        &handshakes::Collected {
            funnel: &funnel_counts,
            syns_seen: &syns_seen,
            drops: &kernel_counts,
            syns: &aggregator.syns,
            peers: &aggregator.peers,
            syn_drops: &aggregator.syn_drops,
            reasons,
            counters: &by_inode,
            netns_names: &names,
            syns_at_listener: hooks.iter().any(|h| h.name == "conn_request" && h.at_function()),
            wanted: &wanted,
        },
        &Clock::now(),
        duration_s,
    );
    findings.extend(handshakes.findings);
    findings.extend(flows.findings(
        |flow| filter.keeps_addr(flow.remote.ip(), flow.netns, Some(flow.local.port())),
        |inode| display_name(inode, &names, root),
    ));
    let counters: BTreeMap<String, counters::Counters> = deltas
        .iter()
        .filter(|(ns, _)| filter.keeps_netns(ns.inode))
        .map(|(ns, delta)| {
            let tcp: counters::Counters = delta.iter().filter(|(k, _)| k.starts_with("Tcp")).map(|(k, v)| (k.clone(), *v)).collect();
            (display_name(ns.inode, &names, root), tcp)
        })
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let shown: HashMap<u32, String> = by_inode
        .keys()
        .chain(names.keys())
        .map(|inode| (*inode, display_name(*inode, &names, root)))
        .collect();
    let socket_owners = probes.socket_owners()?;
    let owners = Owners { workloads, sockets: &socket_owners };
    attribute(&mut findings, &shown, &owners);
    let mut peers = peer_reports(&kernel_counts, reasons, &names, root);
    for peer in &mut peers {
        peer.workload = workload_named(&peer.netns, &shown, workloads);
    }
    // Each finding beside the kernel facts it rests on (the scorecard), in the report itself.
    let reasons_of = |peer: &str, netns: &str| {
        peers.iter().filter(|p| p.addr == peer && p.netns == netns).flat_map(|p| p.by_reason.clone()).collect()
    };
    scorecard::score(
        &mut findings,
        &scorecard::KernelSaid { counters: &counters, reasons_of: &reasons_of, syn_funnel: &handshakes.syn_funnel },
    );
    let mut syn_funnel = handshakes.syn_funnel;
    for row in &mut syn_funnel {
        row.workload = owners.of(row.inode(), Some(row.port));
    }
    let mut timestamp_clocks = handshakes.clocks;
    for clocks in &mut timestamp_clocks {
        clocks.workload = workload_named(&clocks.netns, &shown, workloads);
    }
    let report = Report {
        kernel: facts.release.clone(),
        duration_s: (duration_s * 10.0).round() / 10.0,
        hooks,
        peers,
        attribution: attribution(&kernel_counts, reasons, &names, root, &counters, &kernel_counter_names()),
        findings,
        counters,
        pcap: None,
        lost_events: stats.ring_lost,
        unparsed_packets: stats.unparsed,
        probe_stats: stats,
        syn_funnel,
        timestamp_clocks,
    };
    Ok((report, shown, socket_owners))
}

/// Who owns a local port: the container whose cgroup the kernel programs read off the socket
/// there (which tells apart the containers of one pod, or pods on the host's network), else the
/// workload behind the namespace.
struct Owners<'a> {
    workloads: &'a Table,
    sockets: &'a SocketOwners,
}

impl Owners<'_> {
    fn of(&self, inode: u32, port: Option<u16>) -> Option<Workload> {
        let by_socket = port.and_then(|p| self.sockets.get(&(inode, p))).and_then(|id| self.workloads.of_cgroup(*id));
        by_socket.or_else(|| self.workloads.of(inode)).cloned()
    }
}

/// Gives each finding the workload behind its local port or namespace and, when one local
/// workload holds the peer's address, the peer's.
fn attribute(findings: &mut [Finding], shown: &HashMap<u32, String>, owners: &Owners) {
    for finding in findings {
        let Some(inode) = inode_named(&finding.netns, shown) else { continue };
        let port = finding
            .listener_port
            .or_else(|| finding.local.first().and_then(|l| l.parse::<std::net::SocketAddr>().ok()).map(|a| a.port()));
        finding.workload = owners.of(inode, port);
        finding.peer_workload =
            finding.peer.parse().ok().and_then(|addr| owners.workloads.holding(addr, inode)).cloned();
    }
}

/// The workload behind the namespace the report names `name`.
fn workload_named(name: &str, shown: &HashMap<u32, String>, workloads: &Table) -> Option<Workload> {
    inode_named(name, shown).and_then(|inode| workloads.of(inode)).cloned()
}

/// The inode of a namespace as the report names it.
fn inode_named(name: &str, shown: &HashMap<u32, String>) -> Option<u32> {
    name.strip_prefix("inode:")
        .and_then(|n| n.parse().ok())
        .or_else(|| shown.iter().find(|(_, shown)| *shown == name).map(|(inode, _)| *inode))
}

/// The session's filters, applied to evidence as to the report.
struct EvidenceScope {
    peer: Option<PeerFilter>,
    port: Option<u16>,
    netns: Option<u32>,
}

impl EvidenceScope {
    fn keeps(&self, capture: &PacketCapture) -> bool {
        if self.netns.is_some_and(|inode| inode != capture.netns) {
            return false;
        }
        if self.peer.is_none() && self.port.is_none() {
            return true;
        }
        pcap::source_and_dport(capture).is_some_and(|(source, dport)| {
            self.peer.is_none_or(|f| f.contains(source)) && self.port.is_none_or(|port| port == dport)
        })
    }
}

/// Writes every capture the kernel sends, within the session's filters, until the session
/// stops; returns how many.
async fn write_evidence(
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    mut writer: PcapWriter,
    reasons: ReasonTable,
    scope: EvidenceScope,
    stop: watch::Receiver<bool>,
) -> Result<u64> {
    let clock = Clock::now();
    let root = netns::root_inode().ok();
    let mut names = HashMap::new();
    events::pump_ring(ring, stop, |ring| {
        while let Some(item) = ring.next() {
            let Some(capture) = pcap::decode(&item).filter(|c| scope.keeps(c)) else { continue };
            if !names.contains_key(&capture.netns) {
                // A namespace created since the last look: read the names again.
                names = netns::names_by_inode(&netns::named().unwrap_or_default());
            }
            let comment = format!(
                "dropped by the kernel: {} (netns {})",
                reasons.name(capture.reason),
                display_name(capture.netns, &names, root)
            );
            writer.write(&capture, &clock, comment)?;
        }
        Ok(())
    })
    .await?;
    writer.finish()
}

/// Duplicate ACKs sent per remote address and namespace, from the per-flow counts.
fn dupacks_per_peer(flows: &[(FlowKey, FlowStats)]) -> Vec<(PeerAddrKey, PeerStats)> {
    let mut per_peer: HashMap<(u32, u8, [u8; 16]), PeerStats> = HashMap::new();
    for (key, stats) in flows.iter().filter(|(_, s)| s.dupacks_out > 0) {
        let sum = per_peer.entry((key.netns, key.family, key.remote)).or_default();
        sum.count += stats.dupacks_out;
        sum.first_ns = if sum.first_ns == 0 { stats.first_ns } else { sum.first_ns.min(stats.first_ns) };
        sum.last_ns = sum.last_ns.max(stats.last_ns);
    }
    per_peer
        .into_iter()
        .map(|((netns, family, addr), stats)| (PeerAddrKey { addr, netns, family, _pad: [0; 3] }, stats))
        .collect()
}

/// Inode of `root` or an `ip netns` name; an unknown name is a usage error.
fn netns_inode_by_name(name: &str) -> Result<u32> {
    let known = netns::named()?;
    known.iter().find(|ns| ns.name == name).map(|ns| ns.inode).ok_or_else(|| {
        let names: Vec<&str> = known.iter().map(|ns| ns.name.as_str()).collect();
        crate::error::usage(format!("no network namespace named `{name}` (known: {})", names.join(", ")))
    })
}

fn display_name(inode: u32, names: &HashMap<u32, String>, root: Option<u32>) -> String {
    if Some(inode) == root {
        return "root".into();
    }
    names.get(&inode).cloned().unwrap_or_else(|| format!("inode:{inode}"))
}

struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn register() -> Result<StopSignals> {
        Ok(StopSignals { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }
}

/// Waits for the deadline, Ctrl-C or SIGTERM. Meanwhile it reads the counters of every namespace
/// events come from as soon as it appears and then every second, so a namespace that vanishes
/// before the end still has a name and counters in the report.
async fn wait_for_end(
    duration: Duration,
    mut signals: StopSignals,
    done: impl Future<Output = ()>,
    aggregator: &Mutex<Aggregator>,
    watch: &mut CounterWatch,
    started: Instant,
    poll_flows: &mut dyn FnMut() -> Vec<u32>,
) {
    let live = std::io::stderr().is_terminal();
    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    tokio::pin!(done);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = &mut done => break,
            _ = signals.interrupt.recv() => break,
            _ = signals.terminate.recv() => break,
            _ = tick.tick() => {
                ticks += 1;
                let mut seen = event_namespaces(aggregator);
                // Every half second: episodes start and end at the time they are seen.
                if ticks.is_multiple_of(2) {
                    seen.extend(poll_flows());
                }
                if (ticks.is_multiple_of(4) || seen.iter().any(|inode| !watch.has_reading(*inode)))
                    && let Err(e) = watch.refresh(&seen)
                {
                    log::warn!("reading counters: {e:#}");
                }
                if live && ticks.is_multiple_of(4) {
                    status_line(aggregator, started);
                }
            }
        }
    }
    if live {
        eprint!("\r\x1b[K");
    }
}

fn event_namespaces(aggregator: &Mutex<Aggregator>) -> Vec<u32> {
    let agg = aggregator.lock().unwrap_or_else(|e| e.into_inner());
    let mut inodes: Vec<u32> = agg.peers.keys().map(|id| id.netns).collect();
    inodes.sort_unstable();
    inodes.dedup();
    inodes
}

fn status_line(aggregator: &Mutex<Aggregator>, started: Instant) {
    let agg = aggregator.lock().unwrap_or_else(|e| e.into_inner());
    let top = agg
        .top_peer()
        .map(|(id, n)| format!(", top peer {} ({n})", id.addr))
        .unwrap_or_default();
    eprint!("\r\x1b[Knetdiag: {:.0} s, {} events{top}", started.elapsed().as_secs_f64(), agg.events);
    let _ = std::io::stderr().flush();
}

fn peer_reports(
    counts: &[(PeerKey, PeerStats)],
    reasons: &ReasonTable,
    names: &HashMap<u32, String>,
    root: Option<u32>,
) -> Vec<PeerReport> {
    let mut by_peer: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
    for (key, stats) in counts {
        let Some(addr) = ip_from(key.family, &key.addr) else { continue };
        let reason = reasons.name(key.reason as u32);
        *by_peer
            .entry((addr.to_string(), display_name(key.netns, names, root)))
            .or_default()
            .entry(reason)
            .or_default() += stats.count;
    }
    let mut peers: Vec<PeerReport> = by_peer
        .into_iter()
        .map(|((addr, netns), by_reason)| PeerReport { addr, netns, workload: None, by_reason })
        .collect();
    peers.sort_by_key(|p| std::cmp::Reverse(p.by_reason.values().sum::<u64>()));
    peers
}

/// For each PAWS counter that moved, or that a peer was blamed for: the kernel's delta beside
/// what netdiag attributed, so a reader can check nothing went unexplained.
fn attribution(
    counts: &[(PeerKey, PeerStats)],
    reasons: &ReasonTable,
    names: &HashMap<u32, String>,
    root: Option<u32>,
    counters: &BTreeMap<String, counters::Counters>,
    kernel_counters: &counters::Counters,
) -> Vec<Attribution> {
    let mut attributed: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for (key, stats) in counts {
        let reason = reasons.name(key.reason as u32);
        if let Some(variant) = paws::Variant::of(&reason, key.sk_state) {
            let counter = paws::counter_on_this_kernel(paws::counter_for(&reason, variant), |name| {
                kernel_counters.is_empty() || kernel_counters.contains_key(name)
            });
            *attributed.entry((display_name(key.netns, names, root), counter)).or_default() += stats.count;
        }
    }
    for (ns, delta) in counters {
        for counter in paws::PAWS_COUNTERS {
            if delta.get(*counter).copied().unwrap_or(0) > 0 {
                attributed.entry((ns.clone(), counter)).or_default();
            }
        }
    }
    attributed
        .into_iter()
        .map(|((netns, counter), attributed)| Attribution {
            kernel_delta: counters.get(&netns).and_then(|c| c.get(counter)).copied().unwrap_or(0),
            netns,
            counter: counter.to_string(),
            attributed,
        })
        .collect()
}

/// Every counter the running kernel keeps (its names do not depend on the namespace); empty if
/// unreadable, and then every counter is taken to exist.
fn kernel_counter_names() -> counters::Counters {
    counters::read_current_thread().unwrap_or_default()
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn read_sysctl<T: std::str::FromStr>(path: &str) -> Option<T> {
    std::fs::read_to_string(format!("/proc/sys/{path}")).ok()?.trim().parse().ok()
}

