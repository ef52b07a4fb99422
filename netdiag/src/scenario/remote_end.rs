//! An ACK loop whose other end is on another host: one Linux end that netdiag sees, and a far
//! end it cannot.
//!
//! client 198.51.100.30 (tun) ═ wire ═ (tun) server 203.0.113.30
//!
//! The wire is this process: it carries every packet between the two namespaces' tun devices
//! with a one-way delay of [`ONE_WAY_DELAY`], so the connection's smoothed RTT is the path's.
//! * [`remote_ack_loop`]: the wire stands in for a far end behind a sequence-rewriting
//!   middlebox. Each duplicate ACK the server sends is taken off the wire, and one round trip
//!   later the far end's answer comes back: a pure ACK whose sequence number the middlebox moved
//!   out of window, as the far kernel's own duplicate ACK would arrive. Each segment in answers
//!   one of ours, as in seed 001, but there is no second Linux end for netdiag to see.
//! * [`paced_oow_flood`]: the same segments on the wire's own clock, answering nothing.
//!
//! The server answers every out-of-window segment (`tcp_invalid_ratelimit=0`); a loop of one
//! segment dies at the first answer the limiter holds back. The wire stops with its scenario,
//! and after [`WIRE_LIFETIME`] whatever happens.
use std::{
    collections::VecDeque,
    fs::File,
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr},
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt as _},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};

use super::{
    ack_loop::{FlowRun, RATELIMIT_SYSCTL, SEQ_FLIP},
    lab::{Lab, ip},
    packet::{ACK, Segment},
    wire::{CONNECT_TIMEOUT, IO_TIMEOUT, accept_within, close_in_order, connect_in, exchange, listen_in},
};
use crate::netns;

pub const REMOTE_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);
pub const REMOTE_SERVER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 30);
/// Each way: a round trip of 20 ms, far above what the wire itself adds.
pub const ONE_WAY_DELAY: Duration = Duration::from_millis(10);
/// The wire ends by itself after this long, scenario or not.
const WIRE_LIFETIME: Duration = Duration::from_secs(30);
/// Once told to stop, the wire carries on until it has been idle this long, so the closing
/// handshake in flight arrives and neither end is left retransmitting into nothing.
const DRAIN_QUIET: Duration = Duration::from_millis(100);
/// Longest episode a caller may ask for.
pub const MAX_REMOTE_EPISODE: Duration = Duration::from_secs(10);
const TUN_NAME: &str = "ndwire";

/// The two namespaces, each with a tun device whose other side is the wire.
pub struct RemoteEndTopology {
    lab: Lab,
    pub client_ns: String,
    pub server_ns: String,
}

