//! `on_synack`: `tcp_make_synack(sk, dst, req, foc, synack_type, syn_skb)`, a SYN-ACK built for
//! a request socket (slow path: once per SYN-ACK, retransmissions included, as on the wire).
//! Serves `synack_sent` where function hooks work, so that nothing runs per packet for it.
use netdiag_common::stat;

use super::{Args, twins};
use crate::{
    context::{Headers, Packet},
    handlers::syn_funnel,
};

const LISTENER: usize = 0;
const REQUEST: usize = 2;
/// The SYN answered; NULL for a retransmission. Only its namespace is read, and the
/// listener's serves when it is NULL.
const SYN_SKB: usize = 5;

#[inline(always)]
fn at_function<A: Args>(ctx: &A) {
    let pkt = Packet::<A::Mem>::new(ctx.ptr(SYN_SKB), ctx.ptr(LISTENER), Headers::Recorded, Some(stat::HOOK_UNPARSED));
    syn_funnel::synack_built(&pkt, ctx.ptr(REQUEST));
}

twins!(at_function; fentry on_synack_fentry = "tcp_make_synack", kprobe on_synack_kprobe);
