//! Hooks: load netdiag's kernel programs, configure them for the running kernel and, for each
//! logical hook, attach the best program the kernel accepts (see [`catalogue`]).
//!
//! Nothing kernel-specific is compiled into the programs: struct offsets come from the running
//! kernel's BTF, tracepoint record offsets from its `format` file, drop-reason numbers by name.
mod attach;
mod catalogue;
pub mod command;
mod drop_reasons;
pub mod privileges;
mod setup;
mod support;

use std::collections::HashMap;

use anyhow::{Result, anyhow};
use aya::{
    EbpfLoader, Pod,
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
};
pub use catalogue::BackendChoice;
pub use drop_reasons::{HANDSHAKE_REASONS, PAWS_REASONS, ReasonTable, watched_with};
use netdiag_common::{
    FlowKey, FlowStats, FunnelKey, PeerAddrKey, PeerKey, PeerStats, PortKey, SynKey, arm_request, stat, switch,
};
use serde::Serialize;

use crate::{btf::Btf, error::unavailable, tracefs};

/// One logical hook and how it is served on this kernel.
#[derive(Clone, Debug, Serialize)]
pub struct HookStatus {
    pub name: String,
    /// The mechanism serving it (`fentry`, `fexit`, `kprobe`, `kretprobe`, `tp_btf`,
    /// `raw_tracepoint`, `tracepoint`), or `none`.
    pub backend: String,
    /// Where the serving program attaches (a kernel function or tracepoint), empty if none.
    pub target: String,
    pub active: bool,
    /// What it counts when active; why every candidate was refused when not.
    pub detail: String,
    /// Candidates tried before the one serving it (all of them when inactive), each as
    /// `backend: reason`.
    pub refused: Vec<String>,
    /// Served by a program that runs for every packet received or sent (not only for drops
    /// or in a slow path): `netdiag agent` attaches it only while an incident calls for it.
    pub per_packet: bool,
    /// Attached now (false while the agent keeps a per-packet program detached).
    pub armed: bool,
    /// The programs of the eBPF object serving it (a kprobe and a kretprobe for one pair; none
    /// when inactive), as [`Probes::program_infos`] names them.
    #[serde(skip)]
    pub programs: Vec<&'static str>,
}

impl HookStatus {
    /// Served by a program on a kernel function (fentry/fexit, kprobe/kretprobe), not a
    /// tracepoint.
    pub fn at_function(&self) -> bool {
        self.active && !matches!(self.backend.as_str(), "tp_btf" | "raw_tracepoint" | "tracepoint")
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Drop reasons to watch, by kernel name (see [`PAWS_REASONS`]).
    pub watched_reasons: Vec<String>,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Capacity of each per-peer map; the least recently updated peers are evicted beyond it.
    pub peer_entries: u32,
    /// Which attach mechanisms may serve the hooks.
    pub backend: BackendChoice,
    /// Header captures of dropped segments allowed per CPU and second (`--pcap`); 0: none.
    pub captures_per_second: u32,
    /// The drop and SYN funnel programs watch only this namespace (inode); all when None.
    pub only_netns: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            watched_reasons: PAWS_REASONS.iter().chain(HANDSHAKE_REASONS).map(|s| s.to_string()).collect(),
            ring_bytes: 256 * 1024,
            peer_entries: 16384,
            backend: BackendChoice::Auto,
            captures_per_second: 0,
            only_netns: None,
        }
    }
}

/// Health counters of the kernel programs, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProbeStats {
    pub matched: u64,
    pub ring_lost: u64,
    pub unparsed: u64,
    pub peer_map_full: u64,
    /// Segments the function hooks could not read; they are missing from their counts.
    pub hook_unparsed: u64,
    /// Header captures (`--pcap`) not taken: over the rate limit or the capture ring full.
    pub capture_skipped: u64,
    /// Fresh peers the kernel inserted into its per-peer drop map.
    pub peer_inserts: u64,
    /// Peers in that map at the end of the session (at most its capacity).
    pub peer_map_entries: u64,
    /// Peers the LRU map evicted, counts and all: `peer_inserts - peer_map_entries`.
    pub peer_map_evictions: u64,
    /// SYNs and SYN-ACKs the handshake programs could not read; missing from the SYN funnel.
    pub handshake_unparsed: u64,
    /// SYN timestamp samples skipped by the per-CPU budget (the funnel still counts those SYNs).
    pub syn_samples_skipped: u64,
}

