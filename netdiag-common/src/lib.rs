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
    pub const COUNT: u32 = 5;
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

/// Load-time configuration of the per-flow ACK-loop accounting (`netdiag-ebpf/src/flows.rs`):
/// the `net:net_dev_queue` record offset, `sk_buff`/`net_device` members, and which drop
/// reasons of `skb:kfree_skb` mean "out of window", by why, resolved by name at load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowProbeConfig {
    /// `skbaddr` in the `net:net_dev_queue` record.
    pub tp_skbaddr: u32,
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    pub skb_dev: u32,
    /// `struct sk_buff::sk`: set on segments this host's sockets send, NULL on forwarded ones.
    pub skb_sk: u32,
    pub dev_nd_net: u32,
    pub net_ns_inum: u32,
    /// Position of `rx_sk` among the raw `kfree_skb` tracepoint's arguments, [`FIELD_ABSENT`]
    /// before 6.11 (`reason` is always the third).
    pub raw_rx_sk_arg: u32,
    pub _pad: u32,
    /// Out-of-window reasons: the timestamp check (PAWS), the sequence check, the ACK check.
    pub timestamp_reasons: [u64; REASON_SET_WORDS],
    pub sequence_reasons: [u64; REASON_SET_WORDS],
    pub ack_reasons: [u64; REASON_SET_WORDS],
}

/// Why a segment was out of window, as counted in [`FlowStats`].
pub mod oow_why {
    pub const NONE: u8 = 0;
    pub const TIMESTAMP: u8 = 1;
    pub const SEQUENCE: u8 = 2;
    pub const ACK: u8 = 3;
}

impl FlowProbeConfig {
    /// Why `reason` means out of window, or [`oow_why::NONE`].
    pub fn why(&self, reason: u32) -> u8 {
        if reason >= MAX_REASON {
            return oow_why::NONE;
        }
        let (word, bit) = ((reason / 64) as usize, reason % 64);
        if (self.timestamp_reasons[word] >> bit) & 1 == 1 {
            oow_why::TIMESTAMP
        } else if (self.sequence_reasons[word] >> bit) & 1 == 1 {
            oow_why::SEQUENCE
        } else if (self.ack_reasons[word] >> bit) & 1 == 1 {
            oow_why::ACK
        } else {
            oow_why::NONE
        }
    }

    pub fn set(&mut self, why: u8, reason: u32) {
        let set = match why {
            oow_why::TIMESTAMP => &mut self.timestamp_reasons,
            oow_why::SEQUENCE => &mut self.sequence_reasons,
            oow_why::ACK => &mut self.ack_reasons,
            _ => return,
        };
        if reason < MAX_REASON {
            set[(reason / 64) as usize] |= 1 << (reason % 64);
        }
    }
}

/// Key of the per-flow map `FLOW_STATS`: one TCP connection as seen from one namespace, local
/// side first whichever direction the segment went.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// IPv4 uses the first 4 bytes, the rest are zero.
    pub local: [u8; 16],
    pub remote: [u8; 16],
    pub netns: u32,
    /// Host byte order.
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Value of `FLOW_STATS` (per CPU; userspace sums counts and takes the latest timestamps).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Out-of-window segments received, by why (drop reasons of `skb:kfree_skb`).
    pub oow_timestamp: u64,
    pub oow_sequence: u64,
    pub oow_ack: u64,
    /// Of those, pure ACKs: the only ones `tcp_invalid_ratelimit` may leave unanswered.
    pub oow_pure_ack: u64,
    /// Pure ACKs sent that repeat the flow's previous segment (same SEQ, ACK and window).
    pub dupacks_out: u64,
    /// Segments sent that acknowledged new data or carried new data.
    pub progress_out: u64,
    /// Answers `tcp_oow_rate_limited` suppressed, where its return value can be read (fexit,
    /// kretprobe); 0 on a kernel that allows neither.
    pub limiter_suppressed: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// When the last out-of-window segment arrived, and its timestamp option.
    pub last_oow_ns: u64,
    pub last_tsval: u32,
    pub last_tsecr: u32,
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
    unsafe impl aya::Pod for FlowProbeConfig {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowStats {}
}

const _: () = assert!(core::mem::size_of::<DropEvent>() == 80);
const _: () = assert!(core::mem::size_of::<PeerKey>() == 28);
const _: () = assert!(core::mem::size_of::<SynKey>() == 24);
const _: () = assert!(core::mem::size_of::<PeerAddrKey>() == 24);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 44);
const _: () = assert!(core::mem::size_of::<FlowStats>() == 88);
const _: () = assert!(core::mem::size_of::<FlowProbeConfig>() == 40 + 3 * 8 * REASON_SET_WORDS);
