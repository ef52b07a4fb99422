//! Per-flow accounting for ACK loops (seed 001): out-of-window segments received, by which
//! check (`oow_received`), and duplicate ACKs sent (`flow_dupacks`: the stack's answers at
//! `tcp_send_dupack` where function hooks work; else, as packets leave, a pure ACK repeating
//! the flow's previous segment), with the connection's smoothed RTT. Counts stay in a per-CPU LRU map; nothing goes to userspace
//! per packet, so a loop at line rate is counted exactly.
use aya_ebpf::{
    bindings::BPF_ANY,
    macros::map,
    maps::{LruHashMap, LruPerCpuHashMap},
};
use netdiag_common::{FlowKey, FlowStats, PortKey, oow_why, stat, tcp_flag};

use crate::{
    context::Packet,
    kmem::Kmem,
    maps::{bump, note_owner},
    packet::Segment,
};

/// Per-flow counts, summed over CPUs by userspace every half second.
#[map]
pub static FLOW_STATS: LruPerCpuHashMap<FlowKey, FlowStats> = LruPerCpuHashMap::with_max_entries(8192, 0);

/// The last segment each local flow sent, to tell a duplicate ACK from a new one. Shared by
/// all CPUs: one flow's ACKs may leave from any of them.
#[map]
static LAST_SENT: LruHashMap<FlowKey, LastSent> = LruHashMap::with_max_entries(16384, 0);

#[repr(C)]
struct LastSent {
    seq: u32,
    ack: u32,
    /// Highest `seq + payload` sent: data below it is a retransmission, not progress.
    high_end: u32,
    window: u16,
    _pad: u16,
}

/// A received segment the stack dropped as out of window, `why` being the check.
#[inline(always)]
pub fn out_of_window<M: Kmem>(pkt: &Packet<M>, why: u8) {
    let Some(seg) = pkt.segment() else { return };
    let now = pkt.now();
    let Some(stats) = flow_entry(&received_flow(seg, pkt.netns()), now) else { return };
    // Straight-line updates keep the verifier's walk short.
    unsafe {
        (*stats).oow_timestamp += (why == oow_why::TIMESTAMP) as u64;
        (*stats).oow_sequence += (why == oow_why::SEQUENCE) as u64;
        (*stats).oow_ack += (why == oow_why::ACK) as u64;
        (*stats).oow_pure_ack += is_pure_ack(seg) as u64;
        (*stats).last_oow_ns = now;
        (*stats).last_ns = now;
    }
}

/// A segment leaving: a duplicate ACK if it is a pure ACK repeating the flow's previous
/// segment (same SEQ, ACK and window). Only segments a local socket sent count; forwarded
/// ones belong to other hosts' flows.
#[inline(always)]
pub fn egress<M: Kmem>(pkt: &Packet<M>) {
    if pkt.sk.is_null() {
        return;
    }
    let Some(seg) = pkt.segment() else { return };
    if seg.flags & tcp_flag::ACK == 0 {
        return;
    }
    let key = FlowKey {
        local: seg.saddr,
        remote: seg.daddr,
        netns: pkt.netns(),
        local_port: seg.sport,
        remote_port: seg.dport,
        family: seg.family,
        _pad: [0; 3],
    };
    let end = seg.seq.wrapping_add(seg.payload_len as u32);
    let Some(last) = LAST_SENT.get_ptr_mut(&key) else {
        let first = LastSent { seq: seg.seq, ack: seg.ack_seq, high_end: end, window: seg.window, _pad: 0 };
        let _ = LAST_SENT.insert(&key, &first, BPF_ANY as u64);
        return;
    };
    // Racy between CPUs by design: a lost update misjudges at most the next segment.
    let (dupack, progress) = unsafe {
        let dupack = is_pure_ack(seg)
            && (*last).seq == seg.seq
            && (*last).ack == seg.ack_seq
            && (*last).window == seg.window;
        let progress = after(seg.ack_seq, (*last).ack) || after(end, (*last).high_end);
        (*last).seq = seg.seq;
        (*last).ack = seg.ack_seq;
        (*last).window = seg.window;
        if after(end, (*last).high_end) {
            (*last).high_end = end;
        }
        (dupack, progress)
    };
    let now = pkt.now();
    if dupack {
        if let Some(stats) = flow_entry(&key, now) {
            count_dupack(stats, &key, pkt, now);
        }
    } else if progress && let Some(stats) = FLOW_STATS.get_ptr_mut(&key) {
        // Only flows already in trouble: progress of every healthy flow is not worth a slot.
        unsafe { (*stats).progress_out += 1 };
    }
}

