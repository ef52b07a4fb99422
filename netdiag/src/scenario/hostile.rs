//! Odd and hostile packets: variants of the PAWS-stale segment of `paws_established` with IPv4
//! options, IPv6 extension headers, unusual or broken TCP options, IP fragmentation, headers
//! outside the linear area and GSO, each from its own client address so a tracer's per-peer
//! counts tell the shapes apart.
//!
//! Every stale segment repeats data the server already has (the sequence number of the live
//! segment it copies): where the kernel applies PAWS it drops it (`TcpExtPAWSEstab`), where the
//! kernel sees no timestamp it drops it as an old duplicate instead, so the stream never changes.
//! [`HostileShape::kernel_rejects`] says which, per shape, as read in 6.18's
//! `tcp_parse_options`: EOL ends the walk, a length below 2 or past the end stops it (options
//! after it are never seen), a timestamp option of the wrong length is skipped, and a later
//! timestamp option replaces an earlier one.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    process::Command,
};

use anyhow::{Context as _, Result, ensure};

use super::{
    lab::Lab,
    packet::{
        ACK, Extension, NEXTHDR_DEST, NEXTHDR_HOP, PSH, Segment, Shape, Timestamp, checksum, fragment_ipv4,
        fragment_ipv6,
    },
    paws::{SERVER_V4, SERVER_V6},
    wire::{
        CONNECT_TIMEOUT, ETH_HEADER_LEN, IO_TIMEOUT, RawSender, Sniffer, VIRTIO_NET_HDR_F_NEEDS_CSUM,
        VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VnetHeader, VnetSender, accept_within, close_in_order,
        connect_in, exchange, listen_in,
    },
};

/// How far behind the live TSval the stale segments claim to be: far outside any PAWS window.
const STALE_BY: u32 = 100_000;

const EOL: u8 = 0;
const NOP: u8 = 1;
const WSCALE: u8 = 3;
const SACK_PERM: u8 = 4;
const TIMESTAMP: u8 = 8;
/// An option kind with no meaning to the kernel (unassigned), for zero and over-long lengths.
const UNKNOWN: u8 = 30;
const IPOPT_RR: u8 = 7;
/// IPv6 PadN option filling a 6-byte extension header body.
const PADN_6: [u8; 6] = [1, 4, 0, 0, 0, 0];

/// One odd shape of the stale segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileShape {
    /// IPv4 header with 4 bytes of options (NOPs and EOL).
    Ipv4NopOptions,
    /// IPv4 header of the maximum length (IHL 15): a record-route option filling 40 bytes.
    Ipv4FullRecordRoute,
    /// IPv6 hop-by-hop options header before TCP.
    Ipv6HopByHop,
    /// IPv6 destination options header before TCP.
    Ipv6DestinationOptions,
    /// Both, hop-by-hop first.
    Ipv6HopByHopAndDestination,
    /// Timestamp after six NOPs (16 option bytes, not the aligned fast-path layout).
    TimestampAfterNops,
    /// Timestamp after SACK-permitted and window scale (ignored outside SYNs) and a NOP.
    TimestampAfterSackPermWscale,
    /// Timestamp at an odd offset: NOP, timestamp, NOP.
    TimestampAtOddOffset,
    /// A fresh timestamp, then the stale one: the kernel keeps the last.
    FreshThenStaleTimestamp,
    /// The stale timestamp, then a fresh one: the kernel keeps the fresh one, no PAWS drop.
    StaleThenFreshTimestamp,
    /// Timestamp, then a zero-length option: the kernel saw the timestamp before it stopped.
    TimestampThenZeroLength,
    /// A zero-length option before the timestamp: the kernel stops and never sees it.
    ZeroLengthBeforeTimestamp,
    /// An option whose length runs past the options before the timestamp: parse stops.
    OverlongBeforeTimestamp,
    /// EOL before the timestamp: the options end there.
    EolBeforeTimestamp,
    /// The timestamp option cut short by the header's end (its last bytes are payload).
    TruncatedTimestamp,
    /// A timestamp option of length 8 instead of 10: skipped, no timestamp.
    ShortTimestampLength,
    /// IPv4 fragments, the first holding only 16 bytes of the TCP header.
    Ipv4Fragments,
    /// IPv6 fragments, the first holding the fixed TCP header (RFC 7112 requires it).
    Ipv6Fragments,
    /// A 4.5 KB segment whose TCP header arrives in page fragments, not the linear area
    /// (packet socket, virtio-net header asking for only Ethernet + IP to be linear). TCP pulls
    /// the header in before its checks, so PAWS sees it whole.
    NonLinearHeaders,
    /// The same shape, dropped by an nftables rule before TCP ever pulls the header in
    /// (NETFILTER_DROP): a parser reading `skb->head` at the transport offset would read bytes
    /// past the linear data. No PAWS drop; see [`filtered_drops`].
    NonLinearFilteredDrop,
    /// A GSO packet of three 1000-byte segments (virtio-net header, TCPv4).
    GsoTcpV4,
    /// A GSO packet of three 1000-byte segments (virtio-net header, TCPv6).
    GsoTcpV6,
}

