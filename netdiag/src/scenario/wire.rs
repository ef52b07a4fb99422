//! Sockets inside namespaces: TCP endpoints, a raw sender for crafted segments, and a sniffer
//! on one interface. Every blocking call is bounded by a timeout.
use std::{
    io::{ErrorKind, Read as _, Write as _},
    mem::MaybeUninit,
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

use super::packet::Segment;
use crate::netns;

/// Bound on any single read, write or accept.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on a connect that is expected to succeed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A capture is considered drained once nothing new arrived for this long.
const QUIET: Duration = Duration::from_millis(100);
/// Marks the packets of `RawSender`, so firewall rules can tell them from the kernel's own.
pub const RAW_MARK: u32 = 0x6e64;

/// A listening TCP socket created inside the namespace at `ns`. Non-blocking, so that
/// `accept_within` can never hang.
pub fn listen_in(ns: &Path, addr: SocketAddr) -> Result<TcpListener> {
    netns::run_in(ns, move || {
        let listener = TcpListener::bind(addr).with_context(|| format!("listen on {addr}"))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })
}

/// A TCP connection made from inside the namespace at `ns`, optionally from a fixed local
/// address (SO_REUSEADDR, as a client reusing its port would), with read/write timeouts set.
pub fn connect_in(
    ns: &Path,
    from: Option<SocketAddr>,
    to: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream> {
    netns::run_in(ns, move || {
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
        if let Some(from) = from {
            socket.set_reuse_address(true)?;
            socket.bind(&from.into()).with_context(|| format!("bind {from}"))?;
        }
        socket.connect_timeout(&to.into(), timeout).with_context(|| format!("connect to {to}"))?;
        let stream = TcpStream::from(socket);
        set_io_timeouts(&stream)?;
        Ok(stream)
    })
}

/// Accepts one connection within `timeout` from a `listen_in` listener; the connection is
/// blocking with read/write timeouts.
pub fn accept_within(listener: &TcpListener, timeout: Duration) -> Result<TcpStream> {
    let mut poll = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let millis = timeout.as_millis().try_into().unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    ensure!(ready >= 0, "poll: {}", std::io::Error::last_os_error());
    ensure!(ready > 0, "no connection to accept within {timeout:?}");
    let (stream, _) = listener.accept().context("accept")?;
    set_io_timeouts(&stream)?;
    Ok(stream)
}

/// Sends `message` on `from` and reads exactly it back on `to`.
pub fn exchange(from: &mut TcpStream, to: &mut TcpStream, message: &[u8]) -> Result<()> {
    from.write_all(message).context("send")?;
    let mut got = vec![0; message.len()];
    to.read_exact(&mut got).context("receive")?;
    ensure!(got == message, "received {got:?}, sent {message:?}");
    Ok(())
}

/// Closes `closer` first and waits for `peer` to see end of stream, then closes `peer`.
pub fn close_in_order(closer: TcpStream, mut peer: TcpStream) -> Result<()> {
    closer.shutdown(Shutdown::Both).context("shutdown")?;
    drop(closer);
    let mut rest = [0u8; 1];
    ensure!(
        peer.read(&mut rest).context("wait for end of stream")? == 0,
        "unexpected data before end of stream"
    );
    Ok(())
}

/// Closes with an RST (SO_LINGER 0): neither side keeps the 4-tuple in TIME_WAIT.
pub fn abort(stream: TcpStream) -> Result<()> {
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).context("SO_LINGER")?;
    drop(stream);
    Ok(())
}

/// The TSval the connection would put in a segment sent now (its clock plus its offset).
pub fn tsval_now(stream: &TcpStream) -> Result<u32> {
    let mut value: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: value/len describe a valid u32 buffer for getsockopt to fill.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_TIMESTAMP,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    ensure!(rc == 0, "getsockopt(TCP_TIMESTAMP): {}", std::io::Error::last_os_error());
    Ok(value)
}

/// Sends hand-built IP packets from inside a namespace (IPPROTO_RAW implies a caller-built header).
pub struct RawSender {
    socket: Socket,
}

impl RawSender {
    pub fn open_in(ns: &Path, v6: bool) -> Result<RawSender> {
        netns::run_in(ns, move || {
            let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
            let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
                .context("raw socket")?;
            socket.set_mark(RAW_MARK).context("SO_MARK")?;
            socket.set_write_timeout(Some(IO_TIMEOUT))?;
            Ok(RawSender { socket })
        })
    }

    pub fn send(&self, segment: &Segment) -> Result<()> {
        self.send_packet(&segment.to_ip_packet()?, segment.dst.ip())
    }

    /// Sends one IP packet built by the caller (fragments, hostile shapes) to `dst`.
    pub fn send_packet(&self, packet: &[u8], dst: IpAddr) -> Result<()> {
        // The port must be 0 for raw sockets; routing uses only the address.
        let to = SockAddr::from(SocketAddr::new(dst, 0));
        let sent = self.socket.send_to(packet, &to).with_context(|| format!("send raw packet to {dst}"))?;
        ensure!(sent == packet.len(), "short raw send: {sent} of {}", packet.len());
        Ok(())
    }
}

/// Sends Ethernet frames on one interface with a virtio-net header in front (`PACKET_VNET_HDR`),
/// which tells the kernel how much of the frame to keep in the linear area (the rest goes to
/// page fragments) and whether it is a GSO packet to segment: the packet shapes a NIC driver
/// or a VM's tap device hands the stack.
pub struct VnetSender {
    socket: Socket,
}

/// `struct virtio_net_hdr` (little-endian on x86, as the kernel reads it for packet sockets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const PACKET_VNET_HDR: libc::c_int = 15;
pub const ETH_HEADER_LEN: usize = 14;

impl VnetHeader {
    fn bytes(&self) -> [u8; 10] {
        let mut out = [0u8; 10];
        out[0] = self.flags;
        out[1] = self.gso_type;
        for (i, field) in [self.hdr_len, self.gso_size, self.csum_start, self.csum_offset].into_iter().enumerate() {
            out[2 + 2 * i..4 + 2 * i].copy_from_slice(&field.to_le_bytes());
        }
        out
    }
}

impl VnetSender {
    /// A sender of IPv4 (or, with `v6`, IPv6) frames: the bound protocol becomes the packets'
    /// `skb->protocol`, which the virtio-net header's GSO type must match.
    pub fn open_in(ns: &Path, ifname: &str, v6: bool) -> Result<VnetSender> {
        let ifname = ifname.to_owned();
        let protocol = if v6 { libc::ETH_P_IPV6 } else { libc::ETH_P_IP } as u16;
        netns::run_in(ns, move || {
            let socket = Socket::new(Domain::PACKET, Type::RAW, None).context("packet socket")?;
            let on: libc::c_int = 1;
            // SAFETY: a valid int option value for the call.
            let rc = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_PACKET,
                    PACKET_VNET_HDR,
                    (&raw const on).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            ensure!(rc == 0, "PACKET_VNET_HDR: {}", std::io::Error::last_os_error());
            socket.bind(&link_layer_addr_for(&ifname, protocol)?).with_context(|| format!("bind to {ifname}"))?;
            socket.set_write_timeout(Some(IO_TIMEOUT))?;
            Ok(VnetSender { socket })
        })
    }

    /// Sends `ip_packet` in an Ethernet frame from `src_mac` to `dst_mac` behind `vnet`.
    pub fn send(&self, vnet: &VnetHeader, dst_mac: [u8; 6], src_mac: [u8; 6], ip_packet: &[u8]) -> Result<()> {
        let ethertype: u16 = if ip_packet.first().is_some_and(|b| b >> 4 == 6) { 0x86dd } else { 0x0800 };
        let frame = [&vnet.bytes()[..], &dst_mac, &src_mac, &ethertype.to_be_bytes(), ip_packet].concat();
        let sent = self.socket.send(&frame).context("send frame with virtio-net header")?;
        ensure!(sent == frame.len(), "short packet send: {sent} of {}", frame.len());
        Ok(())
    }
}

/// Captures the IP packets crossing one interface of a namespace, both directions.
pub struct Sniffer {
    socket: Socket,
}

impl Sniffer {
    pub fn open_in(ns: &Path, ifname: &str) -> Result<Sniffer> {
        let ifname = ifname.to_owned();
        netns::run_in(ns, move || {
            // Protocol 0 captures nothing until bind, so no other interface's packets slip in.
            let socket = Socket::new(Domain::PACKET, Type::DGRAM, None).context("packet socket")?;
            socket
                .bind(&link_layer_addr(&ifname)?)
                .with_context(|| format!("bind capture to {ifname}"))?;
            Ok(Sniffer { socket })
        })
    }

    /// The first captured TCP segment `wanted` accepts, waiting at most `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        wanted: impl Fn(&Segment) -> bool,
    ) -> Result<Segment> {
        let deadline = Instant::now() + timeout;
        while let Some(segment) = self.next_before(deadline)? {
            if wanted(&segment) {
                return Ok(segment);
            }
        }
        bail!("no matching segment within {timeout:?}")
    }

    /// Every already captured segment `wanted` accepts; returns once capture stays quiet.
    pub fn drain(&self, wanted: impl Fn(&Segment) -> bool) -> Result<Vec<Segment>> {
        let mut found = Vec::new();
        while let Some(segment) = self.next_before(Instant::now() + QUIET)? {
            if wanted(&segment) {
                found.push(segment);
            }
        }
        Ok(found)
    }

    /// Next TCP segment, or None once `deadline` passes.
    fn next_before(&self, deadline: Instant) -> Result<Option<Segment>> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket.set_read_timeout(Some(left))?;
            let len = match self.socket.recv(&mut buf) {
                Ok(len) => len,
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                Err(err) => return Err(err).context("capture"),
            };
            // SAFETY: recv initialized the first `len` bytes.
            let packet = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
            if let Some(segment) = Segment::parse(packet) {
                return Ok(Some(segment));
            }
        }
    }
}

