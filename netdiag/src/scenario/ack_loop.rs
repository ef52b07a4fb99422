//! ACK loops (seed 001) and their look-alikes, reproduced across a router namespace:
//! client 198.51.100.10 — router (198.51.100.1 | 203.0.113.1) — server 203.0.113.10.
//!
//! * [`start_ack_loop`]: the router flips bit 30 of every TCP sequence number in both
//!   directions (nftables), so each end finds the other's segments far out of window and
//!   answers each with a duplicate ACK, which the other end finds out of window in turn. With
//!   `tcp_invalid_ratelimit=0` at both ends nothing bounds it but the link: the router's links
//!   are shaped to 10 Mbit/s (HTB), so the loop runs at that line rate, about 19 000 segments/s
//!   each way, instead of starving every CPU of the host. A thread removes the rule at the
//!   deadline whatever the caller does, and dropping the topology deletes the namespaces anyway.
//! * [`oow_flood`]: with the default limiter, spoofed pure ACKs far out of window on a live
//!   connection at a steady rate; the server answers twice a second and counts the rest in
//!   `TcpExtTCPACKSkippedSeq`.
//! * [`unthrottled_oow_flood`]: the same with `tcp_invalid_ratelimit=0` at the server, which
//!   then answers every spoofed segment: in equals out at the server, as in a loop, but the
//!   client never sees our answers as out of window.
//! * [`lossy_bulk`]: a bulk transfer through a router that drops and reorders segments: many
//!   ordinary duplicate ACKs, none of them an ACK loop.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result, bail, ensure};

use super::{
    lab::{Lab, ip},
    packet::{ACK, Segment, Timestamp},
    wire::{CONNECT_TIMEOUT, IO_TIMEOUT, RawSender, Sniffer, accept_within, close_in_order, connect_in, exchange, listen_in},
};

pub const LOOP_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const LOOP_ROUTER_CLIENT_SIDE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const LOOP_ROUTER_SERVER_SIDE_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const LOOP_SERVER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// Moves a sequence number half a gigabyte away: far outside any receive window.
pub(super) const SEQ_FLIP: u32 = 0x4000_0000;
const SEQ_FLIP_TABLE: &str = "netdiag_seqflip";
const IMPAIR_TABLE: &str = "netdiag_impair";
pub(super) const RATELIMIT_SYSCTL: &str = "net.ipv4.tcp_invalid_ratelimit";
/// The router's links during a loop: the loop's line rate.
const LOOP_LINK_RATE: &str = "10mbit";
/// Longest loop a caller may ask for: a loop at full speed starves everything else.
pub const MAX_LOOP: Duration = Duration::from_secs(10);
/// Bound on one bulk transfer through the impaired router.
const BULK_TIMEOUT: Duration = Duration::from_secs(30);

/// Client, router and server namespaces, linked, addressed and routed; no traffic yet.
pub struct LoopTopology {
    lab: Lab,
    pub client_ns: String,
    pub router_ns: String,
    pub server_ns: String,
    /// The client's end of its link, where scenarios sniff.
    client_if: String,
    /// The router's ends of both links, where the impairment queues sit.
    router_ifs: [String; 2],
    /// The links are shaped for loops already: HTB refuses to be replaced by the same again.
    shaped: AtomicBool,
}

