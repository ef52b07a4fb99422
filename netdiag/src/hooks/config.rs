//! The programs' load-time configuration, from the running kernel: struct offsets from BTF,
//! tracepoint record offsets from its `format` file, drop-reason numbers by name.
use anyhow::{Result, anyhow};
use netdiag_common::{DropProbeConfig, FIELD_ABSENT, FunctionProbeConfig};

use super::drop_reasons::ReasonTable;
use crate::{btf::Btf, error::unavailable, tracefs};

pub fn function_probe_config(btf: &Btf) -> Result<FunctionProbeConfig> {
    let member = |s: &str, path: &[&str]| btf.member_offset(s, path);
    check_header_fields(btf)?;
    Ok(FunctionProbeConfig {
        skb_head: member("sk_buff", &["head"])?,
        skb_network_header: member("sk_buff", &["network_header"])?,
        skb_transport_header: member("sk_buff", &["transport_header"])?,
        sk_family: member("sock_common", &["skc_family"])?,
        sk_daddr: member("sock_common", &["skc_daddr"])?,
        sk_v6_daddr: member("sock_common", &["skc_v6_daddr"])?,
        sk_net: member("sock_common", &["skc_net", "net"])?,
        net_ns_inum: member("net", &["ns", "inum"])?,
        // Filled by `time_wait::TimeWaitSetup`: only paws_time_wait needs them.
        ..Default::default()
    })
}

/// The drop programs' configuration and the reasons they watch, as `NAME=number`. The record
/// offsets are those of `skb:kfree_skb` where its format is readable; the function programs
/// need none of them (see [`drop_tracepoint`]).
pub fn drop_probe_config(
    btf: &Btf,
    format: Option<&tracefs::TracepointFormat>,
    reasons: &ReasonTable,
    watched_names: &[String],
    only_netns: Option<u32>,
) -> Result<(DropProbeConfig, Vec<String>)> {
    let field = |name: &str| format.and_then(|format| format.field(name)).map_or(FIELD_ABSENT, |f| f.offset);
    let member = |s: &str, path: &[&str]| btf.member_offset(s, path);
    check_header_fields(btf)?;
    let mut config = DropProbeConfig {
        tp_skbaddr: field("skbaddr"),
        tp_reason: field("reason"),
        tp_protocol: field("protocol"),
        tp_rx_sk: field("rx_sk"),
        skb_head: member("sk_buff", &["head"])?,
        skb_network_header: member("sk_buff", &["network_header"])?,
        skb_transport_header: member("sk_buff", &["transport_header"])?,
        skb_dev: member("sk_buff", &["dev"])?,
        dev_nd_net: member("net_device", &["nd_net", "net"])?,
        net_ns_inum: member("net", &["ns", "inum"])?,
        sk_state: member("sock_common", &["skc_state"])?,
        sk_net: member("sock_common", &["skc_net", "net"])?,
        skb_refdst: member("sk_buff", &["_skb_refdst"])?,
        dst_dev: member("dst_entry", &["dev"])?,
        reasons: Default::default(),
        skb_tail: skb_tail_offset(btf),
        only_netns: only_netns.unwrap_or(0),
        skb_users: member("sk_buff", &["users"])?,
        _pad: 0,
    };
    let mut watched = Vec::new();
    let mut missing = Vec::new();
    for name in watched_names {
        match reasons.number(name) {
            Some(number) => {
                config.watch(number);
                watched.push(format!("{name}={number}"));
            }
            None => missing.push(name.as_str()),
        }
    }
    if !missing.is_empty() {
        // Said where the user reads the hooks, so a quiet report is not taken for a clean bill.
        watched.push(format!(
            "{} {NOT_ON_THIS_KERNEL} (those drops are not attributed by this backend)",
            missing.join(", ")
        ));
    }
    if watched.is_empty() {
        return Err(unavailable(
            "none of the watched drop reasons exist on this kernel",
            "PAWS drop reasons appeared in 6.13; use a backend with fentry/kprobe on older kernels",
        ));
    }
    Ok((config, watched))
}

/// Whether the `skb:kfree_skb` programs can serve: the tracepoint exists and carries the
/// drop reason.
pub fn drop_tracepoint(format: &Result<tracefs::TracepointFormat>) -> Result<(), String> {
    match format {
        Ok(format) if format.field("reason").is_some() && format.field("skbaddr").is_some() => Ok(()),
        Ok(_) => Err("skb:kfree_skb carries no drop reason on this kernel (added in 5.17)".into()),
        Err(e) => Err(format!("skb:kfree_skb is not available ({e:#})")),
    }
}

/// Marks, in the hook's detail, drop reasons the running kernel does not have.
pub const NOT_ON_THIS_KERNEL: &str = "not on this kernel";

/// `sk_buff.tail` is a 32-bit offset from `head` on 64-bit kernels (`NET_SKBUFF_DATA_USES_OFFSET`)
/// and a pointer elsewhere: the parser checks the headers against it only in the first case.
fn skb_tail_offset(btf: &Btf) -> u32 {
    match (btf.member_offset("sk_buff", &["tail"]), btf.member_size("sk_buff", &["tail"])) {
        (Ok(offset), Ok(4)) => offset,
        _ => FIELD_ABSENT,
    }
}

/// The packet parser reads these as 16-bit offsets from `skb->head`.
fn check_header_fields(btf: &Btf) -> Result<()> {
    for (name, expected) in [("network_header", 2), ("transport_header", 2)] {
        let size = btf.member_size("sk_buff", &[name])?;
        if size != expected {
            return Err(anyhow!(
                "sk_buff.{name} is {size} bytes on this kernel, expected {expected}"
            ));
        }
    }
    Ok(())
}
