//! Reading kernel memory and load-time configuration.
use aya_ebpf::helpers::bpf_probe_read_kernel;

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub unsafe fn read<T>(base: *const u8, offset: u32) -> Option<T> {
    unsafe { bpf_probe_read_kernel(base.add(offset as usize) as *const T).ok() }
}

/// A configuration value. Volatile: the loader patches it into .rodata after the compiler saw
/// zeros; the verifier then knows it as a constant.
#[inline(always)]
pub fn configured(field: &u32) -> u32 {
    unsafe { core::ptr::read_volatile(field) }
}

/// Inode of a `struct net` (the namespace's identity), 0 if unreadable.
#[inline(always)]
pub fn netns_inode(net: *const u8, net_ns_inum: u32) -> u32 {
    if net.is_null() {
        return 0;
    }
    unsafe { read(net, net_ns_inum).unwrap_or(0) }
}
