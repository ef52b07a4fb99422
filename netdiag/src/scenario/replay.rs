//! One host, one clock, and packets that make it look like more: its own SYN sent again on its
//! live 4-tuple (as a replaying middlebox or a captured-and-replayed SYN does), once with a
//! broken checksum, beside a few stale-timestamp segments; and SYN retransmissions through a
//! link that loses SYN-ACKs; and SYNs with FIN set, which a listener refuses outright. A
//! diagnosis must find PAWS rejections, challenge ACKs, checksum errors and refused flags here,
//! never a NAT or an unexplained unanswered SYN.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};

use super::{
    lab::Lab,
    packet::{ACK, FIN, PSH, SYN, Segment, Timestamp},
    wire::{
        CONNECT_TIMEOUT, IO_TIMEOUT, RawSender, Sniffer, TCP_TIME_WAIT, accept_within, close_in_order, connect_in,
        exchange, listen_in, tcp4_sockets, wait_until,
    },
};

pub const REPLAY_SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const REPLAY_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// Copies of the client's SYN resent intact, and with a broken checksum.
pub const INTACT_REPLAYS: u64 = 2;
pub const CORRUPT_REPLAYS: u64 = 1;
/// Data segments with a TSval far behind the connection's: PAWS drops them.
pub const STALE_SEGMENTS: u64 = 3;
/// How far behind the live TSval the stale segments are.
const STALE_BY: u32 = 100_000;
/// Between two replayed SYNs: longer than the kernel's challenge-ACK limit per socket
/// (tcp_invalid_ratelimit, 500 ms) and its drop-sample interval (250 ms), so each is answered
/// and sampled.
const REPLAY_GAP: Duration = Duration::from_millis(600);
/// Connections made through the lossy link, each from its own port.
pub const LOSSY_CONNECTIONS: u64 = 3;
/// Bound on a connect whose SYN-ACK may be lost: the first SYN and two retransmissions.
const LOSSY_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// SYNs with FIN, each from its own port below the client's ephemeral range (no socket of the
/// client's kernel owns them).
pub const SYNS_WITH_FIN: u16 = 3;
const SYN_FIN_FIRST_PORT: u16 = 21000;

/// srv 192.0.2.1/24 ↔ cli 192.0.2.2/24, nothing in between. Dropping it removes both.
pub struct ReplayTopology {
    lab: Lab,
    pub server_ns: String,
    pub client_ns: String,
    client_if: String,
}

impl ReplayTopology {
    pub fn new(tag: &str) -> Result<ReplayTopology> {
        let mut lab = Lab::new(tag)?;
        let server_ns = lab.add_ns("srv")?;
        let client_ns = lab.add_ns("cli")?;
        let link = lab.link(
            &server_ns,
            &[&format!("{REPLAY_SERVER_V4}/24")],
            &client_ns,
            &[&format!("{REPLAY_CLIENT_V4}/24")],
        )?;
        Ok(ReplayTopology { lab, server_ns, client_ns, client_if: link.b_if })
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn server_path(&self) -> PathBuf {
        self.lab.ns_path(&self.server_ns)
    }

    pub fn client_path(&self) -> PathBuf {
        self.lab.ns_path(&self.client_ns)
    }
}

/// What a replay run sent, for the caller to check the kernel's counters and netdiag against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayRun {
    pub server: SocketAddr,
    pub client: SocketAddr,
    /// The TSval of the client's SYN, which every replay carries.
    pub syn_tsval: u32,
    pub intact_replays: u64,
    pub corrupt_replays: u64,
    pub stale_segments: u64,
}