impl ProbeStats {
    /// Adds what the per-peer drop map held at the end. Nothing deletes from that map, so every
    /// insert not present any more was evicted. Approximate by the few drops counted while the
    /// map was being read, and where two CPUs inserted the same new peer at once (the second
    /// insert replaces the first and counts as one eviction).
    pub fn account_peer_map(&mut self, entries: u64) {
        self.peer_map_entries = entries;
        self.peer_map_evictions = self.peer_inserts.saturating_sub(entries);
    }
}

/// The per-peer maps, all sized by [`Options::peer_entries`].
const PEER_MAPS: [&str; 5] = ["PEER_DROPS", "SYN_SEEN", "DUPACKS_SENT", "OOW_SUPPRESSED", "SYN_FUNNEL"];

/// Loaded and attached programs. Dropping it detaches everything.
pub struct Probes {
    ebpf: aya::Ebpf,
    pub hooks: Vec<HookStatus>,
    pub reasons: ReasonTable,
    /// How each attached program is attached, for arming and disarming per-packet ones.
    links: HashMap<&'static str, attach::Link>,
}

/// The deep hooks' programs, armed together: SYNs arriving and SYN-ACKs leaving for the SYN
/// funnel, duplicate ACKs leaving for an ACK loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeepHook {
    /// The receive program (`conn_request`, `syn_timestamps` where no function hook serves them).
    Receive,
    /// The transmit program (`synack_sent`, `flow_dupacks` where no function hook serves them).
    Transmit,
}

impl DeepHook {
    pub const ALL: [DeepHook; 2] = [DeepHook::Receive, DeepHook::Transmit];

    pub fn name(self) -> &'static str {
        match self {
            DeepHook::Receive => "receive",
            DeepHook::Transmit => "transmit",
        }
    }

    fn owns(self, program: &str) -> bool {
        match self {
            DeepHook::Receive => program.starts_with("on_rx"),
            DeepHook::Transmit => program.starts_with("on_tx"),
        }
    }
}

/// What the drop program saw that calls for a deep hook, totals since load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArmRequests {
    pub syn_drops: u64,
    pub oow_drops: u64,
}

impl Probes {
    /// Attaches every hook the kernel allows; fails when none could be attached.
    pub fn attach(opts: &Options) -> Result<Probes> {
        let probes = Probes::attach_available(opts)?;
        if probes.hooks.iter().any(|hook| hook.active) {
            return Ok(probes);
        }
        let why: Vec<String> =
            probes.hooks.iter().map(|hook| format!("{}: {}", hook.name, hook.detail)).collect();
        Err(unavailable(
            format!("no hook could be attached on this kernel ({})", why.join("; ")),
            "`netdiag hooks` lists every hook and why each backend was refused; `netdiag counters` works without eBPF",
        ))
    }