impl LoopTopology {
    pub fn new(tag: &str) -> Result<LoopTopology> {
        let mut lab = Lab::new(tag)?;
        let client_ns = lab.add_ns("cli")?;
        let router_ns = lab.add_ns("rtr")?;
        let server_ns = lab.add_ns("srv")?;
        let client_link = lab.link(
            &client_ns,
            &[&format!("{LOOP_CLIENT_V4}/24")],
            &router_ns,
            &[&format!("{LOOP_ROUTER_CLIENT_SIDE_V4}/24")],
        )?;
        let server_link = lab.link(
            &server_ns,
            &[&format!("{LOOP_SERVER_V4}/24")],
            &router_ns,
            &[&format!("{LOOP_ROUTER_SERVER_SIDE_V4}/24")],
        )?;
        ip(&["-n", &client_ns, "route", "add", "default", "via", &LOOP_ROUTER_CLIENT_SIDE_V4.to_string()])?;
        ip(&["-n", &server_ns, "route", "add", "default", "via", &LOOP_ROUTER_SERVER_SIDE_V4.to_string()])?;
        lab.sysctl(&router_ns, "net.ipv4.ip_forward", "1")?;
        Ok(LoopTopology {
            lab,
            client_ns,
            router_ns,
            server_ns,
            client_if: client_link.a_if,
            router_ifs: [client_link.b_if, server_link.b_if],
            shaped: AtomicBool::new(false),
        })
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// An established connection client → server, both ends with I/O timeouts, one message
    /// exchanged each way.
    fn connect(&self) -> Result<Connection> {
        let server_path = self.lab.ns_path(&self.server_ns);
        let listener: TcpListener = listen_in(&server_path, SocketAddr::new(LOOP_SERVER_V4.into(), 0))?;
        let server = listener.local_addr()?;
        let mut client = connect_in(&self.lab.ns_path(&self.client_ns), None, server, CONNECT_TIMEOUT)?;
        let mut accepted = accept_within(&listener, IO_TIMEOUT)?;
        exchange(&mut client, &mut accepted, b"hello")?;
        exchange(&mut accepted, &mut client, b"hello")?;
        Ok(Connection { client_addr: client.local_addr()?, server, client, accepted })
    }
}

struct Connection {
    client_addr: SocketAddr,
    server: SocketAddr,
    client: TcpStream,
    accepted: TcpStream,
}

/// What a reproduction did, for checking netdiag's findings against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRun {
    pub client_ns: String,
    pub server_ns: String,
    /// The client's end of the connection, as the server sees it.
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Segments injected (flood), bytes moved (bulk), 0 for a loop.
    pub amount: u64,
}

/// An ACK loop in progress. The rule feeding it goes at the deadline, removed by a thread of
/// its own; [`RunningLoop::finish`] (or dropping it) waits for that.
pub struct RunningLoop {
    pub run: FlowRun,
    /// When the loop was kicked off.
    pub started: Instant,
    pub started_wall: SystemTime,
    remover: Option<JoinHandle<Result<SystemTime>>>,
    _connection: Connection,
}

impl RunningLoop {
    /// Waits until the rule is gone; returns the run and when (wall clock) the rule went.
    pub fn finish(mut self) -> Result<(FlowRun, SystemTime)> {
        let removed = join_remover(&mut self.remover)?;
        Ok((self.run.clone(), removed))
    }
}

impl Drop for RunningLoop {
    fn drop(&mut self) {
        if self.remover.is_some()
            && let Err(err) = join_remover(&mut self.remover)
        {
            log::warn!("ending the ACK loop: {err:#}");
        }
    }
}

fn join_remover(remover: &mut Option<JoinHandle<Result<SystemTime>>>) -> Result<SystemTime> {
    let handle = remover.take().context("the loop was already finished")?;
    handle.join().map_err(|_| anyhow::anyhow!("the thread removing the loop rule panicked"))?
}

/// Starts a self-sustaining ACK loop on a fresh connection for `duration` (at most
/// [`MAX_LOOP`]), at the shaped line rate. Returns once the loop runs.
pub fn start_ack_loop(topo: &LoopTopology, duration: Duration) -> Result<RunningLoop> {
    start_ack_loop_at(topo, duration, Speed::Shaped)
}

/// How fast a loop may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speed {
    /// The router's links shaped to 10 Mbit/s: the loop leaves the host's CPUs to the rest.
    Shaped,
    /// As fast as the CPUs forward it: the bench's worst case, a few seconds at most.
    Unbounded,
}

