//! SYN samples per peer: when each SYN arrived, from which port, with which TSval. The
//! timestamp-clock verdict reads them; memory is bounded per peer and in peers.
use std::{collections::HashMap, net::IpAddr};

use netdiag_common::SynEvent;

use super::PeerId;
use crate::events::ip_from;

/// Peers whose SYNs are kept; later ones are counted in `peers_dropped` only.
const MAX_PEERS: usize = 16384;
/// SYNs kept per peer: the first ones, which are enough to tell clocks apart.
const MAX_SAMPLES: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynSample {
    /// `bpf_ktime_get_ns` when the SYN arrived.
    pub ts_ns: u64,
    pub sport: u16,
    pub dport: u16,
    /// The local address the SYN was sent to.
    pub local: IpAddr,
    /// None when the SYN carried no timestamp option.
    pub tsval: Option<u32>,
}

#[derive(Debug, Default)]
pub struct SynSamples {
    pub by_peer: HashMap<PeerId, Vec<SynSample>>,
    pub samples: u64,
    pub peers_dropped: u64,
    /// Samples beyond [`MAX_SAMPLES`] of their peer.
    pub samples_dropped: u64,
}

impl SynSamples {
    pub fn record(&mut self, event: &SynEvent) {
        let (Some(peer), Some(local)) = (ip_from(event.family, &event.saddr), ip_from(event.family, &event.daddr))
        else {
            return;
        };
        self.samples += 1;
        let id = PeerId { addr: peer, netns: event.netns };
        if !self.by_peer.contains_key(&id) && self.by_peer.len() >= MAX_PEERS {
            self.peers_dropped += 1;
            return;
        }
        let samples = self.by_peer.entry(id).or_default();
        if samples.len() >= MAX_SAMPLES {
            self.samples_dropped += 1;
            return;
        }
        samples.push(SynSample {
            ts_ns: event.ts_ns,
            sport: event.sport,
            dport: event.dport,
            local,
            tsval: (event.has_timestamp != 0).then_some(event.tsval),
        });
    }
}

#[cfg(test)]
mod tests {
    use netdiag_common::{EVENT_SYN, FAMILY_IPV4};

    use super::*;

    #[test]
    fn keeps_syns_per_peer_and_namespace_bounded() {
        let mut syns = SynSamples::default();
        let mut event = SynEvent { kind: EVENT_SYN, family: FAMILY_IPV4, netns: 3, has_timestamp: 1, ..Default::default() };
        event.saddr[..4].copy_from_slice(&[198, 51, 100, 7]);
        event.daddr[..4].copy_from_slice(&[198, 51, 100, 1]);
        for n in 0..(MAX_SAMPLES as u32 + 5) {
            event.tsval = n;
            syns.record(&event);
        }
        let id = PeerId { addr: "198.51.100.7".parse().unwrap(), netns: 3 };
        assert_eq!(syns.by_peer[&id].len(), MAX_SAMPLES);
        assert_eq!(syns.samples_dropped, 5);
        assert_eq!(syns.by_peer[&id][1].tsval, Some(1));
        syns.record(&SynEvent { family: 0, ..event });
        assert_eq!(syns.samples, MAX_SAMPLES as u64 + 5);
    }
}