/// A live connection client → server, then its SYN (captured on the wire) sent again on the
/// same 4-tuple: [`INTACT_REPLAYS`] times intact (the server answers each with a challenge
/// ACK, RFC 5961: `TcpExtTCPSYNChallenge`, drop reason `TCP_INVALID_SYN`), [`CORRUPT_REPLAYS`]
/// with a broken TCP checksum (`TcpInCsumErrors`, `TCP_CSUM`); before them [`STALE_SEGMENTS`]
/// data segments with a stale TSval (`TcpExtPAWSEstab`). The connection is closed cleanly at
/// the end. About 2 s.
pub fn syn_replay(topo: &ReplayTopology) -> Result<ReplayRun> {
    let listener = listen_in(&topo.server_path(), SocketAddr::new(REPLAY_SERVER_V4.into(), 0))?;
    let server = listener.local_addr()?;
    let sniffer = Sniffer::open_in(&topo.client_path(), &topo.client_if)?;
    let mut client = connect_in(&topo.client_path(), None, server, CONNECT_TIMEOUT)?;
    let mut accepted = accept_within(&listener, IO_TIMEOUT)?;
    let local = client.local_addr()?;
    let syn = sniffer
        .wait_for(IO_TIMEOUT, |s| s.src == local && s.dst == server && s.flags & (SYN | ACK) == SYN)
        .context("capture the client's SYN")?;
    let syn_tsval = syn.timestamp.context("the client's SYN carries no timestamp")?.val;
    exchange(&mut client, &mut accepted, b"before")?;
    let data = sniffer
        .wait_for(IO_TIMEOUT, |s| s.src == local && s.dst == server && !s.payload.is_empty())
        .context("capture the client's data segment")?;

    let raw = RawSender::open_in(&topo.client_path(), false)?;
    let stale = stale_copy(&data)?;
    for _ in 0..STALE_SEGMENTS {
        raw.send(&stale)?;
    }
    let replay = syn.to_ip_packet()?;
    for _ in 0..INTACT_REPLAYS {
        std::thread::sleep(REPLAY_GAP);
        raw.send_packet(&replay, server.ip())?;
    }
    std::thread::sleep(REPLAY_GAP);
    let corrupt = with_broken_tcp_checksum(replay)?;
    for _ in 0..CORRUPT_REPLAYS {
        raw.send_packet(&corrupt, server.ip())?;
    }
    // Also a barrier: once this arrives the server has processed what was injected before it.
    exchange(&mut client, &mut accepted, b"after")?;
    close_in_order(client, accepted)?;
    Ok(ReplayRun {
        server,
        client: local,
        syn_tsval,
        intact_replays: INTACT_REPLAYS,
        corrupt_replays: CORRUPT_REPLAYS,
        stale_segments: STALE_SEGMENTS,
    })
}

/// A connection client → server that the server closes first, so it holds the 4-tuple in
/// TIME_WAIT; then the client's SYN (captured on the wire) sent again on it, once. Its TSval is
/// the one the connection began with, older than the last the server saw there, so PAWS
/// rejects it (`TcpExtPAWSTimewait`, before 6.16 `TcpExtPAWSEstab`): time going backwards on a
/// 4-tuple, but one clock's own past, replayed. About 0.5 s.
pub fn syn_replay_on_time_wait(topo: &ReplayTopology) -> Result<ReplayRun> {
    let listener = listen_in(&topo.server_path(), SocketAddr::new(REPLAY_SERVER_V4.into(), 0))?;
    let server = listener.local_addr()?;
    let sniffer = Sniffer::open_in(&topo.client_path(), &topo.client_if)?;
    let mut client = connect_in(&topo.client_path(), None, server, CONNECT_TIMEOUT)?;
    let mut accepted = accept_within(&listener, IO_TIMEOUT)?;
    let local = client.local_addr()?;
    let syn = sniffer
        .wait_for(IO_TIMEOUT, |s| s.src == local && s.dst == server && s.flags & (SYN | ACK) == SYN)
        .context("capture the client's SYN")?;
    let syn_tsval = syn.timestamp.context("the client's SYN carries no timestamp")?.val;
    exchange(&mut client, &mut accepted, b"before")?;
    // Later segments carry newer TSvals: the TIME_WAIT's last one is ahead of the SYN's.
    std::thread::sleep(REPLAY_GAP);
    exchange(&mut client, &mut accepted, b"later")?;
    close_in_order(accepted, client)?;
    wait_until(IO_TIMEOUT, "server holds the 4-tuple in TIME_WAIT", || {
        let rows = tcp4_sockets(&topo.server_path())?;
        Ok(rows.iter().any(|r| r.local_port == server.port() && r.remote_port == local.port() && r.state == TCP_TIME_WAIT))
    })?;
    RawSender::open_in(&topo.client_path(), false)?.send(&syn)?;
    // The drop is synchronous with the send on veth; a moment for the tracer's samples.
    std::thread::sleep(REPLAY_GAP);
    Ok(ReplayRun { server, client: local, syn_tsval, intact_replays: 1, corrupt_replays: 0, stale_segments: 0 })
}

/// The client's next in-sequence segment with a TSval from long ago; it carries data so it
/// cannot pass as a reordered pure ACK.
fn stale_copy(live: &Segment) -> Result<Segment> {
    let ts = live.timestamp.context("the connection does not use TCP timestamps")?;
    Ok(Segment {
        seq: live.seq.wrapping_add(live.payload.len() as u32),
        flags: ACK | PSH,
        mss: None,
        timestamp: Some(Timestamp { val: ts.val.wrapping_sub(STALE_BY), ecr: ts.ecr }),
        payload: b"stale".to_vec(),
        ..live.clone()
    })
}

