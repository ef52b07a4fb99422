//! Accept queues of the listening TCP sockets in the calling thread's namespace, from the
//! kernel's sock_diag netlink interface (what `ss -lt` shows as Recv-Q / Send-Q).
//!
//! `/proc/net/tcp` cannot serve here: for a listener it shows the accept-queue length as
//! `rx_queue`, but its `tx_queue` is not the backlog (always 0 for a listener), and no other
//! column holds it. sock_diag reports both; a netlink socket belongs to the namespace of the
//! thread that opens it.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context as _, Result, bail};

/// A listening socket and its accept queue right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub local: SocketAddr,
    /// Connections completed and waiting for accept().
    pub queued: u32,
    /// The listen() backlog in force (capped by net.core.somaxconn).
    pub backlog: u32,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_LISTEN_STATE: u32 = 10;
const NLMSG_HEADER_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then a 48-byte socket id.
const REQUEST_LEN: usize = 56;
/// `struct inet_diag_msg` up to and including `idiag_wqueue`.
const MESSAGE_MIN_LEN: usize = 64;
const RQUEUE_OFFSET: usize = 56;
const WQUEUE_OFFSET: usize = 60;
const RECEIVE_BUFFER: usize = 32 * 1024;

/// Every TCP listener (IPv4 and IPv6) of the calling thread's namespace.
pub fn list() -> Result<Vec<Listener>> {
    let socket = open_sock_diag()?;
    let mut listeners = dump(&socket, libc::AF_INET as u8)?;
    match dump(&socket, libc::AF_INET6 as u8) {
        Ok(more) => listeners.extend(more),
        // IPv6 disabled or not built: no IPv6 listeners to report.
        Err(err) if is_errno(&err, &[libc::ENOENT, libc::EAFNOSUPPORT]) => {}
        Err(err) => return Err(err),
    }
    Ok(listeners)
}

fn open_sock_diag() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("open a sock_diag netlink socket");
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn dump(socket: &OwnedFd, family: u8) -> Result<Vec<Listener>> {
    let request = listen_dump_request(family);
    // SAFETY: sends `request.len()` initialised bytes; an unconnected netlink socket sends to the kernel.
    let sent = unsafe { libc::send(socket.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error()).context("send sock_diag request");
    }
    let mut listeners = Vec::new();
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    loop {
        // SAFETY: receives into a buffer of exactly `buffer.len()` bytes.
        let received = unsafe { libc::recv(socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if received < 0 {
            return Err(io::Error::last_os_error()).context("receive sock_diag answer");
        }
        if parse_answer(&buffer[..received as usize], &mut listeners)? == Answer::Done {
            return Ok(listeners);
        }
    }
}

/// A netlink dump request for the TCP sockets of `family` in state LISTEN.
fn listen_dump_request(family: u8) -> Vec<u8> {
    let total = NLMSG_HEADER_LEN + REQUEST_LEN;
    let mut message = Vec::with_capacity(total);
    message.extend_from_slice(&(total as u32).to_ne_bytes());
    message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    message.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    message.extend_from_slice(&(1u32 << TCP_LISTEN_STATE).to_ne_bytes());
    message.resize(total, 0); // any socket id
    message
}

#[derive(Debug, PartialEq, Eq)]
enum Answer {
    More,
    Done,
}

/// Appends the listeners of one netlink datagram; Done once the dump has ended.
fn parse_answer(datagram: &[u8], listeners: &mut Vec<Listener>) -> Result<Answer> {
    let mut rest = datagram;
    while rest.len() >= NLMSG_HEADER_LEN {
        let length = u32_at(rest, 0) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if length < NLMSG_HEADER_LEN || length > rest.len() {
            bail!("malformed sock_diag answer (message length {length})");
        }
        let payload = &rest[NLMSG_HEADER_LEN..length];
        match i32::from(kind) {
            libc::NLMSG_DONE => return Ok(Answer::Done),
            libc::NLMSG_ERROR => {
                let errno = payload.get(..4).map_or(0, |bytes| -i32::from_ne_bytes(bytes.try_into().unwrap()));
                return Err(io::Error::from_raw_os_error(errno)).context("sock_diag dump");
            }
            _ if kind == SOCK_DIAG_BY_FAMILY => listeners.extend(parse_listener(payload)),
            _ => {}
        }
        // Messages are padded to four bytes.
        rest = &rest[((length + 3) & !3).min(rest.len())..];
    }
    Ok(Answer::More)
}

/// One `struct inet_diag_msg`; None if it is too short or of an unknown family.
fn parse_listener(message: &[u8]) -> Option<Listener> {
    if message.len() < MESSAGE_MIN_LEN {
        return None;
    }
    let port = u16::from_be_bytes([message[4], message[5]]);
    let source = &message[8..24];
    let address = match i32::from(message[0]) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::new(source[0], source[1], source[2], source[3])),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(source).ok()?)),
        _ => return None,
    };
    Some(Listener {
        local: SocketAddr::new(address, port),
        queued: u32_at(message, RQUEUE_OFFSET),
        backlog: u32_at(message, WQUEUE_OFFSET),
    })
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_ne_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn is_errno(err: &anyhow::Error, codes: &[i32]) -> bool {
    err.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error).is_some_and(|code| codes.contains(&code))
}

