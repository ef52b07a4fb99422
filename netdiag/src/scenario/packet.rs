//! Raw TCP/IP packets: building the segments the scenarios inject, parsing the ones they sniff.
//!
//! Only what the scenarios need: IPv4 without options, IPv6 without extension headers, TCP
//! with the MSS and timestamp options.
use std::net::{IpAddr, SocketAddr};

use anyhow::{Result, bail};

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
        let mut tcp = self.tcp_bytes();
        let (ip_header, pseudo) = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let pseudo = [
                    &src.octets()[..],
                    &dst.octets(),
                    &[0, PROTO_TCP],
                    &(tcp.len() as u16).to_be_bytes(),
                ]
                .concat();
                (ipv4_header(src.octets(), dst.octets(), tcp.len()), pseudo)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let pseudo = [
                    &src.octets()[..],
                    &dst.octets(),
                    &(tcp.len() as u32).to_be_bytes(),
                    &[0, 0, 0, PROTO_TCP],
                ]
                .concat();
                (ipv6_header(src.octets(), dst.octets(), tcp.len()), pseudo)
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

    fn tcp_bytes(&self) -> Vec<u8> {
        let options = self.option_bytes();
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

fn ipv4_header(src: [u8; 4], dst: [u8; 4], tcp_len: usize) -> Vec<u8> {
    let total_len = (IPV4_HEADER_LEN + tcp_len) as u16;
    let mut header = vec![0x45, 0];
    header.extend_from_slice(&total_len.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
    header.extend_from_slice(&[TTL, PROTO_TCP, 0, 0]);
    header.extend_from_slice(&src);
    header.extend_from_slice(&dst);
    let sum = checksum(&header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    header
}

fn ipv6_header(src: [u8; 16], dst: [u8; 16], tcp_len: usize) -> Vec<u8> {
    let mut header = vec![0x60, 0, 0, 0];
    header.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    header.extend_from_slice(&[PROTO_TCP, TTL]);
    header.extend_from_slice(&src);
    header.extend_from_slice(&dst);
    header
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
