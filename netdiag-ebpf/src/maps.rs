//! Maps shared by all programs. Sizes are defaults; userspace may resize them before load.
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE},
    macros::map,
    maps::{LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use netdiag_common::{FunnelKey, PeerAddrKey, PeerKey, PeerStats, PortKey, SynKey, arm_request, stat};

/// Per-peer drop counters, aggregated in the kernel so a storm costs no trip to userspace.
#[map]
pub static PEER_DROPS: LruPerCpuHashMap<PeerKey, PeerStats> =
    LruPerCpuHashMap::with_max_entries(16384, 0);

/// SYN funnel counters, one entry per peer, namespace, local port and stage.
#[map]
pub static SYN_FUNNEL: LruPerCpuHashMap<FunnelKey, PeerStats> =
    LruPerCpuHashMap::with_max_entries(16384, 0);

/// SYNs that reached a listener (`conn_request` hook).
#[map]
pub static SYN_SEEN: LruPerCpuHashMap<SynKey, PeerStats> =
    LruPerCpuHashMap::with_max_entries(16384, 0);

/// Duplicate ACKs sent (`dupack_sent` hook).
#[map]
pub static DUPACKS_SENT: LruPerCpuHashMap<PeerAddrKey, PeerStats> =
    LruPerCpuHashMap::with_max_entries(16384, 0);

/// Out-of-window answers the rate limiter suppressed (`oow_limiter` hook).
#[map]
pub static OOW_SUPPRESSED: LruPerCpuHashMap<PeerAddrKey, PeerStats> =
    LruPerCpuHashMap::with_max_entries(16384, 0);

/// The cgroup of the socket behind each local port that answered a SYN or sent a duplicate
/// ACK: written once per handshake or per flow, never per ordinary packet.
#[map]
pub static SOCKET_OWNERS: LruHashMap<PortKey, u64> = LruHashMap::with_max_entries(8192, 0);

/// Notes that the socket on `key` was made in cgroup `cgroup` (0: unknown, nothing noted).
#[inline(always)]
pub fn note_owner(key: &PortKey, cgroup: u64) {
    if cgroup == 0 || unsafe { SOCKET_OWNERS.get(key) }.is_some_and(|known| *known == cgroup) {
        return;
    }
    let _ = SOCKET_OWNERS.insert(key, &cgroup, BPF_ANY as u64);
}

/// Arguments of `tcp_oow_rate_limited` calls in progress, from the kprobe to the kretprobe.
#[repr(C)]
pub struct OowCall {
    pub net: u64,
    pub skb: u64,
}

/// Keyed by task (see `entry::oow_limited::task_key`); LRU so entries a missed return left behind age out.
#[map]
pub static OOW_PENDING: LruHashMap<u64, OowCall> = LruHashMap::with_max_entries(4096, 0);

/// Per-flow samples for userspace (addresses, ports, timestamps).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Program health: matched, lost samples, unparsed packets (see `netdiag_common::stat`).
#[map]
pub static PROBE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Submit flags for a ring-buffer record: wake the reader only once a quarter of the ring is
/// filled. Under a storm one wakeup then serves thousands of records instead of one context
/// switch each; userspace drains on a short timer in between (`events::pump_ring`).
#[inline(always)]
pub fn wakeup_flags(ring: &RingBuf) -> u64 {
    let filled = ring.query(BPF_RB_AVAIL_DATA as u64);
    let size = ring.query(BPF_RB_RING_SIZE as u64);
    if filled >= size / 4 { BPF_RB_FORCE_WAKEUP as u64 } else { BPF_RB_NO_WAKEUP as u64 }
}

/// Drops that call for a deep hook, per CPU (see [`netdiag_common::arm_request`]): the agent
/// reads them to arm the receive and transmit programs only while an incident needs them.
#[map]
pub static ARM_REQUESTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(arm_request::COUNT, 0);

#[inline(always)]
pub fn request_arm(kind: u32) {
    if let Some(slot) = ARM_REQUESTS.get_ptr_mut(kind) {
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(slot) = PROBE_STATS.get_ptr_mut(index) {
        // Per-CPU slot: no other writer, a plain add is exact.
        unsafe { *slot += 1 };
    }
}

/// A key sends at most one ring-buffer sample per CPU in this time: per-flow detail for
/// userspace, while the counts themselves stay in the map, exact, however fast they rise.
const SAMPLE_EVERY_NS: u64 = 250_000_000;

/// What [`count_sampled`] did.
pub struct Counted {
    /// `key` was inserted afresh.
    pub fresh: bool,
    /// A sample of this event is due: the key is new, or its last sample is old enough.
    pub sample_due: bool,
}

/// Counts one more event for `key`; true when `key` was inserted afresh.
#[inline(always)]
pub fn count<K>(map: &LruPerCpuHashMap<K, PeerStats>, key: &K, now: u64) -> bool {
    count_sampled(map, key, now).fresh
}

/// Counts one more event for `key` and says whether a sample is due. The maps are per-CPU:
/// each CPU owns its slot, so plain writes are exact under a storm with no atomics or
/// cache-line bouncing; userspace sums the CPUs.
#[inline(always)]
pub fn count_sampled<K>(map: &LruPerCpuHashMap<K, PeerStats>, key: &K, now: u64) -> Counted {
    if let Some(stats) = map.get_ptr_mut(key) {
        let stats = unsafe { &mut *stats };
        stats.count += 1;
        if stats.first_ns == 0 {
            stats.first_ns = now;
        }
        stats.last_ns = now;
        let sample_due = now.wrapping_sub(stats.last_sample_ns) >= SAMPLE_EVERY_NS;
        if sample_due {
            stats.last_sample_ns = now;
        }
        return Counted { fresh: false, sample_due };
    }
    let fresh = PeerStats { count: 1, first_ns: now, last_ns: now, last_sample_ns: now };
    if map.insert(key, &fresh, BPF_ANY as u64).is_err() {
        bump(stat::PEER_MAP_FULL);
        // Not counted: a sample at least says the peer exists.
        return Counted { fresh: false, sample_due: true };
    }
    Counted { fresh: true, sample_due: true }
}
