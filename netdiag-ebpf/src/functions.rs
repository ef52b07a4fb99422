//! Function hooks on the TCP stack: each logical hook has an fentry/fexit program and a
//! kprobe/kretprobe twin with the same logic; userspace loads whichever the running kernel
//! allows. Argument positions follow the kernel prototypes, which userspace checks in BTF first.
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use netdiag_common::{FAMILY_IPV4, FAMILY_IPV6, FunctionProbeConfig, PeerAddrKey, SynKey, stat};

use crate::{
    access::{configured, netns_inode, read},
    flows,
    maps::{DUPACKS_SENT, OOW_PENDING, OOW_SUPPRESSED, OowCall, SYN_SEEN, bump, count},
    packet::{self, SkbLayout},
};

/// Filled in by the loader from the running kernel's BTF.
#[unsafe(no_mangle)]
static FUNCTION_PROBE_CONFIG: FunctionProbeConfig = FunctionProbeConfig {
    skb_head: 0,
    skb_network_header: 0,
    skb_transport_header: 0,
    sk_family: 0,
    sk_daddr: 0,
    sk_v6_daddr: 0,
    sk_net: 0,
    net_ns_inum: 0,
    tw_substate: 0,
    tw_ts_recent: 0,
    tw_ts_recent_stamp: 0,
    net_tcp_timestamps: 0,
    paws_wrap_s: 0,
};

/// `tcp_conn_request(rsk_ops, af_ops, sk, skb)`.
const CONN_REQUEST_SK: usize = 2;
const CONN_REQUEST_SKB: usize = 3;
/// `tcp_send_dupack(sk, skb)`.
const DUPACK_SK: usize = 0;
/// `tcp_oow_rate_limited(net, skb, mib_idx, last_oow_ack_time)`.
const OOW_NET: usize = 0;
const OOW_SKB: usize = 1;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[fentry(function = "tcp_conn_request")]
pub fn conn_request_fentry(ctx: FEntryContext) -> u32 {
    syn_seen(ctx.arg(CONN_REQUEST_SK), ctx.arg(CONN_REQUEST_SKB));
    0
}

#[kprobe]
pub fn conn_request_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(skb)) = (ctx.arg(CONN_REQUEST_SK), ctx.arg(CONN_REQUEST_SKB)) {
        syn_seen(sk, skb);
    }
    0
}

#[fentry(function = "tcp_send_dupack")]
pub fn dupack_sent_fentry(ctx: FEntryContext) -> u32 {
    dupack_sent(ctx.arg(DUPACK_SK));
    0
}

#[kprobe]
pub fn dupack_sent_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg(DUPACK_SK) {
        dupack_sent(sk);
    }
    0
}

#[fexit(function = "tcp_oow_rate_limited")]
pub fn oow_limiter_fexit(ctx: FExitContext) -> u32 {
    // bool: only the low byte of the return register is defined.
    if ctx.ret::<u8>() == Ok(1) {
        oow_suppressed(ctx.arg(OOW_NET), ctx.arg(OOW_SKB));
    }
    0
}

/// A kretprobe sees no arguments, so the entry stashes them for the return.
#[kprobe]
pub fn oow_limiter_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(net), Some(skb)) = (ctx.arg::<u64>(OOW_NET), ctx.arg::<u64>(OOW_SKB)) {
        let _ = OOW_PENDING.insert(&task_key(), &OowCall { net, skb }, BPF_ANY as u64);
    }
    0
}

#[kretprobe]
pub fn oow_limiter_kretprobe(ctx: RetProbeContext) -> u32 {
    let key = task_key();
    if let Some(call) = unsafe { OOW_PENDING.get(&key) } {
        let (net, skb) = (call.net as *const u8, call.skb as *const u8);
        if ctx.ret::<u8>() == 1 {
            oow_suppressed(net, skb);
        }
        let _ = OOW_PENDING.remove(&key);
    }
    0
}

#[inline(always)]
pub fn config() -> &'static FunctionProbeConfig {
    &FUNCTION_PROBE_CONFIG
}

