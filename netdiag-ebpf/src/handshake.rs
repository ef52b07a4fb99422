//! The SYN funnel from tracepoints, for kernels where `tcp_conn_request` cannot be hooked:
//! SYNs as they arrive (`net:netif_receive_skb`), SYN-ACKs as they leave (`net:net_dev_queue`),
//! SYN-ACK retransmissions (`tcp:tcp_retransmit_synack`) and completed passive handshakes
//! (`sock:inet_sock_set_state` SYN_RECV → ESTABLISHED), counted per peer, namespace and local
//! port in one map. Drops with their reasons come from the `kfree_skb` program. Each SYN's
//! TSval also goes to userspace (rate-limited, `syn_arrivals`, attached on every kernel), where
//! timestamp clocks are told apart.
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel_buf},
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, LruPerCpuHashMap, PerCpuArray},
    programs::{RawTracePointContext, TracePointContext},
};
use netdiag_common::{
    EVENT_SYN, FAMILY_IPV4, FAMILY_IPV6, FunnelKey, HandshakeProbeConfig, PeerStats, SynEvent,
    funnel_stage, stat, tcp_flag,
};

use crate::{
    access::{self, configured, read},
    maps::{EVENTS, bump, count},
    packet,
};

/// Filled in by the loader from the running kernel's BTF and tracepoint formats.
#[unsafe(no_mangle)]
static HANDSHAKE_PROBE_CONFIG: HandshakeProbeConfig = HandshakeProbeConfig {
    rx_skbaddr: 0,
    tx_skbaddr: 0,
    skb_head: 0,
    skb_data: 0,
    skb_network_header: 0,
    skb_transport_header: 0,
    skb_dev: 0,
    dev_nd_net: 0,
    net_ns_inum: 0,
    sk_net: 0,
    rs_skaddr: 0,
    rs_sport: 0,
    rs_family: 0,
    rs_daddr: 0,
    rs_daddr_v6: 0,
    ss_skaddr: 0,
    ss_oldstate: 0,
    ss_newstate: 0,
    ss_sport: 0,
    ss_family: 0,
    ss_protocol: 0,
    ss_daddr: 0,
    ss_daddr_v6: 0,
    syn_samples_per_s: 0,
    only_netns: 0,
};

/// SYN funnel counters, one entry per peer, namespace, local port and stage.
#[map]
pub static SYN_FUNNEL: LruPerCpuHashMap<FunnelKey, PeerStats> =
    LruPerCpuHashMap::with_max_entries(16384, 0);

/// Per CPU: start of the current one-second window and samples sent in it.
#[map]
static SYN_SAMPLE_BUDGET: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

const IPPROTO_TCP: u8 = 6;
const IPV4_MIN_HEADER: u8 = 20;
const IPV6_HEADER: usize = 40;
const TCP_FIXED_HEADER: usize = 20;
/// `skb->{network,transport}_header` when the stack has not set it.
const HEADER_UNSET: u16 = 0xffff;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_RECV: i32 = 3;
const NS_PER_S: u64 = 1_000_000_000;

#[inline(always)]
fn config() -> &'static HandshakeProbeConfig {
    &HANDSHAKE_PROBE_CONFIG
}

/// The TCP/IP headers the funnel needs.
struct Headers {
    family: u8,
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: u16,
    dport: u16,
    flags: u8,
    /// Start of the TCP header and its length in bytes.
    tcp: *const u8,
    tcp_len: usize,
}

