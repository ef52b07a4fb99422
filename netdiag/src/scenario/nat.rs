//! Seed 002 reproduced: hosts behind one NAT address, each with its own TCP timestamp clock,
//! reconnecting to a server that closes first, and a listener that never accepts.
//!
//! ```text
//!  nat0 192.0.2.2 ─┐                  (masquerade)
//!  nat1 192.0.2.3 ─┤ rtr 192.0.2.1 / 203.0.113.1 ── 198.51.100.7 ─── srv 198.51.100.1
//!  dir0 203.0.113.2┤     (routed, no NAT)
//!  dir1 203.0.113.3┘
//! ```
//!
//! The clients behind the NAT bind the same source port, which masquerade keeps when it is
//! free, so the server sees the very 4-tuple it holds in TIME_WAIT. Linux (tcp_timestamps=1)
//! gives each 4-tuple its own random timestamp offset, and the clients' pre-NAT 4-tuples differ:
//! their clocks differ, as two hosts' would.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use socket2::{Domain, Protocol, Socket, Type};

use super::{
    lab::Lab,
    packet::{ACK, SYN},
    wire::{
        CONNECT_TIMEOUT, IO_TIMEOUT, Sniffer, TCP_TIME_WAIT, accept_within, close_in_order, connect_in,
        exchange, listen_in, tcp4_sockets, wait_until,
    },
};
use crate::netns;

/// The server.
pub const NAT_SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The router's outside address: every client behind the NAT appears as this one.
pub const NAT_PUBLIC_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const ROUTER_INSIDE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ROUTER_DIRECT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The port of the seed incident.
pub const NAT_SERVER_PORT: u16 = 443;
/// The port of the listener that never accepts.
pub const BACKLOG_PORT: u16 = 8443;
/// The port of the direct clients' ordinary traffic.
pub const PLAIN_PORT: u16 = 80;
/// The source port every client behind the NAT connects from.
pub const SHARED_SOURCE_PORT: u16 = 41000;
/// The router forgets a closed connection's NAT mapping after this (conntrack TIME_WAIT),
/// so the next client gets the same outside port; the default is 120 s.
const CONNTRACK_TIME_WAIT_S: u64 = 1;
const CONNTRACK_FORGET: Duration = Duration::from_millis(CONNTRACK_TIME_WAIT_S * 1000 + 500);
/// Bound on a connect that PAWS or a full accept queue keeps unanswered: the first SYN and
/// one or two retransmissions.
const REJECTED_CONNECT_TIMEOUT: Duration = Duration::from_millis(2500);

/// Namespaces, links, routes and the NAT; no traffic. Dropping it removes them all.
pub struct NatTopology {
    lab: Lab,
    pub server_ns: String,
    pub router_ns: String,
    /// Behind the NAT: 192.0.2.2, 192.0.2.3, ...
    pub nat_clients: Vec<(String, Ipv4Addr)>,
    /// Routed without NAT: 203.0.113.2, 203.0.113.3, ...
    pub direct_clients: Vec<(String, Ipv4Addr)>,
    server_if: String,
}

