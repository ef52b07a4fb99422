//! The one packet parser: the IP and TCP headers of a segment in kernel memory, from the IP
//! header on. Every program parses with it, through the packet context (`context.rs`), once.
use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_probe_read_kernel_buf, generated::bpf_loop};
use netdiag_common::{FAMILY_IPV4, FAMILY_IPV6, tcp_options};

use crate::kmem::read;

const TCP_FIXED_HEADER: usize = 20;
const PROTO_TCP: u8 = 6;
const IPV4_MIN_HEADER: u32 = 20;
const IPV6_HEADER: u32 = 40;
/// IPv6 extension headers followed before giving up (counted as unparsed, never guessed).
const MAX_EXTENSION_HEADERS: usize = 8;
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_DEST: u8 = 60;

#[derive(Clone, Copy)]
pub struct Segment {
    pub family: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack_seq: u32,
    pub flags: u8,
    pub window: u16,
    pub payload_len: u16,
    /// Bytes from the IP header to the end of the TCP header (options included).
    pub headers_len: u16,
    /// The whole packet's length on the wire, from the IP header.
    pub wire_len: u16,
    /// Bytes from the IP header to the TCP header.
    pub transport_offset: u16,
    /// Where the IP header starts in kernel memory.
    pub ip: *const u8,
    /// Where the TCP header starts, and its length with options.
    pub tcp: *const u8,
    pub tcp_len: usize,
}

impl Segment {
    pub const EMPTY: Segment = Segment {
        family: 0,
        saddr: [0; 16],
        daddr: [0; 16],
        sport: 0,
        dport: 0,
        seq: 0,
        ack_seq: 0,
        flags: 0,
        window: 0,
        payload_len: 0,
        headers_len: 0,
        wire_len: 0,
        transport_offset: 0,
        ip: core::ptr::null(),
        tcp: core::ptr::null(),
        tcp_len: 0,
    };
}

/// Parses the TCP/IP segment whose IP header is at `ip`. `transport_offset`: where the stack
/// recorded the TCP header (from `ip`), which must agree with the IP headers; `None` where it
/// has not (on receive, before the stack looked): right after the IP header, IPv6 only without
/// extension headers. `linear`: bytes from `ip` that are the packet's own (up to `skb->tail`),
/// `u32::MAX` if unknown: reading past them would read stale bytes, not the headers.
/// `None` means "not a readable first-fragment TCP/IP packet": the caller counts it as
/// unparsed rather than guessing a peer. Fills `seg` in place: an `Option<Segment>` would be
/// written with undefined bytes, which the verifier refuses to read from a register.
#[inline(always)]
pub unsafe fn parse(seg: &mut Segment, ip: *const u8, transport_offset: Option<u32>, linear: u32) -> Option<()> {
    let version_byte: u8 = unsafe { read(ip, 0)? };
    seg.ip = ip;
    // Bytes of IP payload (TCP header + data), from the IP header's own length field, and
    // where the TCP header starts.
    let (ip_payload, offset): (u32, u32) = match version_byte >> 4 {
        4 => {
            let mut hdr = [0u8; 20];
            unsafe { bpf_probe_read_kernel_buf(ip, &mut hdr).ok()? };
            let ihl = ((hdr[0] & 0x0f) as u32) * 4;
            // A non-first fragment has no TCP header after the IP header.
            if hdr[9] != PROTO_TCP || ihl < IPV4_MIN_HEADER || u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff != 0 {
                return None;
            }
            if transport_offset.is_some_and(|t| t != ihl) {
                return None;
            }
            seg.family = FAMILY_IPV4;
            seg.saddr[..4].copy_from_slice(&hdr[12..16]);
            seg.daddr[..4].copy_from_slice(&hdr[16..20]);
            let total = u16::from_be_bytes([hdr[2], hdr[3]]) as u32;
            seg.wire_len = total as u16;
            (total.saturating_sub(ihl), ihl)
        }
        6 => {
            let mut hdr = [0u8; 40];
            unsafe { bpf_probe_read_kernel_buf(ip, &mut hdr).ok()? };
            let offset = match transport_offset {
                Some(t) if unsafe { ipv6_carries_tcp(ip, hdr[6], t) } => t,
                None if hdr[6] == PROTO_TCP => IPV6_HEADER,
                _ => return None,
            };
            seg.family = FAMILY_IPV6;
            seg.saddr.copy_from_slice(&hdr[8..24]);
            seg.daddr.copy_from_slice(&hdr[24..40]);
            let payload = u16::from_be_bytes([hdr[4], hdr[5]]) as u32;
            seg.wire_len = (payload + IPV6_HEADER).min(u16::MAX as u32) as u16;
            // Extension headers sit between the fixed header and the transport header.
            (payload.saturating_sub(offset - IPV6_HEADER), offset)
        }
        _ => return None,
    };

    let tcp_start = unsafe { ip.add(offset as usize) };
    let mut tcp = [0u8; TCP_FIXED_HEADER];
    unsafe { bpf_probe_read_kernel_buf(tcp_start, &mut tcp).ok()? };
    let header_len = ((tcp[12] >> 4) as u32) * 4;
    if header_len < TCP_FIXED_HEADER as u32 || offset + header_len > linear {
        return None;
    }
    seg.sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    seg.dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    seg.seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    seg.ack_seq = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    seg.flags = tcp[13];
    seg.window = u16::from_be_bytes([tcp[14], tcp[15]]);
    seg.payload_len = ip_payload.saturating_sub(header_len) as u16;
    seg.transport_offset = offset as u16;
    seg.headers_len = (offset + header_len) as u16;
    seg.tcp = tcp_start;
    seg.tcp_len = header_len as usize;
    Some(())
}

