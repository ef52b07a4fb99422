//! `on_oow_limited`: `tcp_oow_rate_limited(net, skb, mib_idx, last_oow_ack_time)` returning
//! true, the limiter keeping the stack from answering an out-of-window segment (slow path).
//! Serves `oow_limiter` (per peer) and the per-flow suppressed count. fexit reads arguments and
//! return together; a kretprobe sees no arguments, so its kprobe twin stashes them per task.
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id},
    macros::{fexit, kprobe, kretprobe},
    programs::{FExitContext, ProbeContext, RetProbeContext},
};
use netdiag_common::stat;

use crate::{
    context::{Headers, Packet},
    handlers::{dupacks, flows},
    kmem::{Kmem, Probe, Typed},
    maps::{OOW_PENDING, OowCall},
};

const NET: usize = 0;
const SKB: usize = 1;

#[fexit(function = "tcp_oow_rate_limited")]
pub fn on_oow_limited_fexit(ctx: FExitContext) -> u32 {
    // bool: only the low byte of the return register is defined.
    if ctx.ret::<u8>() == Ok(1) {
        suppressed::<Typed>(ctx.arg(NET), ctx.arg(SKB));
    }
    0
}

#[kprobe]
pub fn on_oow_limited_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(net), Some(skb)) = (ctx.arg::<u64>(NET), ctx.arg::<u64>(SKB)) {
        let _ = OOW_PENDING.insert(&task_key(), &OowCall { net, skb }, BPF_ANY as u64);
    }
    0
}

#[kretprobe]
pub fn on_oow_limited_kretprobe(ctx: RetProbeContext) -> u32 {
    let key = task_key();
    if let Some(call) = unsafe { OOW_PENDING.get(&key) } {
        let (net, skb) = (call.net as *const u8, call.skb as *const u8);
        if ctx.ret::<u8>() == 1 {
            suppressed::<Probe>(net, skb);
        }
        let _ = OOW_PENDING.remove(&key);
    }
    0
}

#[inline(always)]
fn suppressed<M: Kmem>(net: *const u8, skb: *const u8) {
    let pkt = Packet::<M>::new(skb, core::ptr::null(), Headers::Recorded, Some(stat::HOOK_UNPARSED)).in_net(net);
    dupacks::suppressed(&pkt);
    flows::limiter_suppressed(&pkt);
}

/// The calling task, which stays the same between a function's entry and return even if it
/// migrates. Idle tasks all have pid 0, one per CPU, and softirqs run on top of them, so theirs
/// is told apart by CPU (real pid_tgid values never set the top bit).
#[inline(always)]
fn task_key() -> u64 {
    let id = bpf_get_current_pid_tgid();
    if id == 0 { 1 << 63 | u64::from(unsafe { bpf_get_smp_processor_id() }) } else { id }
}
