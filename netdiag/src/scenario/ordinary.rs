//! Ordinary traffic, where nothing is wrong: what tracing costs a healthy host. Two namespaces
//! on one veth pair, client 192.0.2.10 — server 192.0.2.20 (no router, no impairment), and three
//! workloads, each for a fixed time and bounded in count too:
//!
//! * [`Workload::PingPong`]: one connection, TCP_NODELAY at both ends, a 1-byte request answered
//!   by a 1-byte response: one small segment each way per transaction. Transactions/s is a
//!   per-packet measure, steadier than the byte rate of small writes.
//! * [`Workload::Bulk`]: one connection, the client writes 64 KiB buffers, the server reads;
//!   bytes/s as the server received them.
//! * [`Workload::ConnectionRate`]: connect, wait for the server's FIN (it accepts and closes at
//!   once), close; connections/s.
//!
//! The client's and the server's threads are pinned to the CPUs a [`Pinning`] names, so runs are
//! comparable; the kernel's share of each packet runs mostly on the sender's CPU (veth).
use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use socket2::{Domain, Protocol, Socket, Type};

use super::{
    lab::Lab,
    wire::{CONNECT_TIMEOUT, IO_TIMEOUT, accept_within, listen_in},
};
use crate::netns;

pub const ORDINARY_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const ORDINARY_SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);

/// Longest run a caller may ask for.
pub const MAX_ORDINARY: Duration = Duration::from_secs(30);
/// Bounds on what one run may do, whatever the clock says.
const MAX_TRANSACTIONS: u64 = 100_000_000;
const MAX_BULK_BYTES: u64 = 1 << 40;
const MAX_CONNECTIONS: u64 = 5_000_000;
/// One write of the bulk transfer.
const BULK_BUFFER: usize = 64 * 1024;
/// How often the connection-rate server looks whether the client is done.
const ACCEPT_POLL: Duration = Duration::from_millis(100);
/// Clients keep ports busy until the server's TIME_WAIT is reused; the whole range helps.
const CLIENT_PORT_RANGE: &str = "1024 65535";

/// Client and server namespaces on one veth pair, addressed; no traffic yet.
pub struct OrdinaryTopology {
    lab: Lab,
    pub client_ns: String,
    pub server_ns: String,
}

impl OrdinaryTopology {
    pub fn new(tag: &str) -> Result<OrdinaryTopology> {
        let mut lab = Lab::new(tag)?;
        let client_ns = lab.add_ns("cli")?;
        let server_ns = lab.add_ns("srv")?;
        lab.link(
            &client_ns,
            &[&format!("{ORDINARY_CLIENT_V4}/24")],
            &server_ns,
            &[&format!("{ORDINARY_SERVER_V4}/24")],
        )?;
        lab.sysctl(&client_ns, "net.ipv4.ip_local_port_range", CLIENT_PORT_RANGE)?;
        Ok(OrdinaryTopology { lab, client_ns, server_ns })
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn client_path(&self) -> PathBuf {
        self.lab.ns_path(&self.client_ns)
    }

    pub fn server_path(&self) -> PathBuf {
        self.lab.ns_path(&self.server_ns)
    }
}

/// The CPUs the client's and the server's threads run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pinning {
    pub client_cpu: usize,
    pub server_cpu: usize,
}

impl Pinning {
    /// Both on one CPU, as the reporter measured: every transaction is two context
    /// switches there, and the tracer's programs sit on that CPU's critical path.
    pub fn same(cpu: usize) -> Pinning {
        Pinning { client_cpu: cpu, server_cpu: cpu }
    }

    pub fn describe(&self) -> String {
        if self.client_cpu == self.server_cpu {
            format!("client and server on CPU {}", self.client_cpu)
        } else {
            format!("client on CPU {}, server on CPU {}", self.client_cpu, self.server_cpu)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    PingPong,
    Bulk,
    ConnectionRate,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::PingPong, Workload::Bulk, Workload::ConnectionRate];

    pub fn name(self) -> &'static str {
        match self {
            Workload::PingPong => "request/response (1 byte each way, TCP_NODELAY)",
            Workload::Bulk => "bulk transfer (64 KiB writes)",
            Workload::ConnectionRate => "connection rate (connect, server closes, close)",
        }
    }

