//! A SYN flood from spoofed sources: up to millions of distinct IPv6 documentation addresses
//! (2001:db8:ff00::/40, the index in the low 32 bits) sending SYNs to a closed port, so the
//! server kernel drops each one with reason NO_SOCKET; one real client (the "heavy" peer,
//! 2001:db8:1::2) interleaved at a steady share. Bounded by a packet count and a time limit.
//! Used by the flood test and the bench.
use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use socket2::{Domain, Protocol, Socket, Type};

use super::{
    lab::Lab,
    packet::{SYN, Segment},
    paws::{CLIENT_V6, SERVER_V6},
    wire::{CONNECT_TIMEOUT, connect_in},
};
use crate::netns;

/// A port nothing listens on in the server namespace.
pub const CLOSED_PORT: u16 = 9;
/// Packets handed to the kernel per `sendmmsg` call.
const BATCH: usize = 256;

/// What to send.
#[derive(Clone, Copy, Debug)]
pub struct FloodSpec {
    /// Distinct spoofed sources, one SYN each.
    pub sources: u32,
    /// One SYN from the heavy peer after every this many spoofed ones.
    pub heavy_every: u32,
    /// Stop sending after this long even if not all sources were used.
    pub time_limit: Duration,
}

/// What was sent.
#[derive(Clone, Debug)]
pub struct FloodRun {
    pub server_ns: String,
    pub heavy_addr: IpAddr,
    pub spoofed_sent: u64,
    pub heavy_sent: u64,
    pub elapsed: Duration,
}

impl FloodRun {
    pub fn packets_per_second(&self) -> f64 {
        (self.spoofed_sent + self.heavy_sent) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The spoofed source number `index` (below 2^32): 2001:db8:ff00::/40 plus the index.
pub fn spoofed_source(index: u32) -> Ipv6Addr {
    let [a, b, c, d] = index.to_be_bytes();
    Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))
}

/// Server and client namespaces on one veth pair (2001:db8:1::1 ↔ 2001:db8:1::2). The server
/// has no route back to the spoofed sources, so its RSTs to them die in route lookup; the heavy
/// peer's RSTs reach the client (and count in the server's `TcpOutRsts`).
pub struct FloodTopology {
    lab: Lab,
    pub server_ns: String,
    pub client_ns: String,
}

impl FloodTopology {
    /// Builds the namespaces and resolves the neighbours with one refused connection, so no
    /// flood packet waits on neighbour discovery (whose queue holds only a few).
    pub fn new(tag: &str) -> Result<FloodTopology> {
        let mut lab = Lab::new(tag)?;
        let server_ns = lab.add_ns("srv")?;
        let client_ns = lab.add_ns("cli")?;
        lab.link(&server_ns, &[&format!("{SERVER_V6}/64")], &client_ns, &[&format!("{CLIENT_V6}/64")])?;
        let server = SocketAddr::new(SERVER_V6.into(), CLOSED_PORT);
        let refused = connect_in(&lab.ns_path(&client_ns), None, server, CONNECT_TIMEOUT);
        ensure!(refused.is_err(), "something listens on {server} in the flood's server namespace");
        Ok(FloodTopology { lab, server_ns, client_ns })
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }
}

/// Sends the flood from the client namespace through one raw IPv6 socket with `sendmmsg`.
pub fn syn_flood(topo: &FloodTopology, spec: FloodSpec) -> Result<FloodRun> {
    ensure!(spec.heavy_every > 0, "heavy_every must be at least 1");
    let socket = netns::run_in(&topo.lab.ns_path(&topo.client_ns), || {
        Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW))).context("raw IPv6 socket")
    })?;
    let started = Instant::now();
    let (mut spoofed_sent, mut heavy_sent) = (0u64, 0u64);
    let mut next_source = 0u32;
    let mut since_heavy = 0u32;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    while next_source < spec.sources && started.elapsed() < spec.time_limit {
        batch.clear();
        let mut heavy_in_batch = 0u64;
        while batch.len() < BATCH && next_source < spec.sources {
            if since_heavy == spec.heavy_every {
                since_heavy = 0;
                batch.push(syn(CLIENT_V6, heavy_sent + heavy_in_batch)?);
                heavy_in_batch += 1;
            } else {
                since_heavy += 1;
                batch.push(syn(spoofed_source(next_source), u64::from(next_source))?);
                next_source += 1;
            }
        }
        send_batch(&socket, &batch)?;
        heavy_sent += heavy_in_batch;
        spoofed_sent += batch.len() as u64 - heavy_in_batch;
    }
    Ok(FloodRun {
        server_ns: topo.server_ns.clone(),
        heavy_addr: CLIENT_V6.into(),
        spoofed_sent,
        heavy_sent,
        elapsed: started.elapsed(),
    })
}

/// A SYN from `src` to the closed port; `n` varies the source port and sequence number.
fn syn(src: Ipv6Addr, n: u64) -> Result<Vec<u8>> {
    Segment {
        src: SocketAddr::new(src.into(), 1024 + (n % 60000) as u16),
        dst: SocketAddr::new(SERVER_V6.into(), CLOSED_PORT),
        seq: n as u32,
        ack: 0,
        flags: SYN,
        window: 1024,
        mss: None,
        timestamp: None,
        payload: Vec::new(),
    }
    .to_ip_packet()
}

/// Sends every packet of `batch` (all to the server), retrying the part a call did not take.
fn send_batch(socket: &Socket, batch: &[Vec<u8>]) -> Result<()> {
    let to: socket2::SockAddr = SocketAddr::new(SERVER_V6.into(), 0).into();
    let mut iovecs: Vec<libc::iovec> =
        batch.iter().map(|p| libc::iovec { iov_base: p.as_ptr() as *mut _, iov_len: p.len() }).collect();
    // SAFETY: mmsghdr is plain data; zeroed is a valid empty header.
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_name = to.as_ptr() as *mut _;
            header.msg_hdr.msg_namelen = to.len();
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
            header
        })
        .collect();
    let mut done = 0;
    while done < headers.len() {
        let left = &mut headers[done..];
        // SAFETY: every header points at a live iovec, packet and address for the call.
        let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), left.as_mut_ptr(), left.len() as u32, 0) };
        ensure!(sent > 0, "sendmmsg: {}", std::io::Error::last_os_error());
        done += sent as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofed_sources_are_distinct_documentation_addresses() {
        assert_eq!(spoofed_source(0).to_string(), "2001:db8:ff00::");
        assert_eq!(spoofed_source(999_999).to_string(), "2001:db8:ff00::f:423f");
        assert_ne!(spoofed_source(65_536), spoofed_source(1));
    }
}
