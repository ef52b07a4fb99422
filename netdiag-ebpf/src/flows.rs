//! Per-flow accounting for ACK loops (seed 001): out-of-window segments received, by drop
//! reason (at the drop function's entry with fentry or kprobes, else at `skb:kfree_skb`), and
//! duplicate ACKs sent (`tcp_send_dupack` with fentry or kprobes; else at `net:net_dev_queue`, a
//! pure ACK repeating the flow's previous segment). Counts stay in a per-CPU LRU map; nothing
//! goes to userspace per packet, so a loop at line rate is counted exactly.
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::bpf_ktime_get_ns,
    macros::{fentry, kprobe, map, raw_tracepoint, tracepoint},
    maps::{LruHashMap, LruPerCpuHashMap},
    programs::{FEntryContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use netdiag_common::{
    FIELD_ABSENT, FlowKey, FlowProbeConfig, FlowStats, MAX_REASON, REASON_SET_WORDS, oow_why, stat,
    tcp_flag,
};

use crate::{
    access::{self, configured, read, untyped_arg},
    drops, functions,
    maps::bump,
    packet::{self, Segment, SkbLayout},
};

/// Filled in by the loader from the running kernel's BTF, tracepoint format and drop reasons.
#[unsafe(no_mangle)]
static FLOW_PROBE_CONFIG: FlowProbeConfig = FlowProbeConfig {
    tp_skbaddr: 0,
    skb_head: 0,
    skb_network_header: 0,
    skb_transport_header: 0,
    skb_dev: 0,
    skb_sk: 0,
    dev_nd_net: 0,
    net_ns_inum: 0,
    timestamp_reasons: [0; REASON_SET_WORDS],
    sequence_reasons: [0; REASON_SET_WORDS],
    ack_reasons: [0; REASON_SET_WORDS],
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

#[inline(always)]
fn config() -> &'static FlowProbeConfig {
    &FLOW_PROBE_CONFIG
}

/// `skb:kfree_skb` again, beside `drops::kfree_skb`: this one keeps only out-of-window reasons
/// and counts them per flow, with no ring-buffer record (a loop drops 100 000s a second).
#[tracepoint]
pub fn oow_received(ctx: TracePointContext) -> u32 {
    if let Some((skb, reason, rx_sk)) = drops::record_args(&ctx) {
        let _ = count_oow(skb, reason, rx_sk);
    }
    0
}

/// The same on the raw tracepoint, which the kernel calls directly with the tracepoint's
/// arguments: no perf buffer in between, which can silently skip events under load.
#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn oow_received_raw(ctx: RawTracePointContext) -> u32 {
    let (skb, reason, rx_sk) = drops::raw_args(&ctx);
    let _ = count_oow(skb, reason, rx_sk);
    0
}

/// The drop function's entry, `sk_skb_reason_drop(sk, skb, reason)`, as in `drops`.
#[fentry(function = "sk_skb_reason_drop")]
pub fn oow_received_fentry(ctx: FEntryContext) -> u32 {
    let skb = ctx.arg(1);
    if drops::frees(skb) {
        let _ = count_oow(skb, ctx.arg(2), untyped_arg(&ctx, 0));
    }
    0
}

#[kprobe]
pub fn oow_received_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(skb), Some(reason)) = (ctx.arg(0), ctx.arg(1), ctx.arg(2))
        && drops::frees(skb)
    {
        let _ = count_oow(skb, reason, sk);
    }
    0
}

/// `kfree_skb_reason(skb, reason)`, before 6.11.
#[fentry(function = "kfree_skb_reason")]
pub fn oow_received_legacy_fentry(ctx: FEntryContext) -> u32 {
    let skb = ctx.arg(0);
    if drops::frees(skb) {
        let _ = count_oow(skb, ctx.arg(1), core::ptr::null());
    }
    0
}

#[kprobe]
pub fn oow_received_legacy_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(skb), Some(reason)) = (ctx.arg(0), ctx.arg(1))
        && drops::frees(skb)
    {
        let _ = count_oow(skb, reason, core::ptr::null());
    }
    0
}


#[inline(always)]
fn count_oow(skb: *const u8, reason: u32, rx_sk: *const u8) -> Option<()> {
    // Which check rejected it is decided after parsing: a value known before the parser's
    // option loop would triple the states the verifier walks through it.
    if reason_why(config(), reason) == oow_why::NONE {
        return None;
    }
    let drop_cfg = drops::config();
    let layout = SkbLayout {
        head: configured(&drop_cfg.skb_head),
        network_header: configured(&drop_cfg.skb_network_header),
        transport_header: configured(&drop_cfg.skb_transport_header),
    };
    let Some(seg) = (unsafe { packet::parse(skb, &layout) }) else {
        bump(stat::UNPARSED);
        return None;
    };
    let key = received_flow(&seg, drops::netns_inode(drop_cfg, skb, rx_sk));
    let now = unsafe { bpf_ktime_get_ns() };
    let stats = flow_entry(&key, now)?;
    let why = reason_why(config(), reason);
    // Straight-line updates keep the verifier's walk short.
    let (tsval, tsecr) = seg.timestamp.unwrap_or((0, 0));
    unsafe {
        (*stats).oow_timestamp += (why == oow_why::TIMESTAMP) as u64;
        (*stats).oow_sequence += (why == oow_why::SEQUENCE) as u64;
        (*stats).oow_ack += (why == oow_why::ACK) as u64;
        (*stats).oow_pure_ack += is_pure_ack(&seg) as u64;
        (*stats).last_tsval = tsval;
        (*stats).last_tsecr = tsecr;
        (*stats).last_oow_ns = now;
        (*stats).last_ns = now;
    }
    Some(())
}

