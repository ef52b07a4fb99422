//! The packet context every program builds once and hands to its handlers: the packet, the
//! socket and drop reason its attach point gives, and what handlers ask of it, read on first
//! use: the headers (one parse), the namespace, the time.
use core::{
    cell::{Cell, UnsafeCell},
    marker::PhantomData,
};

use aya_ebpf::helpers::bpf_ktime_get_ns;
use netdiag_common::{FAMILY_IPV4, FAMILY_IPV6, FIELD_ABSENT};

use crate::{
    kmem::{Kmem, configured, read},
    layout::layout,
    maps::bump,
    packet::{self, Segment},
};

/// `skb->{network,transport}_header` when the stack has not set it.
const HEADER_UNSET: u16 = 0xffff;
/// Low bit of `_skb_refdst` marks a reference not taken; the rest is the `dst_entry` pointer.
const SKB_DST_PTRMASK: usize = !1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Parsed {
    NotYet,
    Ok,
    Unreadable,
}

/// Where the headers are found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    /// At the network and transport header offsets the stack recorded (from `skb->head`).
    Recorded,
    /// At `skb->data`, before the stack has looked at them (on receive).
    AtData,
}

pub struct Packet<M: Kmem> {
    pub skb: *const u8,
    /// The socket the packet reached or came from; null if none.
    pub sk: *const u8,
    /// The namespace, where the attach point gives it (`struct net *`); null otherwise.
    net: *const u8,
    headers: Headers,
    /// The `PROBE_STATS` index bumped when the headers cannot be read, if such a packet is
    /// worth counting here (on the receive and transmit paths most packets are not TCP).
    unparsed_stat: Option<u32>,
    segment: UnsafeCell<Segment>,
    parsed: Cell<Parsed>,
    netns: Cell<Option<u32>>,
    now: Cell<u64>,
    _mem: PhantomData<M>,
}

impl<M: Kmem> Packet<M> {
    #[inline(always)]
    pub fn new(skb: *const u8, sk: *const u8, headers: Headers, unparsed_stat: Option<u32>) -> Self {
        Packet {
            skb,
            sk,
            net: core::ptr::null(),
            headers,
            unparsed_stat,
            segment: UnsafeCell::new(Segment::EMPTY),
            parsed: Cell::new(Parsed::NotYet),
            netns: Cell::new(None),
            now: Cell::new(0),
            _mem: PhantomData,
        }
    }

    /// The namespace is `net` (an attach point that passes it).
    #[inline(always)]
    pub fn in_net(mut self, net: *const u8) -> Self {
        self.net = net;
        self
    }

    /// The TCP/IP headers, parsed on first use.
    #[inline(always)]
    pub fn segment(&self) -> Option<&Segment> {
        if self.parsed.get() == Parsed::NotYet {
            // SAFETY: the only mutable access, before any shared one is handed out.
            let parsed = unsafe { self.parse(&mut *self.segment.get()) };
            self.parsed.set(if parsed.is_some() { Parsed::Ok } else { Parsed::Unreadable });
            if parsed.is_none()
                && let Some(stat) = self.unparsed_stat
            {
                bump(stat);
            }
        }
        // SAFETY: written once above, only read from here on.
        (self.parsed.get() == Parsed::Ok).then(|| unsafe { &*self.segment.get() })
    }

    #[inline(always)]
    unsafe fn parse(&self, seg: &mut Segment) -> Option<()> {
        let l = layout();
        match self.headers {
            Headers::AtData => {
                let data: *const u8 = unsafe { M::member(self.skb, configured(&l.skb_data))? };
                if data.is_null() {
                    return None;
                }
                unsafe { packet::parse(seg, data, None, u32::MAX) }
            }
            Headers::Recorded => {
                let head: *const u8 = unsafe { M::member(self.skb, configured(&l.skb_head))? };
                let network: u16 = unsafe { M::member(self.skb, configured(&l.skb_network_header))? };
                let transport: u16 = unsafe { M::member(self.skb, configured(&l.skb_transport_header))? };
                if head.is_null() || network == HEADER_UNSET || transport == HEADER_UNSET || transport <= network {
                    return None;
                }
                let tail_offset = configured(&l.skb_tail);
                let linear = if tail_offset == netdiag_common::FIELD_ABSENT {
                    u32::MAX
                } else {
                    let tail: u32 = unsafe { M::member(self.skb, tail_offset)? };
                    tail.saturating_sub(network as u32)
                };
                let ip = unsafe { head.add(network as usize) };
                unsafe { packet::parse(seg, ip, Some((transport - network) as u32), linear) }
            }
        }
    }

    /// Inode of the packet's network namespace: the one the attach point gave, else the
    /// device's, else the socket's, else that of the device of the route the packet came in
    /// on (6.1 clears `skb->dev` before some drops). 0 if none can be read.
    #[inline(always)]
    pub fn netns(&self) -> u32 {
        if let Some(inode) = self.netns.get() {
            return inode;
        }
        let inode = unsafe { self.read_netns() };
        self.netns.set(Some(inode));
        inode
    }

