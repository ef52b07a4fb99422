//! The programs, one per attach point and mechanism. Each reads its attach point's arguments,
//! builds one [`crate::context::Packet`] and calls the handlers of the features it serves.
//! The mechanism twins of an attach point (fentry and kprobe on a function; `tp_btf` and raw
//! on a tracepoint) share one body, stamped by [`twins!`]; they differ only in how arguments
//! arrive ([`Args`]) and so in how memory is read ([`crate::kmem::Kmem`]). Perf tracepoints
//! read records, not arguments: theirs are written out beside.
pub mod conn_request;
pub mod drop;
pub mod dupack;
pub mod oow_limited;
pub mod rx;
pub mod socket;
pub mod synack;
pub mod timewait;
pub mod tx;

use aya_ebpf::programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RawTracePointContext};

use crate::kmem::{Kmem, Probe, Typed};

/// A program's positional arguments, and how memory behind them is read.
pub trait Args {
    type Mem: Kmem;
    fn ptr(&self, n: usize) -> *const u8;
    fn word(&self, n: usize) -> u64;
}

/// Contexts whose `arg(n)` reads argument `n` directly, and the memory access that goes with it.
macro_rules! positional_args {
    ($($context:ty => $mem:ty),+ $(,)?) => {
        $(impl Args for $context {
            type Mem = $mem;
            #[inline(always)]
            fn ptr(&self, n: usize) -> *const u8 {
                self.arg(n)
            }
            #[inline(always)]
            fn word(&self, n: usize) -> u64 {
                self.arg(n)
            }
        })+
    };
}

positional_args!(FEntryContext => Typed, FExitContext => Typed, BtfTracePointContext => Typed, RawTracePointContext => Probe);

impl Args for ProbeContext {
    type Mem = Probe;
    #[inline(always)]
    fn ptr(&self, n: usize) -> *const u8 {
        self.arg(n).unwrap_or(core::ptr::null())
    }
    #[inline(always)]
    fn word(&self, n: usize) -> u64 {
        self.arg(n).unwrap_or(0)
    }
}

/// Stamps the programs of one attach point from one body generic over [`Args`]:
/// `twins!(body_fn; fentry on_x_fentry = "function", kprobe on_x_kprobe, tp_btf on_x_btf =
/// "tracepoint", raw on_x_raw = "tracepoint")`, any subset, in any order.
macro_rules! twins {
    ($body:ident; $($mechanism:ident $name:ident $(= $target:literal)?),+ $(,)?) => {
        $( $crate::entry::twins!(@one $body $mechanism $name $($target)?); )+
    };
    (@one $body:ident fentry $name:ident $target:literal) => {
        #[aya_ebpf::macros::fentry(function = $target)]
        pub fn $name(ctx: aya_ebpf::programs::FEntryContext) -> u32 {
            $body(&ctx);
            0
        }
    };
    (@one $body:ident kprobe $name:ident) => {
        #[aya_ebpf::macros::kprobe]
        pub fn $name(ctx: aya_ebpf::programs::ProbeContext) -> u32 {
            $body(&ctx);
            0
        }
    };
    (@one $body:ident tp_btf $name:ident $target:literal) => {
        #[aya_ebpf::macros::btf_tracepoint(function = $target)]
        pub fn $name(ctx: aya_ebpf::programs::BtfTracePointContext) -> u32 {
            $body(&ctx);
            0
        }
    };
    (@one $body:ident raw $name:ident $target:literal) => {
        #[aya_ebpf::macros::raw_tracepoint(tracepoint = $target)]
        pub fn $name(ctx: aya_ebpf::programs::RawTracePointContext) -> u32 {
            $body(&ctx);
            0
        }
    };
}
pub(crate) use twins;
