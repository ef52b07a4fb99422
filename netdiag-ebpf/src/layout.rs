//! The one layout configuration (struct and record offsets of the running kernel) and the
//! handlers' settings, both patched in by the loader, and the switches userspace flips while
//! programs run.
use aya_ebpf::{macros::map, maps::Array};
use netdiag_common::{FIELD_ABSENT, Layout, REASON_SET_WORDS, ReasonSet, Settings, oow_why, switch};

use crate::kmem::configured;

#[unsafe(no_mangle)]
static LAYOUT: Layout = Layout {
    skb_head: 0,
    skb_data: 0,
    skb_network_header: 0,
    skb_transport_header: 0,
    skb_tail: FIELD_ABSENT,
    skb_dev: 0,
    skb_sk: 0,
    skb_users: 0,
    skb_refdst: 0,
    dev_nd_net: 0,
    dst_dev: 0,
    net_ns_inum: 0,
    net_tcp_timestamps: 0,
    sk_family: 0,
    sk_state: 0,
    sk_daddr: 0,
    sk_v6_daddr: 0,
    sk_net: 0,
    sk_num: 0,
    tcp_srtt_us: 0,
    sk_cgroup: FIELD_ABSENT,
    cgroup_kn: 0,
    kernfs_id: 0,
    req_listener: 0,
    tw_substate: 0,
    tw_ts_recent: 0,
    tw_ts_recent_stamp: 0,
    rec_drop_skb: 0,
    rec_drop_reason: 0,
    rec_drop_rx_sk: FIELD_ABSENT,
    rec_rx_skb: 0,
    rec_tx_skb: 0,
    rec_rs_sk: 0,
    rec_rs_sport: 0,
    rec_rs_family: 0,
    rec_rs_daddr: 0,
    rec_rs_daddr_v6: 0,
    rec_ss_sk: 0,
    rec_ss_oldstate: 0,
    rec_ss_newstate: 0,
    rec_ss_sport: 0,
    rec_ss_family: 0,
    rec_ss_protocol: 0,
    rec_ss_daddr: 0,
    rec_ss_daddr_v6: 0,
};

const NO_REASONS: ReasonSet = ReasonSet([0; REASON_SET_WORDS]);

#[unsafe(no_mangle)]
static SETTINGS: Settings = Settings {
    watched: NO_REASONS,
    oow_timestamp: NO_REASONS,
    oow_sequence: NO_REASONS,
    oow_ack: NO_REASONS,
    only_netns: 0,
    captures_per_s: 0,
    syn_samples_per_s: 0,
    paws_wrap_s: 0,
};

#[inline(always)]
pub fn layout() -> &'static Layout {
    &LAYOUT
}

#[inline(always)]
pub fn settings() -> &'static Settings {
    &SETTINGS
}

/// Whether reason set `set` (of [`settings`]) holds `reason`. Read volatile: patched at load.
#[inline(always)]
pub fn has_reason(set: &ReasonSet, reason: u32) -> bool {
    // Each word at a constant offset: with a variable index the compiler may move the bound
    // check onto another copy of `reason` (it did in the perf drop program), and the verifier
    // then sees the access unbounded.
    const _: () = assert!(REASON_SET_WORDS == 4);
    let word = match reason / 64 {
        0 => &set.0[0],
        1 => &set.0[1],
        2 => &set.0[2],
        3 => &set.0[3],
        _ => return false,
    };
    (unsafe { core::ptr::read_volatile(word) } >> (reason % 64)) & 1 == 1
}

/// Why `reason` means out of window ([`netdiag_common::oow_why`]).
#[inline(always)]
pub fn oow_why(reason: u32) -> u8 {
    let s = settings();
    if has_reason(&s.oow_timestamp, reason) {
        oow_why::TIMESTAMP
    } else if has_reason(&s.oow_sequence, reason) {
        oow_why::SEQUENCE
    } else if has_reason(&s.oow_ack, reason) {
        oow_why::ACK
    } else {
        oow_why::NONE
    }
}

/// Whether namespace `netns` is watched (`only_netns`).
#[inline(always)]
pub fn watched_netns(netns: u32) -> bool {
    let only = configured(&settings().only_netns);
    only == 0 || only == netns
}

/// See [`netdiag_common::switch`].
#[map]
static SWITCHES: Array<u32> = Array::with_max_entries(switch::COUNT, 0);

#[inline(always)]
pub fn switch(index: u32) -> u32 {
    SWITCHES.get(index).copied().unwrap_or(0)
}
