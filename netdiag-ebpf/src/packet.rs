//! Reads a received TCP segment's headers straight from `skb->head`, at the network and
//! transport header offsets the stack recorded. This works for request-socket and TIME_WAIT
//! drops, where `skb->sk` is NULL.
use aya_ebpf::helpers::bpf_probe_read_kernel_buf;
use netdiag_common::{FAMILY_IPV4, FAMILY_IPV6, FIELD_ABSENT, tcp_options};

use crate::access::read;

const TCP_FIXED_HEADER: usize = 20;
/// `skb->{network,transport}_header` when the stack has not set it.
const HEADER_UNSET: u16 = 0xffff;
const PROTO_TCP: u8 = 6;
const IPV6_HEADER: u32 = 40;
/// IPv6 extension headers followed before giving up (counted as unparsed, never guessed).
const MAX_EXTENSION_HEADERS: usize = 8;
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_DEST: u8 = 60;

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
    pub timestamp: Option<(u32, u32)>,
    /// Bytes from the IP header to the end of the TCP header (options included).
    pub headers_len: u16,
    /// The whole packet's length on the wire, from the IP header.
    pub wire_len: u16,
    /// Bytes from the IP header to the TCP header.
    pub transport_offset: u16,
    /// Where the IP header starts in kernel memory.
    pub ip: *const u8,
    /// Where the TCP header starts, and its length with options (for [`read_timestamp`]).
    pub tcp: *const u8,
    pub tcp_len: usize,
}

/// Offsets of the `sk_buff` members the parser needs, from the running kernel's BTF.
pub struct SkbLayout {
    pub head: u32,
    pub network_header: u32,
    pub transport_header: u32,
}

/// Parses the segment held by `skb`. `None` means "not a readable TCP/IP packet": the caller
/// counts it as unparsed rather than guessing a peer.
#[inline(always)]
pub unsafe fn parse(skb: *const u8, layout: &SkbLayout) -> Option<Segment> {
    unsafe { parse_linear(skb, layout, FIELD_ABSENT) }
}

/// As [`parse`], and also `None` when the headers do not all lie in the skb's linear area
/// (`head` up to `skb->tail`, whose offset is `tail_offset`; [`FIELD_ABSENT`]: unchecked).
/// Reading past `tail` would read stale bytes, not the packet's headers, which are in page
/// fragments then.
#[inline(always)]
pub unsafe fn parse_linear(skb: *const u8, layout: &SkbLayout, tail_offset: u32) -> Option<Segment> {
    let mut seg = unsafe { parse_headers(skb, layout, tail_offset)? };
    seg.timestamp = unsafe { read_timestamp(seg.tcp, seg.tcp_len)? };
    Some(seg)
}

/// As [`parse_linear`], without reading the TCP options: `timestamp` stays `None` until
/// [`read_timestamp`]. For callers that need the timestamp only now and then.
#[inline(always)]
pub unsafe fn parse_headers(skb: *const u8, layout: &SkbLayout, tail_offset: u32) -> Option<Segment> {
    let head: *const u8 = unsafe { read(skb, layout.head)? };
    let network: u16 = unsafe { read(skb, layout.network_header)? };
    let transport: u16 = unsafe { read(skb, layout.transport_header)? };
    if head.is_null() || network == HEADER_UNSET || transport == HEADER_UNSET || transport <= network {
        return None;
    }
    let mut seg = Segment {
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
        timestamp: None,
        headers_len: 0,
        wire_len: 0,
        transport_offset: transport - network,
        ip: unsafe { head.add(network as usize) },
        tcp: core::ptr::null(),
        tcp_len: 0,
    };
    let ip = seg.ip;
    let version_byte: u8 = unsafe { read(ip, 0)? };
    // Bytes of IP payload (TCP header + data), from the IP header's own length field.
    let ip_payload: u32 = match version_byte >> 4 {
        4 => {
            let mut hdr = [0u8; 20];
            unsafe { bpf_probe_read_kernel_buf(ip, &mut hdr).ok()? };
            if hdr[9] != PROTO_TCP || ((hdr[0] & 0x0f) as u32) * 4 != (transport - network) as u32 {
                return None;
            }
            // A non-first fragment has no TCP header at the transport offset.
            if u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff != 0 {
                return None;
            }
            seg.family = FAMILY_IPV4;
            seg.saddr[..4].copy_from_slice(&hdr[12..16]);
            seg.daddr[..4].copy_from_slice(&hdr[16..20]);
            let total = u16::from_be_bytes([hdr[2], hdr[3]]) as u32;
            seg.wire_len = total as u16;
            total.saturating_sub((transport - network) as u32)
        }
        6 => {
            let mut hdr = [0u8; 40];
            unsafe { bpf_probe_read_kernel_buf(ip, &mut hdr).ok()? };
            if !unsafe { ipv6_carries_tcp(ip, hdr[6], (transport - network) as u32) } {
                return None;
            }
            seg.family = FAMILY_IPV6;
            seg.saddr.copy_from_slice(&hdr[8..24]);
            seg.daddr.copy_from_slice(&hdr[24..40]);
            let payload = u16::from_be_bytes([hdr[4], hdr[5]]) as u32;
            seg.wire_len = (payload + 40).min(u16::MAX as u32) as u16;
            // Extension headers sit between the fixed header and the transport header.
            payload.saturating_sub((transport - network) as u32 - IPV6_HEADER)
        }
        _ => return None,
    };

    let tcp_start = unsafe { head.add(transport as usize) };
    let mut tcp = [0u8; TCP_FIXED_HEADER];
    unsafe { bpf_probe_read_kernel_buf(tcp_start, &mut tcp).ok()? };
    seg.sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    seg.dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    seg.seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    seg.ack_seq = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    seg.flags = tcp[13];
    seg.window = u16::from_be_bytes([tcp[14], tcp[15]]);
    let header_len = ((tcp[12] >> 4) as u32) * 4;
    if header_len < TCP_FIXED_HEADER as u32 {
        return None;
    }
    if tail_offset != FIELD_ABSENT {
        let tail: u32 = unsafe { read(skb, tail_offset)? };
        if transport as u32 + header_len > tail {
            return None;
        }
    }
    seg.payload_len = ip_payload.saturating_sub(header_len) as u16;
    seg.headers_len = seg.transport_offset.saturating_add(header_len as u16);
    seg.tcp = tcp_start;
    seg.tcp_len = header_len as usize;
    Some(seg)
}

/// The timestamp option (TSval, TSecr) of the TCP header at `tcp_start`, `header_len` bytes
/// long (data offset × 4, at least 20). Outer `None`: the options could not be read.
#[inline(always)]
pub unsafe fn read_timestamp(tcp_start: *const u8, header_len: usize) -> Option<Option<(u32, u32)>> {
    let options_len = header_len.saturating_sub(TCP_FIXED_HEADER);
    if options_len == 0 {
        return Some(None);
    }
    // Fixed-size read; bytes past the options are never looked at.
    let mut options = [0u8; tcp_options::BUFFER];
    unsafe { bpf_probe_read_kernel_buf(tcp_start.add(TCP_FIXED_HEADER), &mut options[..tcp_options::MAX_LEN]).ok()? };
    Some(tcp_options::find_timestamp(&options, options_len))
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