/// The timestamp option (TSval, TSecr) of `seg`. Outer `None`: the options could not be read.
/// The aligned form Linux sends on all but SYNs is taken without walking the options; the walk
/// runs its steps under `bpf_loop`, so the verifier checks one step, not every path through
/// forty of them (which made this walk most of netdiag's start-up).
#[inline(always)]
pub unsafe fn read_timestamp(seg: &Segment) -> Option<Option<(u32, u32)>> {
    let options_len = seg.tcp_len.saturating_sub(TCP_FIXED_HEADER);
    if options_len == 0 {
        return Some(None);
    }
    let mut walk = tcp_options::Walk::new([0u8; tcp_options::BUFFER], options_len);
    // Fixed-size read; bytes past the options are never looked at.
    unsafe {
        bpf_probe_read_kernel_buf(seg.tcp.add(TCP_FIXED_HEADER), &mut walk.options[..tcp_options::MAX_LEN]).ok()?
    };
    if options_len >= tcp_options::ALIGNED_LEN {
        let mut first = [0u8; tcp_options::ALIGNED_LEN];
        first.copy_from_slice(&walk.options[..tcp_options::ALIGNED_LEN]);
        if let Some(timestamp) = tcp_options::aligned_timestamp(&first) {
            return Some(Some(timestamp));
        }
    }
    let callback = walk_step as *const ();
    unsafe {
        bpf_loop(tcp_options::MAX_LEN as u32, callback as *mut c_void, &mut walk as *mut _ as *mut c_void, 0)
    };
    Some(walk.timestamp())
}

/// The `bpf_loop` callback: one step of the walk in `ctx`; 1 ends the loop.
#[inline(never)]
extern "C" fn walk_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the walk `read_timestamp` handed to `bpf_loop`, on its stack.
    let walk = unsafe { &mut *(ctx as *mut tcp_options::Walk) };
    if tcp_options::step(walk) { 0 } else { 1 }
}

/// Follows the IPv6 extension headers from the fixed header: the packet is TCP only if the
/// chain reaches the transport header the stack recorded with TCP as the next header. Only the
/// headers measured in 8-byte units are followed (hop-by-hop, routing, destination options,
/// and the fragment header of a first fragment); anything else (AH, ESP, a later fragment)
/// makes the packet unparsed. One path through each step keeps the verifier's work linear.
#[inline(always)]
unsafe fn ipv6_carries_tcp(ip: *const u8, first: u8, transport_offset: u32) -> bool {
    let mut next = first;
    let mut offset = IPV6_HEADER;
    for _ in 0..MAX_EXTENSION_HEADERS {
        if offset >= transport_offset {
            break;
        }
        let Some(ext) = (unsafe { read::<[u8; 4]>(ip, offset) }) else { return false };
        let first_fragment = next == NEXTHDR_FRAGMENT && u16::from_be_bytes([ext[2], ext[3]]) & 0xfff8 == 0;
        if !(next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST || first_fragment) {
            return false;
        }
        // The fragment header's length byte is reserved (zero): 8 bytes, as the formula gives.
        offset += (ext[1] as u32 + 1) * 8;
        next = ext[0];
    }
    offset == transport_offset && next == PROTO_TCP
}
