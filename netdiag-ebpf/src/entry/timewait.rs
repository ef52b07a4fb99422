//! `on_timewait`: `tcp_timewait_state_process(tw, skb, th, ...)`, a segment reaching a TIME_WAIT
//! socket (later arguments differ between kernels). Serves `paws_time_wait`, and samples SYNs
//! for `syn_timestamps` where the conn_request program samples the rest.
use netdiag_common::{stat, switch};

use super::{Args, twins};
use crate::{
    context::{Headers, Packet},
    handlers::{syn_funnel, syn_timestamps, time_wait},
    layout::switch as switched,
};

#[inline(always)]
fn at_function<A: Args>(ctx: &A) {
    let pkt = Packet::<A::Mem>::new(ctx.ptr(1), ctx.ptr(0), Headers::Recorded, Some(stat::HOOK_UNPARSED));
    time_wait::paws_reject(&pkt);
    if switched(switch::FUNCTIONS_SAMPLE_SYNS) != 0 && pkt.segment().is_some_and(|seg| syn_funnel::is_syn(seg.flags)) {
        syn_timestamps::sample(&pkt);
    }
}

twins!(at_function; fentry on_timewait_fentry = "tcp_timewait_state_process", kprobe on_timewait_kprobe);
