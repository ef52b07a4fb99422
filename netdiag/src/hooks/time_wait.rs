//! `paws_time_wait`: PAWS rejections in TIME_WAIT. Kernels before 6.16 have no drop reason for
//! them, so a function program on `tcp_timewait_state_process` recomputes the kernel's decision
//! (netdiag-ebpf/src/time_wait.rs); where the kernel has `TCP_RFC7323_TW_PAWS`, `kfree_skb`
//! can serve the hook instead. Exactly one of them counts these drops.
use anyhow::{Result, ensure};
use aya::{Ebpf, maps::Array};
use netdiag_common::{DropProbeConfig, FunctionProbeConfig, paws};

use super::{catalogue::Family, drop_reasons::ReasonTable};
use crate::btf::Btf;

/// The kernel's name of the reason this hook counts (and the name of its synthetic reason).
pub const REASON: &str = "TCP_RFC7323_TW_PAWS";
/// The map through which `kfree_skb` learns that a function program counts these drops.
const HANDOVER_MAP: &str = "TW_PAWS_COUNTED_HERE";

/// What each family of the hook's candidates needs, decided before anything is loaded.
pub struct TimeWaitSetup {
    /// Function programs: the socket offsets, or why they cannot be had.
    function: Result<String, String>,
    /// The tracepoint: `kfree_skb` watching the kernel's own reason.
    tracepoint: Result<String, String>,
    /// The kernel's number for [`REASON`], if it has one (6.16 and later).
    kernel_reason: Option<u32>,
}

impl TimeWaitSetup {
    /// `function_setup` and `drop_setup` are the shared setups' notes or refusals; the offsets
    /// this hook adds are written into `config`.
    pub fn new(
        btf: &Btf,
        config: &mut FunctionProbeConfig,
        function_setup: &Result<String, String>,
        drop_setup: &Result<String, String>,
        drop_config: &DropProbeConfig,
        reasons: &ReasonTable,
    ) -> TimeWaitSetup {
        let function = function_setup
            .clone()
            .and_then(|note| configure(btf, config).map(|()| note).map_err(|e| format!("{e:#}")));
        let kernel_reason = reasons.number(REASON);
        let tracepoint = drop_setup.clone().and_then(|_| tracepoint_note(kernel_reason, drop_config));
        TimeWaitSetup { function, tracepoint, kernel_reason }
    }

    /// The note for a candidate of `family`, or why it cannot serve.
    pub fn note(&self, family: Family) -> Result<String, String> {
        match family {
            Family::Tracepoint => self.tracepoint.clone(),
            Family::Fentry | Family::Kprobe => self.function.clone(),
        }
    }

    /// Tells `kfree_skb` whether a function program counts these drops (`true`) or it does. Set
    /// before a function program attaches and cleared if it does not: a drop is never counted
    /// twice; one in the instant between is missed, like one before the session.
    pub fn hand_over(&self, ebpf: &mut Ebpf, to_function: bool) -> Result<(), String> {
        // Without the reason kfree_skb never sees these drops: nothing to hand over.
        let Some(number) = self.kernel_reason else { return Ok(()) };
        let map = ebpf.map_mut(HANDOVER_MAP).ok_or_else(|| format!("{HANDOVER_MAP} map missing"))?;
        let mut array: Array<_, u32> = Array::try_from(map).map_err(|e| format!("{HANDOVER_MAP}: {e}"))?;
        let value = if to_function { number + 1 } else { 0 };
        array.set(0, value, 0).map_err(|e| format!("{HANDOVER_MAP}: {e}"))
    }
}

/// `kfree_skb` serves the hook only where the kernel has the reason and the program watches it.
fn tracepoint_note(kernel_reason: Option<u32>, drop_config: &DropProbeConfig) -> Result<String, String> {
    match kernel_reason {
        Some(number) if drop_config.watches(number) => {
            Ok(format!(", reason {REASON}={number} (the paws_checks program)"))
        }
        Some(_) => Err(format!("{REASON} is not among the watched drop reasons")),
        None => Err(format!("{REASON} {}", super::config::NOT_ON_THIS_KERNEL)),
    }
}

/// The TIME_WAIT socket offsets from the running kernel's BTF, with the sizes the program reads.
fn configure(btf: &Btf, config: &mut FunctionProbeConfig) -> Result<()> {
    let fields: [(&str, &[&str], u32); 4] = [
        ("inet_timewait_sock", &["tw_substate"], 1),
        ("tcp_timewait_sock", &["tw_ts_recent"], 4),
        ("tcp_timewait_sock", &["tw_ts_recent_stamp"], 4),
        ("net", &["ipv4", "sysctl_tcp_timestamps"], 1),
    ];
    let mut offsets = [0u32; 4];
    for (slot, (name, path, size)) in offsets.iter_mut().zip(fields) {
        let actual = btf.member_size(name, path)?;
        ensure!(actual == size, "{name}.{} is {actual} bytes on this kernel, expected {size}", path.join("."));
        *slot = btf.member_offset(name, path)?;
    }
    [config.tw_substate, config.tw_ts_recent, config.tw_ts_recent_stamp, config.net_tcp_timestamps] = offsets;
    config.paws_wrap_s = paws_wrap_s(btf.has_member("inet_timewait_sock", &["tw_usec_ts"]));
    Ok(())
}

/// How long `ts_recent` is trusted. `TCP_PAWS_WRAP` replaced `TCP_PAWS_24DAYS` in 6.7, in the
/// series that added microsecond timestamps, and with them `inet_timewait_sock.tw_usec_ts`.
fn paws_wrap_s(usec_timestamps: bool) -> u32 {
    if usec_timestamps { paws::WRAP_S } else { paws::WRAP_24DAYS_S }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_follows_microsecond_timestamps() {
        assert_eq!(paws_wrap_s(true), 2147);
        assert_eq!(paws_wrap_s(false), 24 * 24 * 3600);
    }

    #[test]
    fn the_tracepoint_serves_only_where_the_kernel_has_the_reason_and_watches_it() {
        let mut config = DropProbeConfig::default();
        let missing = tracepoint_note(None, &config).unwrap_err();
        assert_eq!(missing, "TCP_RFC7323_TW_PAWS not on this kernel");
        assert!(tracepoint_note(Some(38), &config).unwrap_err().contains("not among the watched"));
        config.watch(38);
        assert!(tracepoint_note(Some(38), &config).unwrap().contains("TCP_RFC7323_TW_PAWS=38"));
    }
}
