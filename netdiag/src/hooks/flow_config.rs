//! Configuration of the per-flow ACK-loop accounting (`netdiag-ebpf/src/flows.rs`) for the
//! running kernel: which drop reasons mean "out of window", by name, and the offsets the egress
//! program reads.
use anyhow::{Result, anyhow};

use netdiag_common::{FlowProbeConfig, oow_why};

use super::drop_reasons::ReasonTable;
use crate::{btf::Btf, tracefs};

/// Drop reasons of an established connection's out-of-window checks (`tcp_validate_incoming`,
/// `tcp_ack`), each answered with a duplicate or challenge ACK unless `tcp_invalid_ratelimit`
/// suppresses it, with why.
pub const OOW_REASONS: &[(&str, u8)] = &[
    ("TCP_RFC7323_PAWS", oow_why::TIMESTAMP),
    ("TCP_OLD_SEQUENCE", oow_why::SEQUENCE),
    ("TCP_INVALID_SEQUENCE", oow_why::SEQUENCE),
    ("TCP_INVALID_END_SEQUENCE", oow_why::SEQUENCE),
    ("TCP_INVALID_ACK_SEQUENCE", oow_why::ACK),
    ("TCP_ACK_UNSENT_DATA", oow_why::ACK),
    ("TCP_TOO_OLD_ACK", oow_why::ACK),
];

/// The reason sets, and a note naming them (`NAME=number`) for the hook's status; fails when
/// the kernel has none of them.
pub fn oow_reasons(config: &mut FlowProbeConfig, reasons: &ReasonTable) -> Result<String> {
    let mut found = Vec::new();
    for (name, why) in OOW_REASONS {
        if let Some(number) = reasons.number(name) {
            config.set(*why, number);
            found.push(format!("{name}={number}"));
        }
    }
    if found.is_empty() {
        return Err(anyhow!("none of the out-of-window drop reasons exist on this kernel"));
    }
    Ok(format!(", out-of-window reasons {} (numbers from {})", found.join(", "), reasons.source))
}

/// Offsets for the egress program: `net:net_dev_queue`'s `skbaddr`, and the `sk_buff` and
/// `net_device` members it follows.
pub fn egress_offsets(config: &mut FlowProbeConfig, btf: &Btf) -> Result<()> {
    let format = tracefs::read_format("net", "net_dev_queue")?;
    let member = |s: &str, path: &[&str]| btf.member_offset(s, path);
    config.tp_skbaddr = format
        .field("skbaddr")
        .map(|f| f.offset)
        .ok_or_else(|| anyhow!("net:net_dev_queue has no field skbaddr on this kernel"))?;
    config.skb_head = member("sk_buff", &["head"])?;
    config.skb_network_header = member("sk_buff", &["network_header"])?;
    config.skb_transport_header = member("sk_buff", &["transport_header"])?;
    config.skb_dev = member("sk_buff", &["dev"])?;
    config.skb_sk = member("sk_buff", &["sk"])?;
    config.dev_nd_net = member("net_device", &["nd_net", "net"])?;
    config.net_ns_inum = member("net", &["ns", "inum"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_sorted_into_why_by_name() {
        let table = ReasonTable::from_symbols(&[
            (36, "TCP_RFC7323_PAWS".into()),
            (41, "TCP_OLD_SEQUENCE".into()),
            (50, "TCP_TOO_OLD_ACK".into()),
            (99, "NOT_SPECIFIED".into()),
        ]);
        let mut config = FlowProbeConfig::default();
        let note = oow_reasons(&mut config, &table).unwrap();
        assert_eq!(config.why(36), oow_why::TIMESTAMP);
        assert_eq!(config.why(41), oow_why::SEQUENCE);
        assert_eq!(config.why(50), oow_why::ACK);
        assert_eq!(config.why(99), oow_why::NONE);
        assert!(note.contains("TCP_OLD_SEQUENCE=41"), "{note}");
        assert!(oow_reasons(&mut FlowProbeConfig::default(), &ReasonTable::from_symbols(&[])).is_err());
    }
}