#[inline(always)]
pub fn skb_layout(cfg: &FunctionProbeConfig) -> SkbLayout {
    SkbLayout {
        head: configured(&cfg.skb_head),
        network_header: configured(&cfg.skb_network_header),
        transport_header: configured(&cfg.skb_transport_header),
    }
}

/// The calling task, which stays the same between a function's entry and return even if it
/// migrates. Idle tasks all have pid 0, one per CPU, and softirqs run on top of them, so theirs
/// is told apart by CPU (real pid_tgid values never set the top bit).
#[inline(always)]
fn task_key() -> u64 {
    let id = bpf_get_current_pid_tgid();
    if id == 0 { 1 << 63 | u64::from(unsafe { bpf_get_smp_processor_id() }) } else { id }
}

/// A SYN reached the listener `sk`: count it per source address, namespace and port.
#[inline(always)]
fn syn_seen(sk: *const u8, skb: *const u8) {
    let cfg = config();
    let Some(seg) = (unsafe { packet::parse(skb, &skb_layout(cfg)) }) else {
        bump(stat::HOOK_UNPARSED);
        return;
    };
    let net: *const u8 = unsafe { read(sk, configured(&cfg.sk_net)).unwrap_or(core::ptr::null()) };
    let key = SynKey {
        addr: seg.saddr,
        netns: netns_inode(net, configured(&cfg.net_ns_inum)),
        port: seg.dport,
        family: seg.family,
        _pad: 0,
    };
    count(&SYN_SEEN, &key, unsafe { bpf_ktime_get_ns() });
}

/// The connection `sk` sent a duplicate ACK: count it per remote address and namespace.
#[inline(always)]
fn dupack_sent(sk: *const u8) {
    let cfg = config();
    let Some((family, addr)) = socket_peer(cfg, sk) else {
        bump(stat::HOOK_UNPARSED);
        return;
    };
    let net: *const u8 = unsafe { read(sk, configured(&cfg.sk_net)).unwrap_or(core::ptr::null()) };
    let key = PeerAddrKey {
        addr,
        netns: netns_inode(net, configured(&cfg.net_ns_inum)),
        family,
        _pad: [0; 3],
    };
    count(&DUPACKS_SENT, &key, unsafe { bpf_ktime_get_ns() });
}

/// The rate limiter kept the stack from answering the out-of-window segment `skb`.
#[inline(always)]
fn oow_suppressed(net: *const u8, skb: *const u8) {
    let cfg = config();
    let Some(seg) = (unsafe { packet::parse(skb, &skb_layout(cfg)) }) else {
        bump(stat::HOOK_UNPARSED);
        return;
    };
    let netns = netns_inode(net, configured(&cfg.net_ns_inum));
    let key = PeerAddrKey { addr: seg.saddr, netns, family: seg.family, _pad: [0; 3] };
    count(&OOW_SUPPRESSED, &key, unsafe { bpf_ktime_get_ns() });
    flows::limiter_suppressed(&seg, netns);
}

/// Remote address of a socket. IPv4-mapped IPv6 peers are folded to IPv4, so a peer has the
/// same key whether it came from a socket or a parsed packet.
#[inline(always)]
fn socket_peer(cfg: &FunctionProbeConfig, sk: *const u8) -> Option<(u8, [u8; 16])> {
    let mut addr = [0u8; 16];
    match unsafe { read::<u16>(sk, configured(&cfg.sk_family))? } {
        AF_INET => {
            let v4: [u8; 4] = unsafe { read(sk, configured(&cfg.sk_daddr))? };
            addr[..4].copy_from_slice(&v4);
            Some((FAMILY_IPV4, addr))
        }
        AF_INET6 => {
            let v6: [u8; 16] = unsafe { read(sk, configured(&cfg.sk_v6_daddr))? };
            if v6[..10] == [0; 10] && v6[10] == 0xff && v6[11] == 0xff {
                addr[..4].copy_from_slice(&v6[12..]);
                return Some((FAMILY_IPV4, addr));
            }
            Some((FAMILY_IPV6, v6))
        }
        _ => None,
    }
}
