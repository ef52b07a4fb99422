//! Every packet the stack frees with a drop reason: at `skb:kfree_skb`, or at the entry of the
//! function that fires it (`sk_skb_reason_drop` since 6.11, `kfree_skb_reason` before) where
//! fentry or kprobes are allowed. The program keeps only the reasons userspace asked for (PAWS,
//! TSecr, sequence checks...), counts them per peer in the kernel and sends a per-flow sample
//! over the ring buffer.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{fentry, kprobe, raw_tracepoint, tracepoint},
    programs::{FEntryContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use netdiag_common::{
    DropEvent, DropProbeConfig, EVENT_DROP, FIELD_ABSENT, PeerKey, REASON_SET_WORDS, stat,
};

use crate::{
    access::{self, configured, read, untyped_arg},
    capture,
    maps::{EVENTS, PEER_DROPS, bump, count_sampled, wakeup_flags},
    packet::{self, Segment, SkbLayout},
    time_wait,
};

/// Filled in by the loader from the running kernel's BTF and tracepoint format.
#[unsafe(no_mangle)]
static DROP_PROBE_CONFIG: DropProbeConfig = DropProbeConfig {
    tp_skbaddr: 0,
    tp_reason: 0,
    tp_protocol: 0,
    tp_rx_sk: FIELD_ABSENT,
    skb_head: 0,
    skb_network_header: 0,
    skb_transport_header: 0,
    skb_dev: 0,
    dev_nd_net: 0,
    net_ns_inum: 0,
    sk_state: 0,
    sk_net: 0,
    skb_refdst: 0,
    dst_dev: 0,
    reasons: [0; REASON_SET_WORDS],
    skb_tail: FIELD_ABSENT,
    only_netns: 0,
    skb_users: 0,
    _pad: 0,
};

#[inline(always)]
pub fn config() -> &'static DropProbeConfig {
    &DROP_PROBE_CONFIG
}

#[tracepoint]
pub fn kfree_skb(ctx: TracePointContext) -> u32 {
    if let Some((skb, reason, rx_sk)) = record_args(&ctx) {
        let _ = dropped(skb, reason, rx_sk);
    }
    0
}

/// The same on the raw tracepoint, which the kernel calls with the tracepoint's arguments: no
/// record is built for it.
#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn kfree_skb_raw(ctx: RawTracePointContext) -> u32 {
    let (skb, reason, rx_sk) = raw_args(&ctx);
    let _ = dropped(skb, reason, rx_sk);
    0
}

/// The packet, its drop reason and the socket it reached (`rx_sk`, since 6.11, else null)
/// from an `skb:kfree_skb` record.
#[inline(always)]
pub fn record_args(ctx: &TracePointContext) -> Option<(*const u8, u32, *const u8)> {
    let cfg = config();
    let skb: *const u8 = unsafe { ctx.read_at(configured(&cfg.tp_skbaddr) as usize).ok()? };
    let reason: u32 = unsafe { ctx.read_at(configured(&cfg.tp_reason) as usize).ok()? };
    let rx_sk_off = configured(&cfg.tp_rx_sk);
    let rx_sk: *const u8 = if rx_sk_off == FIELD_ABSENT {
        core::ptr::null()
    } else {
        unsafe { ctx.read_at(rx_sk_off as usize).unwrap_or(core::ptr::null()) }
    };
    Some((skb, reason, rx_sk))
}

/// The same from the raw tracepoint's arguments, `(skb, location, reason[, rx_sk])`. The
/// load-time constant picks the branch, and the verifier never walks the other one, so a
/// kernel without `rx_sk` accepts the program (context offsets must be constants).
#[inline(always)]
pub fn raw_args(ctx: &RawTracePointContext) -> (*const u8, u32, *const u8) {
    let rx_sk: *const u8 =
        if configured(&config().tp_rx_sk) != FIELD_ABSENT { ctx.arg(3) } else { core::ptr::null() };
    let reason: u64 = ctx.arg(2);
    (ctx.arg(0), reason as u32, rx_sk)
}

/// `sk_skb_reason_drop(sk, skb, reason)`, which fires `skb:kfree_skb` with `sk` as `rx_sk`.
#[fentry(function = "sk_skb_reason_drop")]
pub fn drop_reason_fentry(ctx: FEntryContext) -> u32 {
    let skb = ctx.arg(1);
    if frees(skb) {
        let _ = dropped(skb, ctx.arg(2), untyped_arg(&ctx, 0));
    }
    0
}

#[kprobe]
pub fn drop_reason_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(skb), Some(reason)) = (ctx.arg(0), ctx.arg(1), ctx.arg(2))
        && frees(skb)
    {
        let _ = dropped(skb, reason, sk);
    }
    0
}

/// `kfree_skb_reason(skb, reason)`, the same before 6.11 (no socket).
#[fentry(function = "kfree_skb_reason")]
pub fn drop_reason_legacy_fentry(ctx: FEntryContext) -> u32 {
    let skb = ctx.arg(0);
    if frees(skb) {
        let _ = dropped(skb, ctx.arg(1), core::ptr::null());
    }
    0
}