    /// Attaches every hook the kernel allows, possibly none: `hooks` says what happened to each.
    pub fn attach_available(opts: &Options) -> Result<Probes> {
        privileges::check()?;
        let btf = Btf::from_sys_fs()?;
        let format = tracefs::read_format("skb", "kfree_skb");
        let reasons = ReasonTable::resolve(&btf, format.as_ref().ok());
        let setup = setup::Setup::resolve(&btf, &reasons, opts);
        let mut loader = EbpfLoader::new();
        loader
            .override_global("LAYOUT", &setup.layout, true)
            .override_global("SETTINGS", &setup.settings, true)
            .map_max_entries("EVENTS", opts.ring_bytes);
        if opts.captures_per_second == 0 {
            // Nothing is ever captured: the smallest ring the kernel allows.
            loader.map_max_entries("CAPTURES", page_size());
        }
        for map in PEER_MAPS {
            loader.map_max_entries(map, opts.peer_entries);
        }
        let mut ebpf = loader
            .load(crate::EBPF_OBJECT)
            .map_err(|e| load_error("load netdiag's eBPF object", e.into()))?;
        // The loader holds its own parse of the kernel BTF (tens of MB): freed before the
        // attacher may parse another, so they never add up in the process's peak memory.
        drop(loader);

        let support = support::KernelSupport::read(catalogue::functions().map(|function| function.name));
        let mut attacher = attach::Attacher::new(&mut ebpf, &btf, support, &setup);
        let hooks: Vec<HookStatus> =
            catalogue::CATALOGUE.iter().map(|hook| attacher.serve(hook, opts.backend)).collect();
        let links = std::mem::take(&mut attacher.links);
        set_switches(&mut ebpf, &hooks, setup.tw_paws_reason)?;
        Ok(Probes { ebpf, hooks, reasons, links })
    }

    /// Attaches (`on`) or detaches the programs of a deep hook, and says so in `hooks`.
    pub fn arm(&mut self, deep: DeepHook, on: bool) -> Result<()> {
        for (program, link) in self.links.iter_mut().filter(|(program, _)| deep.owns(program)) {
            attach::set_attached(&mut self.ebpf, program, link, on).map_err(|e| anyhow!("{program}: {e}"))?;
        }
        for hook in self.hooks.iter_mut().filter(|h| h.programs.iter().any(|p| deep.owns(p))) {
            hook.armed = on;
        }
        Ok(())
    }

    /// The deep hooks this kernel serves with per-packet programs.
    pub fn deep_hooks(&self) -> Vec<DeepHook> {
        DeepHook::ALL.into_iter().filter(|deep| self.links.keys().any(|p| deep.owns(p))).collect()
    }

    /// Drops seen so far that call for a deep hook.
    pub fn arm_requests(&self) -> Result<ArmRequests> {
        let map = self.ebpf.map("ARM_REQUESTS").ok_or_else(|| anyhow!("ARM_REQUESTS map missing"))?;
        let array: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let read = |index: u32| -> Result<u64> { Ok(array.get(&index, 0)?.iter().sum()) };
        Ok(ArmRequests { syn_drops: read(arm_request::SYN_DROPS)?, oow_drops: read(arm_request::OOW_DROPS)? })
    }

