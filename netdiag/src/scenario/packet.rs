//! Raw TCP/IP packets: building the segments the scenarios inject, parsing the ones they sniff.
//!
//! Only what the scenarios need: TCP with the MSS and timestamp options; for the hostile shapes
//! (`Shape`), IPv4 options, IPv6 extension headers, raw TCP option bytes and IP fragments.
use std::net::{IpAddr, SocketAddr};

use anyhow::{Result, bail, ensure};

pub use netdiag_common::tcp_flag::{ACK, FIN, PSH, RST, SYN};

const PROTO_TCP: u8 = 6;
const TTL: u8 = 64;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const TCP_HEADER_LEN: usize = 20;

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_TIMESTAMP: u8 = 8;

/// The RFC 7323 timestamp option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
    pub val: u32,
    pub ecr: u32,
}

/// One TCP segment with its addresses; the IP header is derived from `src`/`dst`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub mss: Option<u16>,
    pub timestamp: Option<Timestamp>,
    pub payload: Vec<u8>,
}

impl Segment {
    /// True if every flag in `flags` is set.
    pub fn has(&self, flags: u8) -> bool {
        self.flags & flags == flags
    }

    /// The full IP packet (header, TCP header with options, payload), checksums filled in.
    pub fn to_ip_packet(&self) -> Result<Vec<u8>> {
        self.to_shaped_packet(&Shape::default())
    }

    /// The full IP packet with the odd parts of `shape`, checksums filled in.
    pub fn to_shaped_packet(&self, shape: &Shape) -> Result<Vec<u8>> {
        ensure!(
            shape.tcp_options.as_ref().is_none_or(|o| o.len().is_multiple_of(4) && o.len() <= 40),
            "raw TCP options must be a multiple of 4 bytes, at most 40"
        );
        let mut tcp = self.tcp_bytes(shape.tcp_options.as_deref());
        let (ip_header, pseudo) = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let pseudo = [
                    &src.octets()[..],
                    &dst.octets(),
                    &[0, PROTO_TCP],
                    &(tcp.len() as u16).to_be_bytes(),
                ]
                .concat();
                ensure!(shape.ipv6_extensions.is_empty(), "IPv6 extension headers on an IPv4 packet");
                (ipv4_header(src.octets(), dst.octets(), &shape.ipv4_options, tcp.len())?, pseudo)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let pseudo = [
                    &src.octets()[..],
                    &dst.octets(),
                    &(tcp.len() as u32).to_be_bytes(),
                    &[0, 0, 0, PROTO_TCP],
                ]
                .concat();
                ensure!(shape.ipv4_options.is_empty(), "IPv4 options on an IPv6 packet");
                (ipv6_header(src.octets(), dst.octets(), &shape.ipv6_extensions, tcp.len())?, pseudo)
            }
            _ => bail!("{} and {} are of different IP families", self.src, self.dst),
        };
        let sum = checksum(&[pseudo, tcp.clone()].concat());
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        Ok([ip_header, tcp].concat())
    }

    /// Parses an IP packet carrying TCP; None for anything else or anything truncated.
    pub fn parse(packet: &[u8]) -> Option<Segment> {
        let (src, dst, tcp) = match packet.first()? >> 4 {
            4 => {
                let header_len = usize::from(packet[0] & 0x0f) * 4;
                let total_len = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
                if *packet.get(9)? != PROTO_TCP || header_len < IPV4_HEADER_LEN {
                    return None;
                }
                let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
                let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
                (IpAddr::from(src), IpAddr::from(dst), packet.get(header_len..total_len)?)
            }
            6 => {
                let payload_len =
                    usize::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]));
                if *packet.get(6)? != PROTO_TCP {
                    return None;
                }
                let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
                let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
                (
                    IpAddr::from(src),
                    IpAddr::from(dst),
                    packet.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload_len)?,
                )
            }
            _ => return None,
        };
        parse_tcp(src, dst, tcp)
    }

    fn tcp_bytes(&self, raw_options: Option<&[u8]>) -> Vec<u8> {
        let options = raw_options.map_or_else(|| self.option_bytes(), <[u8]>::to_vec);
        let header_len = TCP_HEADER_LEN + options.len();
        let mut tcp = Vec::with_capacity(header_len + self.payload.len());
        tcp.extend_from_slice(&self.src.port().to_be_bytes());
        tcp.extend_from_slice(&self.dst.port().to_be_bytes());
        tcp.extend_from_slice(&self.seq.to_be_bytes());
        tcp.extend_from_slice(&self.ack.to_be_bytes());
        tcp.push(((header_len / 4) as u8) << 4);
        tcp.push(self.flags);
        tcp.extend_from_slice(&self.window.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend_from_slice(&options);
        tcp.extend_from_slice(&self.payload);
        tcp
    }

    /// MSS first, then two NOPs and the timestamp, as Linux lays them out (4-byte aligned).
    fn option_bytes(&self) -> Vec<u8> {
        let mut options = Vec::new();
        if let Some(mss) = self.mss {
            options.extend_from_slice(&[OPT_MSS, 4]);
            options.extend_from_slice(&mss.to_be_bytes());
        }
        if let Some(ts) = self.timestamp {
            options.extend_from_slice(&[OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10]);
            options.extend_from_slice(&ts.val.to_be_bytes());
            options.extend_from_slice(&ts.ecr.to_be_bytes());
        }
        options
    }
}

