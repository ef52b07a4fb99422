//! Checks that tracing can work at all, before touching BPF, so the user gets one clear line.
use anyhow::Result;

use crate::error::unavailable;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn check() -> Result<()> {
    let caps = effective_capabilities();
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        return Err(unavailable(
            "loading eBPF programs needs root (or CAP_BPF + CAP_PERFMON)",
            "run netdiag with sudo, or `netdiag counters` for the kernel counters alone",
        ));
    }
    if let Ok(lockdown) = std::fs::read_to_string("/sys/kernel/security/lockdown") {
        if lockdown.contains("[confidentiality]") {
            return Err(unavailable(
                "the kernel is locked down in confidentiality mode, which forbids reading kernel memory from BPF",
                "boot with lockdown=integrity or none to trace; kernel counters still work",
            ));
        }
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(unavailable(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing)",
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (all major distributions since 2021)",
        ));
    }
    Ok(())
}
