//! Types shared by the kernel programs (`netdiag-ebpf`) and the userspace agent (`netdiag`).
//!
//! Everything here is `#[repr(C)]`, padded explicitly and free of pointers, so that the bytes a
//! kernel program writes into a map or the ring buffer read back as the same struct in userspace.
#![no_std]

/// IP version tags used in [`PeerKey::family`] and [`DropEvent::family`].
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// Drop reasons are kept in a 256-bit set; the kernel has ~130 today.
pub const REASON_SET_WORDS: usize = 4;
pub const MAX_REASON: u32 = (REASON_SET_WORDS as u32) * 64;

/// Marker for "this tracepoint field does not exist on the running kernel".
pub const FIELD_ABSENT: u32 = u32::MAX;

/// Record kinds in the ring buffer (first byte after the timestamp tells the reader how to decode).
pub const EVENT_DROP: u8 = 1;
/// A SYN's timestamp sample ([`SynEvent`]).
pub const EVENT_SYN: u8 = 2;

/// Indexes into the per-CPU `PROBE_STATS` array.
pub mod stat {
    /// Drops with a watched reason that reached the program.
    pub const MATCHED: u32 = 0;
    /// Ring-buffer reservations that failed: samples lost (the per-peer counts still hold them).
    pub const RING_LOST: u32 = 1;
    /// Packets with a watched reason whose headers could not be read or were not TCP.
    pub const UNPARSED: u32 = 2;
    /// Per-peer map updates that failed.
    pub const PEER_MAP_FULL: u32 = 3;
    /// Segments seen by a function hook (fentry/kprobe) whose headers could not be read.
    pub const HOOK_UNPARSED: u32 = 4;
    /// SYNs and SYN-ACKs the handshake programs could not read; missing from the SYN funnel.
    pub const HANDSHAKE_UNPARSED: u32 = 5;
    /// SYN timestamp samples not sent because the per-CPU budget of the second was spent
    /// (the funnel counts still hold those SYNs).
    pub const SYN_SAMPLES_SKIPPED: u32 = 6;
    pub const COUNT: u32 = 7;
}

/// Load-time configuration of the `skb:kfree_skb` program. Every offset comes from the running
/// kernel (BTF for struct members, the tracepoint's `format` file for record fields), never from
/// a build-time header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropProbeConfig {
    /// Offsets inside the tracepoint record.
    pub tp_skbaddr: u32,
    pub tp_reason: u32,
    pub tp_protocol: u32,
    /// `rx_sk` exists since 6.11; [`FIELD_ABSENT`] before.
    pub tp_rx_sk: u32,
    /// `struct sk_buff` members.
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    pub skb_dev: u32,
    /// `struct net_device::nd_net.net`.
    pub dev_nd_net: u32,
    /// `struct net::ns.inum`.
    pub net_ns_inum: u32,
    /// `struct sock_common::skc_state` and `skc_net`.
    pub sk_state: u32,
    pub sk_net: u32,
    /// `struct sk_buff::_skb_refdst` and `struct dst_entry::dev`: the route's device names the
    /// namespace where the kernel clears `skb->dev` and the tracepoint has no `rx_sk` (6.1).
    pub skb_refdst: u32,
    pub dst_dev: u32,
    /// Set of watched drop reasons, resolved by name from the running kernel.
    pub reasons: [u64; REASON_SET_WORDS],
    /// Only drops in this namespace (inode) are kept; 0 keeps all. A storm elsewhere then
    /// neither fills the ring buffer nor evicts this namespace's per-peer counts.
    pub only_netns: u32,
    pub _pad: u32,
}

impl DropProbeConfig {
    pub fn watches(&self, reason: u32) -> bool {
        reason < MAX_REASON && (self.reasons[(reason / 64) as usize] >> (reason % 64)) & 1 == 1
    }

    pub fn watch(&mut self, reason: u32) {
        if reason < MAX_REASON {
            self.reasons[(reason / 64) as usize] |= 1 << (reason % 64);
        }
    }
}

/// Load-time configuration of the function hooks (fentry/fexit and kprobe/kretprobe on TCP
/// functions): `struct` member offsets from the running kernel's BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionProbeConfig {
    /// `struct sk_buff` members, for the packet parser.
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    /// `struct sock_common` members: address family, remote address (IPv4 and IPv6), namespace.
    pub sk_family: u32,
    pub sk_daddr: u32,
    pub sk_v6_daddr: u32,
    pub sk_net: u32,
    /// `struct net::ns.inum`.
    pub net_ns_inum: u32,
}

/// Key of `SYN_SEEN`: SYNs that reached a listener, per peer, namespace and listening port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SynKey {
    /// The SYN's source address; IPv4 uses the first 4 bytes, the rest are zero.
    pub addr: [u8; 16],
    /// Network namespace inode of the listener.
    pub netns: u32,
    /// The listener's port (the SYN's destination port), host byte order.
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
}

