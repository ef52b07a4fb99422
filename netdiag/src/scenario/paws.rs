//! PAWS incidents (RFC 7323 timestamp checks) reproduced between real namespaces.
//!
//! `PawsTopology::new` builds everything before any traffic, so a caller can start tracing in
//! between; each scenario then runs on it and reports what it expects the server to reject.
use std::{
    hash::BuildHasher as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};

use super::{
    lab::Lab,
    packet::{ACK, FIN, PSH, RST, SYN, Segment, Timestamp},
    wire::{
        CONNECT_TIMEOUT, IO_TIMEOUT, RAW_MARK, RawSender, Sniffer, TCP_TIME_WAIT, abort,
        accept_within, close_in_order, connect_in, exchange, listen_in, tcp4_sockets, tsval_now,
        wait_until,
    },
};

/// Server side of the client link.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The client whose segments PAWS rejects.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// Server side of the client link, IPv6.
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The client, IPv6.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// Server side of the innocent client's link.
pub const SERVER_INNOCENT_SIDE_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// A client that only makes ordinary connections; netdiag must never blame it.
pub const INNOCENT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

/// Source ports of hand-made handshakes: below the ephemeral range, so no kernel socket in
/// the client namespace ever owns them.
const RAW_PORT_FIRST: u16 = 20000;
const RAW_PORT_LAST: u16 = 20999;

/// How far behind the live TSval injected segments claim to be: far outside any PAWS window.
const STALE_BY: u32 = 100_000;
/// Moves a TSval the server sent to a TSecr it never sent.
const BOGUS_TSECR_SHIFT: u32 = 0x4000_0000;

const TIMESTAMPS_SYSCTL: &str = "net.ipv4.tcp_timestamps";
/// tcp_timestamps=1 adds a random offset to TSval (keyed on the 4-tuple on 6.18, on the address
/// pair on older kernels); 2 does not.
const WITH_OFFSET: &str = "1";
const WITHOUT_OFFSET: &str = "2";
/// The two clocks must differ by far more than the scenario lasts, or the late one catches up.
const MIN_CLOCK_GAP: u32 = 10_000;
/// Bound on the reconnect PAWS keeps rejecting: the first SYN and at least one retransmission.
const REJECTED_CONNECT_TIMEOUT: Duration = Duration::from_millis(2500);

const RAW_WINDOW: u16 = 64240;
const RAW_MSS: u16 = 1460;

/// What a PAWS reproduction did, for the caller to check netdiag's findings against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PawsRun {
    /// Namespace (ip-netns name) whose kernel rejected the segments.
    pub server_ns: String,
    /// Namespace the offending segments came from.
    pub client_ns: String,
    /// The peer netdiag should name.
    pub client_addr: IpAddr,
    /// The server's listening address.
    pub server: SocketAddr,
    /// A client that also talked to the server and must not be blamed.
    pub innocent_ns: Option<String>,
    pub innocent_addr: Option<IpAddr>,
    /// Segments or SYNs sent that the server is expected to reject, one counter step each.
    pub injected: u64,
    /// How long sending them took: the bench's measure of what a tracer costs the drop path.
    pub injection_time: Duration,
}

/// Server, client and innocent-client namespaces, linked and addressed:
/// srv 198.51.100.1/24 + 2001:db8:1::1/64 ↔ cli 198.51.100.2/24 + 2001:db8:1::2/64, and
/// srv 203.0.113.1/24 ↔ inn 203.0.113.2/24. Dropping it removes them all.
pub struct PawsTopology {
    lab: Lab,
    pub server_ns: String,
    pub client_ns: String,
    pub innocent_ns: String,
    /// The client's end of its link to the server, where scenarios sniff.
    client_if: String,
    raw_ports_used: AtomicU16,
}