/// [`start_ack_loop`] at the given speed. The links are shaped once per topology.
pub fn start_ack_loop_at(topo: &LoopTopology, duration: Duration, speed: Speed) -> Result<RunningLoop> {
    ensure!(duration <= MAX_LOOP, "an ACK loop runs at most {MAX_LOOP:?}, not {duration:?}");
    for ns in [&topo.client_ns, &topo.server_ns] {
        topo.lab.sysctl(ns, RATELIMIT_SYSCTL, "0")?;
    }
    let mut connection = topo.connect()?;
    if speed == Speed::Shaped && !topo.shaped.load(Ordering::Relaxed) {
        for dev in &topo.router_ifs {
            tc(&topo.router_ns, &["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "10"])?;
            tc(&topo.router_ns, &["class", "replace", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", LOOP_LINK_RATE])?;
        }
        topo.shaped.store(true, Ordering::Relaxed);
    }
    topo.lab.nft(&topo.router_ns, &seq_flip_rules())?;
    let started = Instant::now();
    let router_ns = topo.router_ns.clone();
    let remover = std::thread::spawn(move || {
        std::thread::sleep(duration.saturating_sub(started.elapsed()));
        remove_table(&router_ns, SEQ_FLIP_TABLE)?;
        Ok(SystemTime::now())
    });
    // One byte of data: the server finds it out of window and answers, and the loop is on.
    // Data segments are never rate-limited, so the first answer does not depend on timing.
    let kicked = connection.client.write_all(b"x").context("send the byte that starts the loop");
    let running = RunningLoop {
        run: FlowRun {
            client_ns: topo.client_ns.clone(),
            server_ns: topo.server_ns.clone(),
            client: connection.client_addr,
            server: connection.server,
            amount: 0,
        },
        started,
        started_wall: SystemTime::now(),
        remover: Some(remover),
        _connection: connection,
    };
    kicked?;
    Ok(running)
}

/// Flips bit 30 of the sequence number of every forwarded TCP segment but SYNs and RSTs (the
/// handshake is long done); the kernel fixes the checksum.
fn seq_flip_rules() -> String {
    format!(
        "table ip {SEQ_FLIP_TABLE} {{
            chain flip {{
                type filter hook forward priority 0; policy accept;
                tcp flags & (syn | rst) == 0 tcp sequence set tcp sequence ^ {SEQ_FLIP:#x}
            }}
        }}"
    )
}

fn remove_table(ns: &str, table: &str) -> Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "delete", "table", "ip", table])
        .output()
        .context("run nft")?;
    ensure!(out.status.success(), "nft delete table {table} in {ns}: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

/// `rate_per_s` spoofed pure ACKs for `duration` from the client's address and port to the
/// server, each with a sequence number far out of window (and a valid timestamp, so PAWS does
/// not catch them first), on a live connection. The server keeps its default limiter.
pub fn oow_flood(topo: &LoopTopology, rate_per_s: u32, duration: Duration) -> Result<FlowRun> {
    ensure!(rate_per_s > 0 && rate_per_s <= 10_000 && duration <= MAX_LOOP, "flood of {rate_per_s}/s for {duration:?}");
    let mut connection = topo.connect()?;
    let client_path = topo.lab.ns_path(&topo.client_ns);
    let sniffer = Sniffer::open_in(&client_path, &topo.client_if)?;
    exchange(&mut connection.client, &mut connection.accepted, b"before")?;
    let (from, to) = (connection.client_addr, connection.server);
    let live = sniffer
        .wait_for(IO_TIMEOUT, |s| s.src == from && s.dst == to && !s.payload.is_empty())
        .context("capture the client's data segment")?;
    let ts = live.timestamp.context("the connection does not use TCP timestamps")?;
    let spoofed = Segment {
        seq: live.seq.wrapping_add(live.payload.len() as u32).wrapping_add(SEQ_FLIP),
        flags: ACK,
        mss: None,
        timestamp: Some(Timestamp { val: ts.val, ecr: ts.ecr }),
        payload: Vec::new(),
        ..live
    };
    let raw = RawSender::open_in(&client_path, false)?;
    let count = u64::from(rate_per_s) * duration.as_millis() as u64 / 1000;
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate_per_s));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        raw.send(&spoofed)?;
    }
    // Also a barrier: once this arrives, the server has processed every spoofed segment.
    exchange(&mut connection.client, &mut connection.accepted, b"after")?;
    close_in_order(connection.client, connection.accepted)?;
    Ok(FlowRun { client_ns: topo.client_ns.clone(), server_ns: topo.server_ns.clone(), client: from, server: to, amount: count })
}

