//! `paws_checks` (and `paws_time_wait`): drops with a watched reason, counted per peer in the
//! kernel (`PEER_DROPS`), with the headers captured for `--pcap` and a per-flow sample over the
//! ring buffer now and then.
use netdiag_common::{DropEvent, EVENT_DROP, PeerKey, stat};

use super::capture;
use crate::{
    context::Packet,
    kmem::Kmem,
    layout::watched_netns,
    maps::{EVENTS, PEER_DROPS, bump, count_sampled, wakeup_flags},
    packet::{self, Segment},
};

/// Counts one drop of `reason` by a socket in `sk_state`. `always_sample`: send a sample of
/// every one (rare drops whose every TSval matters), not only when the key's is due.
#[inline(always)]
pub fn count_drop<M: Kmem>(pkt: &Packet<M>, reason: u32, sk_state: u8, always_sample: bool) {
    let Some(seg) = pkt.segment() else { return };
    let netns = pkt.netns();
    if !watched_netns(netns) {
        return;
    }
    let now = pkt.now();
    let key = PeerKey {
        addr: seg.saddr,
        netns,
        reason: reason as u16,
        family: seg.family,
        sk_state,
        local_port: seg.dport,
        _pad: [0; 2],
    };
    let counted = count_sampled(&PEER_DROPS, &key, now);
    if counted.fresh {
        bump(stat::PEER_INSERTS);
    }
    capture::headers(seg, netns, reason, now);
    // The count is in the map; a sample (with the timestamp option, read only now) per key
    // now and then is what userspace needs of the rest.
    if counted.sample_due || always_sample {
        send_sample(seg, netns, reason, sk_state, now);
    }
}

#[inline(always)]
fn send_sample(seg: &Segment, netns: u32, reason: u32, sk_state: u8, now: u64) {
    let Some(timestamp) = (unsafe { packet::read_timestamp(seg) }) else {
        bump(stat::UNPARSED);
        return;
    };
    match EVENTS.reserve::<DropEvent>(0) {
        Some(mut entry) => {
            entry.write(DropEvent {
                ts_ns: now,
                saddr: seg.saddr,
                daddr: seg.daddr,
                netns,
                reason,
                seq: seg.seq,
                ack_seq: seg.ack_seq,
                tsval: timestamp.map_or(0, |t| t.0),
                tsecr: timestamp.map_or(0, |t| t.1),
                sport: seg.sport,
                dport: seg.dport,
                kind: EVENT_DROP,
                family: seg.family,
                tcp_flags: seg.flags,
                sk_state,
                has_timestamp: timestamp.is_some() as u8,
                _pad0: 0,
                payload_len: seg.payload_len,
                _pad1: [0; 4],
            });
            entry.submit(wakeup_flags(&EVENTS));
        }
        None => bump(stat::RING_LOST),
    }
}