impl PawsTopology {
    /// Builds the namespaces, links and settings; sends no traffic.
    pub fn new(tag: &str) -> Result<PawsTopology> {
        let mut lab = Lab::new(tag)?;
        let server_ns = lab.add_ns("srv")?;
        let client_ns = lab.add_ns("cli")?;
        let innocent_ns = lab.add_ns("inn")?;
        let client_link = lab.link(
            &server_ns,
            &[&format!("{SERVER_V4}/24"), &format!("{SERVER_V6}/64")],
            &client_ns,
            &[&format!("{CLIENT_V4}/24"), &format!("{CLIENT_V6}/64")],
        )?;
        lab.link(
            &server_ns,
            &[&format!("{SERVER_INNOCENT_SIDE_V4}/24")],
            &innocent_ns,
            &[&format!("{INNOCENT_V4}/24")],
        )?;
        // By default the client's RST to a TIME_WAIT's ACK ends the TIME_WAIT (RFC 1337
        // "assassination") and lets the next SYN through; keeping it makes every SYN meet PAWS.
        lab.sysctl(&server_ns, "net.ipv4.tcp_rfc1337", "1")?;
        lab.nft(&client_ns, &raw_rst_filter())?;
        Ok(PawsTopology {
            lab,
            server_ns,
            client_ns,
            innocent_ns,
            client_if: client_link.b_if,
            raw_ports_used: AtomicU16::new(0),
        })
    }

    /// The namespaces, for settings a caller wants to add.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn server_path(&self) -> PathBuf {
        self.lab.ns_path(&self.server_ns)
    }

    pub fn client_path(&self) -> PathBuf {
        self.lab.ns_path(&self.client_ns)
    }

    pub fn innocent_path(&self) -> PathBuf {
        self.lab.ns_path(&self.innocent_ns)
    }

    fn listen(&self, addr: impl Into<IpAddr>) -> Result<(TcpListener, SocketAddr)> {
        let listener = listen_in(&self.server_path(), SocketAddr::new(addr.into(), 0))?;
        let local = listener.local_addr()?;
        Ok((listener, local))
    }

    fn set_client_timestamps(&self, mode: &str) -> Result<()> {
        self.lab.sysctl(&self.client_ns, TIMESTAMPS_SYSCTL, mode)
    }

    fn next_raw_port(&self) -> u16 {
        let span = RAW_PORT_LAST - RAW_PORT_FIRST + 1;
        RAW_PORT_FIRST + self.raw_ports_used.fetch_add(1, Ordering::Relaxed) % span
    }

    fn report(&self, client_addr: IpAddr, server: SocketAddr, injected: u64, injection_time: Duration) -> PawsRun {
        PawsRun {
            server_ns: self.server_ns.clone(),
            client_ns: self.client_ns.clone(),
            client_addr,
            server,
            innocent_ns: Some(self.innocent_ns.clone()),
            innocent_addr: Some(INNOCENT_V4.into()),
            injected,
            injection_time,
        }
    }
}

/// The client kernel answers the server's SYN-ACKs to hand-made handshakes with RSTs (no socket
/// owns those ports), which would kill them; drop those, but not the raw sender's own (marked)
/// RSTs.
fn raw_rst_filter() -> String {
    format!(
        "table inet netdiag_scenario {{
            chain output {{
                type filter hook output priority 0; policy accept;
                tcp sport {RAW_PORT_FIRST}-{RAW_PORT_LAST} tcp flags & rst == rst \
                    meta mark != {RAW_MARK:#x} drop
            }}
        }}"
    )
}