fn parse_tcp(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> Option<Segment> {
    let word = |at: usize| Some(u32::from_be_bytes(tcp.get(at..at + 4)?.try_into().ok()?));
    let half = |at: usize| Some(u16::from_be_bytes(tcp.get(at..at + 2)?.try_into().ok()?));
    let header_len = usize::from(*tcp.get(12)? >> 4) * 4;
    if header_len < TCP_HEADER_LEN {
        return None;
    }
    let (mss, timestamp) = parse_options(tcp.get(TCP_HEADER_LEN..header_len)?);
    Some(Segment {
        src: SocketAddr::new(src, half(0)?),
        dst: SocketAddr::new(dst, half(2)?),
        seq: word(4)?,
        ack: word(8)?,
        flags: *tcp.get(13)?,
        window: half(14)?,
        mss,
        timestamp,
        payload: tcp.get(header_len..)?.to_vec(),
    })
}

fn parse_options(mut options: &[u8]) -> (Option<u16>, Option<Timestamp>) {
    let (mut mss, mut timestamp) = (None, None);
    while let [kind, rest @ ..] = options {
        match *kind {
            OPT_END => break,
            OPT_NOP => options = rest,
            _ => {
                let Some(&len) = rest.first() else { break };
                let Some(body) = options.get(2..usize::from(len)) else { break };
                match (*kind, body.len()) {
                    (OPT_MSS, 2) => mss = Some(u16::from_be_bytes([body[0], body[1]])),
                    (OPT_TIMESTAMP, 8) => {
                        let val = u32::from_be_bytes(body[0..4].try_into().expect("4 bytes"));
                        let ecr = u32::from_be_bytes(body[4..8].try_into().expect("4 bytes"));
                        timestamp = Some(Timestamp { val, ecr });
                    }
                    _ => {}
                }
                options = &options[usize::from(len)..];
            }
        }
    }
    (mss, timestamp)
}

fn ipv4_header(src: [u8; 4], dst: [u8; 4], options: &[u8], tcp_len: usize) -> Result<Vec<u8>> {
    ensure!(
        options.len().is_multiple_of(4) && options.len() <= MAX_IPV4_OPTIONS,
        "IPv4 options must be a multiple of 4 bytes, at most {MAX_IPV4_OPTIONS}"
    );
    let header_len = IPV4_HEADER_LEN + options.len();
    let total_len = (header_len + tcp_len) as u16;
    let mut header = vec![0x40 | (header_len / 4) as u8, 0];
    header.extend_from_slice(&total_len.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
    header.extend_from_slice(&[TTL, PROTO_TCP, 0, 0]);
    header.extend_from_slice(&src);
    header.extend_from_slice(&dst);
    header.extend_from_slice(options);
    let sum = checksum(&header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    Ok(header)
}

fn ipv6_header(src: [u8; 16], dst: [u8; 16], extensions: &[Extension], tcp_len: usize) -> Result<Vec<u8>> {
    let mut chain = Vec::new();
    for (i, ext) in extensions.iter().enumerate() {
        ensure!((ext.options.len() + 2).is_multiple_of(8), "IPv6 extension header body must end on 8 bytes");
        let next = extensions.get(i + 1).map_or(PROTO_TCP, |e| e.kind);
        chain.push(next);
        chain.push(((ext.options.len() + 2) / 8 - 1) as u8);
        chain.extend_from_slice(&ext.options);
    }
    let mut header = vec![0x60, 0, 0, 0];
    header.extend_from_slice(&((chain.len() + tcp_len) as u16).to_be_bytes());
    header.extend_from_slice(&[extensions.first().map_or(PROTO_TCP, |e| e.kind), TTL]);
    header.extend_from_slice(&src);
    header.extend_from_slice(&dst);
    header.extend_from_slice(&chain);
    Ok(header)
}

/// Longest IPv4 options (IHL 15).
const MAX_IPV4_OPTIONS: usize = 40;
/// IPv6 next-header values of the extension headers the hostile shapes use.
pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const NEXTHDR_DEST: u8 = 60;

/// The odd parts of a hostile packet, on top of a [`Segment`]; empty means an ordinary packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// IPv4 options, as on the wire (a multiple of 4 bytes, at most 40).
    pub ipv4_options: Vec<u8>,
    /// IPv6 extension headers, in order, before the TCP header.
    pub ipv6_extensions: Vec<Extension>,
    /// TCP option bytes as on the wire, instead of the segment's MSS and timestamp (a multiple
    /// of 4 bytes, at most 40).
    pub tcp_options: Option<Vec<u8>>,
}

/// One IPv6 extension header of the options kind (hop-by-hop, destination options): its type
/// and the option bytes after its next-header and length bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    pub kind: u8,
    pub options: Vec<u8>,
}

/// Splits an IPv4 packet built here into fragments whose payloads hold `first` bytes (a multiple
/// of 8) and then the rest, with the given identification.
pub fn fragment_ipv4(packet: &[u8], first: usize, id: u16) -> Result<[Vec<u8>; 2]> {
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let payload = &packet[header_len..];
    ensure!(first.is_multiple_of(8) && first > 0 && first < payload.len(), "bad first fragment size {first}");
    let piece = |data: &[u8], offset: usize, more: bool| {
        let mut header = packet[..header_len].to_vec();
        header[2..4].copy_from_slice(&((header_len + data.len()) as u16).to_be_bytes());
        header[4..6].copy_from_slice(&id.to_be_bytes());
        let flags_offset = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        header[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        header[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
        [header, data.to_vec()].concat()
    };
    Ok([piece(&payload[..first], 0, true), piece(&payload[first..], first, false)])
}

/// Splits an IPv6 packet built here (no extension headers) into fragments whose payloads hold
/// `first` bytes (a multiple of 8) and then the rest, with the given identification.
pub fn fragment_ipv6(packet: &[u8], first: usize, id: u32) -> Result<[Vec<u8>; 2]> {
    ensure!(packet[6] == PROTO_TCP, "fragment_ipv6 takes a packet without extension headers");
    let payload = &packet[IPV6_HEADER_LEN..];
    ensure!(first.is_multiple_of(8) && first > 0 && first < payload.len(), "bad first fragment size {first}");
    let piece = |data: &[u8], offset: usize, more: bool| {
        let mut header = packet[..IPV6_HEADER_LEN].to_vec();
        header[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        header[6] = NEXTHDR_FRAGMENT;
        let offset_flags = (offset as u16) | u16::from(more);
        let fragment = [&[PROTO_TCP, 0][..], &offset_flags.to_be_bytes(), &id.to_be_bytes()].concat();
        [header, fragment, data.to_vec()].concat()
    };
    Ok([piece(&payload[..first], 0, true), piece(&payload[first..], first, false)])
}

/// The Internet checksum (RFC 1071): one's complement of the one's complement sum of 16-bit words.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(src: &str, dst: &str) -> Segment {
        Segment {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            seq: 0x0102_0304,
            ack: 0x0a0b_0c0d,
            flags: SYN | ACK,
            window: 64240,
            mss: Some(1460),
            timestamp: Some(Timestamp { val: 0xdead_beef, ecr: 7 }),
            payload: b"abc".to_vec(),
        }
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: these bytes sum to 0xddf2.
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
    }

    #[test]
    fn checksum_pads_an_odd_byte_with_zero() {
        assert_eq!(checksum(&[0x12, 0x34, 0x56]), checksum(&[0x12, 0x34, 0x56, 0x00]));
    }

    #[test]
    fn ipv4_header_checksum_matches_known_header() {
        // 192.168.0.1 -> 192.168.0.199, a commonly cited worked example whose checksum is 0xb861
        // (the example's id 0, DF set, TTL 64, UDP, total length 0x73).
        let mut header = vec![
            0x45, 0, 0x00, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 192, 168, 0, 1, 192, 168, 0, 199,
        ];
        let sum = checksum(&header);
        assert_eq!(sum, 0xb861);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&header), 0);
    }

    #[test]
    fn ipv4_tcp_checksum_matches_independent_computation() {
        // Computed separately (Python, RFC 1071 sum over pseudo-header + TCP) for this SYN:
        // 198.51.100.2:20000 -> 198.51.100.1:80, seq 1, no options, window 1024, no payload.
        let syn = Segment {
            src: "198.51.100.2:20000".parse().unwrap(),
            dst: "198.51.100.1:80".parse().unwrap(),
            seq: 1,
            ack: 0,
            flags: SYN,
            window: 1024,
            mss: None,
            timestamp: None,
            payload: vec![],
        };
        let packet = syn.to_ip_packet().unwrap();
        assert_eq!(u16::from_be_bytes([packet[36], packet[37]]), 0x0907);
    }

    #[test]
    fn built_ipv4_packet_verifies_and_parses_back() {
        let seg = segment("198.51.100.2:40000", "198.51.100.1:8080");
        let packet = seg.to_ip_packet().unwrap();
        assert_eq!(packet.len(), 20 + 20 + 16 + 3);
        assert_eq!(checksum(&packet[..20]), 0, "IPv4 header checksum");
        let tcp = &packet[20..];
        let pseudo = [&packet[12..20], &[0, PROTO_TCP], &(tcp.len() as u16).to_be_bytes()].concat();
        assert_eq!(checksum(&[&pseudo[..], tcp].concat()), 0, "TCP checksum");
        assert_eq!(Segment::parse(&packet), Some(seg));
    }

    #[test]
    fn built_ipv6_packet_verifies_and_parses_back() {
        let seg = segment("[2001:db8:1::2]:40000", "[2001:db8:1::1]:8080");
        let packet = seg.to_ip_packet().unwrap();
        assert_eq!(packet.len(), 40 + 20 + 16 + 3);
        let tcp = &packet[40..];
        let pseudo =
            [&packet[8..40], &(tcp.len() as u32).to_be_bytes(), &[0, 0, 0, PROTO_TCP]].concat();
        assert_eq!(checksum(&[&pseudo[..], tcp].concat()), 0, "TCP checksum");
        assert_eq!(Segment::parse(&packet), Some(seg));
    }

    #[test]
    fn shaped_packets_carry_ip_options_extensions_and_raw_tcp_options() {
        let seg = segment("198.51.100.2:40000", "198.51.100.1:8080");
        let nops = Shape { ipv4_options: vec![1, 1, 1, 0], tcp_options: Some(vec![1; 12]), ..Shape::default() };
        let packet = seg.to_shaped_packet(&nops).unwrap();
        assert_eq!(packet[0], 0x46);
        assert_eq!(checksum(&packet[..24]), 0, "IPv4 header checksum");
        assert_eq!(packet[24 + 12] >> 4, 8, "TCP data offset counts the raw options");
        assert_eq!(&packet[44..56], &[1; 12]);
        let parsed = Segment::parse(&packet).unwrap();
        assert_eq!((parsed.timestamp, parsed.payload), (None, seg.payload.clone()));

        let seg6 = segment("[2001:db8:1::2]:40000", "[2001:db8:1::1]:8080");
        let pad6 = vec![1, 4, 0, 0, 0, 0];
        let shape = Shape {
            ipv6_extensions: vec![
                Extension { kind: NEXTHDR_HOP, options: pad6.clone() },
                Extension { kind: NEXTHDR_DEST, options: pad6 },
            ],
            ..Shape::default()
        };
        let packet = seg6.to_shaped_packet(&shape).unwrap();
        assert_eq!((packet[6], packet[40], packet[48]), (NEXTHDR_HOP, NEXTHDR_DEST, PROTO_TCP));
        assert_eq!(usize::from(u16::from_be_bytes([packet[4], packet[5]])), packet.len() - 40);
        let tcp = &packet[56..];
        let pseudo = [&packet[8..40], &(tcp.len() as u32).to_be_bytes(), &[0, 0, 0, PROTO_TCP]].concat();
        assert_eq!(checksum(&[&pseudo[..], tcp].concat()), 0, "TCP checksum over the upper layer only");
        assert!(seg.to_shaped_packet(&Shape { ipv4_options: vec![1, 1], ..Shape::default() }).is_err());
    }

    #[test]
    fn fragments_reassemble_to_the_packet() {
        let mut seg = segment("198.51.100.2:40000", "198.51.100.1:8080");
        seg.payload = vec![7; 100];
        let packet = seg.to_ip_packet().unwrap();
        let [a, b] = fragment_ipv4(&packet, 16, 99).unwrap();
        assert_eq!((u16::from_be_bytes([a[6], a[7]]), u16::from_be_bytes([b[6], b[7]])), (0x2000, 2));
        assert_eq!((checksum(&a[..20]), checksum(&b[..20])), (0, 0));
        assert_eq!([&a[20..], &b[20..]].concat(), packet[20..]);

        let seg6 = Segment { payload: vec![7; 100], ..segment("[2001:db8:1::2]:40000", "[2001:db8:1::1]:8080") };
        let packet = seg6.to_ip_packet().unwrap();
        let [a, b] = fragment_ipv6(&packet, 24, 5).unwrap();
        assert_eq!((a[6], a[40], u16::from_be_bytes([a[42], a[43]])), (NEXTHDR_FRAGMENT, PROTO_TCP, 1));
        assert_eq!(u16::from_be_bytes([b[42], b[43]]), 24);
        assert_eq!([&a[48..], &b[48..]].concat(), packet[40..]);
    }

    #[test]
    fn mixed_families_are_refused() {
        assert!(segment("198.51.100.2:1", "[2001:db8:1::1]:2").to_ip_packet().is_err());
    }

    #[test]
    fn parse_skips_unknown_options_and_rejects_truncation() {
        let mut seg = segment("198.51.100.2:1", "198.51.100.1:2");
        seg.mss = None;
        let mut packet = seg.to_ip_packet().unwrap();
        // Turn the two NOPs before the timestamp into a 2-byte unknown option (kind 30).
        packet[40] = 30;
        packet[41] = 2;
        assert_eq!(Segment::parse(&packet).unwrap().timestamp, seg.timestamp);
        assert_eq!(Segment::parse(&packet[..30]), None);
    }
}