impl NatTopology {
    pub fn new(tag: &str, nat_clients: u8, direct_clients: u8) -> Result<NatTopology> {
        ensure!(nat_clients <= 8 && direct_clients <= 8, "at most 8 clients of each kind");
        let mut lab = Lab::new(tag)?;
        let server_ns = lab.add_ns("srv")?;
        let router_ns = lab.add_ns("rtr")?;
        let uplink = lab.link(
            &server_ns,
            &[&format!("{NAT_SERVER_V4}/24")],
            &router_ns,
            &[&format!("{NAT_PUBLIC_V4}/24")],
        )?;
        lab.route(&server_ns, &["203.0.113.0/24", "via", &NAT_PUBLIC_V4.to_string()])?;
        lab.sysctl(&router_ns, "net.ipv4.ip_forward", "1")?;
        // Without it, the RST a rejected client sends to the server's out-of-window ACK would end
        // the TIME_WAIT (RFC 1337) and let the next SYN through.
        lab.sysctl(&server_ns, "net.ipv4.tcp_rfc1337", "1")?;
        let mut add_clients = |kind: &str, count: u8, router_side: Ipv4Addr, net: [u8; 3]| -> Result<Vec<(String, Ipv4Addr)>> {
            let mut out = Vec::new();
            for i in 0..count {
                let ns = lab.add_ns(&format!("{kind}{i}"))?;
                let addr = Ipv4Addr::new(net[0], net[1], net[2], 2 + i);
                let link = lab.link(&ns, &[&format!("{addr}/32")], &router_ns, &[&format!("{router_side}/32")])?;
                lab.route(&router_ns, &[&format!("{addr}/32"), "dev", &link.b_if])?;
                lab.route(&ns, &[&format!("{router_side}/32"), "dev", &link.a_if])?;
                lab.route(&ns, &["default", "via", &router_side.to_string()])?;
                out.push((ns, addr));
            }
            Ok(out)
        };
        let nat_clients = add_clients("nat", nat_clients, ROUTER_INSIDE_V4, [192, 0, 2])?;
        let direct_clients = add_clients("dir", direct_clients, ROUTER_DIRECT_V4, [203, 0, 113])?;
        lab.nft(
            &router_ns,
            &format!(
                "table ip netdiag_nat {{
                    chain postrouting {{
                        type nat hook postrouting priority srcnat; policy accept;
                        ip saddr 192.0.2.0/24 oifname \"{}\" masquerade
                    }}
                }}",
                uplink.b_if
            ),
        )?;
        // The NAT table loaded conntrack in the router's namespace, so its settings exist now.
        let timeout = PathBuf::from("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait");
        netns::run_in(&lab.ns_path(&router_ns), move || {
            std::fs::write(&timeout, CONNTRACK_TIME_WAIT_S.to_string()).with_context(|| format!("write {}", timeout.display()))
        })?;
        Ok(NatTopology { lab, server_ns, router_ns, nat_clients, direct_clients, server_if: uplink.a_if })
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn server_path(&self) -> PathBuf {
        self.lab.ns_path(&self.server_ns)
    }

    fn path(&self, ns: &str) -> PathBuf {
        self.lab.ns_path(ns)
    }

    fn server_sniffer(&self) -> Result<Sniffer> {
        Sniffer::open_in(&self.server_path(), &self.server_if)
    }
}

/// SYNs and SYN-ACKs between one client address and one server port, captured at the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireCount {
    pub syns: u64,
    pub synacks: u64,
}

fn count_on_wire(sniffer: &Sniffer, client: IpAddr, server: SocketAddr) -> Result<WireCount> {
    let seen = sniffer.drain(|s| {
        (s.src.ip() == client && s.dst == server && s.flags & (SYN | ACK) == SYN)
            || (s.src == server && s.dst.ip() == client && s.has(SYN | ACK))
    })?;
    let syns = seen.iter().filter(|s| s.dst == server).count() as u64;
    Ok(WireCount { syns, synacks: seen.len() as u64 - syns })
}

/// What the NAT reproduction did. Holds the listener, so the server still listens when
/// netdiag reads its listeners at the end of a session.
pub struct NatRun {
    pub server_ns: String,
    pub nat_addr: IpAddr,
    pub server: SocketAddr,
    /// The client whose reconnect PAWS rejected (its clock is behind).
    pub rejected_client_ns: String,
    /// SYNs of the rejected reconnect, all dropped by PAWS against TIME_WAIT.
    pub rejected_syns: u64,
    /// Connections that completed.
    pub connections: u64,
    /// Everything between the NAT address and the server port, as captured at the server.
    pub wire: WireCount,
    /// `None` when a server process of its own listens ([`nat_time_wait_between`]).
    pub listener: Option<TcpListener>,
}