/// A live connection client → server, then `count` data segments injected on its 4-tuple with
/// a TSval far in the past: each is dropped by PAWS and counted in the server's `TcpExtPAWSEstab`.
/// The server answers each with a duplicate ACK (data segments are exempt from the kernel's
/// out-of-window ACK rate limit). The connection stays usable and is closed cleanly at the end.
pub fn paws_established(topo: &PawsTopology, v6: bool, count: u32) -> Result<PawsRun> {
    let (client_ip, server_ip): (IpAddr, IpAddr) = if v6 {
        (CLIENT_V6.into(), SERVER_V6.into())
    } else {
        (CLIENT_V4.into(), SERVER_V4.into())
    };
    let (listener, server) = topo.listen(server_ip)?;
    let mut client = connect_in(&topo.client_path(), None, server, CONNECT_TIMEOUT)?;
    let mut accepted = accept_within(&listener, IO_TIMEOUT)?;
    let live = sniff_data_segment(topo, &mut client, &mut accepted)?;
    let stale = stale_copy(&live)?;
    let raw = RawSender::open_in(&topo.client_path(), v6)?;
    let started = Instant::now();
    for _ in 0..count {
        raw.send(&stale)?;
    }
    let injection_time = started.elapsed();
    // Also a barrier: once this arrives the server has processed what was injected before it.
    exchange(&mut client, &mut accepted, b"after")?;
    close_in_order(client, accepted)?;
    Ok(topo.report(client_ip, server, count.into(), injection_time))
}

/// Sends one real data segment from the client and returns it as captured on the wire.
fn sniff_data_segment(
    topo: &PawsTopology,
    client: &mut TcpStream,
    accepted: &mut TcpStream,
) -> Result<Segment> {
    let sniffer = Sniffer::open_in(&topo.client_path(), &topo.client_if)?;
    let (local, peer) = (client.local_addr()?, client.peer_addr()?);
    exchange(client, accepted, b"before")?;
    sniffer
        .wait_for(IO_TIMEOUT, |s| s.src == local && s.dst == peer && !s.payload.is_empty())
        .context("capture the client's data segment")
}

/// The client's next in-sequence segment, but with a TSval from long ago. It carries data so
/// it cannot pass as a reordered pure ACK (`tcp_disordered_ack_check`).
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

/// The NAT case: two clients behind one address with different timestamp clocks. The client
/// connects with the clock that is ahead, the server closes first and so holds the 4-tuple in
/// TIME_WAIT, then the client reconnects from the same port with the clock that is behind
/// (tcp_timestamps switched between 1 and 2 in the client namespace, then restored; two RST-ended
/// probe connections on that 4-tuple first tell which mode is ahead). Every SYN of the reconnect
/// is rejected (`TcpExtPAWSTimewait`) until the connect gives up after 2.5 s, about 3 s in all.
/// `injected` is exact: the SYNs are counted on the wire, minus one if a connect got through.
pub fn paws_time_wait(topo: &PawsTopology) -> Result<PawsRun> {
    let (listener, server) = topo.listen(SERVER_V4)?;
    paws_time_wait_between(topo, &OwnEnds { topo, listener, server })
}

/// [`paws_time_wait`] with `ends` making the connections and accepting them, as real processes
/// may (a server and a client in containers of the topology's namespaces).
pub fn paws_time_wait_between(topo: &PawsTopology, ends: &impl TimeWaitEnds) -> Result<PawsRun> {
    let original = topo.lab.read_sysctl(&topo.client_ns, TIMESTAMPS_SYSCTL)?;
    let started = Instant::now();
    let rejected = reconnect_behind_time_wait(topo, ends);
    let injection_time = started.elapsed();
    topo.set_client_timestamps(&original)?;
    Ok(topo.report(CLIENT_V4.into(), ends.server(), rejected?, injection_time))
}

/// The two ends of the TIME_WAIT reconnect. The clock probes are this process's sockets
/// whatever the ends: they only read the client's TSval on the 4-tuple, and end with an RST.
pub trait TimeWaitEnds {
    /// Where the server listens (IPv4, on [`SERVER_V4`]).
    fn server(&self) -> SocketAddr;
    /// The server's end of a probe connection when this process accepts them, to hold until
    /// the probe's RST has reached it; `None` when a server process of its own accepts them.
    fn accept_probe(&self) -> Result<Option<TcpStream>>;
    /// One connection from the client's `port` that the server closes first.
    fn server_closes_first(&self, port: u16) -> Result<()>;
    /// A connect from `port`, given up after `timeout`; `Ok` if it got through (and is closed).
    fn reconnect(&self, port: u16, timeout: Duration) -> Result<()>;
}