/// A flood's own pace for [`unthrottled_oow_flood`]: far from one segment per round trip on
/// any path here, the host's (tens of µs) as a TCG guest's (up to ~10 ms). At one per round
/// trip a flood answered one by one looks, from one end, exactly like an ACK loop.
pub const OWN_PACE_PER_S: u32 = 25;

/// [`oow_flood`] with the server's limiter off (`tcp_invalid_ratelimit=0`, restored after), so
/// it answers each spoofed segment with a duplicate ACK.
pub fn unthrottled_oow_flood(topo: &LoopTopology, rate_per_s: u32, duration: Duration) -> Result<FlowRun> {
    let original = topo.lab.read_sysctl(&topo.server_ns, RATELIMIT_SYSCTL)?;
    topo.lab.sysctl(&topo.server_ns, RATELIMIT_SYSCTL, "0")?;
    let run = oow_flood(topo, rate_per_s, duration);
    topo.lab.sysctl(&topo.server_ns, RATELIMIT_SYSCTL, &original)?;
    run
}

/// Sends `bytes` from client to server through a router that drops `loss_percent` of TCP
/// segments and holds `slow_percent` back behind a slow queue, so they arrive out of order.
/// (This kernel has no netem: nftables' random numbers pick the segments, HTB delays them.)
pub fn lossy_bulk(topo: &LoopTopology, bytes: usize, loss_percent: u32, slow_percent: u32) -> Result<FlowRun> {
    impair_router(topo, loss_percent, slow_percent)?;
    let connection = topo.connect()?;
    let (client_addr, server) = (connection.client_addr, connection.server);
    let (mut client, mut accepted) = (connection.client, connection.accepted);
    let deadline = Instant::now() + BULK_TIMEOUT;
    let writer = std::thread::spawn(move || -> Result<()> {
        let chunk = vec![0x5a_u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            ensure!(Instant::now() < deadline, "bulk transfer not done within {BULK_TIMEOUT:?}");
            let n = left.min(chunk.len());
            client.write_all(&chunk[..n]).context("bulk send")?;
            left -= n;
        }
        client.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    });
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        ensure!(Instant::now() < deadline, "bulk transfer not done within {BULK_TIMEOUT:?}");
        match accepted.read(&mut buf).context("bulk receive")? {
            0 => break,
            n => received += n,
        }
    }
    writer.join().map_err(|_| anyhow::anyhow!("bulk sender panicked"))??;
    ensure!(received == bytes, "received {received} of {bytes} bytes");
    Ok(FlowRun {
        client_ns: topo.client_ns.clone(),
        server_ns: topo.server_ns.clone(),
        client: client_addr,
        server,
        amount: bytes as u64,
    })
}

fn impair_router(topo: &LoopTopology, loss_percent: u32, slow_percent: u32) -> Result<()> {
    ensure!(loss_percent < 50 && slow_percent < 100, "impairment {loss_percent}% loss, {slow_percent}% slow");
    topo.lab.nft(
        &topo.router_ns,
        &format!(
            "table ip {IMPAIR_TABLE} {{
                chain impair {{
                    type filter hook forward priority 0; policy accept;
                    ip protocol tcp numgen random mod 100 < {loss_percent} drop
                    ip protocol tcp numgen random mod 100 < {slow_percent} meta priority set 1:20
                }}
            }}"
        ),
    )?;
    for dev in &topo.router_ifs {
        tc(&topo.router_ns, &["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10", "r2q", "1000"])?;
        tc(&topo.router_ns, &["class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"])?;
        tc(&topo.router_ns, &["class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb", "rate", "20mbit"])?;
    }
    Ok(())
}

fn tc(ns: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("tc").arg("-n").arg(ns).args(args).output().context("run tc (iproute2)")?;
    if !out.status.success() {
        bail!("tc {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