/// An IPv4 packet with its TCP checksum off by one.
fn with_broken_tcp_checksum(mut packet: Vec<u8>) -> Result<Vec<u8>> {
    let at = usize::from(packet.first().context("empty packet")? & 0x0f) * 4 + 16;
    ensure!(packet.len() >= at + 2, "packet too short for a TCP header");
    let sum = u16::from_be_bytes([packet[at], packet[at + 1]]).wrapping_add(1);
    packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(packet)
}

/// What the lossy-link run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetransmitRun {
    pub server: SocketAddr,
    pub client_addr: IpAddr,
    pub connections: u64,
    /// SYNs the client sent, retransmissions included, counted on the wire.
    pub syns_sent: u64,
}

/// [`LOSSY_CONNECTIONS`] connections from the client while the link loses every other
/// SYN-ACK on its way in (nftables `numgen` at the client: the server sends and counts every
/// one), so the client retransmits SYNs (each with a newer TSval of its connection's clock)
/// before getting through. Bounded by the connect timeout.
pub fn syn_retransmissions(topo: &ReplayTopology) -> Result<RetransmitRun> {
    topo.lab.nft(
        &topo.client_ns,
        &format!(
            "table inet netdiag_lossy {{
                chain input {{
                    type filter hook input priority 0; policy accept;
                    iifname \"{}\" tcp flags & (syn | ack) == (syn | ack) numgen inc mod 2 == 0 drop
                }}
            }}",
            topo.client_if
        ),
    )?;
    let listener = listen_in(&topo.server_path(), SocketAddr::new(REPLAY_SERVER_V4.into(), 0))?;
    let server = listener.local_addr()?;
    let sniffer = Sniffer::open_in(&topo.client_path(), &topo.client_if)?;
    let mut open: Vec<(TcpStream, TcpStream)> = Vec::new();
    for _ in 0..LOSSY_CONNECTIONS {
        let client = connect_in(&topo.client_path(), None, server, LOSSY_CONNECT_TIMEOUT)?;
        let accepted = accept_within(&listener, IO_TIMEOUT)?;
        open.push((client, accepted));
    }
    let syns_sent = sniffer.drain(|s| s.dst == server && s.flags & (SYN | ACK) == SYN)?.len() as u64;
    for (client, accepted) in open {
        close_in_order(client, accepted)?;
    }
    Ok(RetransmitRun {
        server,
        client_addr: REPLAY_CLIENT_V4.into(),
        connections: LOSSY_CONNECTIONS,
        syns_sent,
    })
}

/// What the SYN-with-FIN run sent and what came back.
pub struct RefusedRun {
    pub server: SocketAddr,
    pub client_addr: IpAddr,
    pub syns: u64,
    /// Segments the server sent back to those ports, counted on the wire.
    pub answers: u64,
    /// Held until the caller's report is made: SYNs to a port nobody listens on are traffic
    /// passing through, not a listener's funnel.
    pub listener: TcpListener,
}

/// [`SYNS_WITH_FIN`] SYNs with FIN also set (as scanners send them) to a listener, each from
/// its own port, [`REPLAY_GAP`] apart so each drop is sampled: the listener drops them without
/// an answer (drop reason `TCP_FLAGS`). Their TSvals follow one clock. About 2 s.
pub fn syns_with_fin(topo: &ReplayTopology) -> Result<RefusedRun> {
    let listener = listen_in(&topo.server_path(), SocketAddr::new(REPLAY_SERVER_V4.into(), 0))?;
    let server = listener.local_addr()?;
    let sniffer = Sniffer::open_in(&topo.client_path(), &topo.client_if)?;
    let raw = RawSender::open_in(&topo.client_path(), false)?;
    let clock = std::time::Instant::now();
    let ports = SYN_FIN_FIRST_PORT..SYN_FIN_FIRST_PORT + SYNS_WITH_FIN;
    for port in ports.clone() {
        raw.send(&Segment {
            src: SocketAddr::new(REPLAY_CLIENT_V4.into(), port),
            dst: server,
            seq: u32::from(port) << 16,
            ack: 0,
            flags: SYN | FIN,
            window: 64240,
            mss: Some(1460),
            timestamp: Some(Timestamp { val: 1_000_000 + clock.elapsed().as_millis() as u32, ecr: 0 }),
            payload: Vec::new(),
        })?;
        std::thread::sleep(REPLAY_GAP);
    }
    let answers = sniffer.drain(|s| s.src == server && ports.contains(&s.dst.port()))?.len() as u64;
    Ok(RefusedRun { server, client_addr: REPLAY_CLIENT_V4.into(), syns: u64::from(SYNS_WITH_FIN), answers, listener })
}
