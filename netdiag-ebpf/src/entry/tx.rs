//! `on_tx`: every packet handed to a device (`net:net_dev_queue`), for SYN-ACKs leaving
//! (`synack_sent`) and, where no function hook sees `tcp_send_dupack`, duplicate ACKs per flow
//! (`flow_dupacks`). It runs per packet: the agent attaches it only while an incident needs it.
use netdiag_common::switch;

use super::{Args, twins};
use crate::{
    context::{Headers, Packet},
    handlers::{flows, syn_funnel},
    kmem::{Kmem, configured},
    layout::{layout, switch as switched},
};

#[inline(always)]
fn at_tracepoint<A: Args>(ctx: &A) {
    on_tx::<A::Mem>(ctx.ptr(0));
}

twins!(at_tracepoint; tp_btf on_tx_btf = "net_dev_queue", raw on_tx_raw = "net_dev_queue", perf on_tx_perf = [rec_tx_skb]);

#[inline(always)]
fn on_tx<M: Kmem>(skb: *const u8) {
    let sk: *const u8 = unsafe { M::member(skb, configured(&layout().skb_sk)).unwrap_or(core::ptr::null()) };
    let pkt = Packet::<M>::new(skb, sk, Headers::Recorded, None);
    if switched(switch::TX_COUNTS_SYNACKS) != 0 {
        syn_funnel::synack_out(&pkt);
    }
    if switched(switch::TX_COUNTS_DUPACKS) != 0 {
        flows::egress(&pkt);
    }
}