    /// The ring buffer of per-flow samples; can be taken once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map("EVENTS").ok_or_else(|| anyhow!("EVENTS map already taken"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// The ring buffer of header captures (`--pcap`); can be taken once.
    pub fn take_captures(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map("CAPTURES").ok_or_else(|| anyhow!("CAPTURES map already taken"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Exact per-peer drop counts kept by the kernel, summed over CPUs.
    pub fn peer_drops(&self) -> Result<Vec<(PeerKey, PeerStats)>> {
        self.per_peer("PEER_DROPS")
    }

    /// SYNs that reached a listener (`conn_request`), summed over CPUs.
    pub fn syn_counts(&self) -> Result<Vec<(SynKey, PeerStats)>> {
        self.per_peer("SYN_SEEN")
    }

    /// The SYN funnel of the tracepoint programs (SYNs in, SYN-ACKs out, retransmissions,
    /// completed handshakes), summed over CPUs.
    pub fn funnel_counts(&self) -> Result<Vec<(FunnelKey, PeerStats)>> {
        self.per_peer("SYN_FUNNEL")
    }

    /// Duplicate ACKs sent (`dupack_sent`), summed over CPUs.
    pub fn dupack_counts(&self) -> Result<Vec<(PeerAddrKey, PeerStats)>> {
        self.per_peer("DUPACKS_SENT")
    }

    /// Out-of-window answers the rate limiter suppressed (`oow_limiter`), summed over CPUs.
    pub fn oow_suppressed(&self) -> Result<Vec<(PeerAddrKey, PeerStats)>> {
        self.per_peer("OOW_SUPPRESSED")
    }

    /// Per-flow out-of-window and duplicate-ACK counts (`oow_received`, `flow_dupacks`,
    /// `oow_limiter`), summed over CPUs.
    pub fn flow_counts(&self) -> Result<Vec<(FlowKey, FlowStats)>> {
        let map = self.ebpf.map("FLOW_STATS").ok_or_else(|| anyhow!("FLOW_STATS map missing"))?;
        let map: PerCpuHashMap<_, FlowKey, FlowStats> = PerCpuHashMap::try_from(map)?;
        let mut out = Vec::new();
        for entry in map.iter() {
            let (key, per_cpu) = entry?;
            out.push((key, sum_flow_slots(per_cpu.iter())));
        }
        Ok(out)
    }

    /// The cgroup id of the socket behind each local port the kernel programs saw answer a SYN
    /// or send a duplicate ACK, by namespace and port.
    pub fn socket_owners(&self) -> Result<HashMap<(u32, u16), u64>> {
        let map = self.ebpf.map("SOCKET_OWNERS").ok_or_else(|| anyhow!("SOCKET_OWNERS map missing"))?;
        let map: aya::maps::HashMap<_, PortKey, u64> = aya::maps::HashMap::try_from(map)?;
        map.iter().map(|entry| entry.map(|(key, cgroup)| ((key.netns, key.port), cgroup)).map_err(Into::into)).collect()
    }

    fn per_peer<K: Pod>(&self, name: &str) -> Result<Vec<(K, PeerStats)>> {
        let map = self.ebpf.map(name).ok_or_else(|| anyhow!("{name} map missing"))?;
        let map: PerCpuHashMap<_, K, PeerStats> = PerCpuHashMap::try_from(map)?;
        let mut out = Vec::new();
        for entry in map.iter() {
            let (key, per_cpu) = entry?;
            out.push((key, sum_per_cpu(per_cpu.iter())));
        }
        Ok(out)
    }

    /// The kernel's record of each loaded program, by name: run count and run time are kept
    /// only while BPF stats are enabled (`kernel.bpf_stats_enabled`, or `aya::sys::enable_stats`).
    pub fn program_infos(&self) -> Vec<(String, aya::programs::ProgramInfo)> {
        self.ebpf.programs().filter_map(|(name, program)| Some((name.to_string(), program.info().ok()?))).collect()
    }

    pub fn stats(&self) -> Result<ProbeStats> {
        let map = self.ebpf.map("PROBE_STATS").ok_or_else(|| anyhow!("PROBE_STATS map missing"))?;
        let array: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let read = |index: u32| -> Result<u64> { Ok(array.get(&index, 0)?.iter().sum()) };
        Ok(ProbeStats {
            matched: read(stat::MATCHED)?,
            ring_lost: read(stat::RING_LOST)?,
            unparsed: read(stat::UNPARSED)?,
            peer_map_full: read(stat::PEER_MAP_FULL)?,
            hook_unparsed: read(stat::HOOK_UNPARSED)?,
            capture_skipped: read(stat::CAPTURE_SKIPPED)?,
            peer_inserts: read(stat::PEER_INSERTS)?,
            handshake_unparsed: read(stat::HANDSHAKE_UNPARSED)?,
            syn_samples_skipped: read(stat::SYN_SAMPLES_SKIPPED)?,
            ..ProbeStats::default()
        })
    }
}

/// Combines one peer's per-CPU slots: counts add up, first/last span all CPUs.
fn sum_per_cpu<'a>(slots: impl Iterator<Item = &'a PeerStats>) -> PeerStats {
    slots.filter(|s| s.count > 0).fold(PeerStats::default(), |acc, s| PeerStats {
        count: acc.count + s.count,
        first_ns: if acc.first_ns == 0 { s.first_ns } else { acc.first_ns.min(s.first_ns) },
        last_ns: acc.last_ns.max(s.last_ns),
        last_sample_ns: acc.last_sample_ns.max(s.last_sample_ns),
    })
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u32 }
}

/// Combines one flow's per-CPU slots: counts add up (every slot, also one its CPU has not
/// stamped yet), times span all CPUs, and the timestamp option is the one of the latest
/// out-of-window segment's arrival.
fn sum_flow_slots<'a>(slots: impl Iterator<Item = &'a FlowStats>) -> FlowStats {
    slots.fold(FlowStats::default(), |acc, s| {
        let latest = if s.last_oow_ns > acc.last_oow_ns { s } else { &acc };
        FlowStats {
            oow_timestamp: acc.oow_timestamp + s.oow_timestamp,
            oow_sequence: acc.oow_sequence + s.oow_sequence,
            oow_ack: acc.oow_ack + s.oow_ack,
            oow_pure_ack: acc.oow_pure_ack + s.oow_pure_ack,
            dupacks_out: acc.dupacks_out + s.dupacks_out,
            progress_out: acc.progress_out + s.progress_out,
            limiter_suppressed: acc.limiter_suppressed + s.limiter_suppressed,
            first_ns: if acc.first_ns == 0 || s.first_ns == 0 { acc.first_ns.max(s.first_ns) } else { acc.first_ns.min(s.first_ns) },
            last_ns: acc.last_ns.max(s.last_ns),
            last_oow_ns: latest.last_oow_ns,
            srtt_us: acc.srtt_us.max(s.srtt_us),
        }
    })
}