impl RemoteEndTopology {
    pub fn new(tag: &str) -> Result<RemoteEndTopology> {
        let mut lab = Lab::new(tag)?;
        let client_ns = lab.add_ns("cli")?;
        let server_ns = lab.add_ns("srv")?;
        lab.sysctl(&server_ns, RATELIMIT_SYSCTL, "0")?;
        Ok(RemoteEndTopology { lab, client_ns, server_ns })
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The wire up and a connection across it to `server`: our own listener, with one message
    /// each way (the server's RTT then comes from data too), or someone else's, handshake only.
    fn connect(&self, server: Server) -> Result<(Wire, Connection)> {
        let wire = Wire::start(
            open_tun(&self.lab, &self.client_ns, REMOTE_CLIENT_V4, REMOTE_SERVER_V4)?,
            open_tun(&self.lab, &self.server_ns, REMOTE_SERVER_V4, REMOTE_CLIENT_V4)?,
        );
        let client_path = self.lab.ns_path(&self.client_ns);
        let connection = match server {
            Server::Own => {
                let listener = listen_in(&self.lab.ns_path(&self.server_ns), SocketAddr::new(REMOTE_SERVER_V4.into(), 0))?;
                let server = listener.local_addr()?;
                let mut client = connect_in(&client_path, None, server, CONNECT_TIMEOUT)?;
                let mut accepted = accept_within(&listener, IO_TIMEOUT)?;
                for _ in 0..3 {
                    exchange(&mut client, &mut accepted, b"hello")?;
                    exchange(&mut accepted, &mut client, b"hello")?;
                }
                Connection { client_addr: client.local_addr()?, server, client, accepted: Some(accepted) }
            }
            Server::Listening(port) => {
                let server = SocketAddr::new(REMOTE_SERVER_V4.into(), port);
                let client = connect_in(&client_path, None, server, CONNECT_TIMEOUT)?;
                Connection { client_addr: client.local_addr()?, server, client, accepted: None }
            }
        };
        Ok((wire, connection))
    }

    fn run(&self, server: Server, mode: Mode, duration: Duration) -> Result<FlowRun> {
        ensure!(duration <= MAX_REMOTE_EPISODE, "an episode runs at most {MAX_REMOTE_EPISODE:?}, not {duration:?}");
        let (wire, conn) = self.connect(server)?;
        wire.set(mode);
        std::thread::sleep(duration);
        wire.set(Mode::Carry);
        let Connection { client_addr, server, mut client, accepted } = conn;
        match accepted {
            // Also a barrier: the segments of the episode are all in once this got through.
            Some(mut accepted) => {
                exchange(&mut client, &mut accepted, b"after")?;
                close_in_order(client, accepted)?;
            }
            // Someone else's server: the last answers are in after a round trip and a margin.
            None => {
                std::thread::sleep(4 * ONE_WAY_DELAY);
                drop(client);
            }
        }
        let injected = wire.injected();
        wire.stop()?;
        Ok(FlowRun { client_ns: self.client_ns.clone(), server_ns: self.server_ns.clone(), client: client_addr, server, amount: injected })
    }
}

/// The server end of the connection.
#[derive(Clone, Copy)]
enum Server {
    /// A listener of this process's.
    Own,
    /// A listener someone else runs on this port in the server namespace (a container's).
    Listening(u16),
}

struct Connection {
    client_addr: SocketAddr,
    server: SocketAddr,
    client: std::net::TcpStream,
    accepted: Option<std::net::TcpStream>,
}

/// An ACK loop with its far end out of sight, for `duration`: each of the server's duplicate
/// ACKs answered one round trip later with an out-of-window one. `amount` is the answers sent.
pub fn remote_ack_loop(topo: &RemoteEndTopology, duration: Duration) -> Result<FlowRun> {
    topo.run(Server::Own, Mode::AnswerDupacks, duration)
}

/// [`remote_ack_loop`] against a listener someone else runs on `port` in the server namespace,
/// so that the server's socket is theirs (a container's, say), on a connection with no data.
pub fn remote_ack_loop_to(topo: &RemoteEndTopology, port: u16, duration: Duration) -> Result<FlowRun> {
    topo.run(Server::Listening(port), Mode::AnswerDupacks, duration)
}

/// The same out-of-window segments at `rate_per_s` on the wire's own clock, for `duration`;
/// the server's answers go on to the client, which finds them in order. `amount` is the
/// segments sent.
pub fn paced_oow_flood(topo: &RemoteEndTopology, rate_per_s: u32, duration: Duration) -> Result<FlowRun> {
    ensure!((1..=10_000).contains(&rate_per_s), "flood of {rate_per_s}/s");
    topo.run(Server::Own, Mode::Flood(rate_per_s), duration)
}

/// What the wire does besides carrying packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Carry,
    AnswerDupacks,
    Flood(u32),
}

impl Mode {
    fn encode(self) -> u32 {
        match self {
            Mode::Carry => 0,
            Mode::AnswerDupacks => u32::MAX,
            Mode::Flood(rate) => rate,
        }
    }

    fn decode(n: u32) -> Mode {
        match n {
            0 => Mode::Carry,
            u32::MAX => Mode::AnswerDupacks,
            rate => Mode::Flood(rate),
        }
    }
}

