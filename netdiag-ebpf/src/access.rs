//! Reading kernel memory and load-time configuration.
use aya_ebpf::{EbpfContext, helpers::bpf_probe_read_kernel, programs::FEntryContext};

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

/// Pointer argument `n` of an fentry program as a plain address. The verifier types such
/// arguments and forbids bit operations on them, which the compiler emits when it folds null
/// checks together (`a.is_null() && b.is_null()` as `(a | b) == 0`); read through the helper,
/// the value is a number again.
#[inline(always)]
pub fn untyped_arg(ctx: &FEntryContext, n: u32) -> *const u8 {
    unsafe { read(ctx.as_ptr() as *const u8, n * 8).unwrap_or(core::ptr::null()) }
}
