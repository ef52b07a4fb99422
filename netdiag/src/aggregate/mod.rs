//! Aggregation: what the per-flow samples add to the kernel's exact per-peer counts — which
//! local endpoints a peer hit, its ports and timestamps — bounded in memory.
pub mod flows;

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
};

use netdiag_common::{DropEvent, tcp_flag};

use crate::events::ip_from;

mod syns;
mod tuples;
pub use syns::{SynSample, SynSamples};
pub use tuples::{FlowId, FlowSeen, Tuples};

/// Peers kept in userspace, as many as the kernel's per-peer map holds by default (~1 KiB each
/// at most: a flood of spoofed sources stays within a few MiB). When full, peers seen only once
/// make room (see [`Aggregator::record_drop`]); failing that, new peers are counted in
/// `peers_dropped` only (their exact counts still live in the kernel map).
const MAX_PEERS: usize = 16384;
/// Forget the peers seen once only when they are at least this many: each sweep then frees
/// a quarter of the table, so its cost spreads thin over the inserts that follow.
const SWEEP_AT_LEAST: usize = MAX_PEERS / 4;
/// Local endpoints remembered per peer and reason.
const MAX_LOCALS: usize = 16;
/// Samples of dropped SYNs kept in all, whatever the number of peers: the clocks and the funnel
/// of the peers that matter need a few each, and a flood of spoofed sources must not multiply
/// the memory per peer.
const MAX_SYN_DROPS: usize = 8192;

/// A remote address as seen from one network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    pub addr: IpAddr,
    pub netns: u32,
}

#[derive(Clone, Debug, Default)]
pub struct PeerSamples {
    /// Per drop reason: local endpoints (address:port) the rejected segments were sent to.
    pub locals: HashMap<u32, BTreeSet<SocketAddr>>,
    /// Remote ports seen.
    pub remote_ports: BTreeSet<u16>,
    pub samples: u64,
    /// TSval of the last sample that carried a timestamp.
    pub last_tsval: Option<u32>,
    /// Per drop reason: source ports of dropped SYNs (without ACK).
    pub syn_ports: HashMap<u32, BTreeSet<u16>>,
}

/// The sample of one dropped SYN (without ACK). Samples, not counts: the kernel sends one per
/// peer and reason every 250 ms per CPU at most, so counts from them are lower bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynDrop {
    pub reason: u32,
    pub sport: u16,
    /// The local port the SYN was sent to.
    pub dport: u16,
    pub tsval: Option<u32>,
    /// `bpf_ktime_get_ns` of the drop.
    pub ts_ns: u64,
}

#[derive(Debug, Default)]
pub struct Aggregator {
    pub peers: HashMap<PeerId, PeerSamples>,
    /// Ring-buffer records decoded.
    pub events: u64,
    /// Records that could not be decoded (unknown kind or short).
    pub undecodable: u64,
    /// Samples of peers beyond [`MAX_PEERS`].
    pub peers_dropped: u64,
    /// Peers forgotten to make room: each had sent a single sample.
    pub peers_swept: u64,
    /// Peers in `peers` with exactly one sample.
    single_sample_peers: usize,
    /// SYN timestamp samples per peer, for telling timestamp clocks apart.
    pub syns: SynSamples,
    /// Flows the SYN and drop samples showed.
    pub tuples: Tuples,
    /// Dropped SYNs by peer, at most [`MAX_SYN_DROPS`] in all.
    pub syn_drops: HashMap<PeerId, Vec<SynDrop>>,
    syn_drops_kept: usize,
    /// Dropped SYNs beyond [`MAX_SYN_DROPS`], not kept.
    pub syn_drops_skipped: u64,
}

impl Aggregator {
    pub fn record_drop(&mut self, event: &DropEvent) {
        self.events += 1;
        let (Some(peer), Some(local)) = (ip_from(event.family, &event.saddr), ip_from(event.family, &event.daddr))
        else {
            self.undecodable += 1;
            return;
        };
        let flow = FlowId {
            netns: event.netns,
            local: SocketAddr::new(local, event.dport),
            remote: SocketAddr::new(peer, event.sport),
        };
        self.tuples.record(flow, event.ts_ns, false);
        let id = PeerId { addr: peer, netns: event.netns };
        if !self.peers.contains_key(&id) && self.peers.len() >= MAX_PEERS && !self.sweep_single_sample_peers() {
            self.peers_dropped += 1;
            return;
        }
        let samples = self.peers.entry(id).or_default();
        samples.samples += 1;
        match samples.samples {
            1 => self.single_sample_peers += 1,
            2 => self.single_sample_peers -= 1,
            _ => {}
        }
        let locals = samples.locals.entry(event.reason).or_default();
        if locals.len() < MAX_LOCALS {
            locals.insert(SocketAddr::new(local, event.dport));
        }
        if samples.remote_ports.len() < MAX_LOCALS {
            samples.remote_ports.insert(event.sport);
        }
        if event.has_timestamp != 0 {
            samples.last_tsval = Some(event.tsval);
        }
        if event.tcp_flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN {
            let ports = samples.syn_ports.entry(event.reason).or_default();
            if ports.len() < MAX_LOCALS {
                ports.insert(event.sport);
            }
            if self.syn_drops_kept < MAX_SYN_DROPS {
                self.syn_drops_kept += 1;
                self.syn_drops.entry(id).or_default().push(SynDrop {
                    reason: event.reason,
                    sport: event.sport,
                    dport: event.dport,
                    tsval: (event.has_timestamp != 0).then_some(event.tsval),
                    ts_ns: event.ts_ns,
                });
            } else {
                self.syn_drops_skipped += 1;
            }
        }
    }