/// Clients behind the NAT take turns from the same source port; the server closes each
/// connection first and so holds its 4-tuple in TIME_WAIT. The first client whose clock is
/// behind the last one's sees every SYN dropped (PAWS against TIME_WAIT, `TcpExtPAWSTimewait`)
/// until its connect gives up. About 3 s per client turn plus 2.5 s for the rejected one.
pub fn nat_time_wait(topo: &NatTopology) -> Result<NatRun> {
    let server = SocketAddr::new(NAT_SERVER_V4.into(), NAT_SERVER_PORT);
    let listener = listen_in(&topo.server_path(), server)?;
    let run = nat_time_wait_between(topo, &OwnNatEnds { topo, listener: &listener })?;
    Ok(NatRun { listener: Some(listener), ..run })
}

/// [`nat_time_wait`] with `ends` making the connections and accepting them, as real processes
/// may (a server and clients in containers of the topology's namespaces).
pub fn nat_time_wait_between(topo: &NatTopology, ends: &impl NatEnds) -> Result<NatRun> {
    ensure!(topo.nat_clients.len() >= 2, "the NAT scenario needs two clients behind the NAT");
    let server = SocketAddr::new(NAT_SERVER_V4.into(), NAT_SERVER_PORT);
    let sniffer = topo.server_sniffer()?;
    // Each turn either completes a connection or ends the scenario.
    for (turn, (ns, addr)) in topo.nat_clients.iter().cycle().take(2 * topo.nat_clients.len()).enumerate() {
        let connections = turn as u64;
        let from = SocketAddr::new((*addr).into(), SHARED_SOURCE_PORT);
        let timeout = if connections == 0 { CONNECT_TIMEOUT } else { REJECTED_CONNECT_TIMEOUT };
        if !ends.server_closes_first(ns, from, timeout)? {
            let wire = count_on_wire(&sniffer, NAT_PUBLIC_V4.into(), server)?;
            let rejected_syns = wire.syns - connections;
            ensure!(wire.synacks == connections, "SYN-ACKs {} for {connections} connections", wire.synacks);
            return Ok(NatRun {
                server_ns: topo.server_ns.clone(),
                nat_addr: NAT_PUBLIC_V4.into(),
                server,
                rejected_client_ns: ns.clone(),
                rejected_syns,
                connections,
                wire,
                listener: None,
            });
        }
        let server_ns = topo.server_path();
        wait_until(IO_TIMEOUT, "server holds the NAT's 4-tuple in TIME_WAIT", || {
            Ok(tcp4_sockets(&server_ns)?.iter().any(|row| {
                row.local_port == NAT_SERVER_PORT && row.remote_port == SHARED_SOURCE_PORT && row.state == TCP_TIME_WAIT
            }))
        })
        .context("the NAT did not keep the clients' source port")?;
        std::thread::sleep(CONNTRACK_FORGET);
    }
    bail!("no client's clock was behind another's: the timestamp offsets of this run are all in order")
}

/// The NAT reconnects' two ends: [`nat_time_wait`] plays both with sockets of its own.
pub trait NatEnds {
    /// A connection from client namespace `ns` (address and port `from`) to
    /// [`NAT_SERVER_V4`]:[`NAT_SERVER_PORT`] that the server closes first; `false` if the connect
    /// gave up after `timeout`.
    fn server_closes_first(&self, ns: &str, from: SocketAddr, timeout: Duration) -> Result<bool>;
}

/// Both ends as sockets of this process, in the client and server namespaces.
struct OwnNatEnds<'a> {
    topo: &'a NatTopology,
    listener: &'a TcpListener,
}