/// Both ends as sockets of this process, in the client and server namespaces.
struct OwnEnds<'a> {
    topo: &'a PawsTopology,
    listener: TcpListener,
    server: SocketAddr,
}

impl TimeWaitEnds for OwnEnds<'_> {
    fn server(&self) -> SocketAddr {
        self.server
    }

    fn accept_probe(&self) -> Result<Option<TcpStream>> {
        accept_within(&self.listener, IO_TIMEOUT).map(Some)
    }

    fn server_closes_first(&self, port: u16) -> Result<()> {
        let from = SocketAddr::new(CLIENT_V4.into(), port);
        let mut client = connect_in(&self.topo.client_path(), Some(from), self.server, CONNECT_TIMEOUT)?;
        let mut accepted = accept_within(&self.listener, IO_TIMEOUT)?;
        exchange(&mut client, &mut accepted, b"first")?;
        close_in_order(accepted, client)
    }

    fn reconnect(&self, port: u16, timeout: Duration) -> Result<()> {
        let from = SocketAddr::new(CLIENT_V4.into(), port);
        let client = connect_in(&self.topo.client_path(), Some(from), self.server, timeout)?;
        close_in_order(client, accept_within(&self.listener, IO_TIMEOUT)?)
    }
}

fn reconnect_behind_time_wait(topo: &PawsTopology, ends: &impl TimeWaitEnds) -> Result<u64> {
    let (port, with_offset) = probe_tsval(topo, ends, None, WITH_OFFSET)?;
    let (_, without_offset) = probe_tsval(topo, ends, Some(port), WITHOUT_OFFSET)?;
    let (ahead, behind) = order_clocks(with_offset, without_offset)?;
    topo.set_client_timestamps(ahead)?;
    ends.server_closes_first(port)?;
    wait_for_time_wait_on_server(topo, ends.server(), port)?;
    topo.set_client_timestamps(behind)?;
    count_rejected_reconnect(topo, ends, port)
}

/// The client's TSval towards the server from `port` (any port if None) under timestamp
/// `mode`, and the port. The offset of mode 1 is random per 4-tuple, so only a probe on the
/// very 4-tuple the scenario reuses tells which mode is ahead. The probe ends with an RST,
/// which leaves no TIME_WAIT on either side, so the 4-tuple is free again at once.
fn probe_tsval(topo: &PawsTopology, ends: &impl TimeWaitEnds, port: Option<u16>, mode: &str) -> Result<(u16, u32)> {
    topo.set_client_timestamps(mode)?;
    let from = port.map(|port| SocketAddr::new(CLIENT_V4.into(), port));
    let client = connect_in(&topo.client_path(), from, ends.server(), CONNECT_TIMEOUT)?;
    let accepted = ends.accept_probe()?;
    let probed = (client.local_addr()?.port(), tsval_now(&client)?);
    abort(client)?;
    let server_ns = topo.server_path();
    wait_until(IO_TIMEOUT, "server drops the probe connection", || {
        Ok(tcp4_sockets(&server_ns)?.iter().all(|row| row.remote_port != probed.0))
    })?;
    drop(accepted);
    Ok(probed)
}

/// Which timestamp mode is ahead and which behind, given their TSvals taken moments apart.
fn order_clocks(with_offset: u32, without_offset: u32) -> Result<(&'static str, &'static str)> {
    let gap = with_offset.wrapping_sub(without_offset) as i32;
    ensure!(
        gap.unsigned_abs() > MIN_CLOCK_GAP,
        "the timestamp offset of this 4-tuple is only {gap} ms; the two clocks cannot be told apart"
    );
    Ok(if gap > 0 { (WITH_OFFSET, WITHOUT_OFFSET) } else { (WITHOUT_OFFSET, WITH_OFFSET) })
}

