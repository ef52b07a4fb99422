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
    /// Packet captures not taken: over the per-CPU rate limit, or the capture ring was full.
    pub const CAPTURE_SKIPPED: u32 = 5;
    /// Fresh keys inserted into `PEER_DROPS`; minus the keys present at the end, the evictions.
    pub const PEER_INSERTS: u32 = 6;
    /// SYNs and SYN-ACKs the handshake programs could not read; missing from the SYN funnel.
    pub const HANDSHAKE_UNPARSED: u32 = 7;
    /// SYN timestamp samples not sent because the per-CPU budget of the second was spent
    /// (the funnel counts still hold those SYNs).
    pub const SYN_SAMPLES_SKIPPED: u32 = 8;
    pub const COUNT: u32 = 9;
}

/// The one layout configuration of every kernel program: where the members they read sit in
/// the running kernel's structs (from its BTF) and in the perf tracepoints' records (from
/// their `format` files). Nothing here is compiled in: the loader fills it before loading.
/// A member the kernel lacks is [`FIELD_ABSENT`]; the hooks whose programs need it are refused.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// `struct sk_buff`.
    pub skb_head: u32,
    pub skb_data: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    /// An offset from `head` on 64-bit kernels; [`FIELD_ABSENT`] where it is a pointer.
    pub skb_tail: u32,
    pub skb_dev: u32,
    pub skb_sk: u32,
    /// `users.refs.counter`: a drop-function program counts only the call that frees.
    pub skb_users: u32,
    pub skb_refdst: u32,
    /// `struct net_device::nd_net.net`, `struct dst_entry::dev`.
    pub dev_nd_net: u32,
    pub dst_dev: u32,
    /// `struct net::ns.inum` and `ipv4.sysctl_tcp_timestamps`.
    pub net_ns_inum: u32,
    pub net_tcp_timestamps: u32,
    /// `struct sock_common` (also the head of request and TIME_WAIT sockets).
    pub sk_family: u32,
    pub sk_state: u32,
    pub sk_daddr: u32,
    pub sk_v6_daddr: u32,
    pub sk_net: u32,
    /// `skc_num`: the local port, host order.
    pub sk_num: u32,
    /// `struct tcp_sock::srtt_us`: the smoothed round-trip time in µs, shifted left by 3.
    pub tcp_srtt_us: u32,
    /// `struct sock::sk_cgrp_data.cgroup` (the cgroup v2 the socket was made in),
    /// `struct cgroup::kn` and `struct kernfs_node::id` (the cgroup's id, its directory's
    /// inode); [`FIELD_ABSENT`] where the kernel keeps no such pointer.
    pub sk_cgroup: u32,
    pub cgroup_kn: u32,
    pub kernfs_id: u32,
    /// `struct request_sock::rsk_listener`, which is `sock_common.skc_listener`.
    pub req_listener: u32,
    /// `struct inet_timewait_sock::tw_substate`, `struct tcp_timewait_sock::tw_ts_recent{,_stamp}`.
    pub tw_substate: u32,
    pub tw_ts_recent: u32,
    pub tw_ts_recent_stamp: u32,
    /// `skb:kfree_skb` record; `rx_sk` exists since 6.11 (also as the raw tracepoint's fourth
    /// argument), [`FIELD_ABSENT`] before.
    pub rec_drop_skb: u32,
    pub rec_drop_reason: u32,
    pub rec_drop_rx_sk: u32,
    /// `skbaddr` of `net:netif_receive_skb` and `net:net_dev_queue`.
    pub rec_rx_skb: u32,
    pub rec_tx_skb: u32,
    /// `tcp:tcp_retransmit_synack`.
    pub rec_rs_sk: u32,
    pub rec_rs_sport: u32,
    pub rec_rs_family: u32,
    pub rec_rs_daddr: u32,
    pub rec_rs_daddr_v6: u32,
    /// `sock:inet_sock_set_state`.
    pub rec_ss_sk: u32,
    pub rec_ss_oldstate: u32,
    pub rec_ss_newstate: u32,
    pub rec_ss_sport: u32,
    pub rec_ss_family: u32,
    pub rec_ss_protocol: u32,
    pub rec_ss_daddr: u32,
    pub rec_ss_daddr_v6: u32,
}

