//! Incident reproductions on the real kernel, written once for the integration tests,
//! `netdiag selftest` and benchmarks.
//!
//! Everything happens inside namespaces a [`Lab`] creates (and removes on drop, panics
//! included), between documentation addresses (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
//! 2001:db8::/32) it assigns there. Every loop is bounded and every socket operation has a
//! timeout. Needs root (CAP_NET_ADMIN and CAP_NET_RAW), `ip` (iproute2) and `nft`.
//!
//! Usage: build a [`PawsTopology`], start tracing, run a scenario, stop tracing, compare
//! findings with the returned [`PawsRun`].

mod flood;
mod hostile;
mod ack_loop;
mod lab;
mod nat;
mod ordinary;
mod packet;
mod paws;
mod remote_end;
mod replay;
mod wire;

pub use ack_loop::{
    FlowRun, LOOP_CLIENT_V4, LOOP_SERVER_V4, LoopTopology, MAX_LOOP, OWN_PACE_PER_S, RunningLoop, Speed, lossy_bulk,
    oow_flood,
    start_ack_loop, start_ack_loop_at, unthrottled_oow_flood,
};
pub use lab::{Lab, VethPair};
pub use paws::{
    CLIENT_V4, CLIENT_V6, INNOCENT_V4, PawsRun, PawsTopology, SERVER_INNOCENT_SIDE_V4, SERVER_V4,
    SERVER_V6, TimeWaitEnds, innocent_traffic, paws_established, paws_time_wait, paws_time_wait_between, paws_tsecr,
    paws_tsecr_from_many,
};

pub use flood::{CLOSED_PORT, FloodRun, FloodSpec, FloodTopology, spoofed_source, syn_flood};
pub use hostile::{
    HostileRun, HostileShape, HostileTopology, LONE_FRAGMENT_V4, LONE_FRAGMENT_V6, filtered_drops, lone_fragments,
    stale_shaped,
};

pub use ordinary::{
    MAX_ORDINARY, ORDINARY_CLIENT_V4, ORDINARY_SERVER_V4, OrdinaryRun, OrdinaryTopology, Pinning, Workload, run_ordinary,
};
pub use remote_end::{
    MAX_REMOTE_EPISODE, ONE_WAY_DELAY, REMOTE_CLIENT_V4, REMOTE_SERVER_V4, RemoteEndTopology, paced_oow_flood, remote_ack_loop,
    remote_ack_loop_to,
};
pub use replay::{
    CORRUPT_REPLAYS, INTACT_REPLAYS, LOSSY_CONNECTIONS, REPLAY_CLIENT_V4, REPLAY_SERVER_V4, RefusedRun, ReplayRun,
    ReplayTopology, RetransmitRun, STALE_SEGMENTS, SYNS_WITH_FIN, syn_replay, syn_replay_on_time_wait, syn_retransmissions,
    syns_with_fin,
};

pub use nat::{
    BACKLOG_PORT, NAT_PUBLIC_V4, NAT_SERVER_PORT, NAT_SERVER_V4, NatEnds, NatRun, NatTopology, OverflowRun, PLAIN_PORT,
    SHARED_SOURCE_PORT, WireCount, direct_traffic, listen_overflow, nat_time_wait, nat_time_wait_between,
};

#[cfg(test)]
mod tests;