/// Payload of the non-linear shapes: over a page, so the packet socket puts it in fragments.
const NON_LINEAR_PAYLOAD: usize = 4500;
/// Segment size and count of the GSO shapes.
const GSO_SIZE: u16 = 1000;
pub const GSO_SEGMENTS: u64 = 3;
/// MTU of the link, room for the non-linear shapes' single large frame.
const LINK_MTU: &str = "9000";
const SERVER_MAC: [u8; 6] = [0x02, 0x6e, 0x64, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [0x02, 0x6e, 0x64, 0, 0, 2];
/// The nftables table that drops the `NonLinearFilteredDrop` shape in the server namespace.
const FILTER_TABLE: &str = "netdiag_hostile";

impl HostileShape {
    pub const ALL: [HostileShape; 22] = [
        HostileShape::Ipv4NopOptions,
        HostileShape::Ipv4FullRecordRoute,
        HostileShape::Ipv6HopByHop,
        HostileShape::Ipv6DestinationOptions,
        HostileShape::Ipv6HopByHopAndDestination,
        HostileShape::TimestampAfterNops,
        HostileShape::TimestampAfterSackPermWscale,
        HostileShape::TimestampAtOddOffset,
        HostileShape::FreshThenStaleTimestamp,
        HostileShape::StaleThenFreshTimestamp,
        HostileShape::TimestampThenZeroLength,
        HostileShape::ZeroLengthBeforeTimestamp,
        HostileShape::OverlongBeforeTimestamp,
        HostileShape::EolBeforeTimestamp,
        HostileShape::TruncatedTimestamp,
        HostileShape::ShortTimestampLength,
        HostileShape::Ipv4Fragments,
        HostileShape::Ipv6Fragments,
        HostileShape::NonLinearHeaders,
        HostileShape::NonLinearFilteredDrop,
        HostileShape::GsoTcpV4,
        HostileShape::GsoTcpV6,
    ];

    pub fn is_v6(self) -> bool {
        matches!(
            self,
            HostileShape::Ipv6HopByHop
                | HostileShape::Ipv6DestinationOptions
                | HostileShape::Ipv6HopByHopAndDestination
                | HostileShape::Ipv6Fragments
                | HostileShape::GsoTcpV6
        )
    }

    /// Whether the kernel's PAWS check rejects this shape (see the module comment for why not).
    pub fn kernel_rejects(self) -> bool {
        !matches!(
            self,
            HostileShape::StaleThenFreshTimestamp
                | HostileShape::ZeroLengthBeforeTimestamp
                | HostileShape::OverlongBeforeTimestamp
                | HostileShape::EolBeforeTimestamp
                | HostileShape::TruncatedTimestamp
                | HostileShape::ShortTimestampLength
                | HostileShape::NonLinearFilteredDrop
        )
    }

    /// Kernel rejections one copy can cause at most: a GSO packet may reach TCP as one packet or
    /// as its segments, depending on whether a device on the way segments it.
    pub fn segments(self) -> u64 {
        match self {
            HostileShape::GsoTcpV4 | HostileShape::GsoTcpV6 => GSO_SEGMENTS,
            _ => 1,
        }
    }

    /// The virtio-net header of the shapes sent through a packet socket, for `packet`.
    fn vnet_header(self, packet: &[u8]) -> Option<VnetHeader> {
        let ip_header = if self.is_v6() { 40 } else { usize::from(packet[0] & 0x0f) * 4 };
        let tcp_header = usize::from(packet[ip_header + 12] >> 4) * 4;
        let gso = |gso_type| VnetHeader {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type,
            hdr_len: (ETH_HEADER_LEN + ip_header + tcp_header) as u16,
            gso_size: GSO_SIZE,
            csum_start: (ETH_HEADER_LEN + ip_header) as u16,
            csum_offset: 16,
        };
        match self {
            HostileShape::NonLinearHeaders | HostileShape::NonLinearFilteredDrop => {
                Some(VnetHeader { hdr_len: (ETH_HEADER_LEN + ip_header) as u16, ..VnetHeader::default() })
            }
            HostileShape::GsoTcpV4 => Some(gso(VIRTIO_NET_HDR_GSO_TCPV4)),
            HostileShape::GsoTcpV6 => Some(gso(VIRTIO_NET_HDR_GSO_TCPV6)),
            _ => None,
        }
    }

    /// The client address this shape is sent from: one per shape.
    pub fn client_addr(self) -> IpAddr {
        let index = HostileShape::ALL.iter().position(|s| *s == self).expect("listed") as u8;
        if self.is_v6() {
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10 + u16::from(index)).into()
        } else {
            Ipv4Addr::new(198, 51, 100, 10 + index).into()
        }
    }

    /// The IP packets carrying `stale` in this shape; `fresh` is the live timestamp.
    fn packets(self, stale: &Segment, fresh: Timestamp) -> Result<Vec<Vec<u8>>> {
        let old = stale.timestamp.context("stale segment without timestamp")?;
        let ts = |t: Timestamp| [&[TIMESTAMP, 10][..], &t.val.to_be_bytes(), &t.ecr.to_be_bytes()].concat();
        let tcp = |parts: &[&[u8]]| Shape { tcp_options: Some(parts.concat()), ..Shape::default() };
        let v6_exts = |kinds: &[u8]| Shape {
            ipv6_extensions: kinds.iter().map(|&kind| Extension { kind, options: PADN_6.to_vec() }).collect(),
            ..Shape::default()
        };
        let shape = match self {
            HostileShape::Ipv4NopOptions => Shape { ipv4_options: vec![NOP, NOP, NOP, EOL], ..Shape::default() },
            HostileShape::Ipv4FullRecordRoute => {
                let mut rr = vec![IPOPT_RR, 39, 4];
                rr.resize(39, 0);
                rr.push(EOL);
                Shape { ipv4_options: rr, ..Shape::default() }
            }
            HostileShape::Ipv6HopByHop => v6_exts(&[NEXTHDR_HOP]),
            HostileShape::Ipv6DestinationOptions => v6_exts(&[NEXTHDR_DEST]),
            HostileShape::Ipv6HopByHopAndDestination => v6_exts(&[NEXTHDR_HOP, NEXTHDR_DEST]),
            HostileShape::TimestampAfterNops => tcp(&[&[NOP; 6], &ts(old)]),
            HostileShape::TimestampAfterSackPermWscale => tcp(&[&[SACK_PERM, 2, WSCALE, 3, 7, NOP], &ts(old)]),
            HostileShape::TimestampAtOddOffset => tcp(&[&[NOP], &ts(old), &[NOP]]),
            HostileShape::FreshThenStaleTimestamp => tcp(&[&ts(fresh), &ts(old)]),
            HostileShape::StaleThenFreshTimestamp => tcp(&[&ts(old), &ts(fresh)]),
            HostileShape::TimestampThenZeroLength => tcp(&[&[NOP, NOP], &ts(old), &[UNKNOWN, 0, NOP, NOP]]),
            HostileShape::ZeroLengthBeforeTimestamp => tcp(&[&[UNKNOWN, 0], &ts(old), &[NOP, NOP, NOP, NOP]]),
            HostileShape::OverlongBeforeTimestamp => tcp(&[&[UNKNOWN, 40], &ts(old), &[NOP, NOP, NOP, NOP]]),
            HostileShape::EolBeforeTimestamp => tcp(&[&[EOL, NOP], &ts(old)]),
            HostileShape::TruncatedTimestamp => {
                // The header ends 4 bytes into the option; the rest of it is sent as payload.
                let full = ts(old);
                let shape = tcp(&[&[NOP, NOP], &full[..6]]);
                let payload = [&full[6..], &stale.payload[..]].concat();
                let seg = Segment { payload, seq: stale.seq.wrapping_sub(4), ..stale.clone() };
                return Ok(vec![seg.to_shaped_packet(&shape)?]);
            }
            HostileShape::ShortTimestampLength => {
                tcp(&[&[NOP, NOP, TIMESTAMP, 8], &old.val.to_be_bytes(), &old.ecr.to_be_bytes()[..2], &[NOP, NOP]])
            }
            HostileShape::Ipv4Fragments => {
                return Ok(fragment_ipv4(&stale.to_ip_packet()?, 16, 0x6e64)?.to_vec());
            }
            HostileShape::Ipv6Fragments => {
                return Ok(fragment_ipv6(&stale.to_ip_packet()?, 24, 0x6e64)?.to_vec());
            }
            HostileShape::NonLinearHeaders | HostileShape::NonLinearFilteredDrop => {
                return Ok(vec![old_data(stale, NON_LINEAR_PAYLOAD).to_ip_packet()?]);
            }
            HostileShape::GsoTcpV4 | HostileShape::GsoTcpV6 => {
                let mut packet = old_data(stale, GSO_SEGMENTS as usize * usize::from(GSO_SIZE)).to_ip_packet()?;
                partial_checksum(&mut packet, self.is_v6());
                return Ok(vec![packet]);
            }
        };
        Ok(vec![stale.to_shaped_packet(&shape)?])
    }
}

