//! `on_drop`: every packet the stack frees with a drop reason: at `skb:kfree_skb`, or at the
//! entry of the function that fires it (`sk_skb_reason_drop(sk, skb, reason)` since 6.11,
//! `kfree_skb_reason(skb, reason)` before) where fentry or kprobes are allowed. It runs only
//! for dropped packets, and serves `paws_checks` (watched reasons per peer) and `oow_received`
//! (out-of-window drops per flow) with one parse.
use netdiag_common::{FIELD_ABSENT, arm_request, oow_why, stat, switch, tcp_flag};

use super::{Args, twins};
use crate::{
    context::{Headers, Packet},
    handlers::{flows, paws},
    kmem::{Kmem, configured},
    layout::{has_reason, layout, oow_why as reason_why, settings, switch as switched},
    maps::{bump, request_arm},
};

/// `kfree_skb(skb, location, reason[, rx_sk])`: `rx_sk` since 6.11. The load-time constant
/// picks the branch and the verifier never walks the other one, so a kernel without `rx_sk`
/// accepts the program.
#[inline(always)]
fn at_tracepoint<A: Args>(ctx: &A) {
    let rx_sk = if configured(&layout().rec_drop_rx_sk) != FIELD_ABSENT { ctx.ptr(3) } else { core::ptr::null() };
    on_drop::<A::Mem>(ctx.ptr(0), ctx.word(2) as u32, rx_sk);
}

/// `sk_skb_reason_drop(sk, skb, reason)`.
#[inline(always)]
fn at_reason_drop<A: Args>(ctx: &A) {
    let skb = ctx.ptr(1);
    if frees::<A::Mem>(skb) {
        on_drop::<A::Mem>(skb, ctx.word(2) as u32, ctx.ptr(0));
    }
}

/// `kfree_skb_reason(skb, reason)`, before 6.11 (no socket).
#[inline(always)]
fn at_legacy_reason_drop<A: Args>(ctx: &A) {
    let skb = ctx.ptr(0);
    if frees::<A::Mem>(skb) {
        on_drop::<A::Mem>(skb, ctx.word(1) as u32, core::ptr::null());
    }
}

twins!(at_tracepoint;
    tp_btf on_drop_btf = "kfree_skb", raw on_drop_raw = "kfree_skb",
    perf on_drop_perf = [rec_drop_skb, _, rec_drop_reason, rec_drop_rx_sk]);
twins!(at_reason_drop; fentry on_drop_fentry = "sk_skb_reason_drop", kprobe on_drop_kprobe);
twins!(at_legacy_reason_drop; fentry on_drop_legacy_fentry = "kfree_skb_reason", kprobe on_drop_legacy_kprobe);

/// Whether the drop function called on `skb` frees it: only the last reference does, and only
/// then does the kernel fire the tracepoint; an earlier call just drops a reference, and the
/// packet is counted when it is really freed, like the tracepoint counts it.
#[inline(always)]
fn frees<M: Kmem>(skb: *const u8) -> bool {
    unsafe { M::member::<u32>(skb, configured(&layout().skb_users)) == Some(1) }
}

#[inline(always)]
fn on_drop<M: Kmem>(skb: *const u8, reason: u32, rx_sk: *const u8) {
    let s = settings();
    // Counted by the TIME_WAIT program where one serves paws_time_wait.
    let watched = has_reason(&s.watched, reason) && switched(switch::TW_PAWS_REASON_PLUS_ONE) != reason + 1;
    let out_of_window = reason_why(reason) != oow_why::NONE;
    if !watched && !out_of_window {
        return;
    }
    if watched {
        bump(stat::MATCHED);
    }
    if out_of_window {
        request_arm(arm_request::OOW_DROPS);
    }
    let pkt = Packet::<M>::new(skb, rx_sk, Headers::Recorded, Some(stat::UNPARSED));
    if out_of_window {
        // Which check it was is read again here, after the parse: a value known before the
        // parser's branches would multiply the states the verifier walks through them.
        flows::out_of_window(&pkt, reason_why(reason));
    }
    if watched {
        if pkt.segment().is_some_and(|seg| seg.flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN) {
            request_arm(arm_request::SYN_DROPS);
        }
        // Last: its option walk (for the sample) is then walked by the verifier once, not once
        // per outcome of what came before.
        paws::count_drop(&pkt, reason, pkt.sk_state(), false);
    }
}