    #[inline(always)]
    unsafe fn read_netns(&self) -> u32 {
        let l = layout();
        let inum = configured(&l.net_ns_inum);
        // One null check at a time: the compiler folds `a.is_null() && b.is_null()` into an OR
        // of the two, which the verifier refuses on typed pointers.
        if !self.net.is_null() {
            return unsafe { M::member(self.net, inum).unwrap_or(0) };
        }
        let dev: *const u8 = unsafe { M::member(self.skb, configured(&l.skb_dev)).unwrap_or(core::ptr::null()) };
        if !dev.is_null() {
            let net: *const u8 = unsafe { M::member(dev, configured(&l.dev_nd_net)).unwrap_or(core::ptr::null()) };
            return if net.is_null() { 0 } else { unsafe { M::member(net, inum).unwrap_or(0) } };
        }
        if !self.sk.is_null() {
            let net: *const u8 = unsafe { M::member(self.sk, configured(&l.sk_net)).unwrap_or(core::ptr::null()) };
            return if net.is_null() { 0 } else { unsafe { M::member(net, inum).unwrap_or(0) } };
        }
        // The route's pointer is masked, a plain number: read through the helper from here.
        let refdst: usize = unsafe { M::member(self.skb, configured(&l.skb_refdst)).unwrap_or(0) };
        let dst = (refdst & SKB_DST_PTRMASK) as *const u8;
        if dst.is_null() {
            return 0;
        }
        let dev: *const u8 = unsafe { read(dst, configured(&l.dst_dev)).unwrap_or(core::ptr::null()) };
        if dev.is_null() {
            return 0;
        }
        let net: *const u8 = unsafe { read(dev, configured(&l.dev_nd_net)).unwrap_or(core::ptr::null()) };
        if net.is_null() {
            return 0;
        }
        unsafe { read(net, inum).unwrap_or(0) }
    }

    /// `bpf_ktime_get_ns`, read once.
    #[inline(always)]
    pub fn now(&self) -> u64 {
        let mut now = self.now.get();
        if now == 0 {
            now = unsafe { bpf_ktime_get_ns() };
            self.now.set(now);
        }
        now
    }

    /// TCP state of the socket (`TCP_LISTEN`, `TCP_TIME_WAIT`...), 0 if none.
    #[inline(always)]
    pub fn sk_state(&self) -> u8 {
        if self.sk.is_null() {
            return 0;
        }
        unsafe { M::member(self.sk, configured(&layout().sk_state)).unwrap_or(0) }
    }

    /// The socket's smoothed round-trip time in µs (`tcp_sock.srtt_us >> 3`), 0 unless `sk` is a
    /// full TCP socket: TIME_WAIT and request sockets have no such member, and the stack's
    /// control socket (`TCP_CLOSE`, which sends the answers of sockets it has not got) is a raw one.
    #[inline(always)]
    pub fn smoothed_rtt_us(&self) -> u64 {
        let state = self.sk_state();
        if state == 0 || state == TCP_TIME_WAIT || state == TCP_CLOSE || state == TCP_LISTEN || state == TCP_NEW_SYN_RECV {
            return 0;
        }
        // Through the helper whatever the mechanism: the member lies past `struct sock`, the
        // type the verifier knows `sk` by, so a typed load would be refused.
        let srtt: u32 = unsafe { read(self.sk, configured(&layout().tcp_srtt_us)).unwrap_or(0) };
        u64::from(srtt >> 3)
    }

    /// The cgroup of the process that made `sk`, read from the listener for a request socket; 0
    /// for TIME_WAIT sockets (they keep none) and for the stack's control socket, which answers
    /// for sockets it does not belong to.
    #[inline(always)]
    pub fn socket_cgroup(&self) -> u64 {
        match self.sk_state() {
            0 | TCP_TIME_WAIT | TCP_CLOSE => 0,
            TCP_NEW_SYN_RECV => socket_cgroup_id(request_listener(self.sk)),
            _ => socket_cgroup_id(self.sk),
        }
    }
}

/// The id of the cgroup (v2) full socket `sk` was made in, 0 where it cannot be read. Through
/// the helper, as the chain leaves the types the verifier knows `sk` by.
#[inline(always)]
fn socket_cgroup_id(sk: *const u8) -> u64 {
    let l = layout();
    let offset = configured(&l.sk_cgroup);
    if sk.is_null() || offset == FIELD_ABSENT {
        return 0;
    }
    unsafe {
        let Some(cgroup) = read::<*const u8>(sk, offset).filter(|p| !p.is_null()) else { return 0 };
        let Some(kn) = read::<*const u8>(cgroup, configured(&l.cgroup_kn)).filter(|p| !p.is_null()) else { return 0 };
        read::<u64>(kn, configured(&l.kernfs_id)).unwrap_or(0)
    }
}

/// The listener a request socket `req` belongs to.
#[inline(always)]
fn request_listener(req: *const u8) -> *const u8 {
    unsafe { read(req, configured(&layout().req_listener)).unwrap_or(core::ptr::null()) }
}

const TCP_TIME_WAIT: u8 = 6;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;
const TCP_NEW_SYN_RECV: u8 = 12;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Remote address of a socket (or of a request socket: both begin with `struct sock_common`). IPv4-mapped IPv6 peers are folded to IPv4, so a peer has the
/// same key whether it came from a socket or a parsed packet. The IPv6 address is read
/// through the helper: a 16-byte load spans members of `struct in6_addr`'s union.
#[inline(always)]
pub unsafe fn socket_peer<M: Kmem>(sk: *const u8) -> Option<(u8, [u8; 16])> {
    let l = layout();
    let mut addr = [0u8; 16];
    match unsafe { M::member::<u16>(sk, configured(&l.sk_family))? } {
        AF_INET => {
            let v4: u32 = unsafe { M::member(sk, configured(&l.sk_daddr))? };
            addr[..4].copy_from_slice(&v4.to_ne_bytes());
            Some((FAMILY_IPV4, addr))
        }
        AF_INET6 => {
            let v6: [u8; 16] = unsafe { read(sk, configured(&l.sk_v6_daddr))? };
            if v6[..10] == [0; 10] && v6[10] == 0xff && v6[11] == 0xff {
                addr[..4].copy_from_slice(&v6[12..]);
                return Some((FAMILY_IPV4, addr));
            }
            Some((FAMILY_IPV6, v6))
        }
        _ => None,
    }
}
