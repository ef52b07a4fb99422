//! Maps shared by all programs. Sizes are defaults; userspace may resize them before load.
use aya_ebpf::{
    macros::map,
    maps::{LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use netdiag_common::{PeerKey, PeerStats, stat};

/// Per-peer drop counters, aggregated in the kernel so a storm costs no trip to userspace.
#[map]
pub static PEER_DROPS: LruPerCpuHashMap<PeerKey, PeerStats> =
    LruPerCpuHashMap::with_max_entries(16384, 0);

/// Per-flow samples for userspace (addresses, ports, timestamps).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Program health: matched, lost samples, unparsed packets (see `netdiag_common::stat`).
#[map]
pub static PROBE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(slot) = PROBE_STATS.get_ptr_mut(index) {
        // Per-CPU slot: no other writer, a plain add is exact.
        unsafe { *slot += 1 };
    }
}
