//! The programs, one per attach point and mechanism. Each reads its attach point's arguments,
//! builds one [`crate::context::Packet`] and calls the handlers of the features it serves.
//! The mechanism twins of an attach point (fentry and kprobe on a function; `tp_btf`, raw and
//! perf on a tracepoint) share one body, stamped by [`twins!`]; they differ only in how
//! arguments arrive ([`Args`]) and so in how memory is read ([`crate::kmem::Kmem`]). A perf
//! tracepoint gets a record instead of arguments: [`Record`] reads argument `n` from the record
//! field the loader found for it.
pub mod conn_request;
pub mod drop;
pub mod dupack;
pub mod oow_limited;
pub mod rx;
pub mod socket;
pub mod synack;
pub mod timewait;
pub mod tx;

use aya_ebpf::programs::{
    BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RawTracePointContext, TracePointContext,
};
use netdiag_common::FIELD_ABSENT;

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

/// A perf tracepoint's record read as the tracepoint's arguments: `fields[n]` is the record
/// offset of argument `n` (from the tracepoint's format), [`FIELD_ABSENT`] where the record
/// has none; such an argument reads as 0.
pub struct Record<'a, const N: usize> {
    pub ctx: &'a TracePointContext,
    pub fields: [u32; N],
}

impl<const N: usize> Record<'_, N> {
    #[inline(always)]
    fn field<T: Default>(&self, n: usize) -> T {
        match self.fields.get(n) {
            Some(&offset) if offset != FIELD_ABSENT => unsafe { self.ctx.read_at(offset as usize).unwrap_or_default() },
            _ => T::default(),
        }
    }
}

impl<const N: usize> Args for Record<'_, N> {
    type Mem = Probe;
    #[inline(always)]
    fn ptr(&self, n: usize) -> *const u8 {
        self.field::<usize>(n) as *const u8
    }
    /// Eight bytes from the field: a narrower one (an enum) is the low bytes, which its caller
    /// keeps, on this little-endian target.
    #[inline(always)]
    fn word(&self, n: usize) -> u64 {
        self.field(n)
    }
}

/// Stamps the programs of one attach point from one body generic over [`Args`]:
/// `twins!(body_fn; fentry on_x_fentry = "function", kprobe on_x_kprobe, tp_btf on_x_btf =
/// "tracepoint", raw on_x_raw = "tracepoint", perf on_x_perf = [rec_a, _, rec_b])`, any
/// subset, in any order; a perf program lists, per argument, the [`netdiag_common::Layout`]
/// member holding its record offset (`_`: not in the record).
macro_rules! twins {
    ($body:ident; $($mechanism:ident $name:ident $(= $target:tt)?),+ $(,)?) => {
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
    (@one $body:ident perf $name:ident [$($field:tt),+]) => {
        #[aya_ebpf::macros::tracepoint]
        pub fn $name(ctx: aya_ebpf::programs::TracePointContext) -> u32 {
            let fields = [$($crate::entry::twins!(@field $field)),+];
            $body(&$crate::entry::Record { ctx: &ctx, fields });
            0
        }
    };
    (@field _) => {
        netdiag_common::FIELD_ABSENT
    };
    (@field $field:ident) => {
        $crate::kmem::configured(&$crate::layout::layout().$field)
    };
}
pub(crate) use twins;