/// A tun device called [`TUN_NAME`] in `ns`, addressed `local`, with a route to `remote`
/// through it. The file is its other side.
fn open_tun(lab: &Lab, ns: &str, local: Ipv4Addr, remote: Ipv4Addr) -> Result<File> {
    let file = netns::run_in(&lab.ns_path(ns), || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .context("open /dev/net/tun (is the tun module loaded?)")?;
        // SAFETY: ifreq is plain data; the name is NUL-terminated within IFNAMSIZ.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (slot, byte) in request.ifr_name.iter_mut().zip(TUN_NAME.bytes()) {
            *slot = byte as libc::c_char;
        }
        request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads one ifreq the pointer describes.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut request) };
        ensure!(rc == 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        Ok(file)
    })?;
    ip(&["-n", ns, "addr", "add", &format!("{local}/32"), "peer", &format!("{remote}/32"), "dev", TUN_NAME])?;
    ip(&["-n", ns, "link", "set", TUN_NAME, "up"])?;
    Ok(file)
}

/// The wire's thread and the switches it reads.
struct Wire {
    mode: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    injected: Arc<AtomicU32>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Wire {
    /// The wire up, carrying packets and nothing else until [`Wire::set`] says otherwise.
    fn start(client_tun: File, server_tun: File) -> Wire {
        let state = (Arc::new(AtomicU32::new(Mode::Carry.encode())), Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
        let (m, s, i) = (state.0.clone(), state.1.clone(), state.2.clone());
        let thread = std::thread::spawn(move || carry(client_tun, server_tun, &m, &s, &i));
        Wire { mode: state.0, stop: state.1, injected: state.2, thread: Some(thread) }
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode.encode(), Ordering::Relaxed);
    }

    fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed).into()
    }

    fn stop(mut self) -> Result<()> {
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| anyhow::anyhow!("the wire's thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        if let Err(err) = self.join() {
            log::warn!("stopping the wire: {err:#}");
        }
    }
}

/// Which side a packet is written to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

struct Due {
    at: Instant,
    to: Side,
    packet: Vec<u8>,
}

