//! `syn_timestamps`: each SYN's TSval to userspace, where timestamp clocks are told apart,
//! within a per-CPU budget per second so a SYN flood cannot fill the ring the drop samples
//! share (the funnel's counts stay exact regardless).
use aya_ebpf::{macros::map, maps::PerCpuArray};
use netdiag_common::{EVENT_SYN, SynEvent, stat};

use crate::{
    context::Packet,
    kmem::{Kmem, configured},
    layout::{settings, watched_netns},
    maps::{EVENTS, bump},
    packet,
};

const NS_PER_S: u64 = 1_000_000_000;

/// Per CPU: start of the current one-second window and samples sent in it.
#[map]
static SYN_SAMPLE_BUDGET: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// Samples the SYN `pkt` holds (the caller checked it is one).
#[inline(always)]
pub fn sample<M: Kmem>(pkt: &Packet<M>) {
    let Some(seg) = pkt.segment() else { return };
    let netns = pkt.netns();
    if !watched_netns(netns) {
        return;
    }
    let now = pkt.now();
    if !allowed(now) {
        bump(stat::SYN_SAMPLES_SKIPPED);
        return;
    }
    let Some(timestamp) = (unsafe { packet::read_timestamp(seg) }) else {
        bump(stat::HANDSHAKE_UNPARSED);
        return;
    };
    match EVENTS.reserve::<SynEvent>(0) {
        Some(mut entry) => {
            entry.write(SynEvent {
                ts_ns: now,
                saddr: seg.saddr,
                daddr: seg.daddr,
                netns,
                tsval: timestamp.map_or(0, |t| t.0),
                sport: seg.sport,
                dport: seg.dport,
                kind: EVENT_SYN,
                family: seg.family,
                has_timestamp: timestamp.is_some() as u8,
                _pad: 0,
            });
            entry.submit(0);
        }
        None => bump(stat::RING_LOST),
    }
}

#[inline(always)]
fn allowed(now: u64) -> bool {
    let (Some(window), Some(used)) = (SYN_SAMPLE_BUDGET.get_ptr_mut(0), SYN_SAMPLE_BUDGET.get_ptr_mut(1)) else {
        return false;
    };
    unsafe {
        if now.wrapping_sub(*window) >= NS_PER_S {
            *window = now;
            *used = 0;
        }
        if *used >= configured(&settings().syn_samples_per_s) as u64 {
            return false;
        }
        *used += 1;
    }
    true
}