/// `stale` with `len` bytes of payload that all lie before the data the server has received:
/// old data either way, never added to the stream.
fn old_data(stale: &Segment, len: usize) -> Segment {
    let end = stale.seq.wrapping_add(stale.payload.len() as u32);
    Segment { seq: end.wrapping_sub(len as u32), payload: vec![b'x'; len], ..stale.clone() }
}

/// Replaces the TCP checksum with the pseudo-header sum alone (`CHECKSUM_PARTIAL`, as a GSO
/// packet carries it: whoever segments it completes each segment's sum).
fn partial_checksum(packet: &mut [u8], v6: bool) {
    let ip_header = if v6 { 40 } else { usize::from(packet[0] & 0x0f) * 4 };
    let tcp_len = packet.len() - ip_header;
    let pseudo = if v6 {
        [&packet[8..40], &(tcp_len as u32).to_be_bytes()[..], &[0, 0, 0, 6]].concat()
    } else {
        [&packet[12..20], &[0, 6][..], &(tcp_len as u16).to_be_bytes()].concat()
    };
    let sum = !checksum(&pseudo);
    packet[ip_header + 16..ip_header + 18].copy_from_slice(&sum.to_be_bytes());
}

/// Packets the server's nftables rule dropped (`NonLinearFilteredDrop` copies), by its counter.
pub fn filtered_drops(topo: &HostileTopology) -> Result<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &topo.server_ns, "nft", "list", "table", "inet", FILTER_TABLE])
        .output()
        .context("run nft")?;
    ensure!(out.status.success(), "nft list: {}", String::from_utf8_lossy(&out.stderr).trim());
    let text = String::from_utf8(out.stdout)?;
    let mut words = text.split_whitespace().skip_while(|w| *w != "packets");
    words.next().context("no counter in the filter")?;
    Ok(words.next().context("counter without value")?.parse()?)
}

