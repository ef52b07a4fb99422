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
    if let Ok(lockdown) = std::fs::read_to_string("/sys/kernel/security/lockdown")
        && lockdown.contains("[confidentiality]")
    {
        return Err(unavailable(
            "the kernel is locked down in confidentiality mode, which forbids reading kernel memory from BPF",
            "boot with lockdown=integrity or none to trace; kernel counters still work",
        ));
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(unavailable(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing)",
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (all major distributions since 2021)",
        ));
    }
    Ok(())
}

/// What a long-running agent still needs once its programs are attached: CAP_BPF to read its
/// maps (kernels before 6.5 check it on every bpf() call), CAP_SYS_ADMIN to enter network
/// namespaces for their counters, CAP_SYS_PTRACE to open other processes' namespace files.
/// Attaching (CAP_PERFMON), raw sockets, file-permission overrides, module loading and the rest
/// are dropped for good.
pub const AFTER_ATTACH: &[u32] = &[CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_BPF];
const CAP_SYS_PTRACE: u32 = 19;

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability not in `keep` from this process's bounding, ambient, inheritable,
/// permitted and effective sets, so neither it nor anything it runs can get them back.
/// Capabilities are per thread: call it before other threads exist (netdiag runs on one).
pub fn keep_only(keep: &[u32]) -> Result<()> {
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?.trim().parse()?;
    // The bounding set first: dropping from it needs CAP_SETPCAP, about to go.
    for cap in (0..=last_cap).filter(|cap| !keep.contains(cap)) {
        // SAFETY: plain prctl calls with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and two data words, as capget(2) version 3 expects.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let mut wanted = [CapData::default(); 2];
    for cap in keep {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        wanted[word].permitted |= data[word].permitted & bit;
        wanted[word].effective |= data[word].permitted & bit;
    }
    // SAFETY: as above, for capset(2).
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, wanted.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}
