//! Hooks: load netdiag's kernel programs, configure them for the running kernel and attach them.
//!
//! Nothing kernel-specific is compiled into the programs: struct offsets come from the running
//! kernel's BTF, tracepoint record offsets from its `format` file, drop-reason numbers by name.
mod drop_reasons;
pub mod privileges;

use anyhow::{Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::TracePoint,
};
pub use drop_reasons::{PAWS_REASONS, ReasonTable};
use netdiag_common::{DropProbeConfig, FIELD_ABSENT, PeerKey, PeerStats, stat};
use serde::Serialize;

use crate::{btf::Btf, error::unavailable, tracefs};

/// One logical hook and how it is served on this kernel.
#[derive(Clone, Debug, Serialize)]
pub struct HookStatus {
    pub name: String,
    pub backend: String,
    pub active: bool,
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Drop reasons to watch, by kernel name (see [`PAWS_REASONS`]).
    pub watched_reasons: Vec<String>,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Capacity of the per-peer map; the least recently updated peers are evicted beyond it.
    pub peer_entries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            watched_reasons: PAWS_REASONS.iter().map(|s| s.to_string()).collect(),
            ring_bytes: 256 * 1024,
            peer_entries: 16384,
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
}

/// Loaded and attached programs. Dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
    pub hooks: Vec<HookStatus>,
    pub reasons: ReasonTable,
}

impl Probes {
    pub fn attach(opts: &Options) -> Result<Probes> {
        privileges::check()?;
        let btf = Btf::from_sys_fs()?;
        let format = tracefs::read_format("skb", "kfree_skb").map_err(|e| {
            unavailable(
                format!("tracepoint skb:kfree_skb is not available ({e:#})"),
                "netdiag needs a kernel with drop-reason tracing (5.17 or newer) on this backend",
            )
        })?;
        let reasons = ReasonTable::resolve(Some(&btf), &format);
        let (config, watched) = drop_probe_config(&btf, &format, &reasons, &opts.watched_reasons)?;

        let mut ebpf = EbpfLoader::new()
            .override_global("DROP_PROBE_CONFIG", &config, true)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .map_max_entries("PEER_DROPS", opts.peer_entries)
            .load(crate::EBPF_OBJECT)
            .map_err(|e| load_error("load netdiag's eBPF object", e.into()))?;

        let program: &mut TracePoint = ebpf
            .program_mut("kfree_skb")
            .ok_or_else(|| anyhow!("program kfree_skb missing from the eBPF object"))?
            .try_into()?;
        program.load().map_err(|e| load_error("verify the skb:kfree_skb program", e.into()))?;
        program
            .attach("skb", "kfree_skb")
            .map_err(|e| load_error("attach to tracepoint skb:kfree_skb", e.into()))?;

        let hooks = vec![HookStatus {
            name: "paws_checks".into(),
            backend: "tracepoint".into(),
            active: true,
            detail: format!(
                "skb:kfree_skb filtered on {} (reason numbers from {})",
                watched.join(", "),
                reasons.source
            ),
        }];
        Ok(Probes { ebpf, hooks, reasons })
    }

    /// The ring buffer of per-flow samples; can be taken once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map("EVENTS").ok_or_else(|| anyhow!("EVENTS map already taken"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Exact per-peer drop counts kept by the kernel, summed over CPUs.
    pub fn peer_drops(&self) -> Result<Vec<(PeerKey, PeerStats)>> {
        let map = self.ebpf.map("PEER_DROPS").ok_or_else(|| anyhow!("PEER_DROPS map missing"))?;
        let map: PerCpuHashMap<_, PeerKey, PeerStats> = PerCpuHashMap::try_from(map)?;
        let mut out = Vec::new();
        for entry in map.iter() {
            let (key, per_cpu) = entry?;
            out.push((key, sum_per_cpu(per_cpu.iter())));
        }
        Ok(out)
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
        })
    }
}

/// Combines one peer's per-CPU slots: counts add up, first/last span all CPUs.
fn sum_per_cpu<'a>(slots: impl Iterator<Item = &'a PeerStats>) -> PeerStats {
    slots.filter(|s| s.count > 0).fold(PeerStats::default(), |acc, s| PeerStats {
        count: acc.count + s.count,
        first_ns: if acc.first_ns == 0 { s.first_ns } else { acc.first_ns.min(s.first_ns) },
        last_ns: acc.last_ns.max(s.last_ns),
    })
}

/// Turns a verifier or attach refusal into an actionable message where we can tell why.
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

fn drop_probe_config(
    btf: &Btf,
    format: &tracefs::TracepointFormat,
    reasons: &ReasonTable,
    watched_names: &[String],
) -> Result<(DropProbeConfig, Vec<String>)> {
    let field = |name: &str| -> Result<u32> {
        format
            .field(name)
            .map(|f| f.offset)
            .ok_or_else(|| anyhow!("skb:kfree_skb has no field {name} on this kernel"))
    };
    let member = |s: &str, path: &[&str]| btf.member_offset(s, path);
    let mut config = DropProbeConfig {
        tp_skbaddr: field("skbaddr")?,
        tp_reason: field("reason").map_err(|_| {
            unavailable(
                "skb:kfree_skb carries no drop reason on this kernel (added in 5.17)",
                "use a newer kernel, or a backend with fentry/kprobe",
            )
        })?,
        tp_protocol: field("protocol")?,
        tp_rx_sk: format.field("rx_sk").map_or(FIELD_ABSENT, |f| f.offset),
        skb_head: member("sk_buff", &["head"])?,
        skb_network_header: member("sk_buff", &["network_header"])?,
        skb_transport_header: member("sk_buff", &["transport_header"])?,
        skb_dev: member("sk_buff", &["dev"])?,
        dev_nd_net: member("net_device", &["nd_net", "net"])?,
        net_ns_inum: member("net", &["ns", "inum"])?,
        sk_state: member("sock_common", &["skc_state"])?,
        sk_net: member("sock_common", &["skc_net", "net"])?,
        reasons: Default::default(),
    };
    for (name, expected) in [("network_header", 2), ("transport_header", 2)] {
        let size = btf.member_size("sk_buff", &[name])?;
        if size != expected {
            return Err(anyhow!("sk_buff.{name} is {size} bytes on this kernel, expected {expected}"));
        }
    }
    let mut watched = Vec::new();
    for name in watched_names {
        match reasons.number(name) {
            Some(number) => {
                config.watch(number);
                watched.push(format!("{name}={number}"));
            }
            None => log::info!("drop reason {name} does not exist on this kernel"),
        }
    }
    if watched.is_empty() {
        return Err(unavailable(
            "none of the watched drop reasons exist on this kernel",
            "PAWS drop reasons appeared in 6.13; use a backend with fentry/kprobe on older kernels",
        ));
    }
    Ok((config, watched))
}