/// Turns a refusal to load the object into an actionable message where we can tell why.
fn load_error(action: &str, err: anyhow::Error) -> anyhow::Error {
    let text = format!("{err:#}");
    if text.contains("EPERM") || text.contains("Operation not permitted") {
        return unavailable(
            format!("the kernel refused to {action} (EPERM)"),
            "run as root; check kernel.unprivileged_bpf_disabled, lockdown and any LSM policy on bpf()",
        );
    }
    err.context(format!("failed to {action}"))
}

/// Tells the shared programs which hooks they serve: a program on an attach point counts a
/// feature only where no better program does (a SYN at the listener, not again as it arrives).
fn set_switches(ebpf: &mut aya::Ebpf, hooks: &[HookStatus], tw_paws_reason: Option<u32>) -> Result<()> {
    let served_by = |hook: &str, prefix: &str| {
        hooks.iter().any(|h| h.name == hook && h.active && h.programs.iter().any(|p| p.starts_with(prefix)))
    };
    let tw_paws = match tw_paws_reason {
        Some(number) if served_by("paws_time_wait", "on_timewait") => number + 1,
        _ => 0,
    };
    let values = [
        (switch::RX_COUNTS_SYNS, served_by("conn_request", "on_rx") as u32),
        (switch::RX_SAMPLES_SYNS, served_by("syn_timestamps", "on_rx") as u32),
        (switch::TX_COUNTS_SYNACKS, served_by("synack_sent", "on_tx") as u32),
        (switch::TX_COUNTS_DUPACKS, served_by("flow_dupacks", "on_tx") as u32),
        (switch::TW_PAWS_REASON_PLUS_ONE, tw_paws),
        (switch::FUNCTIONS_SAMPLE_SYNS, served_by("syn_timestamps", "on_conn_request") as u32),
    ];
    let map = ebpf.map_mut("SWITCHES").ok_or_else(|| anyhow!("SWITCHES map missing"))?;
    let mut array: Array<_, u32> = Array::try_from(map)?;
    for (index, value) in values {
        array.set(index, value, 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cpu_slot_of_a_flow_counts_even_one_never_stamped() {
        // CPU 1 created the entry; CPU 0 counted into the slot the kernel zeroed for it.
        let slots = [
            FlowStats { oow_sequence: 249, dupacks_out: 1, ..FlowStats::default() },
            FlowStats { oow_sequence: 351, first_ns: 5, last_ns: 9, last_oow_ns: 9, ..FlowStats::default() },
        ];
        let sum = sum_flow_slots(slots.iter());
        assert_eq!((sum.oow_sequence, sum.dupacks_out), (600, 1));
        assert_eq!((sum.first_ns, sum.last_ns, sum.last_oow_ns), (5, 9, 9));
    }
}