    /// What [`OrdinaryRun::amount`] counts.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::PingPong => "transactions",
            Workload::Bulk => "bytes",
            Workload::ConnectionRate => "connections",
        }
    }
}

/// What one run moved and how long it took.
#[derive(Clone, Copy, Debug)]
pub struct OrdinaryRun {
    pub workload: Workload,
    pub amount: u64,
    pub elapsed: Duration,
}

impl OrdinaryRun {
    pub fn per_second(&self) -> f64 {
        self.amount as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `workload` for `duration` between the topology's namespaces, client and server threads
/// pinned as `pinning` says.
pub fn run_ordinary(topo: &OrdinaryTopology, workload: Workload, duration: Duration, pinning: Pinning) -> Result<OrdinaryRun> {
    ensure!(duration > Duration::ZERO && duration <= MAX_ORDINARY, "a run lasts up to {MAX_ORDINARY:?}, not {duration:?}");
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    ensure!(pinning.client_cpu < cpus && pinning.server_cpu < cpus, "{} but this machine has {cpus} CPUs", pinning.describe());
    let (amount, elapsed) = match workload {
        Workload::PingPong => ping_pong(topo, duration, pinning)?,
        Workload::Bulk => bulk(topo, duration, pinning)?,
        Workload::ConnectionRate => connection_rate(topo, duration, pinning)?,
    };
    ensure!(amount > 0, "{} moved nothing in {duration:?}", workload.name());
    Ok(OrdinaryRun { workload, amount, elapsed })
}

fn ping_pong(topo: &OrdinaryTopology, duration: Duration, pinning: Pinning) -> Result<(u64, Duration)> {
    let listener = listen_in(&topo.server_path(), SocketAddr::new(ORDINARY_SERVER_V4.into(), 0))?;
    let server_addr = listener.local_addr()?;
    let server = spawn_pinned(pinning.server_cpu, move || {
        let mut conn = accept_within(&listener, CONNECT_TIMEOUT)?;
        conn.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        for answered in 0..=MAX_TRANSACTIONS {
            match conn.read(&mut byte) {
                Ok(0) => return Ok(answered),
                Ok(_) => conn.write_all(&byte).context("respond")?,
                Err(e) => return Err(e).context("read a request"),
            }
        }
        bail!("more than {MAX_TRANSACTIONS} requests")
    });
    let client = netns::run_in(&topo.client_path(), move || {
        pin_to(pinning.client_cpu)?;
        let mut conn = connect(server_addr)?;
        conn.set_nodelay(true)?;
        let started = Instant::now();
        let deadline = started + duration;
        let mut byte = [1u8; 1];
        let mut done = 0u64;
        while done < MAX_TRANSACTIONS && (!done.is_multiple_of(64) || Instant::now() < deadline) {
            conn.write_all(&byte).context("request")?;
            conn.read_exact(&mut byte).context("read a response")?;
            done += 1;
        }
        let elapsed = started.elapsed();
        conn.shutdown(Shutdown::Write)?;
        Ok((done, elapsed))
    });
    let answered = join(server);
    let (done, elapsed) = client?;
    ensure!(answered? == done, "the server answered a different number of requests than the client sent");
    Ok((done, elapsed))
}

fn bulk(topo: &OrdinaryTopology, duration: Duration, pinning: Pinning) -> Result<(u64, Duration)> {
    let listener = listen_in(&topo.server_path(), SocketAddr::new(ORDINARY_SERVER_V4.into(), 0))?;
    let server_addr = listener.local_addr()?;
    let server = spawn_pinned(pinning.server_cpu, move || {
        let mut conn = accept_within(&listener, CONNECT_TIMEOUT)?;
        let mut buffer = vec![0u8; BULK_BUFFER];
        let mut received = 0u64;
        while received <= MAX_BULK_BYTES {
            match conn.read(&mut buffer) {
                Ok(0) => return Ok((received, Instant::now())),
                Ok(n) => received += n as u64,
                Err(e) => return Err(e).context("read the transfer"),
            }
        }
        bail!("more than {MAX_BULK_BYTES} bytes")
    });
    let client = netns::run_in(&topo.client_path(), move || {
        pin_to(pinning.client_cpu)?;
        let mut conn = connect(server_addr)?;
        let buffer = vec![0x5au8; BULK_BUFFER];
        let started = Instant::now();
        let deadline = started + duration;
        let mut sent = 0u64;
        while sent + (BULK_BUFFER as u64) <= MAX_BULK_BYTES && Instant::now() < deadline {
            conn.write_all(&buffer).context("write the transfer")?;
            sent += BULK_BUFFER as u64;
        }
        conn.shutdown(Shutdown::Write)?;
        Ok((sent, started))
    });
    let server = join(server);
    let (sent, started) = client?;
    let (received, ended) = server?;
    ensure!(received == sent, "the server received {received} of {sent} bytes");
    Ok((received, ended.duration_since(started)))
}

fn connection_rate(topo: &OrdinaryTopology, duration: Duration, pinning: Pinning) -> Result<(u64, Duration)> {
    let listener = netns::run_in(&topo.server_path(), || {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::new(ORDINARY_SERVER_V4.into(), 0).into())?;
        socket.listen(4096)?;
        // A blocking accept that gives up now and then, to look whether the client is done.
        socket.set_read_timeout(Some(ACCEPT_POLL))?;
        Ok(TcpListener::from(socket))
    })?;
    let server_addr = listener.local_addr()?;
    let client_done = Arc::new(AtomicBool::new(false));
    let done_flag = client_done.clone();
    let server = spawn_pinned(pinning.server_cpu, move || {
        let mut accepted = 0u64;
        // Bounded by the client: it gives up within its own bounds and then says so.
        let give_up = Instant::now() + MAX_ORDINARY + 2 * IO_TIMEOUT;
        while accepted <= MAX_CONNECTIONS && Instant::now() < give_up {
            match listener.accept() {
                // Closed at once: the client sees the FIN.
                Ok((conn, _)) => {
                    drop(conn);
                    accepted += 1;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if done_flag.load(Ordering::Acquire) {
                        return Ok(accepted);
                    }
                }
                Err(e) => return Err(e).context("accept"),
            }
        }
        bail!("the connection-rate server gave up after {accepted} connections")
    });
    let client = netns::run_in(&topo.client_path(), move || {
        pin_to(pinning.client_cpu)?;
        let started = Instant::now();
        let deadline = started + duration;
        let mut done = 0u64;
        let mut rest = [0u8; 1];
        while done < MAX_CONNECTIONS && Instant::now() < deadline {
            let mut conn = connect(server_addr).with_context(|| format!("connection {}", done + 1))?;
            ensure!(conn.read(&mut rest).context("wait for the server's close")? == 0, "the server sent data");
            drop(conn);
            done += 1;
        }
        Ok((done, started.elapsed()))
    });
    client_done.store(true, Ordering::Release);
    let accepted = join(server);
    let (done, elapsed) = client?;
    // Every connection the client completed was accepted; the server may not have seen a last
    // one whose connect failed.
    ensure!(accepted? >= done, "the server accepted fewer connections than the client completed");
    Ok((done, elapsed))
}

/// A blocking connection from the calling thread's namespace: the connect and every read and
/// write bounded by the usual timeouts.
fn connect(to: SocketAddr) -> Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    // A blocking connect gives up after SO_SNDTIMEO.
    socket.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    socket.connect(&to.into()).with_context(|| format!("connect to {to}"))?;
    socket.set_write_timeout(Some(IO_TIMEOUT))?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(socket.into())
}

fn spawn_pinned<T: Send + 'static>(cpu: usize, f: impl FnOnce() -> Result<T> + Send + 'static) -> JoinHandle<Result<T>> {
    std::thread::spawn(move || {
        pin_to(cpu)?;
        f()
    })
}

fn join<T>(handle: JoinHandle<Result<T>>) -> Result<T> {
    handle.join().map_err(|_| anyhow::anyhow!("a traffic thread panicked"))?
}

/// Pins the calling thread to one CPU.
fn pin_to(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes within it for cpu < CPU_SETSIZE,
    // which `run_ordinary` checked against the machine's CPU count.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    ensure!(rc == 0, "pin to CPU {cpu}: {}", std::io::Error::last_os_error());
    Ok(())
}
