//! Per peer: duplicate ACKs sent (`dupack_sent`, at `tcp_send_dupack`) and out-of-window
//! answers the rate limiter suppressed (`oow_limiter`, at `tcp_oow_rate_limited`'s return).
use netdiag_common::{PeerAddrKey, stat};

use crate::{
    context::{Packet, socket_peer},
    kmem::Kmem,
    maps::{DUPACKS_SENT, OOW_SUPPRESSED, bump, count},
};

/// The connection `pkt.sk` sent a duplicate ACK: counted per remote address and namespace.
#[inline(always)]
pub fn sent<M: Kmem>(pkt: &Packet<M>) {
    let Some((family, addr)) = (unsafe { socket_peer::<M>(pkt.sk) }) else {
        bump(stat::HOOK_UNPARSED);
        return;
    };
    let key = PeerAddrKey { addr, netns: pkt.netns(), family, _pad: [0; 3] };
    count(&DUPACKS_SENT, &key, pkt.now());
}

/// The limiter suppressed the answer to the segment `pkt` holds.
#[inline(always)]
pub fn suppressed<M: Kmem>(pkt: &Packet<M>) {
    let Some(seg) = pkt.segment() else { return };
    let key = PeerAddrKey { addr: seg.saddr, netns: pkt.netns(), family: seg.family, _pad: [0; 3] };
    count(&OOW_SUPPRESSED, &key, pkt.now());
}