/// Returns once the server holds the 4-tuple from the client's `port` in TIME_WAIT and the
/// client has released the port.
fn wait_for_time_wait_on_server(topo: &PawsTopology, server: SocketAddr, port: u16) -> Result<()> {
    let (server_ns, client_ns) = (topo.server_path(), topo.client_path());
    wait_until(IO_TIMEOUT, "server TIME_WAIT and client port released", || {
        let in_time_wait = tcp4_sockets(&server_ns)?.iter().any(|row| {
            row.local_port == server.port() && row.remote_port == port && row.state == TCP_TIME_WAIT
        });
        let released = tcp4_sockets(&client_ns)?.iter().all(|row| row.local_port != port);
        Ok(in_time_wait && released)
    })
}

/// Reconnects from `port` and counts the SYNs PAWS rejected: all SYNs seen on the wire, but
/// the last one if the connect got through after all.
fn count_rejected_reconnect(topo: &PawsTopology, ends: &impl TimeWaitEnds, port: u16) -> Result<u64> {
    let (from, server) = (SocketAddr::new(CLIENT_V4.into(), port), ends.server());
    let sniffer = Sniffer::open_in(&topo.client_path(), &topo.client_if)?;
    let attempt = ends.reconnect(port, REJECTED_CONNECT_TIMEOUT);
    let syns = sniffer
        .drain(|s| s.src == from && s.dst == server && s.flags & (SYN | ACK) == SYN)?
        .len() as u64;
    let rejected = match attempt {
        Err(err) if syns == 0 => return Err(err),
        Err(_) => syns,
        Ok(()) => syns.saturating_sub(1),
    };
    ensure!(rejected > 0, "no SYN of the reconnect was rejected ({syns} sent)");
    Ok(rejected)
}

/// `count` handshakes done by hand from the client, each with a final ACK whose TSecr echoes
/// nothing the server sent: `tcp_check_req` drops it (reason TCP_RFC7323_TSECR) and counts
/// `TcpExtTSEcrRejected`. Each uses its own source port and ends with an RST that removes the
/// server's request socket.
pub fn paws_tsecr(topo: &PawsTopology, count: u32) -> Result<PawsRun> {
    let (_listener, server) = topo.listen(SERVER_V4)?;
    let sniffer = Sniffer::open_in(&topo.client_path(), &topo.client_if)?;
    let raw = RawSender::open_in(&topo.client_path(), false)?;
    let started = Instant::now();
    for _ in 0..count {
        let client = SocketAddr::new(CLIENT_V4.into(), topo.next_raw_port());
        handshake_with_bad_tsecr(&raw, &sniffer, client, server)?;
    }
    Ok(topo.report(CLIENT_V4.into(), server, count.into(), started.elapsed()))
}

fn handshake_with_bad_tsecr(
    raw: &RawSender,
    sniffer: &Sniffer,
    client: SocketAddr,
    server: SocketAddr,
) -> Result<()> {
    let isn = random_u32();
    let tsval = random_u32();
    let syn = Segment {
        src: client,
        dst: server,
        seq: isn,
        ack: 0,
        flags: SYN,
        window: RAW_WINDOW,
        mss: Some(RAW_MSS),
        timestamp: Some(Timestamp { val: tsval, ecr: 0 }),
        payload: Vec::new(),
    };
    raw.send(&syn)?;
    let from_server = |s: &Segment| s.src == server && s.dst == client;
    let syn_ack = sniffer
        .wait_for(IO_TIMEOUT, |s| {
            from_server(s) && s.has(SYN | ACK) && s.ack == isn.wrapping_add(1)
        })
        .with_context(|| format!("no SYN-ACK for {client}"))?;
    let server_ts = syn_ack.timestamp.context("the server's SYN-ACK carries no timestamp")?;
    let bad_ack = Segment {
        seq: isn.wrapping_add(1),
        ack: syn_ack.seq.wrapping_add(1),
        flags: ACK,
        mss: None,
        // `| 1`: a TSecr of 0 means "none" and would not be checked.
        timestamp: Some(Timestamp {
            val: tsval.wrapping_add(1),
            ecr: server_ts.val.wrapping_add(BOGUS_TSECR_SHIFT) | 1,
        }),
        ..syn
    };
    raw.send(&bad_ack)?;
    // The server answers a rejected ACK with an ACK of its own; an accepted one gets no reply.
    sniffer
        .wait_for(IO_TIMEOUT, |s| from_server(s) && s.flags & (SYN | ACK | RST | FIN) == ACK)
        .with_context(|| format!("the server did not reject the bad TSecr from {client}"))?;
    raw.send(&Segment { ack: 0, flags: RST, timestamp: None, ..bad_ack })
}