/// What the handlers do, decided at load: drop reasons by name, filters and budgets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Drop reasons counted per peer (`paws_checks`).
    pub watched: ReasonSet,
    /// Out-of-window drop reasons, by which check (`oow_received`).
    pub oow_timestamp: ReasonSet,
    pub oow_sequence: ReasonSet,
    pub oow_ack: ReasonSet,
    /// Only this namespace (inode) is watched; 0 watches all.
    pub only_netns: u32,
    /// Header captures per CPU and second (`--pcap`); 0: none.
    pub captures_per_s: u32,
    /// SYN timestamp samples per CPU and second.
    pub syn_samples_per_s: u32,
    /// Seconds after which the kernel stops trusting `ts_recent` (`TCP_PAWS_WRAP`, 2147 s
    /// since 6.7; `TCP_PAWS_24DAYS` before).
    pub paws_wrap_s: u32,
}

/// A set of drop-reason numbers (the kernel has ~130 today).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasonSet(pub [u64; REASON_SET_WORDS]);

impl ReasonSet {
    #[inline(always)]
    pub fn has(&self, reason: u32) -> bool {
        reason < MAX_REASON && (self.0[(reason / 64) as usize % REASON_SET_WORDS] >> (reason % 64)) & 1 == 1
    }

    pub fn insert(&mut self, reason: u32) {
        if reason < MAX_REASON {
            self.0[(reason / 64) as usize] |= 1 << (reason % 64);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

impl Settings {
    /// Why `reason` means out of window, or [`oow_why::NONE`].
    #[inline(always)]
    pub fn oow_why(&self, reason: u32) -> u8 {
        if self.oow_timestamp.has(reason) {
            oow_why::TIMESTAMP
        } else if self.oow_sequence.has(reason) {
            oow_why::SEQUENCE
        } else if self.oow_ack.has(reason) {
            oow_why::ACK
        } else {
            oow_why::NONE
        }
    }

    pub fn set_oow(&mut self, why: u8, reason: u32) {
        match why {
            oow_why::TIMESTAMP => self.oow_timestamp.insert(reason),
            oow_why::SEQUENCE => self.oow_sequence.insert(reason),
            oow_why::ACK => self.oow_ack.insert(reason),
            _ => {}
        }
    }
}

/// Indexes of the `SWITCHES` array: what userspace turns on or off while programs run, as
/// hooks are served, armed and disarmed.
pub mod switch {
    /// The receive program counts SYNs into the funnel (it serves `conn_request`).
    pub const RX_COUNTS_SYNS: u32 = 0;
    /// The receive program samples SYN timestamps (it serves `syn_timestamps`).
    pub const RX_SAMPLES_SYNS: u32 = 1;
    /// The transmit program counts SYN-ACKs (it serves `synack_sent`).
    pub const TX_COUNTS_SYNACKS: u32 = 2;
    /// The transmit program counts duplicate ACKs per flow (it serves `flow_dupacks`).
    pub const TX_COUNTS_DUPACKS: u32 = 3;
    /// The drop number of `TCP_RFC7323_TW_PAWS` plus one while the TIME_WAIT program counts
    /// those rejections: the drop program leaves them alone. 0 otherwise.
    pub const TW_PAWS_REASON_PLUS_ONE: u32 = 4;
    /// The conn_request and TIME_WAIT programs sample SYN timestamps (they serve `syn_timestamps`).
    pub const FUNCTIONS_SAMPLE_SYNS: u32 = 5;
    pub const COUNT: u32 = 6;
}

/// Why the drop program asks userspace to arm a deep hook (the `ARM_REQUESTS` per-CPU array,
/// counts of drops that call for it).
pub mod arm_request {
    /// A dropped SYN: the SYN funnel's receive and transmit hooks would explain it.
    pub const SYN_DROPS: u32 = 0;
    /// An out-of-window drop: the per-flow duplicate-ACK count on transmit tells a loop.
    pub const OOW_DROPS: u32 = 1;
    pub const COUNT: u32 = 2;
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
    /// When this CPU last sent a ring-buffer sample for the key (kernel-side rate limit).
    pub last_sample_ns: u64,
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

/// Header bytes a packet capture keeps: a TCP/IPv4 header with full options is at most 120.
pub const CAPTURE_BYTES: usize = 128;

/// The headers of one dropped segment, for `--pcap` evidence: IP header onwards, as on the wire.
/// Travels over its own ring buffer (`CAPTURES`), so evidence never crowds out drop samples.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketCapture {
    pub ts_ns: u64,
    pub netns: u32,
    pub reason: u32,
    /// Bytes of `headers` that hold the packet (IP and TCP headers, options included).
    pub captured_len: u16,
    /// Length of the whole packet on the wire (IP total length).
    pub wire_len: u16,
    /// Where the TCP header starts in `headers` (after IP options or IPv6 extension headers).
    pub transport_offset: u16,
    pub _pad: [u8; 2],
    pub headers: [u8; CAPTURE_BYTES],
}

impl Default for PacketCapture {
    fn default() -> Self {
        PacketCapture { ts_ns: 0, netns: 0, reason: 0, captured_len: 0, wire_len: 0, transport_offset: 0, _pad: [0; 2], headers: [0; CAPTURE_BYTES] }
    }
}

/// TCP flag bits as in the header's 14th byte.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// The TCP option walk of the kernel programs, here so that userspace tests and fuzzes the very
/// code the kernel runs.
pub mod tcp_options {
    /// Option bytes a TCP header can carry.
    pub const MAX_LEN: usize = 40;
    /// Room for an option starting at any index a step can mask to ([`INDEX_MASK`]) plus a
    /// whole timestamp option after it, so every index a step computes is in bounds without a
    /// check the verifier must follow.
    pub const BUFFER: usize = 80;
    /// Each step masks its index with it, so the verifier knows every read's bound whatever
    /// the steps before it did.
    const INDEX_MASK: usize = 63;
    const EOL: u8 = 0;
    const NOP: u8 = 1;
    const TIMESTAMP: u8 = 8;
    const TIMESTAMP_LEN: usize = 10;

    /// Bytes at the start of the options that [`aligned_timestamp`] looks at.
    pub const ALIGNED_LEN: usize = 12;

    /// The timestamp option where Linux puts it on every segment but a SYN: NOP, NOP, TS at
    /// the start of the options. The kernel's own fast path (`tcp_parse_aligned_timestamp`)
    /// checks the same word before it walks the options.
    #[inline(always)]
    pub fn aligned_timestamp(first: &[u8; ALIGNED_LEN]) -> Option<(u32, u32)> {
        if first[..4] != [NOP, NOP, TIMESTAMP, TIMESTAMP_LEN as u8] {
            return None;
        }
        Some((
            u32::from_be_bytes([first[4], first[5], first[6], first[7]]),
            u32::from_be_bytes([first[8], first[9], first[10], first[11]]),
        ))
    }

    /// The walk over the options, one option per [`step`]: the kernel programs run the steps
    /// with `bpf_loop`, whose callback the verifier checks once rather than once per path
    /// through all of them.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Walk {
        pub options: [u8; BUFFER],
        /// Option bytes in `options` (data offset × 4 − 20).
        pub len: u64,
        /// Where the next option starts.
        pub at: u64,
        pub tsval: u32,
        pub tsecr: u32,
        /// 1 once the timestamp option was read.
        pub found: u32,
        pub _pad: u32,
    }

    impl Walk {
        pub const fn new(options: [u8; BUFFER], len: usize) -> Walk {
            Walk { options, len: len as u64, at: 0, tsval: 0, tsecr: 0, found: 0, _pad: 0 }
        }

        pub fn timestamp(&self) -> Option<(u32, u32)> {
            (self.found == 1).then_some((self.tsval, self.tsecr))
        }
    }

    /// One option of the walk the kernel's `tcp_parse_options` makes: like it, the walk stops
    /// at EOL, at a length below 2 and at an option running past the end. Unlike it, the walk
    /// ends at the first timestamp option, where the kernel would let a later one override it:
    /// only a forged segment carries two. Returns whether to go on.
    #[inline(always)]
    pub fn step(walk: &mut Walk) -> bool {
        let (at, len) = (walk.at as usize, walk.len as usize);
        if at >= len || len > MAX_LEN {
            return false;
        }
        let i = at & INDEX_MASK;
        let kind = walk.options[i];
        if kind == EOL {
            return false;
        }
        if kind == NOP {
            walk.at += 1;
            return true;
        }
        let size = walk.options[i + 1] as usize;
        if size < 2 || at + size > len {
            return false;
        }
        if kind == TIMESTAMP && size == TIMESTAMP_LEN {
            let b = &walk.options[i + 2..i + 10];
            walk.tsval = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            walk.tsecr = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            walk.found = 1;
            return false;
        }
        walk.at += size as u64;
        true
    }

    /// The whole walk over `options[..len]`: at most [`MAX_LEN`] steps (all NOPs).
    pub fn find_timestamp(options: &[u8; BUFFER], len: usize) -> Option<(u32, u32)> {
        let mut walk = Walk::new(*options, len);
        for _ in 0..MAX_LEN {
            if !step(&mut walk) {
                break;
            }
        }
        walk.timestamp()
    }
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

/// Drop-reason numbers netdiag gives rejections the kernel has no drop reason for, outside any
/// kernel's `enum skb_drop_reason` (which has a few hundred values); userspace names them.
pub mod synthetic_reason {
    /// A PAWS rejection in TIME_WAIT seen by the `paws_time_wait` function hook: the kernel's
    /// `TCP_RFC7323_TW_PAWS` (6.16), recomputed where it does not exist.
    pub const TW_PAWS: u16 = 0x8000 | 1;
}

/// The PAWS check (RFC 7323) as `tcp_paws_reject` in include/net/tcp.h does it, here so that
/// userspace tests the very code the kernel program runs.
pub mod paws {
    /// RST segments are exempt once `ts_recent` is this old (`TCP_PAWS_MSL`).
    pub const MSL_S: u32 = 60;
    /// `TCP_PAWS_WRAP` (`INT_MAX / USEC_PER_SEC`), since 6.7 (usec timestamps).
    pub const WRAP_S: u32 = 2147;
    /// `TCP_PAWS_24DAYS`, what the check used before.
    pub const WRAP_24DAYS_S: u32 = 60 * 60 * 24 * 24;

    /// Whether a segment with timestamp `tsval` is rejected against `ts_recent`, recorded at
    /// `ts_recent_stamp` (seconds of `ktime_get_seconds`), now `now_s`:
    /// `tcp_paws_check(rx_opt, 0)` accepts it if `(s32)(ts_recent - tsval) <= 0`, if
    /// `!time_before32(now, ts_recent_stamp + wrap)` or if `ts_recent == 0`; `tcp_paws_reject`
    /// also accepts an RST once `ts_recent` is older than `TCP_PAWS_MSL`.
    #[inline(always)]
    pub fn rejects(ts_recent: u32, ts_recent_stamp: u32, tsval: u32, now_s: u32, rst: bool, wrap_s: u32) -> bool {
        // time_before32(a, b): (s32)(a - b) < 0.
        let before = |a: u32, b: u32| (a.wrapping_sub(b) as i32) < 0;
        if ts_recent.wrapping_sub(tsval) as i32 <= 0 {
            return false;
        }
        if !before(now_s, ts_recent_stamp.wrapping_add(wrap_s)) {
            return false;
        }
        if ts_recent == 0 {
            return false;
        }
        !rst || before(now_s, ts_recent_stamp.wrapping_add(MSL_S))
    }
}

/// Why a segment was out of window, as counted in [`FlowStats`].
pub mod oow_why {
    pub const NONE: u8 = 0;
    pub const TIMESTAMP: u8 = 1;
    pub const SEQUENCE: u8 = 2;
    pub const ACK: u8 = 3;
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

/// Key of `SOCKET_OWNERS`: a local port in a namespace, whose socket's cgroup (the value, a
/// cgroup v2 id) names the workload that owns it even where several share the namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortKey {
    pub netns: u32,
    /// Host byte order.
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
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
    /// When the last out-of-window segment arrived.
    pub last_oow_ns: u64,
    /// The connection's smoothed round-trip time (µs) when it last sent a duplicate ACK; 0
    /// where the socket was not a full one. A gauge: userspace keeps the largest of the CPUs'.
    pub srtt_us: u64,
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: plain-old-data, repr(C), explicitly padded, no invalid bit patterns.
    unsafe impl aya::Pod for Layout {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for SynKey {}
    unsafe impl aya::Pod for PeerAddrKey {}
    unsafe impl aya::Pod for PeerKey {}
    unsafe impl aya::Pod for PeerStats {}
    unsafe impl aya::Pod for DropEvent {}
    unsafe impl aya::Pod for PacketCapture {}
    unsafe impl aya::Pod for FunnelKey {}
    unsafe impl aya::Pod for SynEvent {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowStats {}
    unsafe impl aya::Pod for PortKey {}
}

const _: () = assert!(core::mem::size_of::<DropEvent>() == 80);
const _: () = assert!(core::mem::size_of::<PacketCapture>() == 152);
const _: () = assert!(core::mem::size_of::<PeerKey>() == 28);
const _: () = assert!(core::mem::size_of::<SynKey>() == 24);
const _: () = assert!(core::mem::size_of::<PeerAddrKey>() == 24);
const _: () = assert!(core::mem::size_of::<FunnelKey>() == 24);
const _: () = assert!(core::mem::size_of::<SynEvent>() == 56);

#[cfg(test)]
mod paws_tests {
    use super::paws::{WRAP_S, WRAP_24DAYS_S, rejects};

    #[test]
    fn an_older_timestamp_is_rejected_a_newer_or_equal_one_is_not() {
        assert!(rejects(1000, 50, 999, 55, false, WRAP_S));
        assert!(!rejects(1000, 50, 1000, 55, false, WRAP_S), "paws window 0: equal passes");
        assert!(!rejects(1000, 50, 1001, 55, false, WRAP_S));
        // Across the 32-bit wrap: 5 is after 0xffff_fff0.
        assert!(!rejects(0xffff_fff0, 50, 5, 55, false, WRAP_S));
        assert!(rejects(5, 50, 0xffff_fff0, 55, false, WRAP_S));
    }

    #[test]
    fn a_stale_or_zero_ts_recent_proves_nothing() {
        assert!(!rejects(1000, 50, 999, 50 + WRAP_S, false, WRAP_S), "past TCP_PAWS_WRAP");
        assert!(rejects(1000, 50, 999, 50 + WRAP_S, false, WRAP_24DAYS_S), "6.1 trusts it for 24 days");
        assert!(!rejects(1000, 50, 999, 50 + WRAP_24DAYS_S, false, WRAP_24DAYS_S));
        assert!(!rejects(0, 50, 0x8000_0001, 55, false, WRAP_S), "ts_recent 0 is ignored");
    }

    #[test]
    fn an_rst_is_exempt_once_ts_recent_is_older_than_msl() {
        assert!(rejects(1000, 50, 999, 50 + 59, true, WRAP_S));
        assert!(!rejects(1000, 50, 999, 50 + 60, true, WRAP_S));
        assert!(rejects(1000, 50, 999, 50 + 60, false, WRAP_S));
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_options::{BUFFER, find_timestamp};

    fn walk(options: &[u8]) -> Option<(u32, u32)> {
        let mut buffer = [0u8; BUFFER];
        buffer[..options.len()].copy_from_slice(options);
        find_timestamp(&buffer, options.len())
    }

    const TS_1_2: [u8; 10] = [8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

    #[test]
    fn finds_the_timestamp_of_a_linux_syn_and_of_an_established_segment() {
        // MSS, SACK permitted, TS, NOP, window scale: what Linux puts in a SYN.
        let syn = [[2, 4, 5, 0xb4, 4, 2].as_slice(), &TS_1_2, &[1, 3, 3, 7]].concat();
        assert_eq!(walk(&syn), Some((1, 2)));
        assert_eq!(walk(&[[1, 1].as_slice(), &TS_1_2].concat()), Some((1, 2)));
    }

    #[test]
    fn stops_where_the_kernel_stops() {
        assert_eq!(walk(&[[0, 1].as_slice(), &TS_1_2].concat()), None, "after EOL");
        assert_eq!(walk(&[[30, 0].as_slice(), &TS_1_2].concat()), None, "after a silly length");
        assert_eq!(walk(&[[30, 1].as_slice(), &TS_1_2].concat()), None, "after a length of one");
        assert_eq!(walk(&TS_1_2[..9]), None, "an option running past the end");
        assert_eq!(walk(&[8, 6, 0, 0, 0, 1]), None, "a timestamp of the wrong size");
    }

    #[test]
    fn the_aligned_fast_path_agrees_with_the_walk_or_declines() {
        use super::tcp_options::{ALIGNED_LEN, aligned_timestamp};
        let aligned = [[1u8, 1].as_slice(), &TS_1_2].concat();
        let first: [u8; ALIGNED_LEN] = aligned[..ALIGNED_LEN].try_into().unwrap();
        assert_eq!(aligned_timestamp(&first), walk(&aligned));
        // A SYN's options (MSS first): the fast path declines, the walk finds it.
        let mut syn = [0u8; ALIGNED_LEN];
        syn[..4].copy_from_slice(&[2, 4, 5, 0xb4]);
        assert_eq!(aligned_timestamp(&syn), None);
    }

    #[test]
    fn the_first_of_two_timestamp_options_is_taken() {
        let twice = [TS_1_2.as_slice(), &[8, 10, 0, 0, 0, 3, 0, 0, 0, 4]].concat();
        assert_eq!(walk(&twice), Some((1, 2)));
    }

    #[test]
    fn a_timestamp_at_the_last_possible_offset_is_read() {
        let mut options = [1u8; 40];
        options[30..].copy_from_slice(&TS_1_2);
        assert_eq!(walk(&options), Some((1, 2)));
    }
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 44);
const _: () = assert!(core::mem::size_of::<FlowStats>() == 88);
const _: () = assert!(core::mem::size_of::<PortKey>() == 8);
