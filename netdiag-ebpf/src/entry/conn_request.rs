//! `on_conn_request`: `tcp_conn_request(rsk_ops, af_ops, sk, skb)`, a SYN reaching a listener
//! (the slow path: it runs for SYNs only). Counts it (`conn_request`) and samples its TSval
//! (`syn_timestamps`, with the TIME_WAIT program for SYNs that meet a TIME_WAIT socket).
use netdiag_common::{stat, switch};

use super::{Args, twins};
use crate::{
    context::{Headers, Packet},
    handlers::{syn_funnel, syn_timestamps},
    layout::switch as switched,
};

const SK: usize = 2;
const SKB: usize = 3;

#[inline(always)]
fn at_function<A: Args>(ctx: &A) {
    let pkt = Packet::<A::Mem>::new(ctx.ptr(SKB), ctx.ptr(SK), Headers::Recorded, Some(stat::HOOK_UNPARSED));
    syn_funnel::at_listener(&pkt);
    if switched(switch::FUNCTIONS_SAMPLE_SYNS) != 0 {
        syn_timestamps::sample(&pkt);
    }
}

twins!(at_function; fentry on_conn_request_fentry = "tcp_conn_request", kprobe on_conn_request_kprobe);