/// Sends `count` second halves of fragmented packets (IPv4, or IPv6 with `v6`) from
/// [`LONE_FRAGMENT_V4`]/[`LONE_FRAGMENT_V6`] whose first halves never come: a fragment that
/// holds no TCP header. The server keeps each in its reassembly queue until the timeout (set
/// to 1 s here) and then frees it (reason FRAG_REASM_TIMEOUT; `IpReasmTimeout` and
/// `Ip6ReasmTimeout` count them). Returns once the timeout has passed.
pub fn lone_fragments(topo: &HostileTopology, v6: bool, count: u16) -> Result<()> {
    topo.lab.sysctl(&topo.server_ns, if v6 { "net.ipv6.ip6frag_time" } else { "net.ipv4.ipfrag_time" }, "1")?;
    let (src, dst): (IpAddr, IpAddr) =
        if v6 { (LONE_FRAGMENT_V6.into(), SERVER_V6.into()) } else { (LONE_FRAGMENT_V4.into(), SERVER_V4.into()) };
    let raw = RawSender::open_in(&topo.lab.ns_path(&topo.client_ns), v6)?;
    for id in 0..count {
        let segment = Segment {
            src: SocketAddr::new(src, 40000),
            dst: SocketAddr::new(dst, 8080),
            seq: 1,
            ack: 1,
            flags: ACK | PSH,
            window: 500,
            mss: None,
            timestamp: None,
            payload: vec![b'x'; 64],
        };
        let packet = segment.to_ip_packet()?;
        let [_, second] =
            if v6 { fragment_ipv6(&packet, 24, u32::from(id) + 1)? } else { fragment_ipv4(&packet, 24, id + 1)? };
        raw.send_packet(&second, dst)?;
    }
    // The queue's timer runs 1 s after the fragment arrived; give it room.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    Ok(())
}