/// Reads the IP header at `ip` and the TCP header after it: at `transport` when the stack has
/// set it, else right after the IP header (IPv4 options counted; IPv6 only without extension
/// headers). `None` for anything that is not a first-fragment TCP packet.
#[inline(always)]
unsafe fn tcp_headers(ip: *const u8, transport: Option<*const u8>) -> Option<Headers> {
    let version: u8 = unsafe { read(ip, 0)? };
    let mut h = Headers {
        family: 0,
        saddr: [0; 16],
        daddr: [0; 16],
        sport: 0,
        dport: 0,
        flags: 0,
        tcp: core::ptr::null(),
        tcp_len: 0,
    };
    match version >> 4 {
        4 => {
            let mut hdr = [0u8; 20];
            unsafe { bpf_probe_read_kernel_buf(ip, &mut hdr).ok()? };
            let ihl = (hdr[0] & 0x0f) * 4;
            if hdr[9] != IPPROTO_TCP || ihl < IPV4_MIN_HEADER || u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff != 0 {
                return None;
            }
            h.family = FAMILY_IPV4;
            h.saddr[..4].copy_from_slice(&hdr[12..16]);
            h.daddr[..4].copy_from_slice(&hdr[16..20]);
            h.tcp = transport.unwrap_or(unsafe { ip.add(ihl as usize) });
        }
        6 => {
            let mut hdr = [0u8; IPV6_HEADER];
            unsafe { bpf_probe_read_kernel_buf(ip, &mut hdr).ok()? };
            h.tcp = match transport {
                Some(tcp) => tcp,
                None if hdr[6] == IPPROTO_TCP => unsafe { ip.add(IPV6_HEADER) },
                None => return None,
            };
            h.family = FAMILY_IPV6;
            h.saddr.copy_from_slice(&hdr[8..24]);
            h.daddr.copy_from_slice(&hdr[24..40]);
        }
        _ => return None,
    }
    let mut tcp = [0u8; TCP_FIXED_HEADER];
    unsafe { bpf_probe_read_kernel_buf(h.tcp, &mut tcp).ok()? };
    h.sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    h.dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    h.flags = tcp[13];
    h.tcp_len = ((tcp[12] >> 4) as usize) * 4;
    Some(h)
}

/// Namespace of the device an skb is on.
/// Whether the configuration watches namespace `netns`.
#[inline(always)]
fn watched(cfg: &HandshakeProbeConfig, netns: u32) -> bool {
    let only = configured(&cfg.only_netns);
    only == 0 || only == netns
}

#[inline(always)]
fn device_netns(cfg: &HandshakeProbeConfig, skb: *const u8) -> u32 {
    let dev: *const u8 = unsafe { read(skb, configured(&cfg.skb_dev)).unwrap_or(core::ptr::null()) };
    if dev.is_null() {
        return 0;
    }
    let net: *const u8 = unsafe { read(dev, configured(&cfg.dev_nd_net)).unwrap_or(core::ptr::null()) };
    access::netns_inode(net, configured(&cfg.net_ns_inum))
}

#[inline(always)]
fn socket_netns(cfg: &HandshakeProbeConfig, sk: *const u8) -> u32 {
    if sk.is_null() {
        return 0;
    }
    let net: *const u8 = unsafe { read(sk, configured(&cfg.sk_net)).unwrap_or(core::ptr::null()) };
    access::netns_inode(net, configured(&cfg.net_ns_inum))
}

/// A SYN (no ACK, no RST) as it arrives, with its namespace. The network header starts at
/// `skb->data` at this tracepoint (the link layer header is pulled), while
/// `network_header`/`transport_header` may still be unset, so the TCP header is found from the
/// IP header's own length.
#[inline(always)]
fn arriving_syn(skb: *const u8, cfg: &HandshakeProbeConfig) -> Option<(Headers, u32)> {
    let data: *const u8 = unsafe { read(skb, configured(&cfg.skb_data))? };
    if data.is_null() {
        return None;
    }
    let h = unsafe { tcp_headers(data, None)? };
    if h.flags & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST) != tcp_flag::SYN {
        return None;
    }
    let netns = device_netns(cfg, skb);
    watched(cfg, netns).then_some((h, netns))
}

/// The `skbaddr` of a `net:netif_receive_skb` or `net:net_dev_queue` record.
#[inline(always)]
fn record_skb(ctx: &TracePointContext, offset: &u32) -> *const u8 {
    unsafe { ctx.read_at(configured(offset) as usize).unwrap_or(core::ptr::null()) }
}

/// Every SYN as it arrives, parsed once for two hooks: its TSval to userspace (rate-limited,
/// `syn_timestamps`, on every kernel), and a count in the SYN funnel while this program also
/// serves `conn_request` (no function hook there). The raw tracepoint is called with
/// `netif_receive_skb(skb)` directly, with no record to build.
#[raw_tracepoint(tracepoint = "netif_receive_skb")]
pub fn syn_arrivals_raw(ctx: RawTracePointContext) -> u32 {
    let _ = syn_arrived(ctx.arg(0));
    0
}