/// `net:net_dev_queue`: every packet handed to a device. Only segments a local socket sent
/// (`skb->sk` set) are looked at; forwarded ones belong to other hosts' flows.
#[tracepoint]
pub fn flow_egress(ctx: TracePointContext) -> u32 {
    if let Ok(skb) = unsafe { ctx.read_at::<*const u8>(configured(&config().tp_skbaddr) as usize) } {
        let _ = count_egress(skb);
    }
    0
}

/// The same on the raw tracepoint (`net_dev_queue(skb)`).
#[raw_tracepoint(tracepoint = "net_dev_queue")]
pub fn flow_egress_raw(ctx: RawTracePointContext) -> u32 {
    let _ = count_egress(ctx.arg(0));
    0
}

#[inline(always)]
fn count_egress(skb: *const u8) -> Option<()> {
    let cfg = config();
    let sk: *const u8 = unsafe { read(skb, configured(&cfg.skb_sk))? };
    if sk.is_null() {
        return None;
    }
    let layout = SkbLayout {
        head: configured(&cfg.skb_head),
        network_header: configured(&cfg.skb_network_header),
        transport_header: configured(&cfg.skb_transport_header),
    };
    // Not TCP (or not readable): nothing to count; this hook sees every packet sent. The
    // options are not needed here: a duplicate ACK is told by sequence, ACK and window.
    let seg = unsafe { packet::parse_headers(skb, &layout, FIELD_ABSENT)? };
    if seg.flags & tcp_flag::ACK == 0 {
        return None;
    }
    let dev: *const u8 = unsafe { read(skb, configured(&cfg.skb_dev))? };
    let net: *const u8 = unsafe { read(dev, configured(&cfg.dev_nd_net))? };
    let key = FlowKey {
        local: seg.saddr,
        remote: seg.daddr,
        netns: access::netns_inode(net, configured(&cfg.net_ns_inum)),
        local_port: seg.sport,
        remote_port: seg.dport,
        family: seg.family,
        _pad: [0; 3],
    };
    let end = seg.seq.wrapping_add(seg.payload_len as u32);
    let Some(last) = LAST_SENT.get_ptr_mut(&key) else {
        let first = LastSent { seq: seg.seq, ack: seg.ack_seq, high_end: end, window: seg.window, _pad: 0 };
        let _ = LAST_SENT.insert(&key, &first, BPF_ANY as u64);
        return None;
    };
    // Racy between CPUs by design: a lost update misjudges at most the next segment.
    let (dupack, progress) = unsafe {
        let dupack = is_pure_ack(&seg)
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
    let now = unsafe { bpf_ktime_get_ns() };
    if dupack {
        let stats = flow_entry(&key, now)?;
        unsafe {
            (*stats).dupacks_out += 1;
            (*stats).last_ns = now;
        }
    } else if progress && let Some(stats) = FLOW_STATS.get_ptr_mut(&key) {
        // Only flows already in trouble: progress of every healthy flow is not worth a slot.
        unsafe { (*stats).progress_out += 1 };
    }
    Some(())
}

/// `tcp_send_dupack(sk, skb)`: the stack answers the out-of-window segment `skb` with a
/// duplicate ACK, counted for the flow the segment belongs to.
#[fentry(function = "tcp_send_dupack")]
pub fn flow_dupack_fentry(ctx: FEntryContext) -> u32 {
    let _ = count_dupack(ctx.arg(0), ctx.arg(1));
    0
}

#[kprobe]
pub fn flow_dupack_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(skb)) = (ctx.arg(0), ctx.arg(1)) {
        let _ = count_dupack(sk, skb);
    }
    0
}

#[inline(always)]
fn count_dupack(sk: *const u8, skb: *const u8) -> Option<()> {
    let cfg = functions::config();
    let Some(seg) = (unsafe { packet::parse(skb, &functions::skb_layout(cfg)) }) else {
        bump(stat::HOOK_UNPARSED);
        return None;
    };
    let net: *const u8 = unsafe { read(sk, configured(&cfg.sk_net))? };
    let now = unsafe { bpf_ktime_get_ns() };
    let stats = flow_entry(&received_flow(&seg, access::netns_inode(net, configured(&cfg.net_ns_inum))), now)?;
    unsafe {
        (*stats).dupacks_out += 1;
        (*stats).last_ns = now;
    }
    Some(())
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

/// The limiter suppressed our answer to the out-of-window segment `seg` received in `netns`
/// (called by the fexit/kretprobe of `tcp_oow_rate_limited`).
#[inline(always)]
pub fn limiter_suppressed(seg: &Segment, netns: u32) {
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(stats) = flow_entry(&received_flow(seg, netns), now) {
        unsafe { (*stats).limiter_suppressed += 1 };
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

/// Why the running kernel's drop `reason` means out of window. The sets are read volatile:
/// the loader patches them after the compiler saw zeros.
#[inline(always)]
fn reason_why(cfg: &FlowProbeConfig, reason: u32) -> u8 {
    if reason >= MAX_REASON {
        return oow_why::NONE;
    }
    let (word, bit) = ((reason / 64) as usize % REASON_SET_WORDS, reason % 64);
    let has = |set: &[u64; REASON_SET_WORDS]| unsafe { (core::ptr::read_volatile(&set[word]) >> bit) & 1 == 1 };
    if has(&cfg.timestamp_reasons) {
        oow_why::TIMESTAMP
    } else if has(&cfg.sequence_reasons) {
        oow_why::SEQUENCE
    } else if has(&cfg.ack_reasons) {
        oow_why::ACK
    } else {
        oow_why::NONE
    }
}