/// Ordinary short connections from the innocent client: request, response, client closes first.
/// Causes no PAWS drops.
pub fn innocent_traffic(topo: &PawsTopology, connections: u32) -> Result<()> {
    let (listener, server) = topo.listen(SERVER_INNOCENT_SIDE_V4)?;
    for _ in 0..connections {
        let mut client = connect_in(&topo.innocent_path(), None, server, CONNECT_TIMEOUT)?;
        let mut accepted = accept_within(&listener, IO_TIMEOUT)?;
        exchange(&mut client, &mut accepted, b"request")?;
        exchange(&mut accepted, &mut client, b"response")?;
        close_in_order(client, accepted)?;
    }
    Ok(())
}

/// Unpredictable enough for ISNs and TSvals of hand-made handshakes.
fn random_u32() -> u32 {
    std::hash::RandomState::new().hash_one(Instant::now()) as u32
}

/// `count` hand-made IPv6 handshakes, each from its own client address (`2001:db8:2::<first+i>`,
/// added to the client's interface; the server routes 2001:db8:2::/64 via the client, so the
/// addresses cost it no neighbour entry each), each ending with a final ACK whose TSecr the
/// server never sent, as in [`paws_tsecr`]: one rejected segment per address, so `count`
/// distinct peers. For tests of how netdiag copes with many peers.
pub fn paws_tsecr_from_many(topo: &PawsTopology, first: u16, count: u16) -> Result<PawsRun> {
    let clients: Vec<Ipv6Addr> =
        (0..count).map(|i| Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, first.wrapping_add(i))).collect();
    let batch: String = clients
        .iter()
        .map(|addr| format!("address add {addr}/128 dev {} nodad\n", topo.client_if))
        .collect();
    run_ip_batch(&topo.client_ns, &batch)?;
    run_ip_batch(&topo.server_ns, &format!("route replace 2001:db8:2::/64 via {CLIENT_V6}\n"))?;
    let (_listener, server) = topo.listen(SERVER_V6)?;
    let sniffer = Sniffer::open_in(&topo.client_path(), &topo.client_if)?;
    let raw = RawSender::open_in(&topo.client_path(), true)?;
    let started = Instant::now();
    for addr in &clients {
        let client = SocketAddr::new((*addr).into(), topo.next_raw_port());
        handshake_with_bad_tsecr(&raw, &sniffer, client, server)?;
    }
    let first = clients.first().copied().unwrap_or(CLIENT_V6).into();
    let mut run = topo.report(first, server, count.into(), started.elapsed());
    run.innocent_ns = None;
    run.innocent_addr = None;
    Ok(run)
}

/// `ip -n <ns> -batch -` with `commands`, one per line.
fn run_ip_batch(ns: &str, commands: &str) -> Result<()> {
    use std::{io::Write as _, process::{Command, Stdio}};
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("run ip -batch")?;
    child.stdin.take().context("ip stdin")?.write_all(commands.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "ip -batch in {ns}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