/// Sources of [`lone_fragments`]: addresses no shape uses.
pub const LONE_FRAGMENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
pub const LONE_FRAGMENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 9);

/// What one shape did: who sent it and how many copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostileRun {
    pub shape: HostileShape,
    pub client_addr: IpAddr,
    pub server: SocketAddr,
    /// Copies of the stale segment sent (each one kernel rejection where the kernel rejects).
    pub sent: u64,
}

/// A server and a client namespace linked by one veth pair, the client holding one address per
/// shape (198.51.100.10+ and 2001:db8:1::10+). Dropping it removes both.
pub struct HostileTopology {
    lab: Lab,
    pub server_ns: String,
    pub client_ns: String,
    client_if: String,
}

impl HostileTopology {
    pub fn new(tag: &str) -> Result<HostileTopology> {
        let mut lab = Lab::new(tag)?;
        let server_ns = lab.add_ns("srv")?;
        let client_ns = lab.add_ns("cli")?;
        let client_addrs: Vec<String> = HostileShape::ALL
            .iter()
            .map(|s| format!("{}/{}", s.client_addr(), if s.is_v6() { 64 } else { 24 }))
            .collect();
        let lone = [format!("{LONE_FRAGMENT_V4}/24"), format!("{LONE_FRAGMENT_V6}/64")];
        let client_refs: Vec<&str> = client_addrs.iter().chain(&lone).map(String::as_str).collect();
        let link = lab.link(&server_ns, &[&format!("{SERVER_V4}/24"), &format!("{SERVER_V6}/64")], &client_ns, &client_refs)?;
        let mac = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        lab.set_link(&server_ns, &link.a_if, &["mtu", LINK_MTU, "address", &mac(SERVER_MAC)])?;
        lab.set_link(&client_ns, &link.b_if, &["mtu", LINK_MTU, "address", &mac(CLIENT_MAC)])?;
        // Only the large stale copies of that shape: the connection it rides on stays usable.
        let filtered = HostileShape::NonLinearFilteredDrop.client_addr();
        lab.nft(
            &server_ns,
            &format!(
                "table inet {FILTER_TABLE} {{
                    chain input {{
                        type filter hook input priority 0; policy accept;
                        ip saddr {filtered} meta length > {NON_LINEAR_PAYLOAD} counter drop
                    }}
                }}"
            ),
        )?;
        Ok(HostileTopology { lab, server_ns, client_ns, client_if: link.b_if })
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }
}