#[tracepoint]
pub fn syn_arrivals(ctx: TracePointContext) -> u32 {
    let _ = syn_arrived(record_skb(&ctx, &config().rx_skbaddr));
    0
}

/// Entry 0: 1 while `syn_arrivals` serves `conn_request`, set by userspace once every hook is
/// served; 0 where a function hook counts SYNs at the listener.
#[map]
static SYN_ARRIVALS_COUNTED: Array<u32> = Array::with_max_entries(1, 0);

#[inline(always)]
fn syn_arrived(skb: *const u8) -> Option<()> {
    let cfg = config();
    let (h, netns) = arriving_syn(skb, cfg)?;
    let now = unsafe { bpf_ktime_get_ns() };
    send_sample(cfg, &h, netns, now);
    // After the sample: a branch taken before its option loop would double the states the
    // verifier walks through it.
    if SYN_ARRIVALS_COUNTED.get(0).is_some_and(|on| *on != 0) {
        let key = FunnelKey { addr: h.saddr, netns, port: h.dport, family: h.family, stage: funnel_stage::SYN_IN };
        count(&SYN_FUNNEL, &key, now);
    }
    Some(())
}

/// The SYN's TSval to userspace, within the per-CPU budget.
#[inline(always)]
fn send_sample(cfg: &HandshakeProbeConfig, h: &Headers, netns: u32, now: u64) {
    if !sample_allowed(cfg, now) {
        bump(stat::SYN_SAMPLES_SKIPPED);
        return;
    }
    let Some(timestamp) = (unsafe { packet::read_timestamp(h.tcp, h.tcp_len) }) else {
        bump(stat::HANDSHAKE_UNPARSED);
        return;
    };
    match EVENTS.reserve::<SynEvent>(0) {
        Some(mut entry) => {
            entry.write(SynEvent {
                ts_ns: now,
                saddr: h.saddr,
                daddr: h.daddr,
                netns,
                tsval: timestamp.map_or(0, |t| t.0),
                sport: h.sport,
                dport: h.dport,
                kind: EVENT_SYN,
                family: h.family,
                has_timestamp: timestamp.is_some() as u8,
                _pad: 0,
            });
            entry.submit(0);
        }
        None => bump(stat::RING_LOST),
    }
}

/// A per-CPU budget of samples per second, so a SYN flood cannot fill the ring buffer the
/// drop samples share. The funnel counts stay exact regardless.
#[inline(always)]
fn sample_allowed(cfg: &HandshakeProbeConfig, now: u64) -> bool {
    let (Some(window), Some(used)) = (SYN_SAMPLE_BUDGET.get_ptr_mut(0), SYN_SAMPLE_BUDGET.get_ptr_mut(1)) else {
        return false;
    };
    unsafe {
        if now.wrapping_sub(*window) >= NS_PER_S {
            *window = now;
            *used = 0;
        }
        if *used >= configured(&cfg.syn_samples_per_s) as u64 {
            return false;
        }
        *used += 1;
    }
    true
}

/// Egress: the stack has set the network and transport headers of what it sends.
#[raw_tracepoint(tracepoint = "net_dev_queue")]
pub fn synack_sent_raw(ctx: RawTracePointContext) -> u32 {
    let _ = synack_sent_at(ctx.arg(0));
    0
}

#[tracepoint]
pub fn synack_sent(ctx: TracePointContext) -> u32 {
    let _ = synack_sent_at(record_skb(&ctx, &config().tx_skbaddr));
    0
}

#[inline(always)]
fn synack_sent_at(skb: *const u8) -> Option<()> {
    let cfg = config();
    let head: *const u8 = unsafe { read(skb, configured(&cfg.skb_head))? };
    let network: u16 = unsafe { read(skb, configured(&cfg.skb_network_header))? };
    let transport: u16 = unsafe { read(skb, configured(&cfg.skb_transport_header))? };
    if head.is_null() || network == HEADER_UNSET || transport == HEADER_UNSET || transport <= network {
        return None;
    }
    let h = unsafe { tcp_headers(head.add(network as usize), Some(head.add(transport as usize)))? };
    if h.flags & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST) != tcp_flag::SYN | tcp_flag::ACK {
        return None;
    }
    let netns = device_netns(cfg, skb);
    if !watched(cfg, netns) {
        return None;
    }
    let key = FunnelKey {
        addr: h.daddr,
        netns,
        port: h.sport,
        family: h.family,
        stage: funnel_stage::SYNACK_OUT,
    };
    count(&SYN_FUNNEL, &key, unsafe { bpf_ktime_get_ns() });
    Some(())
}

