//! Configuration of the SYN funnel's tracepoint programs (`netdiag-ebpf/src/handshake.rs`):
//! record offsets of four tracepoints from their `format` files, struct offsets from BTF.
use anyhow::{Context as _, Result};
use aya::{Ebpf, maps::Array};
use netdiag_common::HandshakeProbeConfig;

use super::HookStatus;
use crate::{btf::Btf, tracefs};

/// `syn_arrivals` counts SYNs into the funnel while entry 0 is 1.
const ARRIVALS_COUNTED_MAP: &str = "SYN_ARRIVALS_COUNTED";

/// SYN timestamp samples each CPU may send per second; more SYNs are still counted.
const SYN_SAMPLES_PER_S: u32 = 2000;

/// `only_netns`: the inode of the one namespace to watch, or None for all.
pub fn handshake_probe_config(btf: &Btf, only_netns: Option<u32>) -> Result<HandshakeProbeConfig> {
    let rx = tracefs::read_format("net", "netif_receive_skb")?;
    let tx = tracefs::read_format("net", "net_dev_queue")?;
    let rs = tracefs::read_format("tcp", "tcp_retransmit_synack")?;
    let ss = tracefs::read_format("sock", "inet_sock_set_state")?;
    let field = |format: &tracefs::TracepointFormat, tracepoint: &str, name: &str| -> Result<u32> {
        format.field(name).map(|f| f.offset).with_context(|| format!("{tracepoint} has no field {name} on this kernel"))
    };
    let member = |s: &str, path: &[&str]| btf.member_offset(s, path);
    for name in ["network_header", "transport_header"] {
        let size = btf.member_size("sk_buff", &[name])?;
        anyhow::ensure!(size == 2, "sk_buff.{name} is {size} bytes on this kernel, expected 2");
    }
    let (retransmit, set_state) = ("tcp:tcp_retransmit_synack", "sock:inet_sock_set_state");
    Ok(HandshakeProbeConfig {
        rx_skbaddr: field(&rx, "net:netif_receive_skb", "skbaddr")?,
        tx_skbaddr: field(&tx, "net:net_dev_queue", "skbaddr")?,
        skb_head: member("sk_buff", &["head"])?,
        skb_data: member("sk_buff", &["data"])?,
        skb_network_header: member("sk_buff", &["network_header"])?,
        skb_transport_header: member("sk_buff", &["transport_header"])?,
        skb_dev: member("sk_buff", &["dev"])?,
        dev_nd_net: member("net_device", &["nd_net", "net"])?,
        net_ns_inum: member("net", &["ns", "inum"])?,
        sk_net: member("sock_common", &["skc_net", "net"])?,
        rs_skaddr: field(&rs, retransmit, "skaddr")?,
        rs_sport: field(&rs, retransmit, "sport")?,
        rs_family: field(&rs, retransmit, "family")?,
        rs_daddr: field(&rs, retransmit, "daddr")?,
        rs_daddr_v6: field(&rs, retransmit, "daddr_v6")?,
        ss_skaddr: field(&ss, set_state, "skaddr")?,
        ss_oldstate: field(&ss, set_state, "oldstate")?,
        ss_newstate: field(&ss, set_state, "newstate")?,
        ss_sport: field(&ss, set_state, "sport")?,
        ss_family: field(&ss, set_state, "family")?,
        ss_protocol: field(&ss, set_state, "protocol")?,
        ss_daddr: field(&ss, set_state, "daddr")?,
        ss_daddr_v6: field(&ss, set_state, "daddr_v6")?,
        syn_samples_per_s: SYN_SAMPLES_PER_S,
        only_netns: only_netns.unwrap_or(0),
    })
}

/// The program on `netif_receive_skb` samples every SYN for `syn_timestamps`; it counts them
/// too where it also serves `conn_request`, that is where no function hook counts SYNs at the
/// listener instead.
pub fn count_arrivals(ebpf: &mut Ebpf, hooks: &[HookStatus]) -> Result<()> {
    let counted_here = hooks.iter().any(|h| h.name == "conn_request" && h.active && !h.at_function());
    let map = ebpf.map_mut(ARRIVALS_COUNTED_MAP).with_context(|| format!("{ARRIVALS_COUNTED_MAP} map missing"))?;
    let mut array: Array<_, u32> = Array::try_from(map)?;
    array.set(0, counted_here as u32, 0)?;
    Ok(())
}
