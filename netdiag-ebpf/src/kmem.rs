//! Reading kernel memory. Programs whose arguments the verifier types from BTF (fentry, fexit,
//! `tp_btf`) read struct members with plain loads, which the verifier checks against the member
//! at that offset and guards against faults itself; the others (kprobes, raw and perf
//! tracepoints) get plain numbers and read through `bpf_probe_read_kernel`, one helper call
//! per member. Handlers are generic over the two, so each mechanism's program is compiled with
//! its cheapest access.
use aya_ebpf::helpers::bpf_probe_read_kernel;

pub trait Kmem {
    /// The `T` at `base + offset`, where `base` came from this mechanism's arguments or from a
    /// pointer member read through it (a `struct` pointer keeps its type).
    unsafe fn member<T: Copy>(base: *const u8, offset: u32) -> Option<T>;
}

/// Through the helper: works on any address.
pub struct Probe;

impl Kmem for Probe {
    #[inline(always)]
    unsafe fn member<T: Copy>(base: *const u8, offset: u32) -> Option<T> {
        unsafe { read(base, offset) }
    }
}

/// A plain load from a BTF-typed pointer. The offsets are constants the verifier knows (the
/// loader patched them into read-only data), so it can match each load to a member.
pub struct Typed;

impl Kmem for Typed {
    #[inline(always)]
    unsafe fn member<T: Copy>(base: *const u8, offset: u32) -> Option<T> {
        Some(unsafe { core::ptr::read_volatile(base.add(offset as usize) as *const T) })
    }
}

/// Reads a `T` at `base + offset` through the helper: for addresses that are plain numbers
/// (a masked pointer, a packet's bytes).
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
