//! `paws_time_wait`: PAWS rejections of segments that reach a TIME_WAIT socket, seen at the entry
//! of `tcp_timewait_state_process(tw, skb, th, ...)`. Kernels before 6.16 have no drop reason for
//! them (and count them in `PAWSEstab`), so `skb:kfree_skb` cannot tell them apart; the program
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
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{fentry, kprobe, map},
    maps::Array,
    programs::{FEntryContext, ProbeContext},
};
use netdiag_common::{FunctionProbeConfig, PeerKey, paws, stat, synthetic_reason, tcp_flag};

use crate::{
    access::{configured, netns_inode, read},
    capture, drops,
    functions::{config, skb_layout},
    maps::{PEER_DROPS, bump, count},
    packet,
};

/// `tcp_timewait_state_process(tw, skb, th, ...)`: later arguments differ between kernels.
const TW: usize = 0;
const SKB: usize = 1;

/// `tw_substate` of a socket in real TIME_WAIT (`TCP_TIME_WAIT`), and the state reported.
const TCP_TIME_WAIT: u8 = 6;
const NS_PER_SECOND: u64 = 1_000_000_000;

/// Entry 0: the kernel's drop-reason number of `TCP_RFC7323_TW_PAWS` plus one while this hook
/// counts those rejections, 0 otherwise. Set by userspace when a function program serves the
/// hook, so that `kfree_skb` leaves them alone on kernels that have the reason (6.16 and later).
#[map]
static TW_PAWS_COUNTED_HERE: Array<u32> = Array::with_max_entries(1, 0);

/// Whether `kfree_skb` must skip a drop of `reason`, which this hook already counts.
#[inline(always)]
pub fn counted_here(reason: u32) -> bool {
    TW_PAWS_COUNTED_HERE.get(0).is_some_and(|plus_one| *plus_one == reason + 1)
}

#[fentry(function = "tcp_timewait_state_process")]
pub fn paws_time_wait_fentry(ctx: FEntryContext) -> u32 {
    segment_at_time_wait(ctx.arg(TW), ctx.arg(SKB));
    0
}

#[kprobe]
pub fn paws_time_wait_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(tw), Some(skb)) = (ctx.arg(TW), ctx.arg(SKB)) {
        segment_at_time_wait(tw, skb);
    }
    0
}

#[inline(always)]
fn segment_at_time_wait(tw: *const u8, skb: *const u8) {
    let cfg = config();
    let Some(state) = time_wait_state(cfg, tw) else { return };
    let Some(seg) = (unsafe { packet::parse(skb, &skb_layout(cfg)) }) else {
        bump(stat::HOOK_UNPARSED);
        return;
    };
    let net: *const u8 = unsafe { read(tw, configured(&cfg.sk_net)).unwrap_or(core::ptr::null()) };
    let Some((tsval, _)) = seg.timestamp else { return };
    if net.is_null() {
        return;
    }
    let timestamps_on: u8 = unsafe { read(net, configured(&cfg.net_tcp_timestamps)).unwrap_or(0) };
    if timestamps_on == 0 {
        return;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    // ktime_get_seconds() is CLOCK_MONOTONIC in whole seconds, as is bpf_ktime_get_ns() / 1e9
    // (the kernel's copy is updated on the tick, so the two may differ for a tick at a second's
    // turn, which only matters to segments exactly at the 60 s or wrap bounds).
    let now_s = (now / NS_PER_SECOND) as u32;
    let rst = seg.flags & tcp_flag::RST != 0;
    let wrap = configured(&cfg.paws_wrap_s);
    if !paws::rejects(state.ts_recent, state.ts_recent_stamp, tsval, now_s, rst, wrap) {
        return;
    }
    bump(stat::MATCHED);
    let netns = netns_inode(net, configured(&cfg.net_ns_inum));
    let reason = synthetic_reason::TW_PAWS;
    let key = PeerKey {
        addr: seg.saddr,
        netns,
        reason,
        family: seg.family,
        sk_state: TCP_TIME_WAIT,
        local_port: seg.dport,
        _pad: [0; 2],
    };
    count(&PEER_DROPS, &key, now);
    capture::headers(&seg, netns, reason as u32, now);
    drops::send_sample(&seg, netns, reason as u32, TCP_TIME_WAIT, now);
}

struct TimeWaitState {
    ts_recent: u32,
    ts_recent_stamp: u32,
}

/// The socket's PAWS state if it is in real TIME_WAIT (not FIN_WAIT2) and has a timestamp on
/// record: the only case in which the kernel can count a PAWS rejection.
#[inline(always)]
fn time_wait_state(cfg: &FunctionProbeConfig, tw: *const u8) -> Option<TimeWaitState> {
    let substate: u8 = unsafe { read(tw, configured(&cfg.tw_substate))? };
    if substate != TCP_TIME_WAIT {
        return None;
    }
    // `int` in the kernel; only compared with 0 and added to, as u32 here.
    let ts_recent_stamp: u32 = unsafe { read(tw, configured(&cfg.tw_ts_recent_stamp))? };
    if ts_recent_stamp == 0 {
        return None;
    }
    let ts_recent: u32 = unsafe { read(tw, configured(&cfg.tw_ts_recent))? };
    Some(TimeWaitState { ts_recent, ts_recent_stamp })
}
