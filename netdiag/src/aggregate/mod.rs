//! Aggregation: what the per-flow samples add to the kernel's exact per-peer counts — which
//! local endpoints a peer hit, its ports and timestamps — bounded in memory.
pub mod flows;

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
};

use netdiag_common::DropEvent;

use crate::events::ip_from;

/// Peers kept in userspace; beyond this, new peers are counted in `peers_dropped` only
/// (their exact counts still live in the kernel map).
const MAX_PEERS: usize = 65536;
/// Local endpoints remembered per peer and reason.
const MAX_LOCALS: usize = 16;

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
}

impl Aggregator {
    pub fn record_drop(&mut self, event: &DropEvent) {
        self.events += 1;
        let (Some(peer), Some(local)) = (ip_from(event.family, &event.saddr), ip_from(event.family, &event.daddr))
        else {
            self.undecodable += 1;
            return;
        };
        let id = PeerId { addr: peer, netns: event.netns };
        if !self.peers.contains_key(&id) && self.peers.len() >= MAX_PEERS {
            self.peers_dropped += 1;
            return;
        }
        let samples = self.peers.entry(id).or_default();
        samples.samples += 1;
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
    fn a_record_with_an_unknown_family_is_counted_not_attributed() {
        let mut agg = Aggregator::default();
        agg.record_drop(&DropEvent { kind: EVENT_DROP, family: 9, ..Default::default() });
        assert_eq!(agg.undecodable, 1);
        assert!(agg.peers.is_empty());
    }
}