/// Key of `DUPACKS_SENT` and `OOW_SUPPRESSED`: one remote peer in one namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerAddrKey {
    /// Remote address; IPv4 (also IPv4-mapped IPv6) uses the first 4 bytes, the rest are zero.
    pub addr: [u8; 16],
    pub netns: u32,
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Key of the per-peer drop counters (LRU hash map `PEER_DROPS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerKey {
    /// Remote address; IPv4 uses the first 4 bytes, the rest are zero.
    pub addr: [u8; 16],
    /// Network namespace inode of the receiving device.
    pub netns: u32,
    /// Drop reason number (kernel-specific, resolved to a name in userspace).
    pub reason: u16,
    pub family: u8,
    /// TCP state of the socket that dropped it (`TCP_LISTEN`, `TCP_TIME_WAIT`...), 0 if none.
    pub sk_state: u8,
    /// Local (destination) port of the dropped segment, host order: `--port` filters on it.
    pub local_port: u16,
    pub _pad: [u8; 2],
}

/// Value of `PEER_DROPS`, `SYN_SEEN`, `DUPACKS_SENT` and `OOW_SUPPRESSED`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub count: u64,
    /// `bpf_ktime_get_ns` of the first and last drop.
    pub first_ns: u64,
    pub last_ns: u64,
}

/// One dropped TCP segment, as parsed from the packet itself (`skb->head` + header offsets).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    pub ts_ns: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub netns: u32,
    pub reason: u32,
    pub seq: u32,
    pub ack_seq: u32,
    pub tsval: u32,
    pub tsecr: u32,
    /// Host byte order.
    pub sport: u16,
    pub dport: u16,
    pub kind: u8,
    pub family: u8,
    pub tcp_flags: u8,
    pub sk_state: u8,
    pub has_timestamp: u8,
    pub _pad0: u8,
    pub payload_len: u16,
    pub _pad1: [u8; 4],
}

/// TCP flag bits as in the header's 14th byte.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Stages of the SYN funnel ([`FunnelKey::stage`]).
pub mod funnel_stage {
    /// A SYN (without ACK) arrived.
    pub const SYN_IN: u8 = 1;
    /// A SYN-ACK left, first transmissions and retransmissions alike.
    pub const SYNACK_OUT: u8 = 2;
    /// A SYN-ACK was retransmitted (timer or duplicate SYN).
    pub const SYNACK_RETRANSMIT: u8 = 3;
    /// A passive connection reached ESTABLISHED (SYN_RECV → ESTABLISHED).
    pub const HANDSHAKE_DONE: u8 = 4;
}

/// Key of `SYN_FUNNEL`: one peer, one namespace, one local (listening) port, one stage.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FunnelKey {
    /// Remote address; IPv4 (also IPv4-mapped IPv6) uses the first 4 bytes, the rest are zero.
    pub addr: [u8; 16],
    pub netns: u32,
    /// Local port, host byte order.
    pub port: u16,
    pub family: u8,
    /// One of [`funnel_stage`].
    pub stage: u8,
}

/// Load-time configuration of the handshake programs (SYN funnel on tracepoints): tracepoint
/// record offsets from tracefs, struct member offsets from BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeProbeConfig {
    /// `skbaddr` of `net:netif_receive_skb` and `net:net_dev_queue`.
    pub rx_skbaddr: u32,
    pub tx_skbaddr: u32,
    /// `struct sk_buff` members.
    pub skb_head: u32,
    pub skb_data: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    pub skb_dev: u32,
    /// `struct net_device::nd_net.net`, `struct net::ns.inum`, `struct sock_common::skc_net`.
    pub dev_nd_net: u32,
    pub net_ns_inum: u32,
    pub sk_net: u32,
    /// `tcp:tcp_retransmit_synack` fields.
    pub rs_skaddr: u32,
    pub rs_sport: u32,
    pub rs_family: u32,
    pub rs_daddr: u32,
    pub rs_daddr_v6: u32,
    /// `sock:inet_sock_set_state` fields.
    pub ss_skaddr: u32,
    pub ss_oldstate: u32,
    pub ss_newstate: u32,
    pub ss_sport: u32,
    pub ss_family: u32,
    pub ss_protocol: u32,
    pub ss_daddr: u32,
    pub ss_daddr_v6: u32,
    /// SYN timestamp samples each CPU may send per second over the ring buffer.
    pub syn_samples_per_s: u32,
    /// Only this namespace (inode) is watched; 0 watches all. Traffic elsewhere (a SYN flood
    /// in another namespace) then neither evicts its counts nor spends its sample budget.
    pub only_netns: u32,
}

/// One SYN as it arrived (before any TCP processing): who, to which port, and its TSval.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynEvent {
    pub ts_ns: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub netns: u32,
    pub tsval: u32,
    /// Host byte order.
    pub sport: u16,
    pub dport: u16,
    pub kind: u8,
    pub family: u8,
    pub has_timestamp: u8,
    pub _pad: u8,
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: plain-old-data, repr(C), explicitly padded, no invalid bit patterns.
    unsafe impl aya::Pod for DropProbeConfig {}
    unsafe impl aya::Pod for FunctionProbeConfig {}
    unsafe impl aya::Pod for SynKey {}
    unsafe impl aya::Pod for PeerAddrKey {}
    unsafe impl aya::Pod for PeerKey {}
    unsafe impl aya::Pod for PeerStats {}
    unsafe impl aya::Pod for DropEvent {}
    unsafe impl aya::Pod for FunnelKey {}
    unsafe impl aya::Pod for HandshakeProbeConfig {}
    unsafe impl aya::Pod for SynEvent {}
}

const _: () = assert!(core::mem::size_of::<DropEvent>() == 80);
const _: () = assert!(core::mem::size_of::<PeerKey>() == 28);
const _: () = assert!(core::mem::size_of::<SynKey>() == 24);
const _: () = assert!(core::mem::size_of::<PeerAddrKey>() == 24);
const _: () = assert!(core::mem::size_of::<FunnelKey>() == 24);
const _: () = assert!(core::mem::size_of::<SynEvent>() == 56);