#[tracepoint]
pub fn synack_retransmitted(ctx: TracePointContext) -> u32 {
    let cfg = config();
    let peer = unsafe {
        record_peer(&ctx, configured(&cfg.rs_family), configured(&cfg.rs_daddr), configured(&cfg.rs_daddr_v6))
    };
    let (Some((family, addr)), Ok(port), Ok(sk)) = (
        peer,
        unsafe { ctx.read_at::<u16>(configured(&cfg.rs_sport) as usize) },
        unsafe { ctx.read_at::<*const u8>(configured(&cfg.rs_skaddr) as usize) },
    ) else {
        bump(stat::HANDSHAKE_UNPARSED);
        return 0;
    };
    let netns = socket_netns(cfg, sk);
    if !watched(cfg, netns) {
        return 0;
    }
    let key = FunnelKey { addr, netns, port, family, stage: funnel_stage::SYNACK_RETRANSMIT };
    count(&SYN_FUNNEL, &key, unsafe { bpf_ktime_get_ns() });
    0
}

#[tracepoint]
pub fn handshake_done(ctx: TracePointContext) -> u32 {
    let _ = try_handshake_done(&ctx);
    0
}

fn try_handshake_done(ctx: &TracePointContext) -> Option<()> {
    let cfg = config();
    let old: i32 = unsafe { ctx.read_at(configured(&cfg.ss_oldstate) as usize).ok()? };
    let new: i32 = unsafe { ctx.read_at(configured(&cfg.ss_newstate) as usize).ok()? };
    let protocol: u16 = unsafe { ctx.read_at(configured(&cfg.ss_protocol) as usize).ok()? };
    if old != TCP_SYN_RECV || new != TCP_ESTABLISHED || protocol != IPPROTO_TCP as u16 {
        return None;
    }
    let peer = unsafe {
        record_peer(ctx, configured(&cfg.ss_family), configured(&cfg.ss_daddr), configured(&cfg.ss_daddr_v6))
    };
    let (Some((family, addr)), Ok(port), Ok(sk)) = (
        peer,
        unsafe { ctx.read_at::<u16>(configured(&cfg.ss_sport) as usize) },
        unsafe { ctx.read_at::<*const u8>(configured(&cfg.ss_skaddr) as usize) },
    ) else {
        bump(stat::HANDSHAKE_UNPARSED);
        return None;
    };
    let netns = socket_netns(cfg, sk);
    if !watched(cfg, netns) {
        return None;
    }
    let key = FunnelKey { addr, netns, port, family, stage: funnel_stage::HANDSHAKE_DONE };
    count(&SYN_FUNNEL, &key, unsafe { bpf_ktime_get_ns() });
    Some(())
}

/// The remote address of a TCP tracepoint record (`family`, `daddr`, `daddr_v6` fields).
/// IPv4-mapped IPv6 peers are folded to IPv4, as the packet parsers see them.
#[inline(always)]
unsafe fn record_peer(ctx: &TracePointContext, family_off: u32, v4_off: u32, v6_off: u32) -> Option<(u8, [u8; 16])> {
    let mut addr = [0u8; 16];
    match unsafe { ctx.read_at::<u16>(family_off as usize).ok()? } {
        AF_INET => {
            let v4: [u8; 4] = unsafe { ctx.read_at(v4_off as usize).ok()? };
            addr[..4].copy_from_slice(&v4);
            Some((FAMILY_IPV4, addr))
        }
        AF_INET6 => {
            let v6: [u8; 16] = unsafe { ctx.read_at(v6_off as usize).ok()? };
            if v6[..10] == [0; 10] && v6[10] == 0xff && v6[11] == 0xff {
                addr[..4].copy_from_slice(&v6[12..]);
                return Some((FAMILY_IPV4, addr));
            }
            Some((FAMILY_IPV6, v6))
        }
        _ => None,
    }
}