/// A live connection from the shape's client address, then `count` copies of a data segment
/// with a stale TSval in the odd `shape`, then a clean close. Returns once the server has
/// processed them all (an exchange after them is the barrier).
pub fn stale_shaped(topo: &HostileTopology, shape: HostileShape, count: u32) -> Result<HostileRun> {
    let server_ip: IpAddr = if shape.is_v6() { SERVER_V6.into() } else { SERVER_V4.into() };
    let (server_ns, client_ns) = (topo.lab.ns_path(&topo.server_ns), topo.lab.ns_path(&topo.client_ns));
    let listener = listen_in(&server_ns, SocketAddr::new(server_ip, 0))?;
    let server = listener.local_addr()?;
    let from = SocketAddr::new(shape.client_addr(), 0);
    let mut client = connect_in(&client_ns, Some(from), server, CONNECT_TIMEOUT)?;
    let mut accepted = accept_within(&listener, IO_TIMEOUT)?;
    let live = sniff_data_segment(&Sniffer::open_in(&client_ns, &topo.client_if)?, &mut client, &mut accepted)?;
    let fresh = live.timestamp.context("the connection does not use TCP timestamps")?;
    // A repeat of data the server has: dropped either way, never added to the stream.
    let stale = Segment {
        flags: ACK | PSH,
        mss: None,
        timestamp: Some(Timestamp { val: fresh.val.wrapping_sub(STALE_BY), ecr: fresh.ecr }),
        ..live
    };
    let packets = shape.packets(&stale, fresh)?;
    match shape.vnet_header(&packets[0]) {
        Some(vnet) => {
            let link = VnetSender::open_in(&client_ns, &topo.client_if, shape.is_v6())?;
            for _ in 0..count {
                link.send(&vnet, SERVER_MAC, CLIENT_MAC, &packets[0])?;
            }
        }
        None => {
            let raw = RawSender::open_in(&client_ns, shape.is_v6())?;
            for _ in 0..count {
                for packet in &packets {
                    raw.send_packet(packet, server_ip)?;
                }
            }
        }
    }
    exchange(&mut client, &mut accepted, b"after").with_context(|| format!("stream intact after {shape:?}"))?;
    close_in_order(client, accepted)?;
    Ok(HostileRun { shape, client_addr: shape.client_addr(), server, sent: count.into() })
}