#[cfg(test)]
mod tests {
    use std::{
        net::{TcpListener, TcpStream},
        process::Command,
    };

    use super::*;
    use crate::{netns, scenario::Lab};

    fn diag_message(family: u8, source: &[u8], port: u16, queued: u32, backlog: u32) -> Vec<u8> {
        let mut payload = vec![family, 10, 0, 0];
        payload.extend_from_slice(&port.to_be_bytes());
        payload.extend_from_slice(&[0, 0]);
        let mut address = source.to_vec();
        address.resize(16, 0);
        payload.extend_from_slice(&address);
        payload.resize(RQUEUE_OFFSET, 0);
        payload.extend_from_slice(&queued.to_ne_bytes());
        payload.extend_from_slice(&backlog.to_ne_bytes());
        payload.resize(72, 0);
        netlink(SOCK_DIAG_BY_FAMILY, &payload)
    }

    fn netlink(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut message = ((NLMSG_HEADER_LEN + payload.len()) as u32).to_ne_bytes().to_vec();
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&[0; 10]);
        message.extend_from_slice(payload);
        message
    }

    #[test]
    fn parses_listeners_of_both_families_until_done() {
        let mut datagram = diag_message(libc::AF_INET as u8, &[192, 0, 2, 1], 8080, 3, 4096);
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        datagram.extend(diag_message(libc::AF_INET6 as u8, &v6.octets(), 443, 0, 128));
        let mut found = Vec::new();
        assert_eq!(parse_answer(&datagram, &mut found).unwrap(), Answer::More);
        assert_eq!(
            found,
            [
                Listener { local: "192.0.2.1:8080".parse().unwrap(), queued: 3, backlog: 4096 },
                Listener { local: "[2001:db8::1]:443".parse().unwrap(), queued: 0, backlog: 128 },
            ]
        );
        assert_eq!(parse_answer(&netlink(libc::NLMSG_DONE as u16, &[0; 4]), &mut found).unwrap(), Answer::Done);
    }

    #[test]
    fn reports_kernel_errors_and_rejects_garbage() {
        let error = netlink(libc::NLMSG_ERROR as u16, &(-libc::ENOENT).to_ne_bytes());
        let err = parse_answer(&error, &mut Vec::new()).unwrap_err();
        assert!(is_errno(&err, &[libc::ENOENT]), "{err:#}");
        let mut truncated = netlink(SOCK_DIAG_BY_FAMILY, &[0; 72]);
        truncated.truncate(40);
        assert!(parse_answer(&truncated, &mut Vec::new()).is_err());
    }

    /// Against the kernel: a listener with backlog 1 and two connections nobody accepted.
    #[test]
    fn reads_a_full_accept_queue_in_a_namespace() {
        let mut lab = Lab::new("oplisten").unwrap();
        let Ok(name) = lab.add_ns("srv") else { return eprintln!("skipping: cannot create namespaces here") };
        let added = Command::new("ip").args(["-n", &name, "addr", "add", "192.0.2.1/32", "dev", "lo"]).status();
        assert!(added.unwrap().success());
        let (local, found) = netns::run_in(&lab.ns_path(&name), || {
            let listener = TcpListener::bind("192.0.2.1:0")?;
            // SAFETY: listen(2) again on a listening socket only changes its backlog.
            assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 1) }, 0);
            let local = listener.local_addr()?;
            let _clients = [TcpStream::connect(local)?, TcpStream::connect(local)?];
            for _ in 0..100 {
                let found = list()?;
                if found.iter().any(|l| l.local == local && l.queued == 2) {
                    return Ok((local, found));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok((local, list()?))
        })
        .unwrap();
        assert_eq!(found, [Listener { local, queued: 2, backlog: 1 }]);
    }
}
