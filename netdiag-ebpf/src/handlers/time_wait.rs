//! `paws_time_wait`: PAWS rejections of segments that reach a TIME_WAIT socket, seen at the entry
//! of `tcp_timewait_state_process(tw, skb, th, ...)`. Kernels before 6.16 have no drop reason for
//! them (and count them in `PAWSEstab`), so `skb:kfree_skb` cannot tell them apart; the handler
//! recomputes the kernel's decision from the segment and the socket, exactly as the function is
//! about to make it, and counts it in `PEER_DROPS` under a synthetic reason userspace names
//! `TCP_RFC7323_TW_PAWS`, so the rest of the pipeline treats it like the kernel's own reason.
//!
//! The decision, as in net/ipv4/tcp_minisocks.c of 6.1 and 6.12 (and 6.18, where it also sets
//! the drop reason):
//! ```c
//! tmp_opt.saw_tstamp = 0;
//! if (th->doff > (sizeof(*th) >> 2) && tcptw->tw_ts_recent_stamp) {
//!         tcp_parse_options(twsk_net(tw), skb, &tmp_opt, 0, NULL);
//!         if (tmp_opt.saw_tstamp) {
//!                 ...
//!                 tmp_opt.ts_recent       = tcptw->tw_ts_recent;
//!                 tmp_opt.ts_recent_stamp = tcptw->tw_ts_recent_stamp;
//!                 paws_reject = tcp_paws_reject(&tmp_opt, th->rst);
//!         }
//! }
//! if (tw->tw_substate == TCP_FIN_WAIT2) { ... return; }   /* not a PAWS drop: an OOW ACK */
//! ...  /* the two branches before the counter both require !paws_reject */
//! if (paws_reject)
//!         __NET_INC_STATS(twsk_net(tw), LINUX_MIB_PAWSESTABREJECTED);  /* PAWS_TW_REJECTED in 6.16 */
//! ```
//! `tcp_parse_options(..., estab = 0, ...)` takes a timestamp only while the namespace's
//! `net.ipv4.tcp_timestamps` is on; `tcp_paws_reject` is `netdiag_common::paws::rejects`.
use netdiag_common::{paws, synthetic_reason, tcp_flag};

use super::paws::count_drop;
use crate::{
    context::Packet,
    kmem::{Kmem, configured, read},
    layout::{layout, settings},
    packet,
};

/// `tw_substate` of a socket in real TIME_WAIT (`TCP_TIME_WAIT`), and the state reported.
const TCP_TIME_WAIT: u8 = 6;
const NS_PER_SECOND: u64 = 1_000_000_000;

/// Counts the segment `pkt` holds if the TIME_WAIT socket `pkt.sk` is about to reject it.
#[inline(always)]
pub fn paws_reject<M: Kmem>(pkt: &Packet<M>) {
    let Some(state) = (unsafe { time_wait_state::<M>(pkt.sk) }) else { return };
    let Some(seg) = pkt.segment() else { return };
    let Some(Some((tsval, _))) = (unsafe { packet::read_timestamp(seg) }) else { return };
    let l = layout();
    let net: *const u8 = unsafe { M::member(pkt.sk, configured(&l.sk_net)).unwrap_or(core::ptr::null()) };
    if net.is_null() {
        return;
    }
    let timestamps_on: u8 = unsafe { M::member(net, configured(&l.net_tcp_timestamps)).unwrap_or(0) };
    if timestamps_on == 0 {
        return;
    }
    // ktime_get_seconds() is CLOCK_MONOTONIC in whole seconds, as is bpf_ktime_get_ns() / 1e9
    // (the kernel's copy is updated on the tick, so the two may differ for a tick at a second's
    // turn, which only matters to segments exactly at the 60 s or wrap bounds).
    let now_s = (pkt.now() / NS_PER_SECOND) as u32;
    let rst = seg.flags & tcp_flag::RST != 0;
    let wrap = configured(&settings().paws_wrap_s);
    if !paws::rejects(state.ts_recent, state.ts_recent_stamp, tsval, now_s, rst, wrap) {
        return;
    }
    crate::maps::bump(netdiag_common::stat::MATCHED);
    count_drop(pkt, synthetic_reason::TW_PAWS as u32, TCP_TIME_WAIT, true);
}

struct TimeWaitState {
    ts_recent: u32,
    ts_recent_stamp: u32,
}

/// The socket's PAWS state if it is in real TIME_WAIT (not FIN_WAIT2) and has a timestamp on
/// record: the only case in which the kernel can count a PAWS rejection. The timestamps are
/// members of `struct tcp_timewait_sock`, beyond the `inet_timewait_sock` the argument is typed
/// as: read through the helper.
#[inline(always)]
unsafe fn time_wait_state<M: Kmem>(tw: *const u8) -> Option<TimeWaitState> {
    let l = layout();
    let substate: u8 = unsafe { M::member(tw, configured(&l.tw_substate))? };
    if substate != TCP_TIME_WAIT {
        return None;
    }
    // `int` in the kernel; only compared with 0 and added to, as u32 here.
    let ts_recent_stamp: u32 = unsafe { read(tw, configured(&l.tw_ts_recent_stamp))? };
    if ts_recent_stamp == 0 {
        return None;
    }
    let ts_recent: u32 = unsafe { read(tw, configured(&l.tw_ts_recent))? };
    Some(TimeWaitState { ts_recent, ts_recent_stamp })
}
