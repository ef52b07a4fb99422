//! `on_rx`: every packet a device receives (`net:netif_receive_skb`), for the SYN funnel's
//! count of arriving SYNs (`conn_request` where no function hook counts them at the listener)
//! and their TSvals (`syn_timestamps`). It runs per packet: the agent attaches it only while
//! an incident needs it. The network header starts at `skb->data` here (the link layer header
//! is pulled), while the recorded offsets may still be unset.
use netdiag_common::switch;

use super::{Args, twins};
use crate::{
    context::{Headers, Packet},
    handlers::{syn_funnel, syn_timestamps},
    kmem::Kmem,
    layout::switch as switched,
};

#[inline(always)]
fn at_tracepoint<A: Args>(ctx: &A) {
    on_rx::<A::Mem>(ctx.ptr(0));
}

twins!(at_tracepoint;
    tp_btf on_rx_btf = "netif_receive_skb", raw on_rx_raw = "netif_receive_skb", perf on_rx_perf = [rec_rx_skb]);

#[inline(always)]
fn on_rx<M: Kmem>(skb: *const u8) {
    let pkt = Packet::<M>::new(skb, core::ptr::null(), Headers::AtData, None);
    if !pkt.segment().is_some_and(|seg| syn_funnel::is_syn(seg.flags)) {
        return;
    }
    if switched(switch::RX_SAMPLES_SYNS) != 0 {
        syn_timestamps::sample(&pkt);
    }
    // After the sample: a branch taken before its option walk would double the states the
    // verifier walks through it.
    if switched(switch::RX_COUNTS_SYNS) != 0 {
        syn_funnel::syn_in(&pkt);
    }
}
