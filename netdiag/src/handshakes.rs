//! The handshake part of a session's report: the SYN funnel per peer and listener, the
//! timestamp clocks seen from each peer, and the `unanswered_syns` and `nat_timestamp_clocks`
//! findings drawn from them.
use std::collections::{BTreeSet, HashMap};

use netdiag_common::{FunnelKey, PeerKey, PeerStats, SynKey};

use crate::{
    aggregate::{PeerId, PeerSamples, SynDrop, SynSamples},
    clock::Clock,
    counters::Counters,
    hooks::ReasonTable,
    netns::{self, Netns},
    operator::listeners,
    verdict::{
        Finding,
        nat_clocks::{self, ClockFacts, KernelVerdicts, PeerClocks},
        syn_funnel::{self, FunnelRow, ListenerInfo},
    },
};

/// What the kernel maps and samples held at the end of a session, already filtered.
pub struct Collected<'a> {
    pub funnel: &'a [(FunnelKey, PeerStats)],
    pub syns_seen: &'a [(SynKey, PeerStats)],
    pub drops: &'a [(PeerKey, PeerStats)],
    pub syns: &'a SynSamples,
    /// Drop samples per peer (the source ports of rejected SYNs are clock evidence).
    pub peers: &'a HashMap<PeerId, PeerSamples>,
    /// Samples of dropped SYNs per peer.
    pub syn_drops: &'a HashMap<PeerId, Vec<SynDrop>>,
    pub reasons: &'a ReasonTable,
    pub counters: &'a HashMap<u32, Counters>,
    pub netns_names: &'a HashMap<u32, String>,
    /// `conn_request` is served by a function hook, which counts SYNs at the listener.
    pub syns_at_listener: bool,
    /// Keeps a peer (address, namespace inode) in the report.
    pub wanted: &'a dyn Fn(std::net::IpAddr, u32, Option<u16>) -> bool,
}

pub struct HandshakeReport {
    pub syn_funnel: Vec<FunnelRow>,
    pub clocks: Vec<PeerClocks>,
    pub findings: Vec<Finding>,
}