impl NatEnds for OwnNatEnds<'_> {
    fn server_closes_first(&self, ns: &str, from: SocketAddr, timeout: Duration) -> Result<bool> {
        let server = self.listener.local_addr()?;
        let Ok(mut client) = connect_in(&self.topo.path(ns), Some(from), server, timeout) else { return Ok(false) };
        let mut accepted = accept_within(self.listener, IO_TIMEOUT)?;
        exchange(&mut client, &mut accepted, b"request")?;
        close_in_order(accepted, client)?;
        Ok(true)
    }
}

/// What the listen-overflow reproduction did. Holds the listener and the one connection
/// queued on it, so the queue is still full when netdiag reads it.
pub struct OverflowRun {
    pub server_ns: String,
    pub client_addr: IpAddr,
    pub server: SocketAddr,
    /// Connections that completed (and wait in the accept queue forever).
    pub connections: u64,
    /// SYNs of the connects that got no answer.
    pub unanswered_syns: u64,
    pub wire: WireCount,
    pub listener: TcpListener,
    pub queued: Vec<TcpStream>,
}

/// A listener with backlog 0 (room for one connection) that never accepts: one direct
/// client's first connect fills the queue, the next `attempts` connects get no SYN-ACK
/// (`TcpExtListenOverflows`, one per SYN) until they give up after 2.5 s each.
pub fn listen_overflow(topo: &NatTopology, attempts: u32) -> Result<OverflowRun> {
    let (ns, addr) = topo.direct_clients.first().context("the overflow scenario needs a direct client")?.clone();
    let server = SocketAddr::new(NAT_SERVER_V4.into(), BACKLOG_PORT);
    let listener = netns::run_in(&topo.server_path(), move || {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.bind(&server.into()).with_context(|| format!("bind {server}"))?;
        socket.listen(0)?;
        Ok(TcpListener::from(socket))
    })?;
    let sniffer = topo.server_sniffer()?;
    let first = connect_in(&topo.path(&ns), None, server, CONNECT_TIMEOUT)?;
    for _ in 0..attempts {
        ensure!(
            connect_in(&topo.path(&ns), None, server, REJECTED_CONNECT_TIMEOUT).is_err(),
            "a connect to the full listener succeeded"
        );
    }
    let wire = count_on_wire(&sniffer, addr.into(), server)?;
    ensure!(wire.synacks == 1, "{} SYN-ACKs for one completed connection", wire.synacks);
    Ok(OverflowRun {
        server_ns: topo.server_ns.clone(),
        client_addr: addr.into(),
        server,
        connections: 1,
        unanswered_syns: wire.syns - 1,
        wire,
        listener,
        queued: vec![first],
    })
}

/// Ordinary connections from every direct client, each with one timestamp clock: even
/// clients with tcp_timestamps=2 (one clock for all their connections), odd ones with 1 (a
/// random offset per connection). Clients close first. Returns the connections per client.
pub fn direct_traffic(topo: &NatTopology, per_client: u32) -> Result<(TcpListener, Vec<(IpAddr, u64)>)> {
    let server = SocketAddr::new(NAT_SERVER_V4.into(), PLAIN_PORT);
    let listener = listen_in(&topo.server_path(), server)?;
    let mut done = Vec::new();
    for (i, (ns, addr)) in topo.direct_clients.iter().enumerate() {
        topo.lab.sysctl(ns, "net.ipv4.tcp_timestamps", if i % 2 == 0 { "2" } else { "1" })?;
        for _ in 0..per_client {
            let mut client = connect_in(&topo.path(ns), None, server, CONNECT_TIMEOUT)?;
            let mut accepted = accept_within(&listener, IO_TIMEOUT)?;
            exchange(&mut client, &mut accepted, b"request")?;
            exchange(&mut accepted, &mut client, b"response")?;
            close_in_order(client, accepted)?;
            // Spread the SYNs in time, so each client's clock rate can be measured.
            std::thread::sleep(Duration::from_millis(150));
        }
        done.push((IpAddr::from(*addr), per_client.into()));
    }
    Ok((listener, done))
}