fn sniff_data_segment(sniffer: &Sniffer, client: &mut TcpStream, accepted: &mut TcpStream) -> Result<Segment> {
    let (local, peer) = (client.local_addr()?, client.peer_addr()?);
    exchange(client, accepted, b"before")?;
    let live = sniffer
        .wait_for(IO_TIMEOUT, |s| s.src == local && s.dst == peer && !s.payload.is_empty())
        .context("capture the client's data segment")?;
    ensure!(live.payload == b"before", "captured {:?}", live.payload);
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::packet::Segment as Seg;

    fn stale() -> Segment {
        Segment {
            src: "198.51.100.10:40000".parse().unwrap(),
            dst: "198.51.100.1:8080".parse().unwrap(),
            seq: 1000,
            ack: 2000,
            flags: ACK | PSH,
            window: 500,
            mss: None,
            timestamp: Some(Timestamp { val: 5, ecr: 6 }),
            payload: b"before".to_vec(),
        }
    }

    #[test]
    fn every_shape_builds_and_option_shapes_keep_the_payload() {
        let fresh = Timestamp { val: 100_005, ecr: 6 };
        for shape in HostileShape::ALL {
            let mut seg = stale();
            if shape.is_v6() {
                seg.src = "[2001:db8:1::10]:40000".parse().unwrap();
                seg.dst = "[2001:db8:1::1]:8080".parse().unwrap();
            }
            let packets = shape.packets(&seg, fresh).unwrap();
            assert!(!packets.is_empty(), "{shape:?}");
            // Segment::parse reads neither extension headers nor fragments; the packet-socket
            // shapes carry old data of their own size.
            let plain = shape.vnet_header(&packets[0]).is_none() && shape != HostileShape::TruncatedTimestamp;
            if packets.len() == 1 && plain && !shape.is_v6() {
                let parsed = Seg::parse(&packets[0]).unwrap_or_else(|| panic!("{shape:?} does not parse"));
                assert_eq!(parsed.payload, b"before", "{shape:?}");
                assert_eq!(parsed.seq, 1000, "{shape:?}");
            }
        }
    }

    #[test]
    fn fresh_then_stale_ends_with_the_stale_timestamp_the_kernel_keeps() {
        let fresh = Timestamp { val: 100_005, ecr: 6 };
        let packet = HostileShape::FreshThenStaleTimestamp.packets(&stale(), fresh).unwrap().remove(0);
        assert_eq!(Seg::parse(&packet).unwrap().timestamp, Some(Timestamp { val: 5, ecr: 6 }));
    }

    #[test]
    fn packet_socket_shapes_carry_old_data_and_a_matching_virtio_net_header() {
        let fresh = Timestamp { val: 100_005, ecr: 6 };
        let packet = HostileShape::NonLinearHeaders.packets(&stale(), fresh).unwrap().remove(0);
        let seg = Seg::parse(&packet).unwrap();
        assert_eq!((seg.payload.len(), seg.seq.wrapping_add(seg.payload.len() as u32)), (NON_LINEAR_PAYLOAD, 1006));
        let vnet = HostileShape::NonLinearHeaders.vnet_header(&packet).unwrap();
        assert_eq!((vnet.hdr_len, vnet.gso_type), (14 + 20, 0));

        let gso = HostileShape::GsoTcpV4.packets(&stale(), fresh).unwrap().remove(0);
        let vnet = HostileShape::GsoTcpV4.vnet_header(&gso).unwrap();
        assert_eq!((vnet.hdr_len, vnet.csum_start, vnet.csum_offset, vnet.gso_size), (14 + 20 + 32, 34, 16, 1000));
        // CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented.
        let tcp = &gso[20..];
        let pseudo = [&gso[12..20], &[0, 6], &(tcp.len() as u16).to_be_bytes()].concat();
        assert_eq!(u16::from_be_bytes([tcp[16], tcp[17]]), !checksum(&pseudo));
    }

    #[test]
    fn client_addresses_are_distinct_documentation_addresses() {
        let addrs: std::collections::HashSet<IpAddr> = HostileShape::ALL.iter().map(|s| s.client_addr()).collect();
        assert_eq!(addrs.len(), HostileShape::ALL.len());
        assert!(addrs.iter().all(|a| a.to_string().starts_with("198.51.100.") || a.to_string().starts_with("2001:db8:1::")));
    }
}