/// `tcp_send_dupack(sk, skb)`: the stack answers the received segment with a duplicate ACK,
/// counted for the flow the segment belongs to.
#[inline(always)]
pub fn dupack_answered<M: Kmem>(pkt: &Packet<M>) {
    let Some(seg) = pkt.segment() else { return };
    let now = pkt.now();
    let key = received_flow(seg, pkt.netns());
    if let Some(stats) = flow_entry(&key, now) {
        count_dupack(stats, &key, pkt, now);
    }
}

/// One duplicate ACK out, with the connection's smoothed RTT: a loop whose other end is out of
/// sight runs at one segment per round trip, a flood at its sender's own pace. The first on this
/// CPU notes whose socket the flow's local port is.
#[inline(always)]
fn count_dupack<M: Kmem>(stats: *mut FlowStats, key: &FlowKey, pkt: &Packet<M>, now: u64) {
    let sent = unsafe { (*stats).dupacks_out };
    if sent == 0 {
        note_owner(&PortKey { netns: key.netns, port: key.local_port, family: key.family, _pad: 0 }, pkt.socket_cgroup());
    }
    // Out-of-window segments take no RTT sample, so the RTT hardly moves while they come: a read
    // every RTT_REFRESH dupacks keeps the helper call off the loop's hot path.
    if sent % RTT_REFRESH == 0 || unsafe { (*stats).srtt_us } == 0 {
        let srtt_us = pkt.smoothed_rtt_us();
        if srtt_us != 0 {
            unsafe { (*stats).srtt_us = srtt_us };
        }
    }
    unsafe {
        (*stats).dupacks_out = sent + 1;
        (*stats).last_ns = now;
    }
}

/// Duplicate ACKs between two reads of the connection's RTT.
const RTT_REFRESH: u64 = 64;

/// The rate limiter kept the stack from answering the received out-of-window segment.
#[inline(always)]
pub fn limiter_suppressed<M: Kmem>(pkt: &Packet<M>) {
    let Some(seg) = pkt.segment() else { return };
    if let Some(stats) = flow_entry(&received_flow(seg, pkt.netns()), pkt.now()) {
        unsafe { (*stats).limiter_suppressed += 1 };
    }
}

/// The local flow a received segment belongs to.
#[inline(always)]
fn received_flow(seg: &Segment, netns: u32) -> FlowKey {
    FlowKey {
        local: seg.daddr,
        remote: seg.saddr,
        netns,
        local_port: seg.dport,
        remote_port: seg.sport,
        family: seg.family,
        _pad: [0; 3],
    }
}

/// This CPU's slot for `key`, created if missing. The kernel zeroes the other CPUs' slots
/// when one CPU creates the entry; each CPU stamps its own on first use.
#[inline(always)]
fn flow_entry(key: &FlowKey, now: u64) -> Option<*mut FlowStats> {
    if let Some(stats) = FLOW_STATS.get_ptr_mut(key) {
        unsafe {
            if (*stats).first_ns == 0 {
                (*stats).first_ns = now;
            }
        }
        return Some(stats);
    }
    let fresh = FlowStats { first_ns: now, last_ns: now, ..FlowStats::default() };
    if FLOW_STATS.insert(key, &fresh, BPF_ANY as u64).is_err() {
        bump(stat::PEER_MAP_FULL);
        return None;
    }
    FLOW_STATS.get_ptr_mut(key)
}

/// An ACK with no data and no SYN, FIN or RST.
#[inline(always)]
fn is_pure_ack(seg: &Segment) -> bool {
    seg.payload_len == 0
        && seg.flags & tcp_flag::ACK != 0
        && seg.flags & (tcp_flag::SYN | tcp_flag::FIN | tcp_flag::RST) == 0
}

/// Sequence-space comparison (RFC 1982): `a` comes after `b`.
#[inline(always)]
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}