    pub fn record_syn(&mut self, event: &netdiag_common::SynEvent) {
        self.syns.record(event);
        if let (Some(peer), Some(local)) = (ip_from(event.family, &event.saddr), ip_from(event.family, &event.daddr)) {
            let flow = FlowId {
                netns: event.netns,
                local: SocketAddr::new(local, event.dport),
                remote: SocketAddr::new(peer, event.sport),
            };
            self.tuples.record(flow, event.ts_ns, true);
        }
    }

    /// Under a flood of one-shot (spoofed) sources, forgets the peers seen only once so that
    /// repeat offenders stay and newcomers still get in; false if too few would go.
    fn sweep_single_sample_peers(&mut self) -> bool {
        if self.single_sample_peers < SWEEP_AT_LEAST {
            return false;
        }
        let before = self.peers.len();
        self.peers.retain(|_, s| s.samples > 1);
        self.peers_swept += (before - self.peers.len()) as u64;
        self.single_sample_peers = 0;
        true
    }

    /// The event with the most samples, for the live status line.
    pub fn top_peer(&self) -> Option<(PeerId, u64)> {
        self.peers.iter().map(|(id, s)| (*id, s.samples)).max_by_key(|(id, n)| (*n, std::cmp::Reverse(*id)))
    }
}

#[cfg(test)]
mod tests {
    use netdiag_common::{EVENT_DROP, FAMILY_IPV4};

    use super::*;

    fn drop_from(last_octet: u8, reason: u32, dport: u16) -> DropEvent {
        let mut event = DropEvent { kind: EVENT_DROP, family: FAMILY_IPV4, reason, dport, netns: 7, ..Default::default() };
        event.saddr[..4].copy_from_slice(&[198, 51, 100, last_octet]);
        event.daddr[..4].copy_from_slice(&[198, 51, 100, 1]);
        event
    }

    #[test]
    fn groups_samples_by_peer_and_namespace() {
        let mut agg = Aggregator::default();
        agg.record_drop(&drop_from(2, 38, 8080));
        agg.record_drop(&drop_from(2, 38, 8080));
        agg.record_drop(&drop_from(2, 36, 9090));
        agg.record_drop(&drop_from(3, 36, 8080));
        assert_eq!(agg.events, 4);
        let id = PeerId { addr: "198.51.100.2".parse().unwrap(), netns: 7 };
        let peer = &agg.peers[&id];
        assert_eq!(peer.samples, 3);
        assert_eq!(peer.locals[&38].iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["198.51.100.1:8080"]);
        assert_eq!(agg.top_peer(), Some((id, 3)));
    }

    #[test]
    fn memory_stays_bounded_per_peer() {
        let mut agg = Aggregator::default();
        for port in 0..100 {
            agg.record_drop(&drop_from(2, 38, port));
        }
        let peer = agg.peers.values().next().unwrap();
        assert_eq!(peer.locals[&38].len(), MAX_LOCALS);
        assert_eq!(peer.samples, 100);
    }

    #[test]
    fn a_flood_of_one_shot_peers_stays_bounded_and_keeps_repeat_offenders() {
        let mut agg = Aggregator::default();
        let heavy = PeerId { addr: "198.51.100.2".parse().unwrap(), netns: 7 };
        for n in 0..(MAX_PEERS as u32 * 5) {
            let mut one_shot = drop_from(0, 36, 8080);
            one_shot.family = netdiag_common::FAMILY_IPV6;
            one_shot.saddr = [0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            one_shot.saddr[12..].copy_from_slice(&n.to_be_bytes());
            one_shot.daddr = one_shot.saddr;
            agg.record_drop(&one_shot);
            if n % 64 == 0 {
                agg.record_drop(&drop_from(2, 36, 8080));
            }
            assert!(agg.peers.len() <= MAX_PEERS);
        }
        assert!(agg.peers_swept > 0);
        assert_eq!(agg.peers[&heavy].samples, u64::from(MAX_PEERS as u32 * 5).div_ceil(64));
        assert_eq!(agg.top_peer().map(|(id, _)| id), Some(heavy));
    }

    #[test]
    fn dropped_syns_are_kept_bounded_in_all_whatever_the_number_of_peers() {
        let mut agg = Aggregator::default();
        for n in 0..(MAX_SYN_DROPS as u32 + 10) {
            let mut syn = drop_from((n % 250) as u8, 5, 443);
            syn.tcp_flags = tcp_flag::SYN;
            syn.sport = n as u16;
            syn.has_timestamp = 1;
            syn.tsval = n;
            agg.record_drop(&syn);
        }
        assert_eq!(agg.syn_drops.values().map(Vec::len).sum::<usize>(), MAX_SYN_DROPS);
        assert_eq!(agg.syn_drops_skipped, 10);
        let first = &agg.syn_drops[&PeerId { addr: "198.51.100.0".parse().unwrap(), netns: 7 }][0];
        assert_eq!((first.reason, first.sport, first.dport, first.tsval), (5, 0, 443, Some(0)));
    }

    #[test]
    fn a_record_with_an_unknown_family_is_counted_not_attributed() {
        let mut agg = Aggregator::default();
        agg.record_drop(&DropEvent { kind: EVENT_DROP, family: 9, ..Default::default() });
        assert_eq!(agg.undecodable, 1);
        assert!(agg.peers.is_empty());
    }
}