/// The settings the advice depends on, in the calling thread's namespace.
fn facts() -> ClockFacts {
    ClockFacts {
        release: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        tcp_timestamps: read_trimmed("/proc/sys/net/ipv4/tcp_timestamps").and_then(|v| v.parse().ok()),
        tcp_tw_recycle: read_trimmed("/proc/sys/net/ipv4/tcp_tw_recycle").and_then(|v| v.parse().ok()),
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

pub fn analyse(c: &Collected, clock: &Clock, duration_s: f64) -> HandshakeReport {
    let namespaces: BTreeSet<u32> = c.funnel.iter().map(|(k, _)| k.netns).chain(c.syns_seen.iter().map(|(k, _)| k.netns)).collect();
    let listeners = listeners_of(&namespaces);
    let mut sampled_syn_drops: HashMap<(std::net::IpAddr, u32, u16, String), u64> = HashMap::new();
    for (id, drops) in c.syn_drops {
        for d in drops {
            *sampled_syn_drops.entry((id.addr, id.netns, d.dport, c.reasons.name(d.reason))).or_default() += 1;
        }
    }
    let input = syn_funnel::Input {
        funnel: c.funnel,
        syns_seen: c.syns_seen,
        drops: c.drops,
        reasons: c.reasons,
        listeners: &listeners,
        counters: c.counters,
        netns_names: c.netns_names,
        syns_at_listener: c.syns_at_listener,
        sampled_syn_drops: &sampled_syn_drops,
    };
    let name_of = |inode: u32| c.netns_names.get(&inode).cloned().unwrap_or_else(|| format!("inode:{inode}"));
    let rows: Vec<FunnelRow> = syn_funnel::rows(&input)
        .into_iter()
        .filter(|r| r.peer.parse().is_ok_and(|addr| (c.wanted)(addr, r.inode(), Some(r.port))))
        .collect();

    let ids: HashMap<(String, String), PeerId> = c
        .syns
        .by_peer
        .keys()
        .filter(|id| (c.wanted)(id.addr, id.netns, None))
        .map(|id| ((id.addr.to_string(), name_of(id.netns)), *id))
        .collect();
    let tw_paws = c.reasons.number("TCP_RFC7323_TW_PAWS");
    let dropped_for_what_they_are: Vec<(u32, String)> = ["TCP_INVALID_SYN", "TCP_CSUM"]
        .iter()
        .filter_map(|name| Some((c.reasons.number(name)?, name.to_string())))
        .collect();
    let kernel = |id: &PeerId| -> KernelVerdicts {
        let ports = c.peers.get(id).and_then(|p| p.syn_ports.get(&tw_paws?)).cloned().unwrap_or_default();
        let drops = c.syn_drops.get(id).map(Vec::as_slice).unwrap_or_default();
        let with_tsval = drops.iter().filter_map(|d| Some((d, d.tsval?)));
        KernelVerdicts {
            time_wait_rejected_ports: ports,
            time_wait_rejected: with_tsval
                .clone()
                .filter(|(d, _)| Some(d.reason) == tw_paws)
                .map(|(d, tsval)| (d.sport, tsval))
                .collect(),
            discarded: with_tsval
                .filter_map(|(d, tsval)| {
                    let name = dropped_for_what_they_are.iter().find(|(n, _)| *n == d.reason)?;
                    Some(((d.sport, tsval, d.ts_ns), name.1.clone()))
                })
                .collect(),
        }
    };
    let clocks: Vec<PeerClocks> = nat_clocks::all(c.syns, &kernel, name_of)
        .into_iter()
        .filter(|pc| ids.contains_key(&(pc.peer.clone(), pc.netns.clone())))
        .collect();
    let namespaces: BTreeSet<u32> = rows.iter().map(FunnelRow::inode).chain(ids.values().map(|id| id.netns)).collect();
    let by_netns = facts_of(&namespaces);
    let facts_in = |inode: u32| by_netns.get(&inode).cloned().unwrap_or_else(facts);
    let mut findings = nat_clocks::findings(&clocks, c.syns, clock, duration_s, &facts_in, &ids);
    let nat_peers: BTreeSet<(String, String)> = findings.iter().map(|f| (f.peer.clone(), f.netns.clone())).collect();
    findings.extend(syn_funnel::findings(&input, &rows, &nat_peers, clock, duration_s, &facts_in));
    HandshakeReport { syn_funnel: rows, clocks, findings }
}

/// The settings of each namespace (tcp_timestamps and tcp_tw_recycle are per namespace), read
/// inside it; a namespace gone since falls back to netdiag's own.
fn facts_of(namespaces: &BTreeSet<u32>) -> HashMap<u32, ClockFacts> {
    let known: Vec<Netns> = netns::named().unwrap_or_default();
    namespaces
        .iter()
        .filter_map(|&inode| {
            let ns = netns::find(inode, &known)?;
            netns::run_in(&ns.path, || Ok(facts())).ok().map(|f| (inode, f))
        })
        .collect()
}

/// The TCP listeners of each namespace, from sock_diag inside it.
fn listeners_of(namespaces: &BTreeSet<u32>) -> HashMap<u32, Vec<ListenerInfo>> {
    let known: Vec<Netns> = netns::named().unwrap_or_default();
    let mut out = HashMap::new();
    for &inode in namespaces {
        let Some(ns) = netns::find(inode, &known) else { continue };
        match netns::run_in(&ns.path, listeners::list) {
            Ok(list) => {
                let infos = list
                    .into_iter()
                    .map(|l| ListenerInfo { local: l.local, queued: l.queued, backlog: l.backlog })
                    .collect();
                out.insert(inode, infos);
            }
            Err(e) => log::warn!("listeners of {}: {e:#}", ns.name),
        }
    }
    out
}