#[kprobe]
pub fn drop_reason_legacy_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(skb), Some(reason)) = (ctx.arg(0), ctx.arg(1))
        && frees(skb)
    {
        let _ = dropped(skb, reason, core::ptr::null());
    }
    0
}

/// Whether the drop function called on `skb` frees it: only the last reference does, and only
/// then does the kernel fire the tracepoint; an earlier call just drops a reference, and the
/// packet is counted when it is really freed, like the tracepoint counts it.
#[inline(always)]
pub fn frees(skb: *const u8) -> bool {
    unsafe { read::<u32>(skb, configured(&config().skb_users)) == Some(1) }
}

/// One freed packet: `skb`, its drop `reason`, and the socket it reached (`rx_sk`, may be null).
#[inline(always)]
fn dropped(skb: *const u8, reason: u32, rx_sk: *const u8) -> Option<()> {
    let cfg = config();
    if reason >= netdiag_common::MAX_REASON {
        return None;
    }
    let word = unsafe { core::ptr::read_volatile(&cfg.reasons[(reason / 64) as usize % REASON_SET_WORDS]) };
    if (word >> (reason % 64)) & 1 == 0 {
        return None;
    }
    // Counted by the `paws_time_wait` function hook when one serves it.
    if time_wait::counted_here(reason) {
        return None;
    }
    bump(stat::MATCHED);

    let layout = SkbLayout {
        head: configured(&cfg.skb_head),
        network_header: configured(&cfg.skb_network_header),
        transport_header: configured(&cfg.skb_transport_header),
    };
    let Some(mut seg) = (unsafe { packet::parse_headers(skb, &layout, configured(&cfg.skb_tail)) }) else {
        bump(stat::UNPARSED);
        return None;
    };

    let sk_state: u8 = if rx_sk.is_null() {
        0
    } else {
        unsafe { read(rx_sk, configured(&cfg.sk_state)).unwrap_or(0) }
    };
    let netns = netns_inode(cfg, skb, rx_sk);
    let only = configured(&cfg.only_netns);
    if only != 0 && netns != only {
        return None;
    }
    let now = unsafe { bpf_ktime_get_ns() };

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
    capture::headers(&seg, netns, reason, now);
    // The count is in the map; a sample (with the timestamp option, read only now) per key
    // now and then is what userspace needs of the rest.
    if !counted.sample_due {
        return Some(());
    }
    let Some(timestamp) = (unsafe { packet::read_timestamp(seg.tcp, seg.tcp_len) }) else {
        bump(stat::UNPARSED);
        return Some(());
    };
    seg.timestamp = timestamp;

    send_sample(&seg, netns, reason, sk_state, now);
    Some(())
}

/// The ring-buffer sample of one counted drop (`seg.timestamp` read by then), for
/// `paws_checks` and `paws_time_wait` alike.
#[inline(always)]
pub fn send_sample(seg: &Segment, netns: u32, reason: u32, sk_state: u8, now: u64) {
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
                tsval: seg.timestamp.map_or(0, |t| t.0),
                tsecr: seg.timestamp.map_or(0, |t| t.1),
                sport: seg.sport,
                dport: seg.dport,
                kind: EVENT_DROP,
                family: seg.family,
                tcp_flags: seg.flags,
                sk_state,
                has_timestamp: seg.timestamp.is_some() as u8,
                _pad0: 0,
                payload_len: seg.payload_len,
                _pad1: [0; 4],
            });
            entry.submit(wakeup_flags(&EVENTS));
        }
        None => bump(stat::RING_LOST),
    }
}

/// Low bit of `_skb_refdst` marks a reference not taken; the rest is the `dst_entry` pointer.
const SKB_DST_PTRMASK: usize = !1;

/// Network namespace of the packet: the receiving device's, else the socket's, else the device
/// of the route the packet came in on.
pub fn netns_inode(cfg: &DropProbeConfig, skb: *const u8, rx_sk: *const u8) -> u32 {
    let mut dev: *const u8 = unsafe { read(skb, configured(&cfg.skb_dev)).unwrap_or(core::ptr::null()) };
    if dev.is_null() && rx_sk.is_null() {
        let refdst: usize = unsafe { read(skb, configured(&cfg.skb_refdst)).unwrap_or(0) };
        let dst = (refdst & SKB_DST_PTRMASK) as *const u8;
        if !dst.is_null() {
            dev = unsafe { read(dst, configured(&cfg.dst_dev)).unwrap_or(core::ptr::null()) };
        }
    }
    let net: *const u8 = if !dev.is_null() {
        unsafe { read(dev, configured(&cfg.dev_nd_net)).unwrap_or(core::ptr::null()) }
    } else if !rx_sk.is_null() {
        unsafe { read(rx_sk, configured(&cfg.sk_net)).unwrap_or(core::ptr::null()) }
    } else {
        core::ptr::null()
    };
    access::netns_inode(net, configured(&cfg.net_ns_inum))
}
