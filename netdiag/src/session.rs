//! A diagnose session: attach, collect until the deadline or Ctrl-C, detach, report.
use std::{
    collections::{BTreeMap, HashMap},
    io::{IsTerminal, Write},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Result;
use netdiag_common::{PeerKey, PeerStats};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::watch,
};

use crate::{
    aggregate::{Aggregator, flows::FlowMonitor},
    clock::Clock,
    counters::{self, CounterWatch},
    events::{self, ip_from},
    filter::PeerFilter,
    hooks::{self, Probes, ReasonTable},
    netns,
    output::{Attribution, PeerReport, Report},
    verdict::paws,
};

#[derive(Clone, Debug)]
pub struct DiagnoseOptions {
    pub duration: Duration,
    pub peer: Option<PeerFilter>,
    /// Only drops sent to this local port.
    pub port: Option<u16>,
    /// Only this namespace (`root` or an `ip netns` name); all when `None`.
    pub netns: Option<String>,
    pub hooks: hooks::Options,
}

/// Printed on stderr once every hook is attached; scripts and tests wait for it.
pub const READY_LINE: &str = "netdiag: tracing started";

pub async fn diagnose(opts: &DiagnoseOptions) -> Result<Report> {
    diagnose_until(opts, std::future::pending()).await
}

/// A session that also ends as soon as `done` completes: `selftest` traces exactly as long as
/// a reproduction runs.
pub async fn diagnose_until(opts: &DiagnoseOptions, done: impl Future<Output = ()>) -> Result<Report> {
    let started = Instant::now();
    // Registered before anything attaches: Ctrl-C or SIGTERM (kill, systemd, timeout) at any
    // moment after this ends the session with a report instead of killing the process.
    let stop_signals = StopSignals::register()?;
    let netns_filter = opts.netns.as_deref().map(netns_inode_by_name).transpose()?;
    let mut watch_counters = CounterWatch::start()?;
    let mut probes = Probes::attach(&opts.hooks)?;
    let ring = probes.take_events()?;
    let aggregator = Arc::new(Mutex::new(Aggregator::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let pump = tokio::spawn(events::pump(ring, aggregator.clone(), stop_rx));

    let active: Vec<String> = probes.hooks.iter().filter(|h| h.active).map(|h| format!("{} via {}", h.name, h.backend)).collect();
    eprintln!(
        "{READY_LINE} ({}); {} s, Ctrl-C to stop early",
        active.join(", "),
        opts.duration.as_secs_f64()
    );
    let limiter_traced = probes.hooks.iter().any(|h| h.name == "oow_limiter" && h.active);
    let mut flows = FlowMonitor::new(limiter_traced);
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
    let kernel_counts = probes.peer_drops()?;
    let stats = probes.stats()?;
    let hooks = probes.hooks.clone();
    let reasons = probes.reasons.clone();
    drop(probes);
    let duration_s = started.elapsed().as_secs_f64();

    let aggregator = aggregator.lock().unwrap_or_else(|e| e.into_inner());
    let kernel_counts: Vec<(PeerKey, PeerStats)> = kernel_counts
        .into_iter()
        .filter(|(key, _)| opts.peer.is_none_or(|f| ip_from(key.family, &key.addr).is_some_and(|a| f.contains(a))))
        .filter(|(key, _)| opts.port.is_none_or(|port| key.local_port == port))
        .filter(|(key, _)| netns_filter.is_none_or(|inode| key.netns == inode))
        .collect();
    let mut event_namespaces: Vec<u32> = kernel_counts.iter().map(|(k, _)| k.netns).collect();
    event_namespaces.extend(flows.namespaces().into_iter().filter(|inode| netns_filter.is_none_or(|only| *inode == only)));
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
        reasons: &reasons,
        samples: &aggregator,
        clock: &Clock::now(),
        duration_s,
        netns_names: &names,
        facts: &facts,
    });
    findings.extend(flows.findings(
        |flow| {
            opts.peer.is_none_or(|f| f.contains(flow.remote.ip()))
                && opts.port.is_none_or(|port| flow.local.port() == port)
                && netns_filter.is_none_or(|inode| flow.netns == inode)
        },
        |inode| display_name(inode, &names, root),
    ));
    let counters: BTreeMap<String, counters::Counters> = deltas
        .iter()
        .filter(|(ns, _)| netns_filter.is_none_or(|inode| ns.inode == inode))
        .map(|(ns, delta)| {
            let tcp: counters::Counters = delta.iter().filter(|(k, _)| k.starts_with("Tcp")).map(|(k, v)| (k.clone(), *v)).collect();
            (display_name(ns.inode, &names, root), tcp)
        })
        .filter(|(_, c)| !c.is_empty())
        .collect();
    Ok(Report {
        kernel: facts.release.clone(),
        duration_s: (duration_s * 10.0).round() / 10.0,
        hooks,
        peers: peer_reports(&kernel_counts, &reasons, &names, root),
        attribution: attribution(&kernel_counts, &reasons, &names, root, &counters),
        findings,
        counters,
        lost_events: stats.ring_lost,
        unparsed_packets: stats.unparsed,
        probe_stats: stats,
    })
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
                if ticks % 4 == 0 || seen.iter().any(|inode| !watch.has_reading(*inode)) {
                    if let Err(e) = watch.refresh(&seen) {
                        log::warn!("reading counters: {e:#}");
                    }
                }
                if live && ticks % 4 == 0 {
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
        .map(|((addr, netns), by_reason)| PeerReport { addr, netns, by_reason })
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
) -> Vec<Attribution> {
    let mut attributed: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for (key, stats) in counts {
        let reason = reasons.name(key.reason as u32);
        if let Some(variant) = paws::Variant::of(&reason, key.sk_state) {
            let counter = paws::counter_for(&reason, variant);
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

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn read_sysctl<T: std::str::FromStr>(path: &str) -> Option<T> {
    std::fs::read_to_string(format!("/proc/sys/{path}")).ok()?.trim().parse().ok()
}

