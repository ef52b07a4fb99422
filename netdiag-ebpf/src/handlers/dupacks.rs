//! Per peer: duplicate ACKs sent (`dupack_sent`, at `tcp_send_dupack`) and out-of-window
//! answers the rate limiter suppressed (`oow_limiter`, at `tcp_oow_rate_limited`'s return).
use netdiag_common::{FAMILY_IPV4, FAMILY_IPV6, PeerAddrKey, stat};

use crate::{
    context::Packet,
    kmem::{Kmem, configured, read},
    layout::layout,
    maps::{DUPACKS_SENT, OOW_SUPPRESSED, bump, count},
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

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

/// Remote address of a socket. IPv4-mapped IPv6 peers are folded to IPv4, so a peer has the
/// same key whether it came from a socket or a parsed packet. The IPv6 address is read
/// through the helper: a 16-byte load spans members of `struct in6_addr`'s union.
#[inline(always)]
unsafe fn socket_peer<M: Kmem>(sk: *const u8) -> Option<(u8, [u8; 16])> {
    let l = layout();
    let mut addr = [0u8; 16];
    match unsafe { M::member::<u16>(sk, configured(&l.sk_family))? } {
        AF_INET => {
            let v4: u32 = unsafe { M::member(sk, configured(&l.sk_daddr))? };
            addr[..4].copy_from_slice(&v4.to_ne_bytes());
            Some((FAMILY_IPV4, addr))
        }
        AF_INET6 => {
            let v6: [u8; 16] = unsafe { read(sk, configured(&l.sk_v6_daddr))? };
            if v6[..10] == [0; 10] && v6[10] == 0xff && v6[11] == 0xff {
                addr[..4].copy_from_slice(&v6[12..]);
                return Some((FAMILY_IPV4, addr));
            }
            Some((FAMILY_IPV6, v6))
        }
        _ => None,
    }
}
