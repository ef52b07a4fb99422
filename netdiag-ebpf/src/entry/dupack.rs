//! `on_dupack`: `tcp_send_dupack(sk, skb)`, the stack answering an out-of-window or duplicate
//! segment (slow path). Serves `dupack_sent` (per peer) and `flow_dupacks` (per flow).
use netdiag_common::stat;

use super::{Args, twins};
use crate::{
    context::{Headers, Packet},
    handlers::{dupacks, flows},
};

#[inline(always)]
fn at_function<A: Args>(ctx: &A) {
    let pkt = Packet::<A::Mem>::new(ctx.ptr(1), ctx.ptr(0), Headers::Recorded, Some(stat::HOOK_UNPARSED));
    dupacks::sent(&pkt);
    flows::dupack_answered(&pkt);
}

twins!(at_function; fentry on_dupack_fentry = "tcp_send_dupack", kprobe on_dupack_kprobe);