/// The wire's loop: packets read from each tun are written to the other [`ONE_WAY_DELAY`]
/// later, in order; in the loop and flood modes, out-of-window segments for the server are
/// made from the client's latest segment.
fn carry(client: File, server: File, mode: &AtomicU32, stop: &AtomicBool, injected: &AtomicU32) -> Result<()> {
    let (mut client, mut server) = (client, server);
    let started = Instant::now();
    let mut queue: VecDeque<Due> = VecDeque::new();
    let mut latest_from_client: Option<Segment> = None;
    let mut next_flood = Instant::now();
    let mut buf = vec![0u8; 65536];
    let mut last_packet = Instant::now();
    while started.elapsed() < WIRE_LIFETIME {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) && queue.is_empty() && now - last_packet >= DRAIN_QUIET {
            break;
        }
        let mode = Mode::decode(mode.load(Ordering::Relaxed));
        if let Mode::Flood(rate) = mode
            && now >= next_flood
        {
            if let Some(answer) = latest_from_client.as_ref().map(out_of_window).transpose()? {
                server.write_all(&answer).context("inject into the server's tun")?;
                injected.fetch_add(1, Ordering::Relaxed);
            }
            next_flood = now.max(next_flood) + Duration::from_secs_f64(1.0 / f64::from(rate));
        }
        while queue.front().is_some_and(|d| d.at <= now) {
            let due = queue.pop_front().expect("checked");
            let tun = if due.to == Side::Client { &mut client } else { &mut server };
            // A full tun queue drops, as a link would.
            if let Err(err) = tun.write(&due.packet)
                && err.kind() != ErrorKind::WouldBlock
            {
                return Err(err).context("write to a tun");
            }
        }
        let wait = queue.front().map_or(Duration::from_millis(5), |d| d.at.saturating_duration_since(now));
        let wait = if matches!(mode, Mode::Flood(_)) { wait.min(next_flood.saturating_duration_since(now)) } else { wait };
        poll_both(&client, &server, wait.min(Duration::from_millis(5)))?;
        let now = Instant::now();
        while let Some(n) = read_packet(&mut client, &mut buf)? {
            last_packet = now;
            let packet = buf[..n].to_vec();
            if let Some(seg) = Segment::parse(&packet) {
                latest_from_client = Some(seg);
            }
            queue.push_back(Due { at: now + ONE_WAY_DELAY, to: Side::Server, packet });
        }
        while let Some(n) = read_packet(&mut server, &mut buf)? {
            last_packet = now;
            let packet = buf[..n].to_vec();
            let dupack = Segment::parse(&packet).is_some_and(|s| s.flags == ACK && s.payload.is_empty());
            match (mode, dupack, latest_from_client.as_ref()) {
                // The far end's answer, one round trip after our duplicate ACK left.
                (Mode::AnswerDupacks, true, Some(latest)) => {
                    queue.push_back(Due { at: now + 2 * ONE_WAY_DELAY, to: Side::Server, packet: out_of_window(latest)? });
                    injected.fetch_add(1, Ordering::Relaxed);
                }
                _ => queue.push_back(Due { at: now + ONE_WAY_DELAY, to: Side::Client, packet }),
            }
        }
        // The loop needs a first segment: the far end's, as if the middlebox began rewriting now.
        if mode == Mode::AnswerDupacks
            && injected.load(Ordering::Relaxed) == 0
            && let Some(latest) = &latest_from_client
        {
            server.write_all(&out_of_window(latest)?).context("inject the loop's first segment")?;
            injected.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// A pure ACK from the client, its sequence number moved out of window; its timestamp is the
/// client's latest, so PAWS passes it and the sequence check rejects it.
fn out_of_window(latest: &Segment) -> Result<Vec<u8>> {
    Segment {
        seq: latest.seq.wrapping_add(latest.payload.len() as u32).wrapping_add(SEQ_FLIP),
        flags: ACK,
        mss: None,
        payload: Vec::new(),
        ..latest.clone()
    }
    .to_ip_packet()
}

fn poll_both(a: &File, b: &File, timeout: Duration) -> Result<()> {
    let mut fds = [a, b].map(|f| libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 });
    let millis = timeout.as_millis().clamp(1, 1000) as i32;
    // SAFETY: two valid pollfds for the duration of the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, millis) };
    ensure!(rc >= 0 || std::io::Error::last_os_error().kind() == ErrorKind::Interrupted, "poll: {}", std::io::Error::last_os_error());
    Ok(())
}

fn read_packet(tun: &mut File, buf: &mut [u8]) -> Result<Option<usize>> {
    match tun.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(err) if err.kind() == ErrorKind::WouldBlock => Ok(None),
        Err(err) => Err(err).context("read from a tun"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_survive_their_encoding() {
        for mode in [Mode::Carry, Mode::AnswerDupacks, Mode::Flood(1), Mode::Flood(10_000)] {
            assert_eq!(Mode::decode(mode.encode()), mode);
        }
    }

    #[test]
    fn the_far_ends_answer_is_a_pure_ack_far_out_of_window_with_the_clients_timestamp() {
        let latest = Segment {
            src: "198.51.100.30:40000".parse().unwrap(),
            dst: "203.0.113.30:8080".parse().unwrap(),
            seq: 1000,
            ack: 5000,
            flags: ACK | super::super::packet::PSH,
            window: 500,
            mss: None,
            timestamp: Some(super::super::packet::Timestamp { val: 7, ecr: 9 }),
            payload: b"hello".to_vec(),
        };
        let answer = Segment::parse(&out_of_window(&latest).unwrap()).unwrap();
        assert_eq!((answer.src, answer.dst, answer.flags), (latest.src, latest.dst, ACK));
        assert_eq!(answer.seq, 1005 + SEQ_FLIP);
        assert_eq!((answer.ack, answer.timestamp), (5000, latest.timestamp));
        assert!(answer.payload.is_empty());
    }
}
