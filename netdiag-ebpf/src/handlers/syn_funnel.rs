//! The SYN funnel, per peer, namespace and local port: SYNs in and SYN-ACKs out (SYN-ACKs as
//! `tcp_make_synack` builds them, else on the receive and transmit paths), SYN-ACK retransmissions
//! and completed passive handshakes (socket tracepoints), and SYNs that reached a listener
//! (`conn_request`, at `tcp_conn_request`). Drops with their reasons come from `on_drop`.
use netdiag_common::{FunnelKey, PortKey, SynKey, funnel_stage, stat, tcp_flag};

use crate::{
    context::{Packet, socket_peer},
    kmem::{Kmem, configured},
    layout::{layout, watched_netns},
    maps::{SYN_FUNNEL, SYN_SEEN, bump, count, note_owner},
};

/// A SYN (no ACK, no RST) as it arrives.
#[inline(always)]
pub fn is_syn(flags: u8) -> bool {
    flags & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST) == tcp_flag::SYN
}

/// Counts the arriving SYN `pkt` holds.
#[inline(always)]
pub fn syn_in<M: Kmem>(pkt: &Packet<M>) {
    let Some(seg) = pkt.segment() else { return };
    let netns = pkt.netns();
    if watched_netns(netns) {
        let key = FunnelKey { addr: seg.saddr, netns, port: seg.dport, family: seg.family, stage: funnel_stage::SYN_IN };
        count(&SYN_FUNNEL, &key, pkt.now());
    }
}

/// Counts the segment `pkt` holds if it is a SYN-ACK leaving.
#[inline(always)]
pub fn synack_out<M: Kmem>(pkt: &Packet<M>) {
    let Some(seg) = pkt.segment() else { return };
    if seg.flags & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST) != tcp_flag::SYN | tcp_flag::ACK {
        return;
    }
    let netns = pkt.netns();
    if watched_netns(netns) {
        let key =
            FunnelKey { addr: seg.daddr, netns, port: seg.sport, family: seg.family, stage: funnel_stage::SYNACK_OUT };
        count(&SYN_FUNNEL, &key, pkt.now());
        note_owner(&PortKey { netns, port: seg.sport, family: seg.family, _pad: 0 }, pkt.socket_cgroup());
    }
}

/// A SYN-ACK built for the request socket `req` of the listener `pkt.sk`: counted for the
/// request's peer and local port, in the listener's namespace.
#[inline(always)]
pub fn synack_built<M: Kmem>(pkt: &Packet<M>, req: *const u8) {
    let peer = unsafe { socket_peer::<M>(req) };
    let port: Option<u16> = unsafe { M::member(req, configured(&layout().sk_num)) };
    let (Some((family, addr)), Some(port)) = (peer, port) else {
        bump(stat::HOOK_UNPARSED);
        return;
    };
    let netns = pkt.netns();
    if watched_netns(netns) {
        count(&SYN_FUNNEL, &FunnelKey { addr, netns, port, family, stage: funnel_stage::SYNACK_OUT }, pkt.now());
        note_owner(&PortKey { netns, port, family, _pad: 0 }, pkt.socket_cgroup());
    }
}

/// A stage seen at a socket tracepoint (retransmitted SYN-ACK, completed handshake).
#[inline(always)]
pub fn at_socket(addr: [u8; 16], family: u8, port: u16, netns: u32, stage: u8, now: u64) {
    if watched_netns(netns) {
        count(&SYN_FUNNEL, &FunnelKey { addr, netns, port, family, stage }, now);
    }
}

/// The SYN `pkt` holds reached the listener `pkt.sk`.
#[inline(always)]
pub fn at_listener<M: Kmem>(pkt: &Packet<M>) {
    let Some(seg) = pkt.segment() else { return };
    let key = SynKey { addr: seg.saddr, netns: pkt.netns(), port: seg.dport, family: seg.family, _pad: 0 };
    count(&SYN_SEEN, &key, pkt.now());
}
