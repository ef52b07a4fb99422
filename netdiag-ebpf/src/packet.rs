//! Reads a received TCP segment's headers straight from `skb->head`, at the network and
//! transport header offsets the stack recorded. This works for request-socket and TIME_WAIT
//! drops, where `skb->sk` is NULL.
use aya_ebpf::helpers::bpf_probe_read_kernel_buf;
use netdiag_common::{FAMILY_IPV4, FAMILY_IPV6};

use crate::access::read;

const TCP_FIXED_HEADER: usize = 20;
/// Room for 40 option bytes plus a whole timestamp option starting at the last one.
const OPTIONS_BUF: usize = 64;
const TCP_OPT_BYTES: usize = 40;
const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_TIMESTAMP: u8 = 8;
const TCPOLEN_TIMESTAMP: usize = 10;
/// `skb->{network,transport}_header` when the stack has not set it.
const HEADER_UNSET: u16 = 0xffff;

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
    };
    let ip = unsafe { head.add(network as usize) };
    let version_byte: u8 = unsafe { read(ip, 0)? };
    // Bytes of IP payload (TCP header + data), from the IP header's own length field.
    let ip_payload: u32 = match version_byte >> 4 {
        4 => {
            let mut hdr = [0u8; 20];
            unsafe { bpf_probe_read_kernel_buf(ip, &mut hdr).ok()? };
            if hdr[9] != 6 {
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
            total.saturating_sub((transport - network) as u32)
        }
        6 => {
            let mut hdr = [0u8; 40];
            unsafe { bpf_probe_read_kernel_buf(ip, &mut hdr).ok()? };
            seg.family = FAMILY_IPV6;
            seg.saddr.copy_from_slice(&hdr[8..24]);
            seg.daddr.copy_from_slice(&hdr[24..40]);
            let payload = u16::from_be_bytes([hdr[4], hdr[5]]) as u32;
            // Extension headers sit between the fixed header and the transport header.
            payload.saturating_sub((transport - network) as u32 - 40)
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
    seg.payload_len = ip_payload.saturating_sub(header_len) as u16;
    let options_len = (header_len as usize) - TCP_FIXED_HEADER;
    if options_len > 0 {
        // Fixed-size read; bytes past the options are never looked at.
        let mut options = [0u8; OPTIONS_BUF];
        unsafe { bpf_probe_read_kernel_buf(tcp_start.add(TCP_FIXED_HEADER), &mut options[..TCP_OPT_BYTES]).ok()? };
        seg.timestamp = find_timestamp(&options, options_len);
    }
    Some(seg)
}

/// Bounded walk of the TCP options (at most 40 bytes) for the timestamp option. The loop
/// visits every byte position once, so each index is the loop counter itself, which the
/// verifier knows exactly; `next` marks where the next option starts.
#[inline(always)]
fn find_timestamp(options: &[u8; OPTIONS_BUF], options_len: usize) -> Option<(u32, u32)> {
    let mut next = 0usize;
    for i in 0..TCP_OPT_BYTES {
        if i >= options_len {
            break;
        }
        if i != next {
            continue;
        }
        let kind = options[i];
        if kind == TCPOPT_EOL {
            break;
        }
        if kind == TCPOPT_NOP {
            next = i + 1;
            continue;
        }
        let len = options[i + 1] as usize;
        if len < 2 || i + len > options_len {
            break;
        }
        if kind == TCPOPT_TIMESTAMP && len == TCPOLEN_TIMESTAMP {
            let b = &options[i + 2..i + 10];
            return Some((u32::from_be_bytes([b[0], b[1], b[2], b[3]]), u32::from_be_bytes([b[4], b[5], b[6], b[7]])));
        }
        next = i + len;
    }
    None
}