fn link_layer_addr(ifname: &str) -> Result<SockAddr> {
    link_layer_addr_for(ifname, libc::ETH_P_ALL as u16)
}

fn link_layer_addr_for(ifname: &str, protocol: u16) -> Result<SockAddr> {
    let name = std::ffi::CString::new(ifname)?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    ensure!(index != 0, "no interface {ifname}: {}", std::io::Error::last_os_error());
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_ll.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = protocol.to_be();
    ll.sll_ifindex = index as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as socket2::socklen_t;
    // SAFETY: the storage holds an initialized sockaddr_ll of `len` bytes.
    Ok(unsafe { SockAddr::new(storage, len) })
}

/// One row of `/proc/net/tcp`: ports and kernel state number (6 is TIME_WAIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRow {
    pub local_port: u16,
    pub remote_port: u16,
    pub state: u8,
}

pub const TCP_TIME_WAIT: u8 = 6;
const TCP4_TABLE: &str = "/proc/thread-self/net/tcp";

/// The IPv4 TCP sockets of the namespace at `ns`, request sockets and TIME_WAIT included.
pub fn tcp4_sockets(ns: &Path) -> Result<Vec<TcpRow>> {
    // thread-self: /proc/net follows the process's main thread, which stays in its own namespace.
    let table = netns::run_in(ns, || std::fs::read_to_string(TCP4_TABLE).context(TCP4_TABLE))?;
    table.lines().skip(1).map(parse_tcp_row).collect()
}

fn parse_tcp_row(line: &str) -> Result<TcpRow> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let port = |endpoint: &str| -> Result<u16> {
        let hex = endpoint.rsplit(':').next().context("endpoint without port")?;
        Ok(u16::from_str_radix(hex, 16)?)
    };
    ensure!(fields.len() > 3, "short /proc/net/tcp line: {line}");
    Ok(TcpRow {
        local_port: port(fields[1])?,
        remote_port: port(fields[2])?,
        state: u8::from_str_radix(fields[3], 16)?,
    })
}

/// Polls `ready` every 10 ms until it holds, failing after `timeout`.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready()? {
        ensure!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn set_io_timeouts(stream: &TcpStream) -> Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp_rows() {
        let row = "   3: 0164330A:1F90 0264330A:C350 06 00000000:00000000 03:00001770 00000000 \
                   0        0 0 3 0000000000000000";
        assert_eq!(
            parse_tcp_row(row).unwrap(),
            TcpRow { local_port: 8080, remote_port: 50000, state: TCP_TIME_WAIT }
        );
    }
}
