//! Every flow (4-tuple per namespace) the samples showed: SYNs and drops, first and last time.
//! `netdiag peer` lists them. Bounded: flows beyond the cap are only counted.
use std::{collections::HashMap, net::SocketAddr};

/// Flows remembered; later ones count in `flows_dropped`. As many as the peers the aggregator
/// keeps: a flood of spoofed sources must not cost more here (~200 B a flow, table included).
const MAX_FLOWS: usize = 16384;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId {
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSeen {
    /// SYN samples (subject to the kernel's per-second sample budget).
    pub syns: u64,
    /// Drop samples.
    pub drops: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

#[derive(Debug, Default)]
pub struct Tuples {
    pub flows: HashMap<FlowId, FlowSeen>,
    pub flows_dropped: u64,
}

impl Tuples {
    pub fn record(&mut self, id: FlowId, ts_ns: u64, syn: bool) {
        if !self.flows.contains_key(&id) && self.flows.len() >= MAX_FLOWS {
            self.flows_dropped += 1;
            return;
        }
        let seen = self.flows.entry(id).or_default();
        if syn {
            seen.syns += 1;
        } else {
            seen.drops += 1;
        }
        if seen.first_ns == 0 {
            seen.first_ns = ts_ns;
        }
        seen.last_ns = seen.last_ns.max(ts_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_syns_and_drops_per_flow() {
        let id = FlowId { netns: 1, local: "198.51.100.1:443".parse().unwrap(), remote: "198.51.100.7:41000".parse().unwrap() };
        let mut tuples = Tuples::default();
        tuples.record(id, 5, true);
        tuples.record(id, 9, false);
        tuples.record(id, 7, true);
        assert_eq!(tuples.flows[&id], FlowSeen { syns: 2, drops: 1, first_ns: 5, last_ns: 9 });
    }
}
